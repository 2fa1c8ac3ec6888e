"""Completeness error of Integrated Gradients vs the number of gradient evaluations, per quadrature rule.

For each photo (``common.PHOTO_CLASSES``: whiptail, tabby, golden retriever, sports car, explained for its
own class), each target (softmax probability, logit), each rule (right Riemann = the assignment's formula,
trapezoid, Gauss-Legendre) and each number of evaluations n, the relative completeness error

    |delta| / |F(x) - F(x')|,   delta = sum_i IG_i - (F(x) - F(x'))       (Sundararajan et al. 2017)

with the black baseline. "Evaluations to reach 1%" for one photo and target is the smallest n of the grid
from which every larger n of the grid stays at or below 1% (the error of MobileNetV2's non-smooth path
function is not monotone in n, so the first n under 1% alone would flatter a rule).

A fourth contender, ``nonuniform``, is the non-uniform interpolation of Bhat & Raychowdhury ("Non-Uniform
Interpolation in Integrated Gradients for Low-Latency Explainable-AI", ISCAS 2023): F is probed (forward
passes only) at the ends of ``SEGMENTS`` equal segments of the path, each segment gets a share of the n
gradient evaluations proportional to the change of F across it (at least one), and within a segment the
nodes are its midpoints; the probes are extra forward passes, not counted in n.

Last line: ``evals_for_1pct riemann_right=N trapezoid=N gauss_legendre=N nonuniform=N``: for each rule, the smallest
n of the grid from which at least half of the photo x target cases stay under 1% (the table before it
also gives the worst case, and the same for 5%); ``>MAX`` when that never happens within the grid.

    python benchmarks/ig_accuracy.py [--steps 16 32 64 128 256 512] [--photos 4] [--methods ...]
"""
from __future__ import annotations

import argparse
import time

import common
import numpy as np

METHODS = ("riemann_right", "trapezoid", "gauss_legendre", "nonuniform")
#: Segments of the non-uniform schedule (Bhat & Raychowdhury 2023 probe F at their ends).
SEGMENTS = 8
TARGETS = ("softmax", "logits")
TOLERANCE = 0.01


def evals_to_reach(errors: dict[int, float], tolerance: float = TOLERANCE) -> float:
    """Return the smallest n from which every larger n in ``errors`` is <= tolerance (inf if none)."""
    need = float("inf")
    for n in sorted(errors, reverse=True):
        if errors[n] <= tolerance:
            need = n
        else:
            break
    return need


def nonuniform_schedule(model, x: np.ndarray, c: int, target: str, n: int, segments: int = SEGMENTS):
    """Return the nodes and weights (summing to 1) of the non-uniform schedule for n gradient evaluations."""
    from xai_helpers.classifier.forward import probabilities
    from xai_helpers.methods.integrated_gradients import make_baseline
    from xai_helpers.methods.interventions import scores

    baseline = make_baseline(x)
    bounds = np.linspace(0.0, 1.0, segments + 1)
    probes = np.stack([baseline + a * (x - baseline) for a in bounds]).astype(np.float32)
    f = (probabilities(model, probes)[:, c] if target == "softmax" else scores(model, probes, c))
    change = np.abs(np.diff(f))
    share = change / change.sum() if change.sum() > 0 else np.full(segments, 1.0 / segments)
    counts = np.maximum(1, np.floor(share * n).astype(int))
    while counts.sum() > n:  # give back from the largest
        counts[np.argmax(counts)] -= 1
    for k in np.argsort(-(share * n - np.floor(share * n)))[: n - counts.sum()]:
        counts[k] += 1
    nodes, weights = [], []
    for k, m in enumerate(counts):
        width = bounds[k + 1] - bounds[k]
        nodes += list(bounds[k] + (np.arange(m) + 0.5) * width / m)
        weights += [width / m] * m
    return np.array(nodes), np.array(weights)


