"""Where a set of pixels lies in the photo: on the object or the background, on edges or flat regions.

* ``share_inside(pixels, region)``: the share of a pixel set (a map's top pixels, the smallest flipping
  region) that lies inside a region (an object mask, the edge pixels). Against the region's own share of
  the photo it is an *enrichment* ``share_inside / region.mean()``: 1 is chance, above 1 the pixels crowd
  into the region, below 1 they avoid it.
* ``edge_mask(x)``: the mask-free axis, every photo has one: the top ``EDGE_FRACTION`` of the pixels by
  the local gradient magnitude of the grey photo (Sobel; the photo's edges and texture), the rest flat.
* ``coarsen(map, grid)``: a map averaged over a ``grid`` x ``grid`` partition and spread back over its
  cells, e.g. the attack attribution at Grad-CAM's 7 x 7 resolution, so the two rank pixels with the same
  coarseness.
"""
from __future__ import annotations

import numpy as np

from xai_helpers.classifier.data import deprocess
from xai_helpers.methods.compare import top_mask

#: Share of the pixels that count as edges: the top decile of the local gradient magnitude.
EDGE_FRACTION = 0.10


def share_inside(pixels: np.ndarray, region: np.ndarray) -> float:
    """The share of the ``True`` pixels of ``pixels`` (H, W) that lie inside ``region`` (H, W); NaN for none."""
    pixels, region = np.asarray(pixels, dtype=bool), np.asarray(region, dtype=bool)
    if pixels.shape != region.shape:
        raise ValueError(f"pixels {pixels.shape} and region {region.shape} must have one shape.")
    count = int(pixels.sum())
    return float((pixels & region).sum() / count) if count else float("nan")


def edge_strength(x: np.ndarray) -> np.ndarray:
    """The Sobel gradient magnitude (H, W) of the grey version of ``x`` (H, W, 3) in [-1, 1]."""
    from scipy import ndimage

    grey = deprocess(x).mean(axis=-1).astype(np.float64)
    return np.hypot(ndimage.sobel(grey, axis=0, mode="nearest"), ndimage.sobel(grey, axis=1, mode="nearest"))


def edge_mask(x: np.ndarray, fraction: float = EDGE_FRACTION) -> np.ndarray:
    """The photo's edge pixels (H, W, bool): the top ``fraction`` by ``edge_strength``."""
    return top_mask(edge_strength(x), fraction)


def coarsen(saliency: np.ndarray, grid: int = 7) -> np.ndarray:
    """``saliency`` (H, W) averaged over a ``grid`` x ``grid`` partition, each cell's mean spread over it."""
    saliency = np.asarray(saliency, dtype=np.float64)
    height, width = saliency.shape
    rows = np.minimum(np.arange(height) * grid // height, grid - 1)
    cols = np.minimum(np.arange(width) * grid // width, grid - 1)
    cells = np.zeros((grid, grid))
    counts = np.zeros((grid, grid))
    np.add.at(cells, (rows[:, None], cols[None, :]), saliency)
    np.add.at(counts, (rows[:, None], cols[None, :]), 1.0)
    return (cells / counts)[rows[:, None], cols[None, :]]


__all__ = ["EDGE_FRACTION", "coarsen", "edge_mask", "edge_strength", "share_inside"]
