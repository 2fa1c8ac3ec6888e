"""Faithfulness of a saliency map: deletion and insertion curves (Petsiuk, Das & Saenko, "RISE: Randomized
Input Sampling for Explanation of Black-box Models", BMVC 2018).

Deletion removes the pixels a map ranks first (here: replaces them by the blurred photo) and watches the
class score fall; insertion puts them back into the blurred photo and watches it rise. A faithful map gives
a fast fall (small deletion AUC) and a fast rise (large insertion AUC).
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from xai_helpers.classifier.forward import probabilities, probabilities_and_logits


def deletion_insertion_images(x: np.ndarray, saliency: np.ndarray, steps: int,
                              blur_sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Return the deletion and insertion image sequences (each (steps + 1, H, W, C)) of one map.

    Deletion: the most important pixels (by ``saliency``) are replaced by the blurred photo, ``1/steps``
    of the pixels at a time, starting from the photo. Insertion: the reverse, starting from the blurred
    photo and putting back the most important pixels first (Petsiuk et al. 2018, with blur as the
    "removed" value for both, so that no sharp edges of a black mask are introduced).
    """
    return _sequences(x, _blurred(x, blur_sigma), saliency, steps)


def _blurred(x: np.ndarray, blur_sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(x, sigma=(blur_sigma, blur_sigma, 0), mode="nearest")


def _sequences(x: np.ndarray, blurred: np.ndarray, saliency: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``deletion_insertion_images`` of a photo whose blurred copy is made already (one per photo, not per map)."""
    order = np.argsort(-np.asarray(saliency, dtype=np.float64).ravel(), kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    rank = rank.reshape(saliency.shape)
    cut = np.linspace(0, order.size, steps + 1).round().astype(int)
    removed = (rank[None] < cut[:, None, None])[..., None]  # (steps+1, H, W, 1)
    deletion = np.where(removed, blurred[None], x[None]).astype(np.float32, copy=False)
    insertion = np.where(removed, x[None], blurred[None]).astype(np.float32, copy=False)
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


# ------------------------------------------------------------------------------------------------------
# ROAD: remove and debias (Rong, Leemann, Borisov, Kasneci & Kasneci, "A Consistent and Efficient
# Evaluation Strategy for Attribution Methods", ICML 2022)

#: Neighbour weights of the noisy linear imputation (ROAD's): 1/6 for the 4 direct neighbours, 1/12 for
#: the 4 diagonal ones, so that a removed pixel is the weighted mean of its neighbours.
_NEIGHBOURS = ((-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
               (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12))
#: Noise added to imputed pixels, in model units (ROAD's 0.01 on a [0, 1] scale is 0.02 on [-1, 1]).
ROAD_NOISE = 0.02


def noisy_linear_imputation(x: np.ndarray, removed: np.ndarray, noise: float = ROAD_NOISE,
                            seed: int | Sequence[int] = 0) -> np.ndarray:
    """Return ``x`` (H, W, C) with the ``removed`` pixels (H, W boolean) replaced by ROAD's imputation.

    Each removed pixel p takes the weighted mean of its 8 neighbours, ``v_p = sum_q w_pq v_q / sum_q w_pq``
    (``w`` = 1/6 direct, 1/12 diagonal; neighbours outside the image left out), where a removed neighbour
    contributes its own unknown value: one sparse linear system per channel. Seeded Gaussian noise of
    standard deviation ``noise`` is then added to the imputed pixels, so that the *shape* of the removed
    region carries no information the model could read (ROAD's debiasing). Kept pixels are unchanged.
    With every pixel removed there is no boundary to interpolate from: the channel means of ``x`` are used.
    """
    x = np.asarray(x, dtype=np.float64)
    removed = np.asarray(removed, dtype=bool)
    if removed.shape != x.shape[:2]:
        raise ValueError(f"removed must have the image's shape {x.shape[:2]}, got {removed.shape}.")
    out = x.copy()
    n = int(removed.sum())
    if n == 0:
        return out.astype(np.float32)
    rng = np.random.default_rng(seed)
    if n == removed.size:
        out[:] = x.reshape(-1, x.shape[-1]).mean(axis=0)
    else:
        out[removed] = _solve_imputation(*_imputation_system(x, removed))
    out[removed] += rng.normal(0.0, noise, (n, x.shape[-1])) if noise > 0 else 0.0
    return np.clip(out, -1.0, 1.0).astype(np.float32)


#: The neighbours that come before a pixel in raster order, in that order: the upper triangle's rows.
_EARLIER = ((-1, -1), (-1, 0), (-1, 1), (0, -1))


def _imputation_system(x: np.ndarray, removed: np.ndarray):
    """Return the imputation's system for the ``removed`` pixels (numbered in raster order): the upper
    triangle of its matrix (CSC, sorted rows; what the solver reads) and its right-hand sides (n, C).

    Row p: ``(sum_q w_pq) v_p - sum_{q removed} w_pq v_q = sum_{q kept} w_pq x_q`` over p's neighbours q
    inside the image. Built from shifted windows of the whole image, each neighbour's terms added in
    ``_NEIGHBOURS`` order.
    """
    from scipy import sparse

    (height, width), n = removed.shape, int(removed.sum())
    index = np.full((height + 2, width + 2), -1)
    index[1:-1, 1:-1][removed] = np.arange(n)
    padded = np.zeros((height + 2, width + 2, x.shape[-1]))
    padded[1:-1, 1:-1] = x
    inside = np.zeros((height + 2, width + 2), bool)
    inside[1:-1, 1:-1] = True
    diagonal, rhs, neighbour = np.zeros(n), np.zeros((n, x.shape[-1])), {}

    def window(dy, dx):
        return slice(1 + dy, height + 1 + dy), slice(1 + dx, width + 1 + dx)

    for dy, dx, w in _NEIGHBOURS:
        q_inside, neighbour[dy, dx] = inside[window(dy, dx)][removed], index[window(dy, dx)][removed]
        diagonal[q_inside] += w
        known = q_inside & (neighbour[dy, dx] < 0)
        rhs[known] += w * padded[window(dy, dx)][removed][known]
    weight = {(dy, dx): w for dy, dx, w in _NEIGHBOURS}
    rows = np.column_stack([neighbour[o] for o in _EARLIER] + [np.arange(n)])
    values = np.column_stack([np.full(n, -weight[o]) for o in _EARLIER] + [diagonal])
    present = rows >= 0
    indptr = np.concatenate(([0], np.cumsum(present.sum(axis=1))))
    return sparse.csc_matrix((values[present], rows[present], indptr), shape=(n, n)), rhs


def _solve_imputation(upper, rhs: np.ndarray) -> np.ndarray:
    """Return the solution of the imputation's sparse system, one column per channel, from the upper
    triangle of its matrix.

    The matrix is symmetric (w_pq = w_qp) and, with at least one kept pixel, positive definite (diagonally
    dominant, strictly so next to a kept pixel), so an LDL^T factorisation without pivoting is stable: QDLDL
    (Stellato, Goulart & Banjac, the OSQP project's solver) with its approximate-minimum-degree ordering,
    factorised once for all channels. It uses the symmetry that SuperLU's LU ignores (the two compared:
    benchmarks/README.md) and releases Python's global lock, so ``_imputed``'s threads overlap.
    """
    import qdldl

    solver = qdldl.Solver(upper, upper=True)
    return np.column_stack([solver.solve(np.ascontiguousarray(rhs[:, c])) for c in range(rhs.shape[1])])


def road_images(x: np.ndarray, saliency: np.ndarray, fractions: Sequence[float], most_relevant_first: bool = True,
                noise: float = ROAD_NOISE, seed: int | Sequence[int] = 0) -> np.ndarray:
    """Return ROAD's images (len(fractions), H, W, C): the top (MoRF) or bottom (LeRF) fraction f of the
    pixels by ``saliency`` removed and imputed by ``noisy_linear_imputation`` (ties by raster position)."""
    return _imputed(x, _road_masks(saliency, fractions, most_relevant_first), noise, seed)


def _road_masks(saliency: np.ndarray, fractions: Sequence[float], most_relevant_first: bool) -> list[np.ndarray]:
    order = np.argsort(-np.asarray(saliency, dtype=np.float64).ravel(), kind="stable")
    if not most_relevant_first:
        order = order[::-1]
    masks = []
    for f in fractions:
        removed = np.zeros(order.size, dtype=bool)
        removed[order[:int(round(f * order.size))]] = True
        masks.append(removed.reshape(np.shape(saliency)))
    return masks


def _imputed(x: np.ndarray, masks: Sequence[np.ndarray], noise: float, seed) -> np.ndarray:
    """``noisy_linear_imputation`` of ``x`` for each mask, stacked, the solves spread over the CPU cores.

    The factorisation, most of an imputation's time, runs without Python's global lock, so threads
    overlap them (benchmarks/README.md); each imputation seeds its own noise, so the images are the same
    as one after the other, in any order of completion.
    """
    from concurrent.futures import ThreadPoolExecutor

    workers = min(len(masks), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if workers <= 1:
        return np.stack([noisy_linear_imputation(x, m, noise, seed) for m in masks])
    with ThreadPoolExecutor(workers) as pool:
        return np.stack(list(pool.map(lambda m: noisy_linear_imputation(x, m, noise, seed), masks)))


def normalised_curve(scores: np.ndarray, reference: float) -> np.ndarray:
    """Return a faithfulness curve divided by the score of the unperturbed image (``reference``).

    So that curves of images the model is more or less sure of (a clean photo at p = 0.9, an adversarial
    one at p = 0.6) are compared on one scale: 1 = as sure as on the intact image.
    """
    if not np.isfinite(reference) or reference <= 0:
        raise ValueError(f"reference must be a positive score, got {reference!r}.")
    return np.asarray(scores, dtype=np.float64) / reference


__all__ += ["noisy_linear_imputation", "normalised_curve", "road_images"]


# ------------------------------------------------------------------------------------------------------
# The study's faithfulness numbers: normalised areas, with the step count's own stability check


def deletion_insertion_aucs(model, x: np.ndarray, saliencies: dict[str, np.ndarray], class_index: int,
                            steps: int, blur_sigma: float,
                            logits: bool = False) -> tuple[float, dict[str, dict[str, float]]]:
    """Return ``(p_intact, aucs)``: normalised deletion and insertion AUCs of each map of one image.

    Each curve is p(class) along ``deletion_insertion_images`` divided by p(class | intact image), so
    that images the model is more or less sure of compare on one scale (1 = as sure as on the photo).
    ``aucs[name]`` holds ``deletion`` and ``insertion`` (``steps`` equal steps) and ``deletion_half`` and
    ``insertion_half`` (every other point: ``steps / 2`` steps, the same curve sampled half as finely), so
    that ``|auc - auc_half|`` measures whether ``steps`` is enough. ``steps`` must be even.
    """
    if steps < 2 or steps % 2:
        raise ValueError(f"steps must be an even number of at least 2, got {steps!r}.")
    images, names, blurred = [], [], _blurred(x, blur_sigma)
    for name, saliency in saliencies.items():
        deletion, insertion = _sequences(x, blurred, saliency, steps)
        images += [deletion, insertion]
        names.append(name)
    batch = np.concatenate(images)
    if logits:
        probs, zs = probabilities_and_logits(model, batch)
        curves = probs[:, class_index].reshape(-1, steps + 1)
        logit_curves = zs[:, class_index].reshape(-1, steps + 1)
    else:
        curves = class_probability_curves(model, batch, [class_index] * (2 * len(names)), steps + 1)
    p_intact = float(curves[0, 0])  # step 0 of the first deletion curve is the intact image
    aucs = {}
    for k, name in enumerate(names):
        deletion, insertion = (normalised_curve(c, p_intact) for c in curves[2 * k:2 * k + 2])
        aucs[name] = {"deletion": curve_auc(deletion), "insertion": curve_auc(insertion),
                      "deletion_half": curve_auc(deletion[::2]), "insertion_half": curve_auc(insertion[::2])}
        if logits:
            z_intact = logit_curves[0, 0]
            aucs[name].update({f"{curve}_logit": curve_auc(logit_curves[2 * k + j] - z_intact)
                               for j, curve in enumerate(("deletion", "insertion"))})
    return p_intact, aucs


#: Fractions of pixels ROAD removes: denser where the most-relevant-first curve moves most.
ROAD_FRACTIONS = (0.1, 0.2, 0.3, 0.5, 0.7)


def road_scores(model, x: np.ndarray, saliencies: dict[str, np.ndarray], class_index: int,
                fractions=ROAD_FRACTIONS, noise: float = ROAD_NOISE, seed=0) -> dict[str, dict[str, float]]:
    """Return ROAD's two numbers per map: the mean normalised p(class) over ``fractions`` when the most
    (``morf``, lower = more faithful) or least (``lerf``, higher = more faithful) relevant pixels are
    removed by noisy linear imputation (Rong et al. 2022). Normalised by p(class | intact image).

    ROAD replaces removed pixels by what their neighbours predict plus noise, so, unlike blur, the shape
    of the removed set leaks little of the map's ranking into the image the model sees. The imputation
    noise is seeded by ``seed`` (the same for every map, so maps differ only in their ranking).
    """
    names = list(saliencies)
    masks = [m for name in names for first in (True, False)
             for m in _road_masks(saliencies[name], fractions, most_relevant_first=first)]
    images = [np.asarray(x, dtype=np.float32)[None], _imputed(x, masks, noise, seed)]  # all solves at once
    probs = probabilities(model, np.concatenate(images).astype(np.float32))[:, class_index]
    p_intact, curves = float(probs[0]), probs[1:].reshape(len(names), 2, len(fractions))
    return {name: {"morf": float(np.mean(normalised_curve(curves[k, 0], p_intact))),
                   "lerf": float(np.mean(normalised_curve(curves[k, 1], p_intact)))}
            for k, name in enumerate(names)}


__all__ += ["ROAD_FRACTIONS", "deletion_insertion_aucs", "road_scores"]
