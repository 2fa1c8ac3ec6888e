"""What a loaded classifier computes: class probabilities, logits, top-k predictions, its input shape.

Every forward pass here is one compiled, batched ``tf.function`` per model (traced once), counted by
``passes``. ``model`` re-exports these names.
"""
from __future__ import annotations

import weakref
from typing import NamedTuple

import numpy as np

from ._validate import check_image
from .data import IMAGE_SIZE
from .labels import class_labels
from .provenance import _LABELS


def num_classes(model) -> int:
    """Return the size of the model's class axis (1000 for MobileNetV2)."""
    return int(model.output_shape[-1])


def input_shape(model) -> tuple[int, int, int]:
    """Return the (H, W, C) one image must have for ``model``."""
    shape = tuple(model.input_shape[1:])
    return shape if None not in shape else (IMAGE_SIZE, IMAGE_SIZE, 3)


class Prediction(NamedTuple):
    """One row of a top-k prediction."""

    class_index: int
    wnid: str
    name: str
    probability: float


def predict(model, x: np.ndarray, top: int = 5) -> list[Prediction]:
    """Return the ``top`` most probable classes of one image as ``(class_index, wnid, name, probability)``.

    Labels: those given to ``load_model(..., labels=...)``; otherwise, for a 1000-class output, Keras's
    ImageNet ``imagenet_class_index.json`` (the file ``decode_predictions`` reads); otherwise "class_<i>".
    """
    x = check_image(x, input_shape(model))
    probs = probabilities(model, x)
    order = np.argsort(-probs, kind="stable")[:top]
    if model in _LABELS:
        labels = _LABELS[model]
        return [Prediction(int(i), labels[i][0], labels[i][1], float(probs[i])) for i in order]
    if probs.shape[-1] != 1000:  # small test models have no ImageNet labels
        return [Prediction(int(i), "", f"class_{i}", float(probs[i])) for i in order]
    labels = class_labels()
    return [Prediction(int(i), labels[i][0], labels[i][1], float(probs[i])) for i in order]


#: Images per forward call: bounds activation memory (MobileNetV2 needs ~25 MB per image).
PREDICT_BATCH = 16


def probabilities(model, x: np.ndarray) -> np.ndarray:
    """Return the softmax output for one image (1-D, sums to 1) or a batch (2-D), in chunks of 64."""
    batch = np.asarray(x, dtype=np.float32)
    single = batch.ndim == 3
    batch = batch[None] if single else batch
    from . import passes

    passes.record(forward=len(batch))
    forward = _forward_fn(model)
    out = np.concatenate([forward(batch[i:i + PREDICT_BATCH]).numpy().astype(np.float64)
                          for i in range(0, len(batch), PREDICT_BATCH)])
    return out[0] if single else out


_INFERENCE_FNS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def inference_fn(keras_model):
    """Return ``keras_model``'s inference pass, ``images[N, H, W, C] -> outputs``, traced once per model.

    The methods' compiled functions call this instead of the Keras model. Why: a ``tf.function`` that calls
    a Keras model runs every layer's Python again while it traces (0.8 s per pass through MobileNetV2 on
    2 cores), and one ``explain`` traced the model 15 times. A ``ConcreteFunction`` is traced once and
    enters each graph that calls it as one call op, which TensorFlow differentiates and inlines as it
    would the layers themselves.
    """
    if keras_model not in _INFERENCE_FNS:
        import tensorflow as tf

        spec = tf.TensorSpec((None, *input_shape(keras_model)), tf.float32)
        _INFERENCE_FNS[keras_model] = tf.function(
            lambda images: keras_model(images, training=False)).get_concrete_function(spec)
    return _INFERENCE_FNS[keras_model]


_FORWARD_FNS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _forward_fn(model):
    """Return a compiled ``images[N, H, W, C] -> softmax[N, classes]`` for ``model`` (traced once)."""
    if model not in _FORWARD_FNS:
        import tensorflow as tf

        model_pass = inference_fn(model)

        @tf.function(input_signature=[tf.TensorSpec((None, *input_shape(model)), tf.float32)])
        def forward(images):
            return model_pass(images)

        _FORWARD_FNS[model] = forward
    return _FORWARD_FNS[model]


_SCORE_FNS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def probabilities_and_logits(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(softmax, logits)`` of a batch (N, H, W, C), both from one compiled forward pass.

    The softmax is the model's own output (as ``probabilities`` gives it), the logits its ``logits_model``'s
    (the same layers up to the head), so scoring a curve on both costs one pass, not two.
    """
    batch = np.asarray(x, dtype=np.float32)
    from . import passes

    passes.record(forward=len(batch))
    if model not in _SCORE_FNS:
        import keras
        import tensorflow as tf

        both = inference_fn(keras.Model(model.input, [model.output, logits_model(model).output]))

        @tf.function(input_signature=[tf.TensorSpec((None, *input_shape(model)), tf.float32)])
        def forward(images):
            return both(images)

        _SCORE_FNS[model] = forward
    forward = _SCORE_FNS[model]
    outs = [forward(batch[i:i + PREDICT_BATCH]) for i in range(0, len(batch), PREDICT_BATCH)]
    return (np.concatenate([p.numpy().astype(np.float64) for p, _ in outs]),
            np.concatenate([z.numpy().astype(np.float64) for _, z in outs]))


_LOGIT_MODELS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def logits_model(model):
    """Return a Keras model computing the pre-softmax scores z (so that ``model(x) = softmax(z)``).

    The last layer of the classifier must be a ``Dense`` layer with softmax activation (as in
    MobileNetV2, ResNet, EfficientNet, ...), whose logits are its affine part ``z = h W + b`` applied to
    its input ``h``, or a softmax ``Activation`` layer (MobileNet, MobileNetV3), whose logits are its
    input. This is exact, shares the weights, and is cached per model.
    """
    import keras

    if model in _LOGIT_MODELS:
        return _LOGIT_MODELS[model]
    head = model.layers[-1]
    if getattr(getattr(head, "activation", None), "__name__", "") != "softmax" \
            or not isinstance(head, (keras.layers.Dense, keras.layers.Activation)):
        raise ValueError("The model's last layer must be a Dense layer with softmax activation (or a softmax "
                         "Activation layer) to expose its logits.")
    if isinstance(head, keras.layers.Dense):
        logits = keras.ops.add(keras.ops.matmul(head.input, head.kernel), head.bias)
    else:
        logits = head.input
    result = keras.Model(model.input, logits, name=f"{model.name}_logits")
    _LOGIT_MODELS[model] = result
    return result


def scores_model(model, target: str):
    """Return the model whose outputs are explained: the softmax ``model`` or its ``logits_model``."""
    if target == "softmax":
        return model
    if target == "logits":
        return logits_model(model)
    raise ValueError(f"target must be 'logits' or 'softmax', got {target!r}.")


__all__ = ["PREDICT_BATCH", "Prediction", "inference_fn", "input_shape", "logits_model", "num_classes", "predict",
           "probabilities", "probabilities_and_logits", "scores_model"]
