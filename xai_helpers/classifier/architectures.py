"""Keras ImageNet classifiers by name: how each one expects its input, and its default input size.

The package has one input space for every model: MobileNetV2's ``x = pixel / 127.5 - 1`` in [-1, 1]
(an affine image of the 0-255 pixels), and ``eps`` is in those units (one pixel level = 2/255). This is
the attack libraries' design (Foolbox's ``bounds``, ART's ``clip_values`` and ``preprocessing``), with
bounds (-1, 1) instead of (0, 1): the model's own preprocessing becomes part of the model, so attacks and
explainers never need to know it. Each ``keras.applications`` classifier expects one of four inputs
(``keras.applications.imagenet_utils.preprocess_input``'s modes, plus the models that rescale inside)::

    "tf"      x itself, in [-1, 1]                               MobileNet(V2), ResNet*V2, Inception*,
                                                                 Xception, NASNet*
    "caffe"   BGR 0-255 minus the ImageNet mean (103.939,        VGG16/19, ResNet50/101/152
              116.779, 123.68), p = 127.5 (x + 1)
    "torch"   (p / 255 - mean) / std, mean (0.485, 0.456, 0.406), DenseNet121/169/201
              std (0.229, 0.224, 0.225)
    "raw255"  p = 127.5 (x + 1) in 0-255: the model rescales    EfficientNet*, EfficientNetV2*,
              inside (its own Rescaling/Normalization layers)    ConvNeXt*, MobileNetV3*

``InputPreprocessing`` is that map as a Keras layer (no weights, serialisable), placed between the
package's input and the application's first layer.

Architecture options (``load_model(name, alpha=..., size=...)``): ``size`` is the square input side of any
architecture; ``alpha``, the width multiplier, exists only for the constructors that take it (MobileNet,
MobileNetV2, MobileNetV3Small/Large: ``Architecture.takes_alpha``). Which (alpha, size) pairs have ImageNet
weights is Keras's own check (e.g. MobileNet: alpha 0.25/0.5/0.75/1.0 and size 128/160/192/224).
"""
from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import keras

#: The preprocessing modes ``InputPreprocessing`` knows (see the module docstring).
PREPROCESSING_MODES = ("tf", "caffe", "torch", "raw255")

CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Architecture:
    """A ``keras.applications`` classifier: its constructor's name, input preprocessing and input side."""

    name: str  #: the constructor in ``keras.applications`` (e.g. "ResNet50")
    preprocessing: str  #: one of ``PREPROCESSING_MODES``
    size: int  #: default (and, with ImageNet weights, required) input side in pixels

    def constructor(self) -> Callable:
        """Return the ``keras.applications`` function that builds this classifier."""
        return getattr(keras.applications, self.name)

    @property
    def takes_alpha(self) -> bool:
        """Whether the constructor has a width multiplier ``alpha`` (MobileNet, MobileNetV2, MobileNetV3*)."""
        return "alpha" in inspect.signature(self.constructor()).parameters

    @property
    def default_alpha(self) -> float | None:
        """The constructor's default ``alpha`` (1.0 for the MobileNets), or None when it takes none."""
        if not self.takes_alpha:
            return None
        return float(inspect.signature(self.constructor()).parameters["alpha"].default)


