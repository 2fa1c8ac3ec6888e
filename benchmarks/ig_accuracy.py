"""Completeness error of Integrated Gradients vs the number of gradient evaluations, per quadrature rule.

For each photo (``common.PHOTO_CLASSES``: whiptail, tabby, golden retriever, sports car, explained for its
own class), each target (softmax probability, logit), each rule (right Riemann = the assignment's formula,
trapezoid, Gauss-Legendre) and each number of evaluations n, the relative completeness error

    |delta| / |F(x) - F(x')|,   delta = sum_i IG_i - (F(x) - F(x'))       (Sundararajan et al. 2017)

with the black baseline. "Evaluations to reach 1%" for one photo and target is the smallest n of the grid
from which every larger n of the grid stays at or below 1% (the error of MobileNetV2's non-smooth path
function is not monotone in n, so the first n under 1% alone would flatter a rule).

Last line: ``evals_for_1pct riemann_right=N trapezoid=N gauss_legendre=N``: for each rule, the smallest
n of the grid from which at least half of the photo x target cases stay under 1% (the table before it
also gives the worst case, and the same for 5%); ``>MAX`` when that never happens within the grid.

    python benchmarks/ig_accuracy.py [--steps 16 32 64 128 256 512] [--photos 4]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import common

METHODS = ("riemann_right", "trapezoid", "gauss_legendre")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512],
                        help="numbers of gradient evaluations to try")
    parser.add_argument("--photos", type=int, default=len(common.PHOTO_CLASSES),
                        help=f"how many of the {len(common.PHOTO_CLASSES)} benchmark photos")
    parser.add_argument("--adaptive-only", action="store_true",
                        help="only the adaptive rule (nested trapezoid doubling to 1%%), ~1 min")
    args = parser.parse_args()

    import xai_helpers as xh

    print(common.machine())
    model = xh.load_model()
    photos = common.photos(args.photos)
    steps = sorted(args.steps)
    adaptive = adaptive_cases(model, photos)
    if args.adaptive_only:
        return
    errors = {}  # (photo, target, method) -> {n: relative error}
    start = time.perf_counter()
    for target in TARGETS:
        for method in METHODS:
            for n in steps:
                # One photo per call: the package's path loop may hold several chunks of activations at
                # once, so memory grows with the number of path points in one call.
                for name, c, x in photos:
                    r = xh.integrated_gradients(model, x, c, target=target, steps=n, method=method)
                    errors.setdefault((name, target, method), {})[n] = r.relative_delta
            print(f"  {target:8}{method:16}done ({time.perf_counter() - start:.0f} s)", flush=True)

    print("\n|delta| / |F(x) - F(x')| (black baseline), by gradient evaluations n:")
    print(f"{'photo':18}{'target':9}{'method':16}" + "".join(f"{n:>8}" for n in steps) + f"{'to 1%':>8}")
    need = {m: [] for m in METHODS}
    for (name, target, method), errs in errors.items():
        n_needed = evals_to_reach(errs)
        need[method].append(n_needed)
        print(f"{name[:17]:18}{target:9}{method:16}" + "".join(f"{errs[n]:>8.2%}" for n in steps)
              + f"{_fmt(n_needed, steps):>8}")

    print(f"\nevaluations to stay under 1% ({len(photos)} photos x {len(TARGETS)} targets = "
          f"{len(need['trapezoid'])} cases), and under 5% (the paper's 'within 5%'):")
    print(f"{'method':16}{'half the cases':>16}{'all cases':>11}{'reached':>9}{'5%: half':>10}{'5%: all':>9}")
    need5 = {m: [evals_to_reach(errs, 0.05) for (_, _, mm), errs in errors.items() if mm == m]
             for m in METHODS}
    for method in METHODS:
        reached = np.isfinite(need[method]).mean()
        print(f"{method:16}{_fmt(half_cases(need[method]), steps):>16}{_fmt(max(need[method]), steps):>11}"
              f"{reached:>9.0%}{_fmt(half_cases(need5[method]), steps):>10}"
              f"{_fmt(max(need5[method]), steps):>9}")
    print("(half the cases: the smallest n from which at least half of the cases stay under the tolerance)")
    print("\nevals_for_1pct " + " ".join(f"{m}={_fmt(half_cases(need[m]), steps)}" for m in METHODS))


def adaptive_cases(model, photos) -> list[tuple[int, float]]:
    """Print and return (evaluations, error) of the adaptive rule for every photo and target.

    ``adaptive_integrated_gradients_batch`` doubles a nested trapezoid rule (17, 33, 65, ... nodes, every
    earlier gradient reused) until |delta| <= 1% of |F(x) - F(x')|, per image.
    """
    from xai_helpers.integrated_gradients import adaptive_integrated_gradients_batch

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
