"""Summaries of a result table's columns with their spread: bootstrap intervals and binned quartiles.

Pure functions: NumPy arrays in, numbers out.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SEED = 0


def bootstrap_ci(values: np.ndarray, statistic=np.median, n_boot: int = 2000, level: float = 0.95,
                 seed: int = SEED) -> tuple[float, float]:
    """Return the percentile bootstrap interval of ``statistic`` over ``values`` (NaNs dropped, seeded)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats_ = np.array([statistic(rng.choice(values, size=len(values))) for _ in range(n_boot)])
    tail = (1 - level) / 2 * 100
    return float(np.percentile(stats_, tail)), float(np.percentile(stats_, 100 - tail))


def binned(x: np.ndarray, y: np.ndarray, edges: Sequence[float]) -> list[dict[str, float]]:
    """Return per-bin count, median and quartiles of ``y`` for ``x`` binned by ``edges`` (right-closed last)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    out = []
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        last = k == len(edges) - 2
        inside = (x >= lo) & ((x <= hi) if last else (x < hi)) & np.isfinite(y)
        sel = y[inside]
        q1, med, q3 = (np.percentile(sel, [25, 50, 75]) if len(sel) else (np.nan,) * 3)
        out.append({"lo": float(lo), "hi": float(hi), "count": int(inside.sum()), "median": float(med),
                    "q1": float(q1), "q3": float(q3)})
    return out


__all__ = ["binned", "bootstrap_ci"]


def paired_difference(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, level: float = 0.95,
                      seed: int = SEED) -> dict[str, float]:
    """Return the mean of the paired differences ``a - b`` with its percentile bootstrap interval.

    Row i of ``a`` and ``b`` come from the same photo (e.g. a map's deletion AUC and the random map's);
    pairs with a missing value are dropped. Returns ``mean``, ``ci_low``, ``ci_high``, ``n``,
    ``share_positive`` (share of photos with a > b) and ``p``, the two-sided p-value of a one-sample t-test
    of the differences against 0 (the test a family correction, ``family_verdicts``, adjusts; unlike a
    bootstrap p-value its resolution is not bounded by ``n_boot``).
    """
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a and b must be paired (same shape), got {a.shape} and {b.shape}.")
    diff = (a - b)[np.isfinite(a) & np.isfinite(b)]
    low, high = bootstrap_ci(diff, np.mean, n_boot, level, seed)
    if len(diff) >= 2 and np.ptp(diff) > 0:
        p = float(stats.ttest_1samp(diff, 0.0).pvalue)
    else:  # no spread: the difference is exactly its mean, nonzero or not
        p = float("nan") if len(diff) < 2 else (0.0 if diff[0] != 0 else 1.0)
    return {"mean": float(diff.mean()) if len(diff) else float("nan"), "ci_low": low, "ci_high": high,
            "n": int(len(diff)), "share_positive": float((diff > 0).mean()) if len(diff) else float("nan"),
            "p": p}


__all__ += ["paired_difference"]


def verdict(low: float, high: float, above: str, below: str, neither: str) -> str:
    """Return the words for an interval's verdict: ``above`` if it lies above 0, ``below`` if below 0,
    else ``neither`` (the effect cannot be told from none at this sample size; NaN bounds give ``neither``)."""
    if np.isfinite(low) and low > 0:
        return above
    if np.isfinite(high) and high < 0:
        return below
    return neither


__all__ += ["verdict"]


def proportion_ci(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Return the Wilson score interval of a proportion ``successes / n``.

    Unlike a percentile bootstrap it does not collapse to a point at 0% or 100% (a bootstrap of 40 out of
    40 gives [1, 1]; Wilson gives [0.91, 1]).
    """
    from scipy import stats

    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes} of {n}.")
    interval = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(interval.low), float(interval.high)


def partial_spearman(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """Return the Spearman correlation of ``x`` and ``y`` with ``z`` held fixed (partial rank correlation).

    All three are rank-transformed; the linear effect of z's ranks is removed from x's and y's, and the
    residuals are correlated. Used to tell two correlated covariates apart (e.g. the runner-up share and
    the confidence, which move together). Rows with a missing value are dropped.
    """
    from scipy import stats

    x, y, z = (np.asarray(v, dtype=np.float64) for v in (x, y, z))
    keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    if keep.sum() < 4:
        raise ValueError(f"partial_spearman needs at least 4 complete rows, got {int(keep.sum())}.")
    rx, ry, rz = (stats.rankdata(v[keep]) for v in (x, y, z))
    design = np.column_stack([np.ones_like(rz), rz])
    residual = [r - design @ np.linalg.lstsq(design, r, rcond=None)[0] for r in (rx, ry)]
    return float(np.corrcoef(*residual)[0, 1])


__all__ += ["partial_spearman", "proportion_ci"]


#: The corrections ``adjust_pvalues`` offers, with statsmodels' names for them.
CORRECTIONS = {"holm": "holm", "bh": "fdr_bh"}


def adjust_pvalues(pvalues: Sequence[float], method: str = "holm", alpha: float = 0.05
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Return (adjusted p-values, rejected at ``alpha``) for a family of tests.

    ``holm``: Holm's step-down correction (Holm, "A Simple Sequentially Rejective Multiple Test Procedure",
    Scand. J. Statist. 1979), which bounds the chance of any false rejection (family-wise error) at
    ``alpha``: the i-th smallest of m p-values is multiplied by m - i + 1, then made non-decreasing.
    ``bh``: Benjamini & Hochberg (JRSS B 1995), which bounds the expected share of false rejections (false
    discovery rate). Computed by ``statsmodels.stats.multitest.multipletests``.
    """
    from statsmodels.stats.multitest import multipletests

    if method not in CORRECTIONS:
        raise ValueError(f"method must be one of {sorted(CORRECTIONS)}, got {method!r}.")
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("pvalues must be a non-empty 1-D array of numbers in [0, 1].")
    reject, adjusted, _, _ = multipletests(p, alpha=alpha, method=CORRECTIONS[method])
    return adjusted, reject


__all__ += ["CORRECTIONS", "adjust_pvalues"]


def family_verdicts(tests: dict, method: str = "holm", alpha: float = 0.05) -> dict:
    """Return, for each test of one family (``{name: paired_difference(...)}``), its corrected verdict.

    The p-values (``p``) are adjusted together by ``adjust_pvalues(method)``; a test whose p-value is
    missing (fewer than two photos) counts as not rejected. Each result holds ``p_adjusted`` and
    ``direction``: +1 (the difference is above 0 after correction), -1 (below) or 0 (neither).
    """
    names = list(tests)
    if not names:
        raise ValueError("family_verdicts needs at least one test, got none.")
    raw = [tests[n]["p"] if np.isfinite(tests[n]["p"]) else 1.0 for n in names]
    adjusted, reject = adjust_pvalues(raw, method, alpha)
    return {n: {"p_adjusted": float(q),
                "direction": int(np.sign(tests[n]["mean"])) if r and np.isfinite(tests[n]["mean"]) else 0}
            for n, q, r in zip(names, adjusted, reject)}


def corrected_verdict(result: dict, above: str, below: str, neither: str) -> str:
    """The words for one of ``family_verdicts``' results: ``above``, ``below`` or ``neither``."""
    return {1: above, -1: below}.get(result["direction"], neither)


__all__ += ["corrected_verdict", "family_verdicts"]
