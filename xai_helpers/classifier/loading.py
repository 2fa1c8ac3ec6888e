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
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from xai_helpers.classifier.data import cached_get_file, keras_home

# Re-exported: ``model.weights_fingerprint``, ``model.probabilities``, ... keep working.
from xai_helpers.classifier.labels import _read_labels
from xai_helpers.classifier.provenance import (
    DEFAULT_MODEL,
    WEIGHTS_FILE,
    WEIGHTS_ORIGIN,
    _digest_of_weights,
    _imagenet_source,
    _mobilenet_v2_source,
    _register,
)

#: Seed of ``keras.utils.set_random_seed`` for ``weights=None`` (random initialisation), so that a
#: randomly initialised model is the same in every process.
RANDOM_INIT_SEED = 0
#: Suffixes ``load_model`` reads as a saved model file rather than an architecture name.
MODEL_FILE_SUFFIXES = (".keras", ".h5", ".hdf5")
#: Models kept by ``load_model``'s cache (each call with the same arguments returns the same object).
MODEL_CACHE_SIZE = 8

def load_model(name: str | os.PathLike = DEFAULT_MODEL, weights: str | os.PathLike | None = "imagenet", *,
               alpha: float | None = None, size: int | None = None,
               preprocessing: str | Callable | None = None,
               labels: Sequence[str] | str | os.PathLike | None = None, seed: int = RANDOM_INIT_SEED):
    """Return a Keras classifier (softmax output) taking the package's input ``x`` in [-1, 1], cached.

    * ``load_model()`` = ``load_model("MobileNetV2")``: Keras's ``MobileNetV2(weights="imagenet")``,
      unchanged (no wrapper), 224 x 224.
    * ``name``: any ``keras.applications`` classifier ("ResNet50", "EfficientNetB0", "MobileNetV3Small",
      "DenseNet121", "ConvNeXtTiny", ...; case does not matter), built at its default input size with its
      own preprocessing as the first layer (``architectures``; none for the "tf" ones such as MobileNet
      and MobileNetV2, which take [-1, 1] themselves); or the path of a saved model file
      (``.keras``, ``.h5``), whose input ``preprocessing`` maps [-1, 1] to: "tf" or None (the model takes
      [-1, 1] itself), "caffe", "torch", "raw255" (0-255 pixels), or a callable on tensors. A name is a
      file's only when it ends with a model suffix (``MODEL_FILE_SUFFIXES``) or holds a path separator, so
      a file called ``MobileNetV2`` in the working folder does not change what "MobileNetV2" means (write
      ``./MobileNetV2`` for the file). A cut-short or damaged file is "not a complete Keras model file".
    * ``weights``: "imagenet" (Keras's loader, ``$KERAS_HOME/models/``; for a model file: the weights saved
      in it), None or "none" (random initialisation, seeded by ``seed`` through
      ``keras.utils.set_random_seed``, for offline trials), or the path of a weights file for the same
      architecture (``model.save_weights`` or Keras's ``.h5``).
    * ``labels``: class names for a model whose classes are not ImageNet's: a sequence of names in
      class-index order, or a CSV/text file (one row per class; a ``name`` column if it has a header,
      otherwise the last column; an optional ``wnid`` column).
    * ``alpha``: the width multiplier, only for the architectures that have one (MobileNet, MobileNetV2,
      MobileNetV3Small/Large); ``size``: the square input side (any architecture). None: the
      constructor's defaults (alpha 1.0, the table's size), so ``load_model("MobileNetV2", alpha=1.0,
      size=224) is load_model()``. With ImageNet weights Keras decides which pairs exist, e.g.
      ``load_model("MobileNet", alpha=0.75, size=192)`` (MobileNet v1 0.75/192, Keras's
      ``mobilenet_7_5_192_tf.h5``); a refused pair is one ``ValueError`` sentence. Not for a model file.

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
    alpha, size = _check_alpha(alpha), _check_size(size)
    if is_model_file_name(name):
        if alpha is not None or size is not None:
            raise ValueError("alpha and size are options of a keras.applications architecture, not of a "
                             "model file (whose input side was fixed when it was saved).")
        path = Path(name).expanduser()
        from xai_helpers.classifier.file_names import check_name_length

        check_name_length(path)
        if not path.is_file():
            raise FileNotFoundError(f"No model file at {path}.")
        check_model_file(path)
        # The file's modification time is part of the cache key: a rewritten file is read again.
        return _load_file(str(path.resolve()), path.stat().st_mtime_ns, weights, preprocessing, labels)
    from xai_helpers.classifier.architectures import ARCHITECTURES, architecture

    try:
        arch = architecture(name)  # unknown name: ValueError with suggestions
    except ValueError as err:
        if not _is_file(Path(name)):
            raise
        raise ValueError(f"{str(err).rstrip('.')} (to load the file {name} in this folder, give its path: "
                         f"./{name}).") from None
    if preprocessing is not None:
        raise ValueError(f"preprocessing is only for a model file; {arch.name} comes with its own "
                         f"({arch.preprocessing!r}).")
    if alpha is not None and not arch.takes_alpha:
        takers = ", ".join(a.name for a in ARCHITECTURES.values() if a.takes_alpha)
        raise ValueError(f"{arch.name} has no width multiplier alpha (only {takers} do).")
    if alpha is not None and alpha == arch.default_alpha:
        alpha = None  # the constructor's default: the same model, the same cache entry
    if size == arch.size:
        size = None
    # Always positional and complete: load_model() is one cache entry, whatever the caller wrote.
    return _load_application(arch.name, weights, labels, int(seed), alpha, size)


def is_model_file_name(name: str) -> bool:
    """Return whether ``load_model`` reads ``name`` as a model file's path: it ends with a model suffix
    (``MODEL_FILE_SUFFIXES``) or holds a path separator; anything else is an architecture's name, whatever
    files the working folder holds."""
    return (name.lower().endswith(MODEL_FILE_SUFFIXES) or os.sep in name
            or bool(os.altsep and os.altsep in name))


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


#: The first bytes of an HDF5 file (at offset 0, 512, 1024, ... when the file has a user block).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def check_model_file(path: Path) -> None:
    """Raise ``ValueError`` (one sentence naming the file) when the model file ``path`` is visibly not a
    whole one, before Keras is imported: empty, a ``.keras`` file that is not a complete zip archive (one
    cut short loses the archive's directory, at its end) or lacks ``config.json``, an ``.h5`` file that
    does not start like HDF5. (Other damage is Keras's to find: ``_load_file``.)"""
    import zipfile

    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path} is empty (0 bytes), not a Keras model file.")
    suffix = path.suffix.lower()
    if suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            raise ValueError(f"{path} is not a complete Keras model file (a .keras file is a zip archive, and "
                             f"this one is cut short, damaged or no zip archive at all).") from None
        if "config.json" not in names:
            raise ValueError(f"{path} is not a complete Keras model file (its zip archive has no "
                             f"config.json).")
    elif suffix in (".h5", ".hdf5"):
        with open(path, "rb") as f:
            for offset in (0, 512, 1024, 2048, 4096, 8192):
                if offset >= size:
                    break
                f.seek(offset)
                if f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                    return
        raise ValueError(f"{path} is not a complete Keras model file (an {suffix} file is HDF5, and this one "
                         f"does not start like one).")


def _check_alpha(alpha) -> float | None:
    if alpha is None:
        return None
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)):
        raise TypeError(f"alpha must be a number (a width multiplier such as 0.75), got {alpha!r}.")
    if not np.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a positive width multiplier such as 0.75, got {alpha!r}.")
    return float(alpha)


