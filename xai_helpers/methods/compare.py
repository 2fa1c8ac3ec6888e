"""Numbers that say how alike two saliency maps are.

The metrics follow Ghorbani, Abid & Zou, "Interpretation of Neural Networks is Fragile", AAAI 2019:
top-k intersection (here as IoU of the top-k pixel sets), Spearman rank correlation, and the shift of
the map's centre of mass. Integrated Gradients attributions (H, W, C) are reduced to one 2-D map the same
way everywhere: ``to_2d(attr) = sum_c |attr_c|`` (the magnitude of evidence, sign ignored, as in the
assignment's figures and Ghorbani et al.).
"""
from __future__ import annotations

import hashlib
import threading
import warnings
from collections import OrderedDict

import numpy as np
from scipy import ndimage

from xai_helpers.classifier.checks import check_map

#: Default share of pixels that make up a map's "important region" (top 10%).
DEFAULT_TOP_FRACTION = 0.10


def to_2d(attributions: np.ndarray) -> np.ndarray:
    """Return an (H, W) importance map: ``sum_c |attr[..., c]|`` for (H, W, C), or |map| for (H, W)."""
    attributions = np.asarray(attributions, dtype=np.float64)
    if attributions.ndim == 3:
        return np.abs(attributions).sum(axis=-1)
    if attributions.ndim == 2:
        return np.abs(attributions)
    raise ValueError(f"attributions must be (H, W) or (H, W, C), got shape {attributions.shape}.")


