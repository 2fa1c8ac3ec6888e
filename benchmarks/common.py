"""Shared pieces of the benchmark scripts: the machine line, the photos, the bare gradient pass, timing.

The "bare pass" is the practical speed limit of any gradient-based explainer on this machine: one compiled
``tf.function`` that evaluates ``d F_c / d x`` for a batch of inputs of MobileNetV2, with nothing
around it (no path construction, no accumulation, no validation, no NumPy round trip).
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

# Importing the package first loads TensorFlow with its start-up log silenced (xai_helpers.__init__).
import xai_helpers  # noqa: F401,E402
from xai_helpers.classifier.forward import CHUNK  # noqa: E402

#: Sample photos used by the benchmarks (ImageNet class indices): whiptail (the report's photo), tabby
#: cat, golden retriever, sports car; chosen for variety, fixed so that runs are comparable.
PHOTO_CLASSES = (41, 281, 207, 817)
#: Images per bare batched pass: the package's own chunk size, so "bare" is the rate its passes could reach.
BATCH = CHUNK


def machine() -> str:
    """Return one line describing the machine and software the numbers were measured on."""
    import keras
    import tensorflow as tf

    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = "/".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"{os.cpu_count()} x {cpu}, {platform.system()}, Python {platform.python_version()}, "
            f"TensorFlow {tf.__version__}, Keras {keras.__version__}; load average at start {load}")


def write_rows(out, title: str, rows: list[dict]) -> None:
    """Write a benchmark's table to ``out``: ``# title``, the weights' sha256 and the machine as comment lines,
    then the rows as CSV (floats to 6 significant digits). The book's appendix reads such tables."""
    import csv

    with open(out, "w", newline="") as f:
        f.write(f"# {title}\n")
        f.write(f"# weights_sha256: {xai_helpers.weights_fingerprint()['sha256']}\n")
        f.write(f"# machine: {machine()}\n")
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def photos(n: int = len(PHOTO_CLASSES)) -> list[tuple[str, int, np.ndarray]]:
    """Return ``n`` benchmark photos as (name, class index, model-range image)."""
    import xai_helpers as xh

    out = []
    for c in PHOTO_CLASSES[:n]:
        photo = xh.sample_photos()[c]
        out.append((photo.name, c, xh.load_image(xh.sample_image(c))))
    return out


def bare_gradient(model, target: str = "softmax", batch: int = BATCH):
    """Return a compiled ``(points[batch, 224, 224, 3], classes[batch]) -> d score / d points``."""
    import tensorflow as tf

    from xai_helpers.classifier.forward import scores_model

    scores = scores_model(model, target)

    @tf.function(input_signature=[tf.TensorSpec((batch, 224, 224, 3), tf.float32),
                                  tf.TensorSpec((batch,), tf.int32)])
    def gradient(points, classes):
        with tf.GradientTape() as tape:
            tape.watch(points)
            s = tf.gather(scores(points, training=False), classes, axis=1, batch_dims=1)
        return tape.gradient(s, points)

    return gradient


def timed(fn: Callable[[], object]) -> float:
    """Return the wall-clock seconds of one call of ``fn`` (its result is forced to NumPy)."""
    start = time.perf_counter()
    result = fn()
    if hasattr(result, "numpy"):
        result.numpy()
    return time.perf_counter() - start


def median(values) -> float:
    return float(statistics.median(values))
