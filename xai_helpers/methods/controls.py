"""Controls of the same kind: random regions with a mask's area *and* shape, and permutation p-values.

A region that carries the attack's effect must be compared with regions that differ from it only in
where they lie. Scattered random pixels (``interventions.random_masks``) match the area but not the shape:
a map's top 10% is a few contiguous blobs, and a blob of perturbation may act differently from the same
number of scattered pixels. Two controls that match the shape as well:

* **moved copies** (``moved_copies``): the mask itself, rotated by a multiple of 90 degrees and/or mirrored,
  then shifted to a random place inside the image; exactly the mask's pixel count and shape, optionally
  required to lie off (``avoid``) or on (``within``) a given area, e.g. on the animal for "front vs tail";
* **smooth noise** (``smooth_noise_masks``): Gaussian white noise blurred with ``sigma`` and thresholded at
  its top-``fraction`` quantile, so exactly the area, with blobs whose smoothness ``matched_sigma`` tunes to
  the mask's boundary length (the number of pixel edges between inside and outside).

The p-value of a region against n controls is ``(1 + #{controls >= region}) / (n + 1)`` (Phipson &
Smyth, "Permutation P-values Should Never Be Zero", 2010); 199 or more controls let it reach 0.005.
Corrections across a family of tests are ``summary.adjust_pvalues`` (Holm, or Benjamini-Hochberg).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Controls per region by default: enough for a permutation p-value of 1/201 < 0.01.
DEFAULT_CONTROLS = 200


def _check_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or not mask.any():
        raise ValueError("mask must be a non-empty 2-D boolean array.")
    return mask


def moved_copies(mask: np.ndarray, n: int = DEFAULT_CONTROLS, seed: int = 0, avoid: np.ndarray | None = None,
                 within: np.ndarray | None = None, max_tries: int = 100_000) -> np.ndarray:
    """Return ``n`` seeded copies (n, H, W) of ``mask``, each rotated by k x 90 degrees, maybe mirrored, and
    shifted to a random place inside the image: the same pixel count and shape, elsewhere.

    ``avoid``: no copy shares a pixel with it; ``within``: every pixel of a copy lies inside it. Raises
    ``ValueError`` when fewer than ``n`` copies fit in ``max_tries`` draws.
    """
    mask = _check_mask(mask)
    rows, cols = np.nonzero(mask)
    crop = mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    shapes = [np.rot90(variant, k) for variant in (crop, crop[:, ::-1]) for k in range(4)]
    height, width = mask.shape
    avoid = None if avoid is None else np.asarray(avoid, dtype=bool)
    outside = None if within is None else ~np.asarray(within, dtype=bool)
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    for _ in range(max_tries):
        shape = shapes[int(rng.integers(len(shapes)))]
        if shape.shape[0] > height or shape.shape[1] > width:
            continue
        r = int(rng.integers(0, height - shape.shape[0] + 1))
        c = int(rng.integers(0, width - shape.shape[1] + 1))
        placed = np.zeros_like(mask)
        placed[r:r + shape.shape[0], c:c + shape.shape[1]] = shape
        if (avoid is not None and np.any(placed & avoid)) or (outside is not None and np.any(placed & outside)):
            continue
        out.append(placed)
        if len(out) == n:
            return np.stack(out)
    raise ValueError(f"Only {len(out)} of {n} moved copies of the mask fit where they must lie; use a smaller "
                     f"mask or a larger allowed area.")


def distinct_copies(mask: np.ndarray, n: int = DEFAULT_CONTROLS, seed: int = 0, avoid: np.ndarray | None = None,
                    within: np.ndarray | None = None) -> np.ndarray:
    """Return distinct copies (k, H, W) of ``mask``, turned by k x 90 degrees, maybe mirrored, and shifted,
    that lie inside ``within`` and share no pixel with ``avoid``: all of them when at most ``n`` exist (an
    exact test against every placement), otherwise ``n`` drawn without replacement (seeded).

    Unlike ``moved_copies``, no placement is counted twice, so a p-value over the copies cannot claim more
    resolution than the placements allow. The valid offsets of each orientation are found at once: the
    number of forbidden pixels under a placed copy is a correlation of the forbidden area with the shape.
    Raises ``ValueError`` when no copy fits.
    """
    from scipy.signal import fftconvolve

    mask = _check_mask(mask)
    rows, cols = np.nonzero(mask)
    crop = mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    shapes: list[np.ndarray] = []
    for variant in (crop, crop[:, ::-1]):
        for k in range(4):
            shape = np.ascontiguousarray(np.rot90(variant, k))
            if not any(s.shape == shape.shape and np.array_equal(s, shape) for s in shapes):
                shapes.append(shape)  # a symmetric mask has fewer than 8 different orientations
    forbidden = np.zeros(mask.shape, dtype=bool)
    if avoid is not None:
        forbidden |= np.asarray(avoid, dtype=bool)
    if within is not None:
        forbidden |= ~np.asarray(within, dtype=bool)
    candidates = []  # (orientation, row, column) of every valid placement
    for i, shape in enumerate(shapes):
        if shape.shape[0] > mask.shape[0] or shape.shape[1] > mask.shape[1]:
            continue
        hits = fftconvolve(forbidden.astype(np.float64), shape[::-1, ::-1].astype(np.float64), mode="valid")
        for r, c in np.argwhere(hits < 0.5):
            candidates.append((i, int(r), int(c)))
    if not candidates:
        raise ValueError("No copy of the mask fits where it must lie; use a smaller mask or a larger allowed area.")
    if len(candidates) > n:
        chosen = np.random.default_rng(seed).choice(len(candidates), size=n, replace=False)
        candidates = [candidates[j] for j in np.sort(chosen)]
    out = np.zeros((len(candidates), *mask.shape), dtype=bool)
    for j, (i, r, c) in enumerate(candidates):
        out[j, r:r + shapes[i].shape[0], c:c + shapes[i].shape[1]] = shapes[i]
    return out


def distinct_masks(masks: np.ndarray) -> np.ndarray:
    """Return the different masks among ``masks`` (n, H, W), each once, in a fixed (sorted) order.

    Seeded draws (e.g. ``interventions.random_placements``) can repeat a placement; a repeated one is one
    control, not several, so that a p-value over the controls claims no more resolution than they have.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3 or len(masks) == 0:
        raise ValueError(f"masks must be a non-empty (n, H, W) stack, got shape {masks.shape}.")
    return np.unique(masks.reshape(len(masks), -1), axis=0).reshape(-1, *masks.shape[1:])


