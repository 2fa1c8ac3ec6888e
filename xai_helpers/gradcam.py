"""Grad-CAM heat-maps through tf-keras-vis (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep
Networks via Gradient-based Localization", ICCV 2017).

For class c and feature maps A^k of the chosen layer (Z = H x W positions)::

    alpha_k^c = (1/Z) sum_ij  d y^c / d A^k_ij          (global-average-pooled gradients)
    L^c       = ReLU( sum_k alpha_k^c A^k )              (then bilinearly upsampled to the input size)

The layer: by default the model's last feature maps (``default_gradcam_layer``), "out_relu" for MobileNetV2.

``y^c`` is the pre-softmax score (``target="logits"``, the paper's choice; tf-keras-vis's
``ReplaceToLinear`` strips the softmax) or the softmax probability (``target="softmax"``).
"""
from __future__ import annotations

import warnings
import weakref
from collections.abc import Sequence

import numpy as np

from ._validate import check_class_index, check_image
from .model import feature_maps_walk, input_shape, num_classes

with warnings.catch_warnings():
    # tf-keras-vis 0.8.7 imports scipy.ndimage.interpolation, deprecated since SciPy 1.8.
    warnings.simplefilter("ignore", DeprecationWarning)
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

#: MobileNetV2's last feature maps (7 x 7 x 1280), after the final BatchNorm and ReLU6: what
#: ``default_gradcam_layer`` returns for it. tf-keras-vis would otherwise pick the last Conv2D ("Conv_1"),
#: whose output has not been normalised or rectified yet.
DEFAULT_LAYER = "out_relu"


def default_gradcam_layer(model) -> str:
    """Return the name of the layer whose feature maps Grad-CAM weights when no layer is named.

    One rule for every model: the last 4-D activation before global pooling -- walking back from the
    output through single-input layers, the first layer whose output is ``(N, h, w, K)`` with more than
    one position (``model.feature_maps_walk``). So the maps are normalised and rectified, as the last
    convolution's raw output is not. MobileNetV2: "out_relu" (7 x 7 x 1280); ResNet50:
    "conv5_block3_out"; EfficientNetB0: "top_activation"; DenseNet121: "relu"; ConvNeXt: "<name>_features"
    (an identity layer ``load_model`` adds after the last residual sum). Raises ``ValueError`` when the
    maps are not a named layer's output (then pass ``layer=`` explicitly).
    """
    _, operation, _ = feature_maps_walk(model)
    if not any(layer is operation for layer in model.layers):
        raise ValueError(f"The last feature maps of {model.name} are not the output of a named layer; pass "
                         f"the Grad-CAM layer explicitly (layer=...).")
    return operation.name


_GRADCAMS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


#: What y^c can be: the logit (the paper's choice), the softmax probability, or the logit margin
#: z_c - z_k against a contrast class k (what decides c against k).
TARGETS = ("logits", "softmax", "margin")


class MarginScore:
    """tf-keras-vis score ``z_c - z_k`` per image: the logit of class c minus that of contrast class k."""

    def __init__(self, class_indices: Sequence[int], contrast_indices: Sequence[int]):
        self.class_indices = list(class_indices)
        self.contrast_indices = list(contrast_indices)

    def __call__(self, output):
        import tensorflow as tf

        rows = tf.range(tf.shape(output)[0])
        pick = lambda cols: tf.gather_nd(output, tf.stack([rows, tf.constant(cols, tf.int32)], axis=1))
        return pick(self.class_indices) - pick(self.contrast_indices)


def _explainer(model, target: str) -> Gradcam:
    """Return a cached tf-keras-vis ``Gradcam`` for ``model`` and ``target`` (cloning a model is slow)."""
    per_model = _GRADCAMS.setdefault(model, {})
    if target == "margin":  # the margin is a score on the logits: the same explainer
        target = "logits"
    if target not in per_model:
        if target == "logits":
            per_model[target] = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)
        elif target == "softmax":
            per_model[target] = Gradcam(model, model_modifier=None, clone=False)
        else:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}.")
    return per_model[target]


def gradcam(model, x: np.ndarray, class_index: int | Sequence[int], target: str = "logits",
            layer: str | None = None, normalize: bool = True,
            contrast_class: int | Sequence[int] | None = None) -> np.ndarray:
    """Return the Grad-CAM map ``L^c`` of ``class_index`` for one image (H, W) or a batch (N, H, W).

    ``x``: (224, 224, 3) or (N, 224, 224, 3) in [-1, 1] (or the model's input size); ``class_index``: one
    int, or one per image; ``layer``: the layer whose maps are weighted (default ``default_gradcam_layer``:
    "out_relu" for MobileNetV2). With ``normalize=True`` each map is divided by its maximum, so it lies
    in [0, 1] with 0 meaning "no positive evidence" (not min-max stretched). With ``normalize=False`` the
    raw map is returned, in units of score x activation, so logit and softmax maps can be compared in
    size. A map that is zero everywhere (no positive evidence) comes back as zeros with a
    ``RuntimeWarning``, never NaN.
    ``target="margin"`` explains ``y = z_c - z_k`` with ``contrast_class`` k (one int, or one per image):
    the evidence for c *against* k, the score whose sign the attack flips.
    """
    x = np.asarray(x)
    single = x.ndim == 3
    batch = x[None] if single else x
    if batch.ndim != 4:
        raise ValueError(f"x must be one image (H, W, 3) or a batch (N, H, W, 3), got shape {x.shape}.")
    batch = np.stack([check_image(image, input_shape(model)) for image in batch])
    indices = [class_index] * len(batch) if np.ndim(class_index) == 0 else list(class_index)
    if len(indices) != len(batch):
        raise ValueError(f"Got {len(indices)} class indices for {len(batch)} images.")
    indices = [check_class_index(c, num_classes(model)) for c in indices]
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}.")
    if (target == "margin") != (contrast_class is not None):
        raise ValueError("contrast_class must be given exactly when target is 'margin'.")
    score = CategoricalScore(indices)
    if target == "margin":
        contrast = [contrast_class] * len(batch) if np.ndim(contrast_class) == 0 else list(contrast_class)
        if len(contrast) != len(batch):
            raise ValueError(f"Got {len(contrast)} contrast classes for {len(batch)} images.")
        contrast = [check_class_index(k, num_classes(model), "contrast_class") for k in contrast]
        if any(c == k for c, k in zip(indices, contrast)):
            raise ValueError("contrast_class must differ from class_index (their margin is always 0).")
        score = MarginScore(indices, contrast)
    explainer = _explainer(model, target)
    layer = default_gradcam_layer(model) if layer is None else layer
    cams = explainer(score, batch, penultimate_layer=layer,
                     seek_penultimate_conv_layer=False, normalize_cam=False)
    cams = np.maximum(np.asarray(cams, dtype=np.float32), 0.0)  # bilinear zoom can undershoot by ~1e-9
    if normalize:
        cams = _normalize_by_max(cams)
    return cams[0] if single else cams


def _normalize_by_max(cams: np.ndarray) -> np.ndarray:
    """Return each map divided by its maximum; an all-zero map stays zero, with a warning."""
    peaks = cams.reshape(len(cams), -1).max(axis=1)
    if np.any(peaks <= 0):
        warnings.warn(f"{int(np.sum(peaks <= 0))} Grad-CAM map(s) are zero everywhere (no positive "
                      "evidence for the class); returned as zeros.", RuntimeWarning, stacklevel=3)
    safe = np.where(peaks > 0, peaks, 1.0)
    return (cams / safe[:, None, None]).astype(np.float32)
