"""Object masks from a real segmentation network: DeepLab v3 with a MobileNetV2 backbone, PASCAL VOC 2012.

Chen, Papandreou, Schroff & Adam, "Rethinking Atrous Convolution for Semantic Image Segmentation", 2017;
Google's 8-bit release ``deeplabv3_mnv2_pascal_quant.tflite`` (google-coral/test_data, Apache-2.0), fetched
like every other file through ``keras.utils.get_file`` with its sha256, so it is downloaded online and read
from ``$KERAS_HOME/models`` offline, and run with LiteRT's interpreter (``ai-edge-litert``).

The network sees the classifier's own input (the photo as the classifier saw it, resized to its 513 x 513
input) and labels each pixel with a PASCAL category (``pascal.PASCAL_CATEGORIES``); the labels are brought
back to the classifier's input size (nearest neighbour), so a mask lies on the very pixels the attack and
the maps are measured on. A photo gets an object mask when its ImageNet class has a PASCAL category
(``pascal.pascal_category``) and the network finds that category on at least ``MIN_OBJECT_SHARE`` of it.
"""
from __future__ import annotations

import numpy as np

from xai_helpers.classifier.data import cached_get_file, deprocess
from xai_helpers.classifier.pascal import pascal_category
from xai_helpers.classifier.quiet import StderrClosed

SEGMENTER_FILE = "deeplabv3_mnv2_pascal_quant.tflite"
SEGMENTER_ORIGIN = "https://github.com/google-coral/test_data/raw/master/deeplabv3_mnv2_pascal_quant.tflite"
SEGMENTER_SHA256 = "350af47fd346ea6d74b58833a351f583ba860e9806ec5bd292ff8d8f1f249398"
#: The network's input side (pixels).
SEGMENTER_SIZE = 513
#: Smallest share of the photo the class's own category must cover for the photo to get an object mask.
MIN_OBJECT_SHARE = 0.05

_INTERPRETER = {}


def segmenter():
    """The DeepLab v3 interpreter (LiteRT, one thread), loaded once per process."""
    if "interpreter" not in _INTERPRETER:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as err:   # Ctrl-C or SIGTERM inside the native module's start-up: pybind11
            if isinstance(err.__cause__, KeyboardInterrupt):   # reports it as an ImportError; it is a stop
                raise err.__cause__ from None
            raise
        path = cached_get_file(SEGMENTER_FILE, SEGMENTER_ORIGIN, "models", file_hash=SEGMENTER_SHA256)
        with StderrClosed():   # (LiteRT announces its XNNPACK delegate on stderr)
            interpreter = Interpreter(model_path=path, num_threads=1)
            interpreter.allocate_tensors()
        _INTERPRETER["interpreter"] = interpreter
    return _INTERPRETER["interpreter"]


def segment(x: np.ndarray) -> np.ndarray:
    """Return the PASCAL label (0 = background .. 20) of every pixel of ``x`` (H, W, 3) in [-1, 1], at x's size."""
    from PIL import Image

    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"segment needs one RGB image (H, W, 3), got shape {x.shape}.")
    pixels = np.round(deprocess(x) * 255.0).astype(np.uint8)
    resized = np.asarray(Image.fromarray(pixels).resize((SEGMENTER_SIZE, SEGMENTER_SIZE), Image.BILINEAR))
    interpreter = segmenter()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], resized[None])
    interpreter.invoke()
    labels = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0].astype(np.uint8)
    back = Image.fromarray(labels).resize((x.shape[1], x.shape[0]), Image.NEAREST)
    return np.asarray(back, dtype=np.int64)


def object_mask(x: np.ndarray, class_index: int, labels: np.ndarray | None = None) -> np.ndarray | None:
    """Return the mask (H, W, bool) of the pixels the segmenter gives ``class_index``'s own PASCAL category,
    or None when the class has none or it covers less than ``MIN_OBJECT_SHARE`` of the photo.

    ``labels``: ``segment(x)`` when it is already known.
    """
    category = pascal_category(class_index)
    if category is None:
        return None
    mask = (segment(x) if labels is None else np.asarray(labels)) == category
    return mask if mask.mean() >= MIN_OBJECT_SHARE else None


__all__ = ["MIN_OBJECT_SHARE", "SEGMENTER_FILE", "SEGMENTER_ORIGIN", "SEGMENTER_SHA256", "SEGMENTER_SIZE",
           "object_mask", "segment", "segmenter"]