def _check_size(size) -> int | None:
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"size must be a whole number of pixels (the square input side), got {size!r}.")
    if size <= 0:
        raise ValueError(f"size must be a positive number of pixels (the square input side), got {size!r}.")
    return int(size)


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
def _load_application(name: str, weights: str | None, labels, seed: int, alpha: float | None = None,
                      size: int | None = None):
    """Return the cached ``keras.applications`` classifier ``name`` on [-1, 1] input (see ``load_model``).

    ``alpha``/``size`` None: the constructor's default width and the table's input side.
    """
    import keras

    from xai_helpers.classifier.architectures import ARCHITECTURES, InputPreprocessing

    arch = ARCHITECTURES[name]
    side = arch.size if size is None else size
    description = {"model": name, "alpha": alpha if alpha is not None else arch.default_alpha, "size": side}
    if name == DEFAULT_MODEL and weights == "imagenet" and alpha is None and size is None:
        # Today's model, untouched. Fetch through our wrapper first so a missing file gives one sentence.
        path = cached_get_file(WEIGHTS_FILE, WEIGHTS_ORIGIN + WEIGHTS_FILE, "models")
        model = keras.applications.MobileNetV2(weights="imagenet")
        return _register(model, {"path": str(path), "source": _mobilenet_v2_source, **description}, labels)

    options = {"weights": "imagenet" if weights == "imagenet" else None}
    if alpha is not None:
        options["alpha"] = alpha
    if size is not None:
        # Also next to input_tensor: only input_shape makes Keras check the size (the sides its ImageNet
        # weights exist for, its minimum), as it does for a plain keras.applications.X(input_shape=...).
        options["input_shape"] = (size, size, 3)
    fetched: list[str] = []
    with _seeded(seed if weights is None else None), _reporting_keras_downloads(fetched), \
            _one_sentence_constructor_errors(name, alpha, size, weights):
        if arch.preprocessing == "tf":  # the application takes [-1, 1] itself: no preprocessing layer
            model = arch.constructor()(**options)
        else:
            inputs = keras.Input((side, side, 3), name="input_layer")
            pre = InputPreprocessing(arch.preprocessing, name="preprocessing")(inputs)
            # With input_tensor, Keras 3 builds one flat Functional(inputs, predictions): every layer of
            # the application is a layer of this model, addressable by name.
            base = arch.constructor()(input_tensor=pre, **options)
            model = keras.Model(inputs, base.output, name=base.name)  # one input tensor, not a list
    model = _with_named_feature_maps(model)
    if weights is None:
        provenance = {"path": "", "source": f"random init (weights=None), seed {seed}",
                      "sha256": _digest_of_weights(model)}
    elif weights == "imagenet":
        provenance = {"path": fetched[-1] if fetched else "",
                      "source": _imagenet_source(name, description["alpha"], side)}
    else:
        _load_weights_file(model, weights)
        provenance = {"path": weights, "source": f"weights file {weights} loaded into {name}"}
    return _register(model, {**provenance, **description}, labels)


