"""The classifier: any Keras ImageNet-style classifier on the package's [-1, 1] input, its logits, labels
and a fingerprint of its weights.

``load_model()`` is Keras's ``MobileNetV2(weights="imagenet")``, exactly as it always was (Sandler et al.,
"MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018). ``load_model("ResNet50")`` (any
``keras.applications`` classifier, see ``architectures``) or ``load_model("my_model.keras", ...)`` gives
another classifier *on the same input*: ``x = pixel / 127.5 - 1`` in [-1, 1], with the model's own
preprocessing built into the model as its first layer (``architectures.InputPreprocessing``; the
Foolbox/ART design), so that ``eps`` (one pixel level = 2/255), the attacks, the explainers and every
check work unchanged for every model.

How the model is built, so that tf-keras-vis and ``logits_model`` can still address its layers by name:
the application is built on the preprocessed tensor (``keras.applications.X(input_tensor=pre)``), which in
Keras 3 gives one flat graph ``input -> InputPreprocessing -> the application's layers -> head`` (no nested
model). A saved model file gets the preprocessing layer by cloning its graph onto the new input
(``keras.models.clone_model`` with a ``call_function`` that feeds the input through the preprocessing
layer), then copying its weights by layer name. When the last feature maps are the output of a bare
operation rather than a layer (ConvNeXt's last residual ``+``), the head after them is rebuilt behind a
named ``Identity`` layer (``<model name>_features``), so that Grad-CAM's default layer has a name.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
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

#: The classifier ``load_model()`` returns when no name is given.
DEFAULT_MODEL = "MobileNetV2"
#: Seed of ``keras.utils.set_random_seed`` for ``weights=None`` (random initialisation), so that a
#: randomly initialised model is the same in every process.
RANDOM_INIT_SEED = 0
#: Suffixes ``load_model`` reads as a saved model file rather than an architecture name.
MODEL_FILE_SUFFIXES = (".keras", ".h5", ".hdf5")
#: Models kept by ``load_model``'s cache (each call with the same arguments returns the same object).
MODEL_CACHE_SIZE = 8

#: Where each loaded model's weights came from (for ``weights_fingerprint``), and its class names.
_PROVENANCE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_LABELS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def load_model(name: str | os.PathLike = DEFAULT_MODEL, weights: str | os.PathLike | None = "imagenet", *,
               preprocessing: str | Callable | None = None,
               labels: Sequence[str] | str | os.PathLike | None = None, seed: int = RANDOM_INIT_SEED):
    """Return a Keras classifier (softmax output) taking the package's input ``x`` in [-1, 1], cached.

    * ``load_model()`` = ``load_model("MobileNetV2")``: Keras's ``MobileNetV2(weights="imagenet")``,
      unchanged (no wrapper), 224 x 224.
    * ``name``: any ``keras.applications`` classifier ("ResNet50", "EfficientNetB0", "MobileNetV3Small",
      "DenseNet121", "ConvNeXtTiny", ...; case does not matter), built at its default input size with its
      own preprocessing as the first layer (``architectures``); or the path of a saved model file
      (``.keras``, ``.h5``), whose input ``preprocessing`` maps [-1, 1] to: "tf" or None (the model takes
      [-1, 1] itself), "caffe", "torch", "raw255" (0-255 pixels), or a callable on tensors.
    * ``weights``: "imagenet" (Keras's loader, ``$KERAS_HOME/models/``; for a model file: the weights saved
      in it), None or "none" (random initialisation, seeded by ``seed`` through
      ``keras.utils.set_random_seed``, for offline trials), or the path of a weights file for the same
      architecture (``model.save_weights`` or Keras's ``.h5``).
    * ``labels``: class names for a model whose classes are not ImageNet's: a sequence of names in
      class-index order, or a CSV/text file (one row per class; a ``name`` column if it has a header,
      otherwise the last column; an optional ``wnid`` column).

    The last layer must be a softmax (a ``Dense`` layer with softmax activation, or a softmax
    ``Activation``), as ``logits_model`` needs. Raises ``ValueError`` (one sentence, with the closest names)
    for an unknown name and ``FileNotFoundError`` (one sentence naming the file and ``KERAS_HOME``) when
    weights are missing offline. Up to ``MODEL_CACHE_SIZE`` models are kept.
    """
    name = os.fspath(name) if isinstance(name, os.PathLike) else name
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a keras.applications classifier name or a model file path, "
                        f"got {name!r}.")
    weights = _normalise_weights(weights)
    if isinstance(labels, (str, os.PathLike)):
        labels = _read_labels(Path(labels))
    elif labels is not None:
        labels = tuple(("", str(n)) for n in labels)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {seed!r}.")
    if name.lower().endswith(MODEL_FILE_SUFFIXES) or os.sep in name or Path(name).is_file():
        path = Path(name).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"No model file at {path}.")
        # The file's modification time is part of the cache key: a rewritten file is read again.
        return _load_file(str(path.resolve()), path.stat().st_mtime_ns, weights, preprocessing, labels)
    from .architectures import architecture

    arch = architecture(name)  # unknown name: ValueError with suggestions
    if preprocessing is not None:
        raise ValueError(f"preprocessing is only for a model file; {arch.name} comes with its own "
                         f"({arch.preprocessing!r}).")
    return _load_application(arch.name, weights, labels, int(seed))


def _normalise_weights(weights) -> str | None:
    if weights is None:
        return None
    weights = os.fspath(weights)
    if not isinstance(weights, str):
        raise TypeError(f"weights must be 'imagenet', None or a file path, got {weights!r}.")
    if weights.lower() == "none":
        return None
    if weights.lower() == "imagenet":
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"No weights file at {path} (weights must be 'imagenet', 'none' or the path "
                                f"of a weights file).")
    return str(path.resolve())


@functools.lru_cache(maxsize=MODEL_CACHE_SIZE)
def _load_application(name: str, weights: str | None, labels, seed: int):
    """Return the cached ``keras.applications`` classifier ``name`` on [-1, 1] input (see ``load_model``)."""
    import keras

    from .architectures import ARCHITECTURES, InputPreprocessing

    arch = ARCHITECTURES[name]
    if name == DEFAULT_MODEL and weights == "imagenet":
        # Today's model, untouched. Fetch through our wrapper first so a missing file gives one sentence.
        path = cached_get_file(WEIGHTS_FILE, WEIGHTS_ORIGIN + WEIGHTS_FILE, "models")
        model = keras.applications.MobileNetV2(weights="imagenet")
        return _register(model, {"path": str(path), "source": _mobilenet_v2_source}, labels)

    fetched: list[str] = []
    with _seeded(seed if weights is None else None), _reporting_keras_downloads(fetched):
        if arch.preprocessing == "tf":  # the application takes [-1, 1] itself: no preprocessing layer
            model = arch.constructor()(weights="imagenet" if weights == "imagenet" else None)
        else:
            inputs = keras.Input((arch.size, arch.size, 3), name="input_layer")
            pre = InputPreprocessing(arch.preprocessing, name="preprocessing")(inputs)
            # With input_tensor, Keras 3 builds one flat Functional(inputs, predictions): every layer of
            # the application is a layer of this model, addressable by name.
            base = arch.constructor()(weights="imagenet" if weights == "imagenet" else None,
                                      input_tensor=pre)
            model = keras.Model(inputs, base.output, name=base.name)  # one input tensor, not a list
    model = _with_named_feature_maps(model)
    if weights is None:
        provenance = {"path": "", "source": f"random init (weights=None), seed {seed}",
                      "sha256": _digest_of_weights(model)}
    elif weights == "imagenet":
        provenance = {"path": fetched[-1] if fetched else "",
                      "source": f"Keras's ImageNet weights for {name} (keras.applications)"}
    else:
        _load_weights_file(model, weights)
        provenance = {"path": weights, "source": f"weights file {weights} loaded into {name}"}
    return _register(model, provenance, labels)


@functools.lru_cache(maxsize=MODEL_CACHE_SIZE)
def _load_file(path: str, mtime_ns: int, weights: str | None, preprocessing, labels):
    """Return the cached classifier saved at ``path``, behind its ``preprocessing`` (see ``load_model``)."""
    import keras

    from .architectures import PREPROCESSING_MODES, InputPreprocessing

    if weights is None:
        raise ValueError("A model file carries its own weights: use weights='imagenet' (the file's own) or "
                         "the path of a weights file, not None.")
    if not (preprocessing is None or callable(preprocessing) or preprocessing in PREPROCESSING_MODES):
        raise ValueError(f"preprocessing must be one of {', '.join(PREPROCESSING_MODES)}, None or a "
                         f"callable, got {preprocessing!r}.")
    try:
        loaded = keras.saving.load_model(path, compile=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not a Keras model file Keras can load ({_first_line(err)}).") from None
    if not isinstance(loaded, keras.Model) or len(loaded.inputs or ()) != 1 or len(loaded.outputs or ()) != 1:
        raise ValueError(f"{path} must hold a Keras model with one image input and one softmax output.")
    # A Functional view (same layers): tf-keras-vis needs ``output_names``, which Sequential lacks.
    model = keras.Model(loaded.inputs[0], loaded.outputs[0], name=loaded.name)
    if preprocessing is not None and preprocessing != "tf":
        layer = (InputPreprocessing(function=preprocessing, name="preprocessing") if callable(preprocessing)
                 else InputPreprocessing(preprocessing, name="preprocessing"))
        model = _behind(model, layer)
    model = _with_named_feature_maps(model)
    if weights == "imagenet":
        provenance = {"path": path, "source": f"model file {path} (its own weights)"}
    else:
        _load_weights_file(model, weights)
        provenance = {"path": weights, "source": f"weights file {weights} loaded into the model from {path}"}
    return _register(model, provenance, labels)


def _register(model, provenance: dict, labels):
    if labels is not None:
        n = int(model.output_shape[-1])
        if len(labels) != n:
            raise ValueError(f"labels name {len(labels)} classes but the model has {n}.")
        _LABELS[model] = tuple(labels)
    _PROVENANCE[model] = provenance
    return model


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0].rstrip(".") if text else type(err).__name__


def _load_weights_file(model, path: str) -> None:
    try:
        model.load_weights(path)
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"The weights file {path} does not fit {model.name} ({_first_line(err)}).") from None


@contextlib.contextmanager
def _seeded(seed: int | None):
    """Seed Keras/TensorFlow's initialisers with ``seed`` (None: leave them alone) for the block.

    ``keras.utils.set_random_seed`` also reseeds Python's and NumPy's global generators; their states are
    restored afterwards, so loading a model does not change other code's random numbers.
    """
    if seed is None:
        yield
        return
    import random

    import keras

    python_state, numpy_state = random.getstate(), np.random.get_state()
    keras.utils.set_random_seed(seed)
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


@contextlib.contextmanager
def _reporting_keras_downloads(fetched: list[str]):
    """Within the block, record the files Keras's application loaders fetch, and turn a failed fetch
    (offline, file not cached) into one ``FileNotFoundError`` sentence naming the file and ``KERAS_HOME``.

    Every ``keras.applications`` constructor fetches its weights through ``keras.src.utils.file_utils
    .get_file``; each architecture names its file differently, so we observe the call rather than
    re-derive the names.
    """
    try:
        from keras.src.utils import file_utils
    except ImportError:  # another Keras layout: Keras's own errors then
        yield
        return
    original = file_utils.get_file

    def get_file(fname=None, origin=None, *args, **kwargs):
        try:
            path = original(fname, origin, *args, **kwargs)
        except Exception as err:  # Keras raises a bare Exception for network failures
            if isinstance(err, ValueError):  # e.g. a hash mismatch: Keras's sentence is the right one
                raise
            subdir = kwargs.get("cache_subdir", "datasets")
            expected = keras_home() / subdir / (fname or os.path.basename(str(origin)))
            raise FileNotFoundError(
                f"{expected.name} is not in the Keras cache ({expected}) and could not be downloaded "
                f"({type(err).__name__}); copy it there or set KERAS_HOME to a folder that has it.") from None
        fetched.append(str(path))
        return path

    file_utils.get_file = get_file
    try:
        yield
    finally:
        file_utils.get_file = original


def _behind(model, layer):
    """Return a flat copy of ``model`` whose input passes through ``layer`` first (same weights)."""
    import keras

    inputs = keras.Input(model.inputs[0].shape[1:], name="input_layer")
    preprocessed = layer(inputs)

    def call(op, *args, **kwargs):  # the clone's input feeds the preprocessing layer, then the model
        args = keras.tree.map_structure(lambda t: preprocessed if t is inputs else t, args)
        return op(*args, **kwargs)

    clone = keras.models.clone_model(model, input_tensors=inputs, call_function=call)
    for original in model.layers:
        if original.weights:
            clone.get_layer(original.name).set_weights(original.get_weights())
    return clone


def feature_maps_walk(model) -> tuple[object, object, list]:
    """Return ``(tensor, operation, head)``: the model's last feature maps, what computes them, and the
    layers between them and the output (nearest the output first).

    The rule (one for every model): walking back from the output through single-input layers, the first
    tensor that is 4-D ``(N, h, w, K)`` with more than one position (``h * w > 1``, or unknown) -- the
    input of the global pooling or flattening. (If every 4-D tensor on the way is 1 x 1, the first 4-D
    one.) MobileNetV2: "out_relu"; ResNet50: "conv5_block3_out"; EfficientNet: "top_activation";
    MobileNetV3: the activation before its 1 x 1 head convolutions; VGG16: "block5_pool".
    """
    tensor, head, first_4d = model.outputs[0], [], None
    while True:
        operation, node_index, _ = tensor._keras_history
        shape = tuple(tensor.shape)
        if len(shape) == 4:
            positions = None if None in shape[1:3] else shape[1] * shape[2]
            if positions is None or positions > 1:
                return tensor, operation, head
            first_4d = first_4d or (tensor, operation, list(head))
        node = operation._inbound_nodes[node_index]
        inputs = list(node.input_tensors)
        if not inputs or len(inputs) != 1:
            if first_4d is not None:
                return first_4d
            raise ValueError(f"Cannot find the last feature maps of {model.name} (no 4-D activation on a "
                             f"single path back from its output); name the Grad-CAM layer explicitly.")
        head.append(operation)
        tensor = inputs[0]


def _with_named_feature_maps(model):
    """Return ``model``, or a copy whose last feature maps are a named layer's output (module docstring)."""
    import keras

    try:
        tensor, operation, head = feature_maps_walk(model)
    except ValueError:
        return model  # gradcam then needs an explicit layer; everything else works
    if isinstance(operation, keras.layers.Layer) and operation in model.layers:
        return model
    x = keras.layers.Identity(name=f"{model.name}_features")(tensor)
    for layer in reversed(head):  # fresh copies of the head's layers (one graph node each), same weights
        fresh = layer.__class__.from_config(layer.get_config())
        x = fresh(x)
        fresh.set_weights(layer.get_weights())
    return keras.Model(model.inputs[0], x, name=model.name)


def _mobilenet_v2_source(digest: str) -> str:
    if digest == OFFLINE_DEQUANTIZED_SHA256:
        return ("offline cache: Google's quantisation-aware MobileNetV2 1.0/224 release, dequantised "
                "into the Keras graph (not byte-identical to Keras's float download)")
    return "Keras's download of the official MobileNetV2 1.0/224 ImageNet weights (or another file)"


def _digest_of_weights(model) -> str:
    digest = hashlib.sha256()
    for array in model.get_weights():
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def weights_fingerprint(model=None) -> dict[str, str]:
    """Return the sha256, path and provenance (``source``) of a model's weights.

    ``model=None``: the MobileNetV2 weights file that ``load_model()`` reads (found or fetched; the model
    need not be loaded). For a model from ``load_model``: the sha256 of its weights file (ImageNet weights,
    a weights file or a model file), or, for ``weights=None``, of its initial weight values with ``source``
    "random init (weights=None), seed S" and an empty path. For any other model: the sha256 of its current
    weight values, source "weights in memory".
    """
    if model is not None:
        provenance = _PROVENANCE.get(model)
        if provenance is None:
            return {"sha256": _digest_of_weights(model), "path": "", "source": "weights in memory"}
        if "sha256" not in provenance:
            provenance["sha256"] = (hashlib.sha256(Path(provenance["path"]).read_bytes()).hexdigest()
                                    if provenance["path"] else _digest_of_weights(model))
        source = provenance["source"]
        if callable(source):
            source = source(provenance["sha256"])
        return {"sha256": provenance["sha256"], "path": provenance["path"], "source": source}
    path = keras_home() / "models" / WEIGHTS_FILE
    if not path.is_file():
        path = type(path)(cached_get_file(WEIGHTS_FILE, WEIGHTS_ORIGIN + WEIGHTS_FILE, "models"))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"sha256": digest, "path": str(path), "source": _mobilenet_v2_source(digest)}


def _read_labels(path: Path) -> tuple[tuple[str, str], ...]:
    """Return ``(wnid, name)`` per class from a CSV/text file (see ``load_model``)."""
    import csv

    if not path.is_file():
        raise FileNotFoundError(f"No labels file at {path}.")
    with open(path, newline="") as f:
        rows = [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError(f"The labels file {path} is empty.")
    header = [cell.strip().lower() for cell in rows[0]]
    name_col = next((header.index(k) for k in ("name", "label", "class_name", "class") if k in header), None)
    wnid_col = header.index("wnid") if "wnid" in header else None
    if name_col is not None:
        rows = rows[1:]
    else:
        name_col = -1
    return tuple(((row[wnid_col].strip() if wnid_col is not None else ""), row[name_col].strip())
                 for row in rows)


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
    out = np.concatenate([np.asarray(model(batch[i:i + PREDICT_BATCH], training=False), dtype=np.float64)
                          for i in range(0, len(batch), PREDICT_BATCH)])
    return out[0] if single else out


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
