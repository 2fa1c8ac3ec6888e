"""xai_helpers: FGSM adversarial examples on MobileNetV2, explained with Grad-CAM and Integrated Gradients.

The public API the book, the command line and the tests use; every function takes and returns NumPy arrays,
and the Keras model is the one object passed around.
"""
from __future__ import annotations

import os

# TensorFlow's C++ start-up chatter would otherwise land in every notebook's stderr.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with the process's stderr (fd 2) closed for the duration of the import only.

    TensorFlow >= 2.20 logs through Abseil, which writes "All log messages before absl::InitializeLog()
    ..." and the oneDNN notice (port.cc) to fd 2 while its libraries load, before ``TF_CPP_MIN_LOG_LEVEL``
    takes effect; Jupyter kernels forward fd 2 into every notebook. Python exceptions raised by the import
    are unaffected (they are not written to fd 2 here), and stderr is restored afterwards.
    """
    import sys

    if "tensorflow" in sys.modules:
        return
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2 (e.g. some embedded interpreters): import normally
        import tensorflow  # noqa: F401
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_import_tensorflow_quietly()

from .attacks import (DEFAULT_EPS, DEFAULT_EPS_PIXELS, eps_to_pixels, fgsm, fgsm_targeted,  # noqa: E402
                      iterative_fgsm_targeted, loss_gradient_sign, pixels_to_eps)
from .compare import compare_maps, to_2d  # noqa: E402
from .data import deprocess, load_image, sample_image, sample_photos  # noqa: E402
from .gradcam import gradcam  # noqa: E402
from .integrated_gradients import IGResult, integrated_gradients  # noqa: E402
from .model import class_labels, load_model, predict, weights_fingerprint  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_EPS", "DEFAULT_EPS_PIXELS", "IGResult", "class_labels", "compare_maps", "deprocess",
    "eps_to_pixels", "fgsm", "fgsm_targeted", "gradcam", "integrated_gradients", "iterative_fgsm_targeted", "load_image",
    "load_model", "loss_gradient_sign", "pixels_to_eps", "predict", "sample_image", "sample_photos",
    "to_2d", "weights_fingerprint", "__version__",
]
