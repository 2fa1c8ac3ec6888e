"""Where a model's weights came from: the registry ``load_model`` fills, and the fingerprint reports print.

Every chapter, table and ``explain`` report names the weights it used (``weights_fingerprint``: sha256,
file, a sentence on their source, and which network at which width and size), because the offline cache's
MobileNetV2 and MobileNet v1 weights are dequantised from Google's 8-bit releases, not Keras's float files.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np

from xai_helpers.classifier.compiled import known, model_state
from xai_helpers.classifier.data import IMAGE_SIZE, cached_get_file, keras_home

#: The classifier ``load_model()`` returns when no name is given.
DEFAULT_MODEL = "MobileNetV2"
WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
WEIGHTS_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
#: sha256 of the offline cache's weights: Google's 8-bit quantisation-aware MobileNetV2 release,
#: dequantised into the Keras graph (see shared/keras/README.md); not Keras's float download.
OFFLINE_DEQUANTIZED_SHA256 = "32682ea88938b3d88d200df3029384113581cbde5eea37f14bd3c7c8c86ae35c"
#: The second real network of the offline cache: MobileNet v1, width 0.75, 192 x 192
#: (``load_model("MobileNet", alpha=0.75, size=192)``), Keras's file name for it and the sha256 of the
#: offline cache's copy, dequantised from Google's 8-bit release ``mobilenet_v1_0.75_192_quant.tflite``.
MOBILENET_V1_WEIGHTS_FILE = "mobilenet_7_5_192_tf.h5"
OFFLINE_MOBILENET_V1_SHA256 = "1f373d898f31bab429d6a8ba0baa5c0ed229a9989e086b91ffc53b4896080071"

def _register(model, provenance: dict, labels):
    """Keep where ``model``'s weights came from (for ``weights_fingerprint``) and its class names."""
    if labels is not None:
        n = int(model.output_shape[-1])
        if len(labels) != n:
            raise ValueError(f"labels name {len(labels)} classes but the model has {n}.")
        model_state(model)["labels"] = tuple(labels)
    model_state(model)["provenance"] = provenance
    return model



def _mobilenet_v2_source(digest: str) -> str:
    if digest == OFFLINE_DEQUANTIZED_SHA256:
        return ("offline cache: Google's quantisation-aware MobileNetV2 1.0/224 release, dequantised "
                "into the Keras graph (not byte-identical to Keras's float download)")
    return "Keras's download of the official MobileNetV2 1.0/224 ImageNet weights (or another file)"


def _mobilenet_v1_source(digest: str) -> str:
    if digest == OFFLINE_MOBILENET_V1_SHA256:
        return ("offline cache: MobileNet v1 0.75/192, dequantised from Google's 8-bit release "
                "mobilenet_v1_0.75_192_quant.tflite into the Keras graph (not byte-identical to Keras's "
                "float download)")
    return "Keras's download of the official MobileNet v1 0.75/192 ImageNet weights (or another file)"


def _imagenet_source(name: str, alpha: float | None, size: int):
    """Return the ``source`` of ``name``'s ImageNet weights: a sentence, or a function of the file's sha256
    for the networks the offline cache holds in a dequantised form."""
    if name == "MobileNet" and alpha == 0.75 and size == 192:
        return _mobilenet_v1_source
    if name == DEFAULT_MODEL and alpha == 1.0 and size == 224:
        return _mobilenet_v2_source
    options = f" {alpha:g}/{size}" if alpha is not None else f" at {size} x {size}"
    return f"Keras's ImageNet weights for {name}{options} (keras.applications)"


def _digest_of_weights(model) -> str:
    digest = hashlib.sha256()
    for array in model.get_weights():
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def model_description(model=None) -> dict[str, object]:
    """Return ``{"model": ..., "alpha": ..., "size": ...}``: what network ``model`` is, for a study table.

    ``model``: the ``keras.applications`` constructor name (e.g. "MobileNet"), the path of a model file, or
    the Keras model's own name for any other model; ``alpha``: its width multiplier (None when the
    architecture has none, or is not known); ``size``: its square input side. ``model=None``: the model
    ``load_model()`` returns, ``{"model": "MobileNetV2", "alpha": 1.0, "size": 224}``.
    """
    if model is None:
        return {"model": DEFAULT_MODEL, "alpha": 1.0, "size": IMAGE_SIZE}
    provenance = known(model, "provenance", {})
    if "model" in provenance:
        return {key: provenance[key] for key in ("model", "alpha", "size")}
    return {"model": provenance.get("file") or model.name, "alpha": None, "size": int(model.input_shape[1] or IMAGE_SIZE)}


def weights_fingerprint(model=None) -> dict[str, object]:
    """Return the sha256, path and provenance (``source``) of a model's weights, and what model it is.

    Keys: ``sha256``, ``path``, ``source`` (strings) and ``model``, ``alpha``, ``size``
    (``model_description``), e.g. for ``load_model("MobileNet", alpha=0.75, size=192)`` offline:
    source "offline cache: MobileNet v1 0.75/192, dequantised from Google's 8-bit release
    mobilenet_v1_0.75_192_quant.tflite ...", path ``$KERAS_HOME/models/mobilenet_7_5_192_tf.h5``,
    model "MobileNet", alpha 0.75, size 192.

    ``model=None``: the MobileNetV2 weights file that ``load_model()`` reads (found or fetched; the model
    need not be loaded). For a model from ``load_model``: the sha256 of its weights file (ImageNet weights,
    a weights file or a model file), or, for ``weights=None``, of its initial weight values with ``source``
    "random init (weights=None), seed S" and an empty path. For any other model: the sha256 of its current
    weight values, source "weights in memory".
    """
    if model is not None:
        provenance = known(model, "provenance")
        if provenance is None:
            return {"sha256": _digest_of_weights(model), "path": "", "source": "weights in memory",
                    **model_description(model)}
        if "sha256" not in provenance:
            provenance["sha256"] = (hashlib.sha256(Path(provenance["path"]).read_bytes()).hexdigest()
                                    if provenance["path"] else _digest_of_weights(model))
        source = provenance["source"]
        if callable(source):
            source = source(provenance["sha256"])
        return {"sha256": provenance["sha256"], "path": provenance["path"], "source": source,
                **model_description(model)}
    path = keras_home() / "models" / WEIGHTS_FILE
    if not path.is_file():
        path = type(path)(cached_get_file(WEIGHTS_FILE, WEIGHTS_ORIGIN + WEIGHTS_FILE, "models"))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"sha256": digest, "path": str(path), "source": _mobilenet_v2_source(digest),
            **model_description()}


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """The SHA-256 of the package's source: every ``.py`` file under ``xai_helpers/``, by relative path and
    bytes, in sorted order, as it was when first asked in this process (the code it runs; the study's rows
    record its first 12 digits as ``code_sha``)."""
    import hashlib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


__all__ = ["DEFAULT_MODEL", "OFFLINE_DEQUANTIZED_SHA256", "OFFLINE_MOBILENET_V1_SHA256", "WEIGHTS_FILE",
           "model_description", "source_digest", "weights_fingerprint"]