def _table() -> dict[str, Architecture]:
    rows: list[tuple[str, str, int]] = [
        ("MobileNet", "tf", 224), ("MobileNetV2", "tf", 224),
        ("MobileNetV3Small", "raw255", 224), ("MobileNetV3Large", "raw255", 224),
        ("ResNet50", "caffe", 224), ("ResNet101", "caffe", 224), ("ResNet152", "caffe", 224),
        ("ResNet50V2", "tf", 224), ("ResNet101V2", "tf", 224), ("ResNet152V2", "tf", 224),
        ("VGG16", "caffe", 224), ("VGG19", "caffe", 224),
        ("DenseNet121", "torch", 224), ("DenseNet169", "torch", 224), ("DenseNet201", "torch", 224),
        ("InceptionV3", "tf", 299), ("InceptionResNetV2", "tf", 299), ("Xception", "tf", 299),
        ("NASNetMobile", "tf", 224), ("NASNetLarge", "tf", 331),
        ("ConvNeXtTiny", "raw255", 224), ("ConvNeXtSmall", "raw255", 224), ("ConvNeXtBase", "raw255", 224),
        ("ConvNeXtLarge", "raw255", 224), ("ConvNeXtXLarge", "raw255", 224),
    ]
    rows += [(f"EfficientNetB{i}", "raw255", s)
             for i, s in enumerate((224, 240, 260, 300, 380, 456, 528, 600))]
    rows += [(f"EfficientNetV2{v}", "raw255", s) for v, s in
             (("B0", 224), ("B1", 240), ("B2", 260), ("B3", 300), ("S", 384), ("M", 480), ("L", 480))]
    return {name: Architecture(name, mode, size) for name, mode, size in rows
            if hasattr(keras.applications, name)}


#: Every ``keras.applications`` ImageNet classifier this package can wrap, by constructor name.
ARCHITECTURES: dict[str, Architecture] = _table()


def architecture(name: str) -> Architecture:
    """Return the ``Architecture`` called ``name`` (exact, or ignoring case: "resnet50" = "ResNet50").

    Raises ``ValueError`` (one sentence, with the closest names) for an unknown name.
    """
    if name in ARCHITECTURES:
        return ARCHITECTURES[name]
    by_lower = {key.lower(): arch for key, arch in ARCHITECTURES.items()}
    if str(name).lower() in by_lower:
        return by_lower[str(name).lower()]
    prefixed = [key for key in by_lower if name and key.startswith(str(name).lower())]  # "efficientnet"
    close = (prefixed or difflib.get_close_matches(str(name).lower(), list(by_lower), n=3, cutoff=0.5))[:3]
    hint = (f"closest keras.applications names: {', '.join(by_lower[c].name for c in close)}" if close
            else "keras.applications classifiers are e.g. MobileNetV2, ResNet50, EfficientNetB0")
    raise ValueError(f"Unknown model {name!r} ({hint}); give a keras.applications classifier name or the "
                     f"path of a .keras file.")


@keras.saving.register_keras_serializable(package="xai_helpers")
class InputPreprocessing(keras.layers.Layer):
    """Map the package's input ``x`` in [-1, 1] (``x = p / 127.5 - 1``) to what a classifier expects.

    ``mode`` is one of ``PREPROCESSING_MODES`` (module docstring), or ``function`` is any callable on
    symbolic/real tensors (then the layer can be cloned but not saved). Has no weights.
    """

    def __init__(self, mode: str = "tf", function: Callable | None = None, **kwargs):
        super().__init__(**kwargs)
        if function is None and mode not in PREPROCESSING_MODES:
            raise ValueError(f"preprocessing must be one of {', '.join(PREPROCESSING_MODES)} or a callable, "
                             f"got {mode!r}.")
        self.mode = mode
        self.function = function

    def call(self, x):
        ops = keras.ops
        if self.function is not None:
            return self.function(x)
        if self.mode == "tf":
            return x
        pixels = (x + 1.0) * 127.5
        if self.mode == "raw255":
            return pixels
        if self.mode == "caffe":
            return ops.flip(pixels, axis=-1) - ops.convert_to_tensor(CAFFE_BGR_MEAN, dtype=x.dtype)
        mean = ops.convert_to_tensor(TORCH_MEAN, dtype=x.dtype)
        std = ops.convert_to_tensor(TORCH_STD, dtype=x.dtype)
        return (pixels / 255.0 - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["mode"] = self.mode
        if self.function is not None:
            config["function"] = self.function  # clone_model passes it back as is; not saveable
        return config


__all__ = ["ARCHITECTURES", "PREPROCESSING_MODES", "Architecture", "InputPreprocessing", "architecture"]