@contextlib.contextmanager
def _one_sentence_constructor_errors(name: str, alpha: float | None, size: int | None, weights):
    """Turn a ``keras.applications`` constructor's ``ValueError`` (a refused alpha or input size: no
    ImageNet weights for it, or too small an input) into one sentence that keeps Keras's own words."""
    try:
        yield
    except ValueError as err:
        asked = ", ".join(([f"alpha={alpha:g}"] if alpha is not None else [])
                          + ([f"input_shape=({size}, {size}, 3)"] if size is not None else []))
        what = "ImageNet weights" if weights == "imagenet" else "weights=None"
        reason = " ".join(str(err).split()).rstrip(".") or type(err).__name__
        raise ValueError(f"Keras refuses {name}({asked or 'defaults'}) with {what} "
                         f"(Keras: {reason}).") from None


@functools.lru_cache(maxsize=MODEL_CACHE_SIZE)
def _load_file(path: str, mtime_ns: int, weights: str | None, preprocessing, labels):
    """Return the cached classifier saved at ``path``, behind its ``preprocessing`` (see ``load_model``)."""
    import keras

    from xai_helpers.classifier.architectures import PREPROCESSING_MODES, InputPreprocessing

    if weights is None:
        raise ValueError("A model file carries its own weights: use weights='imagenet' (the file's own) or "
                         "the path of a weights file, not None.")
    if not (preprocessing is None or callable(preprocessing) or preprocessing in PREPROCESSING_MODES):
        raise ValueError(f"preprocessing must be one of {', '.join(PREPROCESSING_MODES)}, None or a "
                         f"callable, got {preprocessing!r}.")
    try:
        loaded = keras.saving.load_model(path, compile=False)
    except (OSError, ValueError, EOFError) as err:
        reason = _first_line(err)
        if "truncated" in reason.lower() or isinstance(err, EOFError):  # e.g. h5py: "truncated file: eof = ..."
            raise ValueError(f"{path} is not a complete Keras model file ({reason}).") from None
        raise ValueError(f"{path} is not a Keras model file Keras can load ({reason}).") from None
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
    return _register(model, {**provenance, "file": path}, labels)


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


