"""Every intermediate array of one Grad-CAM computation, so that its workflow can be drawn from real data.

``gradcam.gradcam`` (through tf-keras-vis) returns only the final map. This module recomputes the same map
one step at a time (Selvaraju et al., "Grad-CAM", ICCV 2017, eqs. 1-2)::

    A^k              feature maps of the chosen layer (7 x 7 x 1280 for MobileNetV2's "out_relu")
    dy^c / dA^k_ij   gradient of the class score y^c with respect to each feature-map position
    alpha_k^c        = (1/Z) sum_ij dy^c / dA^k_ij           (global-average pooling, Z = 7 x 7)
    S^c              = sum_k alpha_k^c A^k                     (weighted sum, signed)
    L^c              = ReLU(S^c)                               (positive evidence only)
    upsampled        = bilinear resize of L^c to the input size, half-pixel centres (``gradcam.finish_cams``)

and keeps every array, so that the explainers chapter can show them and check that the last one equals
``gradcam(..., normalize=False)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from xai_helpers.classifier.checks import check_class_index, check_image
from xai_helpers.classifier.compiled import per_model
from xai_helpers.classifier.forward import input_shape, num_classes, scores_model
from xai_helpers.methods.gradcam import default_gradcam_layer, finish_cams


@dataclass(frozen=True)
class GradcamSteps:
    """The arrays of one Grad-CAM computation for one image and class (see the module docstring)."""

    feature_maps: np.ndarray  #: A, (h, w, K)
    gradients: np.ndarray  #: dy^c/dA, (h, w, K)
    weights: np.ndarray  #: alpha^c, (K,)
    weighted_sum: np.ndarray  #: S^c = sum_k alpha_k A^k, (h, w), signed
    cam: np.ndarray  #: L^c = ReLU(S^c), (h, w)
    upsampled: np.ndarray  #: L^c resized to the input size, (H, W), raw units (not normalised)
    score: float  #: y^c, the explained score (logit or softmax probability)
    class_index: int
    target: str
    layer: str


def _feature_and_score_model(model, target: str, layer: str):
    """Return a cached Keras model ``x -> (A, scores)`` sharing ``model``'s weights."""
    import keras

    def build():
        scores = scores_model(model, target)
        return keras.Model(model.inputs, [model.get_layer(layer).output, scores.outputs[0]])

    return per_model(model, ("features and scores", target, layer), build)


def gradcam_steps(model, x: np.ndarray, class_index: int, target: str = "logits",
                  layer: str | None = None) -> GradcamSteps:
    """Return every intermediate array of Grad-CAM for one image (module docstring; Selvaraju et al. 2017).

    ``x``: (224, 224, 3) in [-1, 1]; ``target``: ``"logits"`` (pre-softmax score, the paper's choice) or
    ``"softmax"`` (probability); ``layer``: the layer whose maps are weighted (default
    ``default_gradcam_layer``, "out_relu" for MobileNetV2, as in ``gradcam``). The upsampled
    map is in raw units (score x activation), equal to ``gradcam(..., normalize=False)``.
    """
    x = check_image(x, input_shape(model))
    class_index = check_class_index(class_index, num_classes(model))
    layer = default_gradcam_layer(model) if layer is None else layer
    features_and_scores = _feature_and_score_model(model, target, layer)
    batch = tf.convert_to_tensor(x[None])
    with tf.GradientTape() as tape:
        feature_maps, scores = features_and_scores(batch, training=False)
        score = scores[0, class_index]
    gradients = tape.gradient(score, feature_maps)
    a = feature_maps.numpy()[0].astype(np.float64)
    g = gradients.numpy()[0].astype(np.float64)
    weights = g.mean(axis=(0, 1))
    weighted_sum = np.tensordot(a, weights, axes=([2], [0]))
    cam = np.maximum(weighted_sum, 0.0)
    upsampled = finish_cams(cam[None], x.shape[:2], normalize=False)[0]
    return GradcamSteps(a, g, weights, weighted_sum, cam, upsampled, float(score), class_index, target,
                        layer)


__all__ = ["GradcamSteps", "gradcam_steps"]
