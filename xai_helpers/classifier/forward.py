"""What a loaded classifier computes: class probabilities, logits, top-k predictions, its input shape.

Every forward pass here is one compiled, batched ``tf.function`` per model (traced once), run on chunks of
exactly ``CHUNK`` images (``in_chunks``) and counted by ``passes``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from xai_helpers.classifier.checks import check_image
from xai_helpers.classifier.compiled import known, per_model
from xai_helpers.classifier.data import IMAGE_SIZE
from xai_helpers.classifier.labels import class_labels


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
    labels = known(model, "labels")
    if labels is not None:
        return [Prediction(int(i), labels[i][0], labels[i][1], float(probs[i])) for i in order]
    if probs.shape[-1] != 1000:  # small test models have no ImageNet labels
        return [Prediction(int(i), "", f"class_{i}", float(probs[i])) for i in order]
    labels = class_labels()
    return [Prediction(int(i), labels[i][0], labels[i][1], float(probs[i])) for i in order]


#: Images per compiled model call, for every pass of every method (forward, gradient, Grad-CAM, IG's path
#: points). Every call gets exactly this many (``in_chunks`` pads the last chunk), and with fixed shapes
#: TensorFlow on the CPU gives an image the same numbers bit for bit wherever it sits in its chunk and
#: whatever else is there, so a photo's numbers never depend on the batch it came in. 8 is where
#: MobileNetV2's batched gradient rate levels off on a 2-core CPU (``benchmarks/README.md``).
CHUNK = 8


def in_chunks(fn: Callable, *arrays: np.ndarray, chunk: int = CHUNK):
    """Return ``fn(*chunk_arrays)`` over the arrays' first axis in chunks of exactly ``chunk`` items (the
    last padded by repeating its last item, whose outputs are dropped), concatenated as NumPy arrays.

    ``fn`` returns one array (or tensor) or a tuple of them, one row per item; so does ``in_chunks``.
    """
    n = len(arrays[0])
    if n == 0:
        raise ValueError("in_chunks needs at least one item.")
    parts = []
    for start in range(0, n, chunk):
        pieces = [np.asarray(a[start:start + chunk]) for a in arrays]
        k = len(pieces[0])
        if k < chunk:
            pieces = [np.concatenate([p, np.repeat(p[-1:], chunk - k, axis=0)]) for p in pieces]
        out = fn(*pieces)
        parts.append(tuple(np.asarray(o)[:k] for o in out) if isinstance(out, (tuple, list)) else
                     (np.asarray(out)[:k],))
    joined = tuple(np.concatenate(column) for column in zip(*parts))
    return joined if len(joined) > 1 else joined[0]


def probabilities(model, x: np.ndarray) -> np.ndarray:
    """Return the softmax output for one image (1-D, sums to 1) or a batch (2-D)."""
    from xai_helpers.classifier import passes

    batch = np.asarray(x, dtype=np.float32)
    single = batch.ndim == 3
    batch = batch[None] if single else batch
    passes.record(forward=len(batch))
    out = in_chunks(_forward_fn(model), batch).astype(np.float64)
    return out[0] if single else out


def logits(model, images: np.ndarray) -> np.ndarray:
    """Return the logits (N, classes) of a stack of images (``logits_model``)."""
    from xai_helpers.classifier import passes

    images = np.asarray(images, dtype=np.float32)
    passes.record(forward=len(images))
    return in_chunks(per_model(model, "logits", lambda: _compiled(logits_model(model))), images).astype(np.float64)


def inference_fn(keras_model):
    """Return ``keras_model``'s inference pass, ``images[N, H, W, C] -> outputs``, traced once per model.

    The methods' compiled functions call this instead of the Keras model. Why: a ``tf.function`` that calls
    a Keras model runs every layer's Python again while it traces (0.8 s per pass through MobileNetV2 on
    2 cores), and one ``explain`` traced the model 15 times. A ``ConcreteFunction`` is traced once and
    enters each graph that calls it as one call op, which TensorFlow differentiates and inlines as it
    would the layers themselves.
    """
    def build():
        import tensorflow as tf

        spec = tf.TensorSpec((None, *input_shape(keras_model)), tf.float32)
        return tf.function(lambda images: keras_model(images, training=False)).get_concrete_function(spec)

    return per_model(keras_model, "inference", build)


def _forward_fn(model):
    """Return a compiled ``images[N, H, W, C] -> softmax[N, classes]`` for ``model`` (traced once)."""
    return per_model(model, "forward", lambda: _compiled(model))


def _compiled(keras_model):
    """A compiled ``images[N, H, W, C] -> outputs`` of ``keras_model`` (its ``inference_fn``)."""
    import tensorflow as tf

    model_pass = inference_fn(keras_model)

    @tf.function(input_signature=[tf.TensorSpec((None, *input_shape(keras_model)), tf.float32)])
    def forward(images):
        return model_pass(images)

    return forward


def probabilities_and_logits(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(softmax, logits)`` of a batch (N, H, W, C), both from one compiled forward pass.

    The softmax is the model's own output (as ``probabilities`` gives it), the logits its ``logits_model``'s
    (the same layers up to the head), so scoring a curve on both costs one pass, not two.
    """
    batch = np.asarray(x, dtype=np.float32)
    from xai_helpers.classifier import passes

    passes.record(forward=len(batch))
    forward = per_model(model, "probabilities and logits", lambda: _scores_fn(model))
    probs, zs = in_chunks(forward, batch)
    return probs.astype(np.float64), zs.astype(np.float64)


def _scores_fn(model):
    import keras
    import tensorflow as tf

    both = inference_fn(keras.Model(model.input, [model.output, logits_model(model).output]))

    @tf.function(input_signature=[tf.TensorSpec((None, *input_shape(model)), tf.float32)])
    def forward(images):
        return both(images)

    return forward


def logits_model(model):
    """Return a Keras model computing the pre-softmax scores z (so that ``model(x) = softmax(z)``).

    The last layer of the classifier must be a ``Dense`` layer with softmax activation (as in
    MobileNetV2, ResNet, EfficientNet, ...), whose logits are its affine part ``z = h W + b`` applied to
    its input ``h``, or a softmax ``Activation`` layer (MobileNet, MobileNetV3), whose logits are its
    input. This is exact, shares the weights, and is cached per model.
    """
    return per_model(model, "logits model", lambda: _logits_model(model))


def _logits_model(model):
    import keras

    head = model.layers[-1]
    if getattr(getattr(head, "activation", None), "__name__", "") != "softmax" \
            or not isinstance(head, (keras.layers.Dense, keras.layers.Activation)):
        raise ValueError("The model's last layer must be a Dense layer with softmax activation (or a softmax "
                         "Activation layer) to expose its logits.")
    if isinstance(head, keras.layers.Dense):
        logits = keras.ops.add(keras.ops.matmul(head.input, head.kernel), head.bias)
    else:
        logits = head.input
    return keras.Model(model.input, logits, name=f"{model.name}_logits")


def scores_model(model, target: str):
    """Return the model whose outputs are explained: the softmax ``model`` or its ``logits_model``."""
    if target == "softmax":
        return model
    if target == "logits":
        return logits_model(model)
    raise ValueError(f"target must be 'logits' or 'softmax', got {target!r}.")


__all__ = ["CHUNK", "Prediction", "in_chunks", "inference_fn", "input_shape", "logits", "logits_model", "num_classes",
           "predict", "probabilities", "probabilities_and_logits", "scores_model"]