def boundary_length(mask: np.ndarray) -> int:
    """Return the number of pixel edges between the mask and its outside (4-neighbours; a blob's perimeter)."""
    mask = np.asarray(mask, dtype=bool)
    return int(np.sum(mask[1:] != mask[:-1]) + np.sum(mask[:, 1:] != mask[:, :-1]))


def smooth_noise_masks(shape: tuple[int, int], fraction: float, n: int = DEFAULT_CONTROLS, sigma: float = 8.0,
                       seed: int = 0) -> np.ndarray:
    """Return ``n`` seeded masks (n, H, W) of exactly ``round(fraction * H * W)`` pixels: the top pixels of
    Gaussian white noise blurred with ``sigma`` pixels (ties broken by position)."""
    from scipy.ndimage import gaussian_filter

    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}.")
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0, got {sigma!r}.")
    height, width = shape
    k = max(1, int(round(fraction * height * width)))
    rng = np.random.default_rng(seed)
    out = np.zeros((n, height, width), dtype=bool)
    for i in range(n):
        noise = gaussian_filter(rng.standard_normal((height, width)), sigma, mode="wrap") if sigma > 0 else \
            rng.standard_normal((height, width))
        out[i].ravel()[np.argsort(-noise.ravel(), kind="stable")[:k]] = True
    return out


def matched_sigma(mask: np.ndarray, sigmas: Sequence[float] = (1, 2, 4, 6, 8, 12, 16, 24, 32), n: int = 8,
                  seed: int = 0) -> float:
    """Return the blur (from ``sigmas``) whose smooth-noise masks of the mask's area have the boundary length
    closest to the mask's own (median over ``n`` seeded masks)."""
    mask = _check_mask(mask)
    target = boundary_length(mask)
    lengths = [np.median([boundary_length(m) for m in smooth_noise_masks(mask.shape, float(mask.mean()), n, s,
                                                                         seed)]) for s in sigmas]
    return float(sigmas[int(np.argmin(np.abs(np.asarray(lengths) - target)))])


def permutation_pvalue(observed: float, controls: np.ndarray, larger: bool = True) -> float:
    """Return ``(1 + #{controls at least as extreme}) / (n + 1)``: the chance that a control does as well.

    ``larger``: a large value is extreme (e.g. a share of the effect kept); else a small one."""
    controls = np.asarray(controls, dtype=np.float64)
    if controls.ndim != 1 or controls.size == 0 or not np.all(np.isfinite(controls)):
        raise ValueError("controls must be a non-empty 1-D array of finite values.")
    extreme = controls >= observed if larger else controls <= observed
    return float((1 + np.sum(extreme)) / (controls.size + 1))


__all__ = ["DEFAULT_CONTROLS", "boundary_length", "distinct_copies", "distinct_masks", "matched_sigma",
           "moved_copies", "permutation_pvalue", "smooth_noise_masks"]
