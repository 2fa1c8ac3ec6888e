"""What one study photo costs, and how close the study runs to the bare gradient rate of the same model.

Runs ``study.analyse_batch`` (the study's per-photo work with its default settings) on batches of photos
from the study's seeded order: ``--batches`` batches of ``--batch-size`` photos inside the ROAD subset
(the first ``road_photos`` of the order) and as many outside it. Around every batch it times the bare
compiled batched forward+backward pass of MobileNetV2 (``common.bare_gradient``, batch 32), so that each
batch's gradient evaluations (the rows' ``gradient_evals``: FGSM, PGD on the eps grid, the IG maps and the
attack attributions) have a bare time measured under the same machine load.

Prints per batch: seconds per photo, gradient evaluations per photo, and the ratio
``bare time of those evaluations / measured time`` (the share of the study's time that is bare gradient
work; the rest is Grad-CAM, forward passes of deletion, insertion, ROAD and interventions, ROAD's sparse
solves, map comparisons and I/O). Last line:
``study_cost seconds_per_photo=... evals_per_photo=... bare_share=... hours_for_1000=...``, where the
projection weights the two kinds of batch by their share of the 1000 photos.

    python benchmarks/study_cost.py [--batches 1] [--batch-size 8]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=1, help="batches inside and outside the ROAD subset")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    import tensorflow as tf

    import xai_helpers as xh
    from xai_helpers import study

    print(common.machine())
    model = xh.load_model()
    settings = study.StudySettings()
    order = [int(c) for c in study.photo_order(settings.seed)]
    bare = common.bare_gradient(model)
    points = tf.constant(np.random.default_rng(0).uniform(-1, 1, (common.BATCH, 224, 224, 3)), tf.float32)
    classes = tf.constant(np.arange(common.BATCH), tf.int32)
    bare(points, classes)  # trace once

    def bare_rate() -> float:
        return common.BATCH / common.median(common.timed(lambda: bare(points, classes)) for _ in range(3))

    # Warm-up: trace the study's compiled functions on one photo outside the measured batches.
    study.analyse_batch(model, order[-1:], settings)
    results = {}
    for kind, start in (("ROAD subset", 0), ("outside it", settings.road_photos)):
        for b in range(args.batches):
            photos = order[start + b * args.batch_size:start + (b + 1) * args.batch_size]
            before = bare_rate()
            t = time.perf_counter()
            rows = study.analyse_batch(model, photos, settings)
            seconds = time.perf_counter() - t
            rate = (before + bare_rate()) / 2
            evals = sum(r.get("gradient_evals", 1 + settings.pgd_steps * len(settings.eps_grid_pixels))
                        for r in rows)
            share = evals / rate / seconds
            results.setdefault(kind, []).append((seconds / len(photos), evals / len(photos), share))
            print(f"{kind:12s} batch {b}: {seconds / len(photos):5.1f} s/photo, {evals / len(photos):5.0f} "
                  f"gradient evaluations/photo, bare rate {rate:.1f}/s, bare share {share:.2f}", flush=True)
    inside = settings.road_photos / 1000
    per_photo = {k: statistics.mean(r[0] for r in v) for k, v in results.items()}
    hours = 1000 * (inside * per_photo["ROAD subset"] + (1 - inside) * per_photo["outside it"]) / 3600
    every = [r for v in results.values() for r in v]
    print(f"study_cost seconds_per_photo={statistics.mean(r[0] for r in every):.1f} "
          f"evals_per_photo={statistics.mean(r[1] for r in every):.0f} "
          f"bare_share={statistics.mean(r[2] for r in every):.2f} hours_for_1000={hours:.1f}")


if __name__ == "__main__":
    main()
