"""Grad-CAM heat-maps through tf-keras-vis (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep
Networks via Gradient-based Localization", ICCV 2017).

For class c and feature maps A^k of the chosen layer (Z = H x W positions)::

    alpha_k^c = (1/Z) sum_ij  d y^c / d A^k_ij          (global-average-pooled gradients)
    L^c       = ReLU( sum_k alpha_k^c A^k )              (then bilinearly upsampled to 224 x 224)

``y^c`` is the pre-softmax score (``target="logits"``, the paper's choice; tf-keras-vis's
``ReplaceToLinear`` strips the softmax) or the softmax probability (``target="softmax"``).
"""
from __future__ import annotations

import warnings
import weakref
from collections.abc import Sequence

import numpy as np

from ._validate import check_class_index, check_image
from .model import input_shape, num_classes

with warnings.catch_warnings():
    # tf-keras-vis 0.8.7 imports scipy.ndimage.interpolation, deprecated since SciPy 1.8.
    warnings.simplefilter("ignore", DeprecationWarning)
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

#: MobileNetV2's last feature maps (7 x 7 x 1280), after the final BatchNorm and ReLU6. tf-keras-vis would
#: otherwise pick the last Conv2D ("Conv_1"), whose output has not been normalised or rectified yet.
DEFAULT_LAYER = "out_relu"

_GRADCAMS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _explainer(model, target: str) -> Gradcam:
    """Return a cached tf-keras-vis ``Gradcam`` for ``model`` and ``target`` (cloning a model is slow)."""
    per_model = _GRADCAMS.setdefault(model, {})
    if target not in per_model:
        if target == "logits":
            per_model[target] = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)
        elif target == "softmax":
            per_model[target] = Gradcam(model, model_modifier=None, clone=False)
        else:
            raise ValueError(f"target must be 'logits' or 'softmax', got {target!r}.")
    return per_model[target]


def gradcam(model, x: np.ndarray, class_index: int | Sequence[int], target: str = "logits",
            layer: str = DEFAULT_LAYER, normalize: bool = True) -> np.ndarray:
    """Return the Grad-CAM map ``L^c`` of ``class_index`` for one image (H, W) or a batch (N, H, W).

    ``x``: (224, 224, 3) or (N, 224, 224, 3) in [-1, 1]; ``class_index``: one int, or one per image.
    With ``normalize=True`` each map is divided by its maximum, so it lies in [0, 1] with 0 meaning
    "no positive evidence" (not min-max stretched). With ``normalize=False`` the raw map is returned,
    in units of score x activation, so logit and softmax maps can be compared in size. A map that is
    zero everywhere (no positive evidence) comes back as zeros with a ``RuntimeWarning``, never NaN.
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
    explainer = _explainer(model, target)
    cams = explainer(CategoricalScore(indices), batch, penultimate_layer=layer,
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
