"""Grad-CAM heat-maps (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017), with two engines that share every step but the gradients.

For class c and feature maps A^k of the chosen layer (Z = h x w positions)::

    alpha_k^c = (1/Z) sum_ij  d y^c / d A^k_ij          (global-average-pooled gradients)
    L^c       = ReLU( sum_k alpha_k^c A^k )              (the raw CAM, h x w)
    map       = bilinear(L^c) to H x W, half-pixel centres (then divided by its maximum)

The layer: by default the model's last feature maps (``default_gradcam_layer``), "out_relu" for MobileNetV2.

``y^c`` is the pre-softmax score (``target="logits"``, the paper's choice), the softmax probability
(``target="softmax"``) or the logit margin ``z_c - z_k`` against a contrast class k (``target="margin"``).

**Engines.** ``engine="tf-keras-vis"`` (default, the design card's library) asks tf-keras-vis for its raw
CAM (``expand_cam=False``); ``engine="compiled"`` computes the same CAM in one compiled, batched
``tf.function`` (the study's hot path: tf-keras-vis rebuilds a Keras model and runs its tape eagerly on every
call). Both then go through one step, ``finish_cams``: upsampling and normalisation.

**Placement.** A CAM cell (i, j) covers input pixels [i H/h, (i+1) H/h); its value belongs at the cell's
centre. ``upsampling="half_pixel"`` (default; ``tf.image.resize``'s bilinear) puts it there: for 7 x 7 to
224, at pixels 16, 48, ..., 208. tf-keras-vis's own ``expand_cam=True`` uses a corner-aligned
``scipy.ndimage.zoom(order=1)``, which puts the cell centres at 0, 37, ..., 223 and stretches the map outward
by up to 16 px; ``upsampling="corner"`` reproduces it, only to re-check tables made before this fix.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from xai_helpers.classifier import passes
from xai_helpers.classifier.checks import check_images
from xai_helpers.classifier.compiled import per_model
from xai_helpers.classifier.forward import in_chunks, input_shape, num_classes, scores_model
from xai_helpers.classifier.loading import feature_maps_walk
from xai_helpers.methods.targets import check_targets

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
#: How the CAM gets its gradients: tf-keras-vis (the default) or one compiled GradientTape function.
ENGINES = ("tf-keras-vis", "compiled")
#: How the h x w CAM is brought to the input size (module docstring): cell centres at cell centres, or
#: tf-keras-vis's corner-aligned zoom (only to re-check old tables).
UPSAMPLINGS = ("half_pixel", "corner")


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


def cam_from_gradients(gradients, activations):
    """Return the raw CAM ``ReLU(sum_k alpha_k A^k)``, (N, h, w), from ``dy/dA`` and ``A`` (N, h, w, K).

    NumPy or TensorFlow in, the same kind out (the compiled engine calls it inside its graph).
    """
    import tensorflow as tf

    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(activations * weights, axis=-1))


def upsample_cams(cams: np.ndarray, size: tuple[int, int], upsampling: str = "half_pixel") -> np.ndarray:
    """Return (N, h, w) CAMs bilinearly resized to (N, H, W) (``upsampling``: module docstring)."""
    cams = np.asarray(cams, dtype=np.float32)
    if upsampling == "half_pixel":
        import tensorflow as tf

        return tf.image.resize(cams[..., None], size, method="bilinear").numpy()[..., 0]
    if upsampling == "corner":
        from scipy import ndimage

        factors = (size[0] / cams.shape[1], size[1] / cams.shape[2])
        return np.stack([ndimage.zoom(cam, factors, order=1) for cam in cams]).astype(np.float32)
    raise ValueError(f"upsampling must be one of {UPSAMPLINGS}, got {upsampling!r}.")


def finish_cams(cams: np.ndarray, size: tuple[int, int], normalize: bool = True,
                upsampling: str = "half_pixel") -> np.ndarray:
    """Return raw (N, h, w) CAMs as maps: upsampled to ``size``, clipped at 0 (bilinear of a ReLU output
    never undershoots, the corner zoom's spline can by ~1e-9), divided by their maxima if ``normalize``.
    The one step both engines share."""
    maps = np.maximum(upsample_cams(cams, size, upsampling), 0.0)
    return _normalize_by_max(maps) if normalize else maps


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


def _tf_keras_vis_explainer(model, target: str) -> Gradcam:
    """Return a cached tf-keras-vis ``Gradcam`` for ``model`` and ``target`` (cloning a model is slow)."""
    target = "logits" if target == "margin" else target  # the margin is a score on the logits
    return per_model(model, ("tf-keras-vis Gradcam", target), lambda: (
        Gradcam(model, model_modifier=ReplaceToLinear(), clone=True) if target == "logits"
        else Gradcam(model, model_modifier=None, clone=False)))


def _tf_keras_vis_cams(model, batch, indices, contrast, target: str, layer: str) -> np.ndarray:
    score = CategoricalScore(indices) if contrast is None else MarginScore(indices, contrast)
    cams = _tf_keras_vis_explainer(model, target)(score, batch, penultimate_layer=layer,
                                                  seek_penultimate_conv_layer=False, expand_cam=False,
                                                  normalize_cam=False)
    return np.asarray(cams, dtype=np.float32)


def _compiled_function(model, target: str, layer: str):
    """Return a cached ``tf.function (x, c, k) -> raw CAMs`` for one model, target and layer (one trace
    per batch size at most: the input signature leaves the batch dimension free)."""

    return per_model(model, ("compiled Grad-CAM", target, layer), lambda: _build_cams(model, target, layer))


def _build_cams(model, target: str, layer: str):
    import keras
    import tensorflow as tf

    scores = scores_model(model, "softmax" if target == "softmax" else "logits")
    features_and_scores = keras.Model(model.inputs, [model.get_layer(layer).output, scores.outputs[0]])
    h, w, channels = input_shape(model)
    margin = target == "margin"

    @tf.function(input_signature=[tf.TensorSpec((None, h, w, channels), tf.float32),
                                  tf.TensorSpec((None,), tf.int32), tf.TensorSpec((None,), tf.int32)],
                 reduce_retracing=True)
    def cams(x, classes, contrast):
        with tf.GradientTape() as tape:
            activations, outputs = features_and_scores(x, training=False)
            rows = tf.range(tf.shape(x)[0])
            score = tf.gather_nd(outputs, tf.stack([rows, classes], axis=1))
            if margin:
                score = score - tf.gather_nd(outputs, tf.stack([rows, contrast], axis=1))
            # Images are independent (inference mode), so the gradient of the sum is each image's own.
            total = tf.reduce_sum(score)
        gradients = tape.gradient(total, activations)
        return cam_from_gradients(gradients, activations)

    return cams


def _compiled_cams(model, batch, indices, contrast, target: str, layer: str) -> np.ndarray:
    function = _compiled_function(model, target, layer)
    k = indices if contrast is None else contrast
    return function(batch, np.asarray(indices, np.int32), np.asarray(k, np.int32)).numpy()


# long: the public method's keyword options (target, layer, engine, upsampling, ...), as tf-keras-vis's Gradcam has
def gradcam(model, x: np.ndarray, class_index: int | Sequence[int], target: str = "logits",
            layer: str | None = None, normalize: bool = True,
            contrast_class: int | Sequence[int] | None = None, engine: str = "tf-keras-vis",
            upsampling: str = "half_pixel") -> np.ndarray:
    """Return the Grad-CAM map ``L^c`` of ``class_index`` for one image (H, W) or a batch (N, H, W).

    Args:
        x: (H, W, 3) or (N, H, W, 3) in [-1, 1], at the model's input size.
        class_index: one int, or one per image.
        target: "logits", "softmax" or "margin" (then ``contrast_class`` k, one int or one per image:
            ``y = z_c - z_k``, the evidence for c *against* k, the score whose sign the attack flips).
        layer: the layer whose maps are weighted (default ``default_gradcam_layer``).
        normalize: divide each map by its maximum, so it lies in [0, 1] with 0 meaning "no positive
            evidence" (not min-max stretched); ``False`` keeps score x activation units, so logit and
            softmax maps can be compared in size.
        engine: "tf-keras-vis" (default) or "compiled" (module docstring; equal to 1e-5).
        upsampling: "half_pixel" (default) or "corner" (tf-keras-vis's zoom, for old tables).

    Returns:
        float32 maps; a map that is zero everywhere comes back as zeros with a ``RuntimeWarning``, never NaN.

    Raises:
        ValueError: a wrong shape, class index, target, engine or upsampling, in one sentence.
    """
    x = np.asarray(x)
    single = x.ndim == 3
    batch = x[None] if single else x
    if batch.ndim != 4:
        raise ValueError(f"x must be one image (H, W, 3) or a batch (N, H, W, 3), got shape {x.shape}.")
    batch = check_images(batch, input_shape(model))
    indices, contrast = check_targets(target, class_index, len(batch), num_classes(model), contrast_class)[1:]
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}.")
    if upsampling not in UPSAMPLINGS:
        raise ValueError(f"upsampling must be one of {UPSAMPLINGS}, got {upsampling!r}.")
    layer = default_gradcam_layer(model) if layer is None else layer
    raw_cams = _compiled_cams if engine == "compiled" else _tf_keras_vis_cams
    passes.record(gradient=len(batch))
    classes = np.asarray(indices, np.int32)
    others = classes if contrast is None else np.asarray(contrast, np.int32)
    cams = in_chunks(lambda b, c, k: raw_cams(model, b, list(c), None if contrast is None else list(k), target,
                                              layer), batch, classes, others)
    maps = finish_cams(cams, batch.shape[1:3], normalize, upsampling)
    return maps[0] if single else maps


def _normalize_by_max(cams: np.ndarray) -> np.ndarray:
    """Return each map divided by its maximum; an all-zero map stays zero, with a warning."""
    peaks = cams.reshape(len(cams), -1).max(axis=1)
    if np.any(peaks <= 0):
        warnings.warn(f"{int(np.sum(peaks <= 0))} Grad-CAM map(s) are zero everywhere (no positive "
                      "evidence for the class); returned as zeros.", RuntimeWarning, stacklevel=4)
    safe = np.where(peaks > 0, peaks, 1.0)
    return (cams / safe[:, None, None]).astype(np.float32)
