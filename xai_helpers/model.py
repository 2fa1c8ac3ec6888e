"""The classifier: MobileNetV2 with ImageNet weights, its logits, labels and a fingerprint of its weights.

MobileNetV2: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018.
"""
from __future__ import annotations

import functools
import hashlib
import weakref
from typing import NamedTuple

import numpy as np

from ._validate import check_image
from .data import IMAGE_SIZE, cached_get_file, keras_home

WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
WEIGHTS_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
#: sha256 of the offline cache's weights: Google's 8-bit quantisation-aware MobileNetV2 release,
#: dequantised into the Keras graph (see shared/keras/README.md); not Keras's float download.
OFFLINE_DEQUANTIZED_SHA256 = "32682ea88938b3d88d200df3029384113581cbde5eea37f14bd3c7c8c86ae35c"
CLASS_INDEX_FILE = "imagenet_class_index.json"
CLASS_INDEX_ORIGIN = "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json"
CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"


@functools.lru_cache(maxsize=1)
def load_model():
    """Return Keras's ``MobileNetV2(weights="imagenet")`` (softmax output, 1000 classes), cached per process.

    The weights come through Keras's own loader (``$KERAS_HOME/models/``); offline and missing, this
    raises one ``FileNotFoundError`` sentence naming the file and ``KERAS_HOME``.
    """
    import keras

    # Fetch through our wrapper first so a missing file gives one sentence, then let Keras load it.
    cached_get_file(WEIGHTS_FILE, WEIGHTS_ORIGIN + WEIGHTS_FILE, "models")
    return keras.applications.MobileNetV2(weights="imagenet")


def weights_fingerprint() -> dict[str, str]:
    """Return the sha256, path and provenance of the MobileNetV2 weights file that ``load_model`` reads."""
    path = keras_home() / "models" / WEIGHTS_FILE
    if not path.is_file():
        path = type(path)(cached_get_file(WEIGHTS_FILE, WEIGHTS_ORIGIN + WEIGHTS_FILE, "models"))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest == OFFLINE_DEQUANTIZED_SHA256:
        source = ("offline cache: Google's quantisation-aware MobileNetV2 1.0/224 release, dequantised "
                  "into the Keras graph (not byte-identical to Keras's float download)")
    else:
        source = "Keras's download of the official MobileNetV2 1.0/224 ImageNet weights (or another file)"
    return {"sha256": digest, "path": str(path), "source": source}


@functools.lru_cache(maxsize=1)
def class_labels() -> tuple[tuple[str, str], ...]:
    """Return the 1000 ImageNet ``(wnid, name)`` pairs in class-index order (Keras's label file)."""
    import json

    path = cached_get_file(CLASS_INDEX_FILE, CLASS_INDEX_ORIGIN, "models", file_hash=CLASS_INDEX_MD5)
    with open(path) as f:
        index = json.load(f)
    return tuple((index[str(i)][0], index[str(i)][1]) for i in range(len(index)))


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

    Labels come from Keras's ``imagenet_class_index.json``, the file ``decode_predictions`` reads.
    """
    x = check_image(x, input_shape(model))
    probs = probabilities(model, x)
    order = np.argsort(-probs, kind="stable")[:top]
    if probs.shape[-1] != 1000:  # small test models have no ImageNet labels
        return [Prediction(int(i), "", f"class_{i}", float(probs[i])) for i in order]
    labels = class_labels()
    return [Prediction(int(i), labels[i][0], labels[i][1], float(probs[i])) for i in order]


#: Images per forward call: bounds activation memory (MobileNetV2 needs ~25 MB per image).
PREDICT_BATCH = 64


def probabilities(model, x: np.ndarray) -> np.ndarray:
    """Return the softmax output for one image (1-D, sums to 1) or a batch (2-D), in chunks of 64."""
    batch = np.asarray(x, dtype=np.float32)
    single = batch.ndim == 3
    batch = batch[None] if single else batch
    out = np.concatenate([np.asarray(model(batch[i:i + PREDICT_BATCH], training=False), dtype=np.float64)
                          for i in range(0, len(batch), PREDICT_BATCH)])
    return out[0] if single else out


_LOGIT_MODELS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def logits_model(model):
    """Return a Keras model computing the pre-softmax scores z (so that ``model(x) = softmax(z)``).

    The last layer of the classifier must be a ``Dense`` layer with softmax activation (as in
    MobileNetV2); the logits are its affine part ``z = h W + b`` applied to its input ``h``. This is
    exact, shares the weights, and is cached per model.
    """
    import keras

    if model in _LOGIT_MODELS:
        return _LOGIT_MODELS[model]
    head = model.layers[-1]
    if not isinstance(head, keras.layers.Dense) or getattr(head.activation, "__name__", "") != "softmax":
        raise ValueError("The model's last layer must be a Dense layer with softmax activation to expose "
                         "its logits.")
    features = head.input
    logits = keras.ops.add(keras.ops.matmul(features, head.kernel), head.bias)
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
