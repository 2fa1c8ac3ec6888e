"""Gradient evaluations per second of ``integrated_gradients`` vs the bare batched gradient pass.

Three ways of spending the same number of gradient evaluations of MobileNetV2 on the whiptail photo,
measured interleaved (one round = one timing of each, so that load from other processes hits all three
alike), after a warm-up call of each; the median over rounds is reported:

* bare: the compiled batched gradient of one class score w.r.t. a (CHUNK, 224, 224, 3) input, nothing
  else (``common.bare_gradient``), called steps/CHUNK times (``forward.CHUNK``, the package's one chunk size);
* ig: ``xai_helpers.methods.integrated_gradients(model, x, 41, steps=steps)`` (trapezoid, chunks of CHUNK
  points, black baseline), i.e. path points, gradients, weighted sum, end points, checks and the NumPy
  round trip;
* per-step: the straightforward loop of the TensorFlow IG tutorial's formula, one compiled batch-1
  gradient per alpha, accumulated in Python (and, with ``--eager``, the same loop without
  ``tf.function``).

Last line: ``ig_vs_bare_ratio R``: the median over rounds of (bare time / IG time) for the same number of
gradient evaluations, i.e. IG's evaluations per second relative to the bare pass's (target >= 0.9).

    python benchmarks/ig_throughput.py [--steps 128] [--rounds 7] [--eager]
"""
from __future__ import annotations

import argparse

import common
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=128, help="IG steps = gradient evaluations per round")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (median reported)")
    parser.add_argument("--eager", action="store_true",
                        help="also time the per-step loop without tf.function (slow: ~10x the others)")
    args = parser.parse_args()
    if args.steps % common.BATCH:
        parser.error(f"--steps must be a multiple of {common.BATCH}")

    import tensorflow as tf

    import xai_helpers as xh
    from xai_helpers.classifier.forward import scores_model

    print(common.machine())
    model = xh.load_model()
    _, c, x = common.photos(1)[0]
    steps, batch = args.steps, common.BATCH

    bare = common.bare_gradient(model, "softmax", batch)
    points = tf.constant(np.repeat(x[None], batch, axis=0))
    classes = tf.constant(np.full(batch, c, np.int32))

    def run_bare():
        for _ in range(steps // batch):
            g = bare(points, classes)
        return g

    def run_ig():
        return xh.integrated_gradients(model, x, c, target="softmax", steps=steps)

    scores = scores_model(model, "softmax")
    one = common.bare_gradient(model, "softmax", 1)
    baseline = np.full_like(x, -1.0)
    alphas = np.linspace(0.0, 1.0, steps).astype(np.float32)
    class_one = tf.constant([c], tf.int32)

    def run_per_step():
        total = np.zeros_like(x)
        for a in alphas:
            total += one(tf.constant((baseline + a * (x - baseline))[None]), class_one).numpy()[0]
        return (x - baseline) * total / steps

    def eager_gradient(point):
        with tf.GradientTape() as tape:
            tape.watch(point)
            s = scores(point, training=False)[:, c]
        return tape.gradient(s, point)

    def run_eager():
        total = np.zeros_like(x)
        for a in alphas:
            total += eager_gradient(tf.constant((baseline + a * (x - baseline))[None])).numpy()[0]
        return (x - baseline) * total / steps

    contenders = {f"bare pass (batch {batch}, compiled)": run_bare,
                  f"integrated_gradients (chunks of {batch})": run_ig,
                  "per-step loop (batch 1, compiled)": run_per_step}
    if args.eager:
        contenders["per-step loop (batch 1, eager)"] = run_eager
    for fn in contenders.values():  # warm-up: tracing, oneDNN primitive caches, first allocations
        fn()
    times = {name: [] for name in contenders}
    for r in range(args.rounds):
        for name, fn in contenders.items():
            times[name].append(common.timed(fn))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{t[-1]:.2f} s" for t in times.values()),
              flush=True)

    rate = {name: steps / common.median(t) for name, t in times.items()}
    bare_name = f"bare pass (batch {batch}, compiled)"
    # Paired ratio: each round's bare time over the contender's time in the same round, then the median;
    # this cancels slow drifts in the machine's load better than a ratio of medians.
    paired = {name: common.median(np.divide(times[bare_name], t)) for name, t in times.items()}
    print(f"\n{steps} gradient evaluations per round, {args.rounds} rounds, median:")
    print(f"{'':36}{'s/round':>9}{'evals/s':>9}{'vs bare':>9}{'min s':>8}")
    for name, t in times.items():
        print(f"{name:36}{common.median(t):>9.2f}{rate[name]:>9.1f}{paired[name]:>9.2f}{min(t):>8.2f}")
    print("('vs bare' = median over rounds of bare time / this time, both measured in the same round)")
    print(f"\nig_vs_bare_ratio {paired[f'integrated_gradients (chunks of {batch})']:.2f}")


if __name__ == "__main__":
    main()