def top_mask(saliency: np.ndarray, top_fraction: float = DEFAULT_TOP_FRACTION) -> np.ndarray:
    """Return the boolean mask of the ``top_fraction`` highest-valued pixels (ties broken by position).

    Known limitation: a map with fewer than ``top_fraction`` non-zero pixels (a Grad-CAM map with little
    positive evidence) fills its top set with zero-valued pixels taken in raster order, and two such maps
    then share those pixels, which inflates ``top_iou``. Rare for MobileNetV2's Grad-CAM, whose bilinear
    upsampling leaves most pixels positive (none of 180 maps of 60 study photos had fewer than 10%).
    """
    saliency = check_map(saliency)
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction!r}.")
    k = max(1, int(round(top_fraction * saliency.size)))
    flat = saliency.ravel()
    # The k-th largest value, in linear time; every pixel above it is in, and of those equal to it the first in
    # raster order (the stable order's tie-break), as many as are needed.
    threshold = np.partition(flat, flat.size - k)[flat.size - k]
    mask = flat > threshold
    ties = np.flatnonzero(flat == threshold)[:k - int(mask.sum())]
    mask[ties] = True
    return mask.reshape(saliency.shape)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Return the ranks (1..n, float64) of a 1-D array's values, ties sharing the mean of their positions.

    The same numbers as ``scipy.stats.rankdata(values)`` bit for bit: an average rank does not depend on the
    order of the tied values, so NumPy's faster unstable sort serves where scipy sorts stably.
    """
    return _ranks(np.asarray(values)).copy()


#: The last ``_RANKED_MAX`` arrays ranked, by content: a study photo's clean map is compared with a dozen
#: others, and each comparison would rank it again.
_RANKED: OrderedDict = OrderedDict()
_RANKED_MAX = 32
_RANKED_LOCK = threading.Lock()


def _ranks(values: np.ndarray) -> np.ndarray:
    """``average_ranks`` of ``values``, read-only, from ``_RANKED`` when the same values were ranked lately
    (a hit is checked element by element, so it is the same array, never a hash's guess)."""
    key = (values.dtype.str, values.shape, hashlib.sha1(np.ascontiguousarray(values), usedforsecurity=False).digest())
    with _RANKED_LOCK:
        hit = _RANKED.get(key)
        if hit is not None and np.array_equal(hit[0], values):
            _RANKED.move_to_end(key)
            return hit[1]
    order = np.argsort(values)
    ordered = values[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    counts = np.diff(starts, append=values.size)
    ranks = np.empty(values.size)
    ranks[order] = np.repeat(starts + 1 + (counts - 1) / 2, counts)
    ranks.flags.writeable = False
    with _RANKED_LOCK:
        _RANKED[key] = (values.copy(), ranks)
        if len(_RANKED) > _RANKED_MAX:
            _RANKED.popitem(last=False)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two 1-D arrays of finite values, neither constant: the Pearson
    correlation of their ``average_ranks``. The value ``scipy.stats.spearmanr(a, b).statistic`` gives, bit for
    bit (the same ranks, and the same element of the same correlation matrix), without scipy's stable sort."""
    ranked = np.column_stack((_ranks(np.asarray(a)), _ranks(np.asarray(b))))
    return float(np.corrcoef(ranked, rowvar=False)[1, 0])


def center_of_mass(saliency: np.ndarray) -> tuple[float, float]:
    """Return the (row, column) centre of mass of a non-negative map, in pixels (map centre if all zero)."""
    saliency = check_map(saliency)
    if saliency.sum() <= 0:
        return ((saliency.shape[0] - 1) / 2.0, (saliency.shape[1] - 1) / 2.0)
    row, col = ndimage.center_of_mass(np.maximum(saliency, 0.0))
    return float(row), float(col)


def compare_maps(a: np.ndarray, b: np.ndarray,
                 top_fraction: float = DEFAULT_TOP_FRACTION) -> dict[str, float]:
    """Return how alike two maps of one image are.

    * ``top_iou``: |T_a & T_b| / |T_a | T_b| for the top-``top_fraction`` pixel sets T (1 = same region);
    * ``spearman``: Spearman rank correlation of all pixel values (1 = same ranking);
    * ``com_shift_px``: Euclidean distance between the centres of mass, in pixels of the 224 x 224 image.

    (H, W, C) attributions are reduced with ``to_2d`` first. A measure that a map cannot define is NaN,
    with a ``RuntimeWarning``, never a score: a constant map (e.g. an all-zero Grad-CAM) has no top region
    and no ranking, so ``top_iou`` and ``spearman`` are NaN; a map with no positive mass has no centre of
    mass, so ``com_shift_px`` is NaN (a constant positive map's centre is the image centre).
    """
    a2, b2 = (to_2d(m) if np.ndim(m) == 3 else check_map(m) for m in (a, b))
    if a2.shape != b2.shape:
        raise ValueError(f"The maps must have the same shape, got {a2.shape} and {b2.shape}.")
    mask_a, mask_b = top_mask(a2, top_fraction), top_mask(b2, top_fraction)
    constant = [name for name, m in (("a", a2), ("b", b2)) if np.ptp(m) == 0]
    massless = [name for name, m in (("a", a2), ("b", b2)) if np.maximum(m, 0.0).sum() <= 0]
    nan = float("nan")
    if constant:
        iou = rho = nan
    else:
        iou = mask_iou(mask_a, mask_b)
        rho = spearman(a2.ravel(), b2.ravel())
    shift = nan if massless else float(np.hypot(*np.subtract(center_of_mass(a2), center_of_mass(b2))))
    if constant or massless:
        reasons = []
        if constant:
            reasons.append(f"map {' and '.join(constant)} {'is' if len(constant) == 1 else 'are'} constant")
        if massless:
            reasons.append(f"map {' and '.join(massless)} {'has' if len(massless) == 1 else 'have'} no "
                           f"positive mass")
        undefined = (["top_iou", "spearman"] if constant else []) + (["com_shift_px"] if massless else [])
        verb = "is" if len(undefined) == 1 else "are"
        warnings.warn(f"compare_maps: {' and '.join(reasons)}, so {', '.join(undefined)} {verb} undefined "
                      f"(NaN).", RuntimeWarning, stacklevel=2)
    return {"top_iou": iou, "spearman": rho, "com_shift_px": shift}


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Return |a & b| / |a | b| of two boolean masks of one shape (``compare_maps``' ``top_iou`` of two top sets)."""
    return float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())


def mass_fraction(saliency: np.ndarray, region: np.ndarray) -> float:
    """Return the share of a non-negative map's total mass that lies inside the boolean ``region``."""
    saliency = np.maximum(check_map(saliency), 0.0)
    region = np.asarray(region, dtype=bool)
    if region.shape != saliency.shape:
        raise ValueError(f"region must have the map's shape {saliency.shape}, got {region.shape}.")
    total = saliency.sum()
    return float(saliency[region].sum() / total) if total > 0 else float("nan")
