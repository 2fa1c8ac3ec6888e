"""xai_helpers: FGSM adversarial examples on MobileNetV2, explained with Grad-CAM and Integrated Gradients.

The public API the book, the command line and the tests use; every function takes and returns NumPy arrays,
and the Keras model is the one object passed around. The package is built in wings, each importing only
the wings below it (``tests/test_layers.py`` checks it):

* ``classifier/``: the model, its forward passes and labels, the photos, input checks;
* ``methods/``: attacks, Grad-CAM, Integrated Gradients, map comparison, interventions, controls,
  faithfulness, detection, regions and their plots;
* ``study/``: the per-photo analysis, the many-photo study (settings, rows, table, runner, Ray), its
  summaries and safe output files;
* ``chapters/``: what the book's chapters need beside the methods (study tables as they read them, kept
  results, the build's log);
* ``cli/``: the command line (imported by nothing else).

Importing the package is cheap: the public names (``xh.load_model``, ``xh.fgsm``, ...) are imported from
their modules on first use (PEP 562), so ``python -m xai_helpers --help`` answers without loading
TensorFlow. Whenever TensorFlow is first imported after this package (by any module, Keras included), its
start-up chatter on stderr is suppressed (``_QuietTensorFlowFinder``).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys

from xai_helpers.classifier.quiet import StderrClosed  # noqa: E402  (light: the standard library only)

# TensorFlow's C++ start-up chatter would otherwise land in every notebook's stderr.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.2.0"

#: Public name -> the module (of this package) that defines it; imported on first access.
_PUBLIC = {
    "DEFAULT_EPS": "methods.attacks", "DEFAULT_EPS_PIXELS": "methods.attacks", "eps_to_pixels": "methods.attacks",
    "fgsm": "methods.attacks", "fgsm_targeted": "methods.attacks", "iterative_fgsm_targeted": "methods.attacks",
    "loss_gradient_sign": "methods.attacks", "pixels_to_eps": "methods.attacks",
    "compare_maps": "methods.compare", "to_2d": "methods.compare",
    "deprocess": "classifier.data", "load_image": "classifier.data", "sample_image": "classifier.data",
    "sample_photos": "classifier.data",
    "gradcam": "methods.gradcam",
    "IGResult": "methods.integrated_gradients", "integrated_gradients": "methods.integrated_gradients",
    "class_labels": "classifier.labels", "load_model": "classifier.loading", "predict": "classifier.forward",
    "weights_fingerprint": "classifier.provenance",
    "results_path": "chapters.paths",
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with the process's stderr (fd 2) closed for the duration of the import only.

    TensorFlow >= 2.20 logs through Abseil, which writes "All log messages before absl::InitializeLog()
    ..." and the oneDNN notice (port.cc) to fd 2 while its libraries load, before ``TF_CPP_MIN_LOG_LEVEL``
    takes effect; Jupyter kernels forward fd 2 into every notebook. Python exceptions raised by the import
    are unaffected (they are not written to fd 2 here), and stderr is restored afterwards.
    """
    if "tensorflow" in sys.modules:
        return
    with StderrClosed():
        import tensorflow  # noqa: F401


class _QuietLoader:
    """Wraps TensorFlow's own loader: executes the ``tensorflow`` package with fd 2 closed."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        # Put the real loader back first, so TensorFlow (and importlib.resources) never see the wrapper.
        module.__spec__.loader = self._loader
        module.__loader__ = self._loader
        with StderrClosed():
            self._loader.exec_module(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _QuietTensorFlowFinder:
    """A one-shot ``sys.meta_path`` finder: the first ``import tensorflow`` (from ``keras``, ``attacks``,
    ``integrated_gradients``, a notebook, ...) runs through ``_QuietLoader``; then it removes itself."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "tensorflow":
            return None
        if cls in sys.meta_path:
            sys.meta_path.remove(cls)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _QuietLoader(spec.loader)
        return spec


if "tensorflow" not in sys.modules and _QuietTensorFlowFinder not in sys.meta_path:
    sys.meta_path.insert(0, _QuietTensorFlowFinder)


def __getattr__(name: str):
    """Import a public name from its module on first access (PEP 562)."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
