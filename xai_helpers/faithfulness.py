"""Faithfulness of a saliency map: deletion and insertion curves (Petsiuk, Das & Saenko, "RISE: Randomized
Input Sampling for Explanation of Black-box Models", BMVC 2018).

Deletion removes the pixels a map ranks first (here: replaces them by the blurred photo) and watches the
class score fall; insertion puts them back into the blurred photo and watches it rise. A faithful map gives
a fast fall (small deletion AUC) and a fast rise (large insertion AUC).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .model import probabilities


def deletion_insertion_images(x: np.ndarray, saliency: np.ndarray, steps: int,
                              blur_sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Return the deletion and insertion image sequences (each (steps + 1, H, W, C)) of one map.

    Deletion: the most important pixels (by ``saliency``) are replaced by the blurred photo, ``1/steps``
    of the pixels at a time, starting from the photo. Insertion: the reverse, starting from the blurred
    photo and putting back the most important pixels first (Petsiuk et al. 2018, with blur as the
    "removed" value for both, so that no sharp edges of a black mask are introduced).
    """
    blurred = ndimage.gaussian_filter(x, sigma=(blur_sigma, blur_sigma, 0), mode="nearest")
    order = np.argsort(-np.asarray(saliency, dtype=np.float64).ravel(), kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    rank = rank.reshape(saliency.shape)
    cut = np.linspace(0, order.size, steps + 1).round().astype(int)
    removed = np.stack([(rank < c) for c in cut])[..., None]  # (steps+1, H, W, 1)
    deletion = np.where(removed, blurred[None], x[None]).astype(np.float32)
    insertion = np.where(removed, x[None], blurred[None]).astype(np.float32)
    return deletion, insertion


def curve_auc(scores: np.ndarray) -> float:
    """Return the area under a curve sampled at equally spaced fractions 0..1 (trapezoid rule)."""
    scores = np.asarray(scores, dtype=np.float64)
    return float(np.trapezoid(scores, dx=1.0 / (len(scores) - 1)))


def class_probability_curves(model, images: np.ndarray, classes: Sequence[int],
                              per_map: int) -> np.ndarray:
    """Return p(class) of each curve image, reshaped to (maps, per_map)."""
    probs = probabilities(model, images)
    cls = np.repeat(np.asarray(classes), per_map)
    return probs[np.arange(len(cls)), cls].reshape(-1, per_map)


__all__ = ["class_probability_curves", "curve_auc", "deletion_insertion_images"]
