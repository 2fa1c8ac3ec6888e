"""Seconds per photo of the full per-photo analysis, and how close it runs to the bare gradient rate.

The analysis is what ``python -m xai_helpers explain PHOTO --targets both`` computes (without drawing):
top-5 of the photo, untargeted FGSM at 1 pixel level, top-5 of the adversarial image, then for the
standard (Grad-CAM logits, IG softmax) and the reversed (Grad-CAM softmax, IG logits) targets the
Grad-CAM and IG maps (128 trapezoid steps) of the clean and the adversarial image, each for its own top-1
class, and ``compare_maps`` of each pair. Its gradient evaluations:

    FGSM 1  +  Grad-CAM 2 targets x 2 images  +  IG 2 targets x 2 images x 128 steps  =  517

(plus 11 forward passes: 3 predictions and IG's end points). The bare time of those 517 evaluations is
517 / (evaluations per second of the bare batched pass, ``common.bare_gradient`` at batch 32), measured
in the same run just before and just after each photo (the mean of the two).

Last line: ``pipeline_vs_bare_ratio R`` = median seconds per photo / bare seconds of its 517 gradient
evaluations (1.0 = no overhead at all; FGSM and Grad-CAM run at batch 1-2, below the batch-32 rate).

    python benchmarks/pipeline.py [--photos 4] [--steps 128]
"""
from __future__ import annotations

import argparse
import time

import common
import numpy as np


def analyse(model, x: np.ndarray, steps: int) -> dict:
    """Run the per-photo analysis on one image; return its numbers (so nothing is optimised away)."""
    import xai_helpers as xh
    from xai_helpers.methods.integrated_gradients import integrated_gradients_batch

    clean_top = xh.predict(model, x)
    adv = xh.fgsm(model, x, eps=xh.pixels_to_eps(1))
    adv_top = xh.predict(model, adv)
    pair, classes = np.stack([x, adv]), [clean_top[0].class_index, adv_top[0].class_index]
    numbers = {}
    for gc_target, ig_target in (("logits", "softmax"), ("softmax", "logits")):
        cams = xh.gradcam(model, pair, classes, target=gc_target)
        igs = integrated_gradients_batch(model, pair, classes, target=ig_target, steps=steps)
        numbers[f"gradcam_{gc_target}"] = xh.compare_maps(cams[0], cams[1])
        numbers[f"ig_{ig_target}"] = xh.compare_maps(xh.to_2d(igs[0].attributions),
                                                     xh.to_2d(igs[1].attributions))
    return numbers


def gradient_evaluations(steps: int) -> int:
    """Return the gradient evaluations of one ``analyse`` call: FGSM + 4 Grad-CAM maps + 4 IG maps."""
    return 1 + 2 * 2 + 2 * 2 * steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=len(common.PHOTO_CLASSES))
    parser.add_argument("--steps", type=int, default=128, help="IG steps")
    args = parser.parse_args()

    import tensorflow as tf

    import xai_helpers as xh

    print(common.machine())
    model = xh.load_model()
    photos = common.photos(args.photos)
    bare = common.bare_gradient(model, "softmax", common.BATCH)
    points = tf.constant(np.repeat(photos[0][2][None], common.BATCH, axis=0))
    classes = tf.constant(np.full(common.BATCH, photos[0][1], np.int32))
    bare_calls = 4

    def run_bare():
        for _ in range(bare_calls):
            g = bare(points, classes)
        return g

    run_bare()
    analyse(model, photos[0][2], args.steps)  # warm-up: traces, Grad-CAM's model clone, caches

    evals = gradient_evaluations(args.steps)
    seconds, bare_rates = [], []
    print(f"\n{'photo':20}{'s/photo':>9}{'bare evals/s':>14}{'bare s for ' + str(evals):>18}{'ratio':>8}")
    rate_before = bare_calls * common.BATCH / common.timed(run_bare)
    for name, _, x in photos:
        start = time.perf_counter()
        analyse(model, x, args.steps)
        t = time.perf_counter() - start
        rate_after = bare_calls * common.BATCH / common.timed(run_bare)
        rate = (rate_before + rate_after) / 2  # the bare rate just before and just after this photo
        rate_before = rate_after
        seconds.append(t)
        bare_rates.append(rate)
        print(f"{name[:19]:20}{t:>9.2f}{rate:>14.1f}{evals / rate:>18.2f}{t * rate / evals:>8.2f}",
              flush=True)
    per_photo, rate = common.median(seconds), common.median(bare_rates)
    ratios = [t * r / evals for t, r in zip(seconds, bare_rates)]
    print(f"\nmedian: {per_photo:.2f} s per photo; {evals} gradient evaluations at the bare rate "
          f"({rate:.1f}/s) take {evals / rate:.2f} s")
    print(f"\npipeline_vs_bare_ratio {common.median(ratios):.2f}")


if __name__ == "__main__":
    main()