def nonuniform_ig(model, x: np.ndarray, c: int, target: str, n: int) -> float:
    """Return the relative completeness error of IG with the non-uniform schedule of n evaluations."""
    import tensorflow as tf

    from xai_helpers.methods.integrated_gradients import _integrator, make_baseline

    nodes, weights = nonuniform_schedule(model, x, c, target, n)
    attributions, f_x, f_base = _integrator(model, target).integrate(
        tf.constant(x[None]), tf.constant(make_baseline(x)[None]), tf.constant(nodes, tf.float32),
        tf.constant(weights, tf.float32), tf.constant([c], tf.int32), tf.constant([c], tf.int32), tf.constant(32))
    change = float(f_x[0] - f_base[0])
    return abs(float(np.sum(attributions.numpy())) - change) / abs(change)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512],
                        help="numbers of gradient evaluations to try")
    parser.add_argument("--photos", type=int, default=len(common.PHOTO_CLASSES),
                        help=f"how many of the {len(common.PHOTO_CLASSES)} benchmark photos")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                        help="rules to compare (default: all)")
    parser.add_argument("--adaptive-only", action="store_true",
                        help="only the adaptive rule (nested trapezoid doubling to 1%%), ~1 min")
    args = parser.parse_args()

    import xai_helpers as xh

    print(common.machine())
    model = xh.load_model()
    photos = common.photos(args.photos)
    steps = sorted(args.steps)
    adaptive_cases(model, photos)
    if args.adaptive_only:
        return
    errors = {}  # (photo, target, method) -> {n: relative error}
    start = time.perf_counter()
    methods = [m for m in METHODS if m in args.methods]
    for target in TARGETS:
        for method in methods:
            for n in steps:
                # One photo per call: the package's path loop may hold several chunks of activations at
                # once, so memory grows with the number of path points in one call.
                for name, c, x in photos:
                    if method == "nonuniform":
                        error = nonuniform_ig(model, x, c, target, n)
                    else:
                        error = xh.integrated_gradients(model, x, c, target=target, steps=n,
                                                        method=method).relative_delta
                    errors.setdefault((name, target, method), {})[n] = error
            print(f"  {target:8}{method:16}done ({time.perf_counter() - start:.0f} s)", flush=True)

    print("\n|delta| / |F(x) - F(x')| (black baseline), by gradient evaluations n:")
    print(f"{'photo':18}{'target':9}{'method':16}" + "".join(f"{n:>8}" for n in steps) + f"{'to 1%':>8}")
    need = {m: [] for m in methods}
    for (name, target, method), errs in errors.items():
        n_needed = evals_to_reach(errs)
        need[method].append(n_needed)
        print(f"{name[:17]:18}{target:9}{method:16}" + "".join(f"{errs[n]:>8.2%}" for n in steps)
              + f"{_fmt(n_needed, steps):>8}")

    print(f"\nevaluations to stay under 1% ({len(photos)} photos x {len(TARGETS)} targets = "
          f"{len(errors) // len(methods)} cases), and under 5% (the paper's 'within 5%'):")
    print(f"{'method':16}{'half the cases':>16}{'all cases':>11}{'reached':>9}{'5%: half':>10}{'5%: all':>9}")
    need5 = {m: [evals_to_reach(errs, 0.05) for (_, _, mm), errs in errors.items() if mm == m]
             for m in methods}
    for method in methods:
        reached = np.isfinite(need[method]).mean()
        print(f"{method:16}{_fmt(half_cases(need[method]), steps):>16}{_fmt(max(need[method]), steps):>11}"
              f"{reached:>9.0%}{_fmt(half_cases(need5[method]), steps):>10}"
              f"{_fmt(max(need5[method]), steps):>9}")
    print("(half the cases: the smallest n from which at least half of the cases stay under the tolerance)")
    print("\nevals_for_1pct " + " ".join(f"{m}={_fmt(half_cases(need[m]), steps)}" for m in methods))


def adaptive_cases(model, photos) -> list[tuple[int, float]]:
    """Print and return (evaluations, error) of the adaptive rule for every photo and target.

    ``adaptive_integrated_gradients_batch`` doubles a nested trapezoid rule (17, 33, 65, ... nodes, every
    earlier gradient reused) until |delta| <= 1% of |F(x) - F(x')|, per image.
    """
    from xai_helpers.methods.integrated_gradients import adaptive_integrated_gradients_batch

    print("\nadaptive rule (nested trapezoid doubling until |delta| <= 1%), black baseline:")
    print(f"{'photo':18}{'target':9}{'evaluations':>12}{'error':>9}{'seconds':>9}")
    out = []
    for target in TARGETS:
        for name, c, x in photos:
            start = time.perf_counter()
            r = adaptive_integrated_gradients_batch(model, x[None], [c], target=target)[0]
            seconds = time.perf_counter() - start
            out.append((r.steps, r.relative_delta))
            print(f"{name[:17]:18}{target:9}{r.steps:>12}{r.relative_delta:>9.2%}{seconds:>9.1f}", flush=True)
    evaluations = [n for n, _ in out]
    print(f"adaptive_evals median={int(np.median(evaluations))} max={max(evaluations)} "
          f"within_1pct={np.mean([e <= TOLERANCE for _, e in out]):.0%}")
    return out


def half_cases(values) -> float:
    """Return the smallest value that at least half of ``values`` are <= to (inf counts as largest)."""
    ordered = sorted(values)
    return ordered[(len(ordered) + 1) // 2 - 1]


def _fmt(n: float, steps) -> str:
    return f">{max(steps)}" if not np.isfinite(n) else f"{int(n)}"


if __name__ == "__main__":
    main()
