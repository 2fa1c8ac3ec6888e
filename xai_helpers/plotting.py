"""Figures of the report. These functions only draw results they are given; they never compute them.

Heat-maps use one colour map (``HEATMAP_CMAP``, dark = no evidence, bright = strong evidence) on a fixed
[0, 1] scale unless told otherwise, so panels that are compared share a scale.
"""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from .data import deprocess

HEATMAP_CMAP = "inferno"
OVERLAY_ALPHA = 0.55


def show_image(ax, x: np.ndarray, title: str | None = None) -> None:
    """Draw a model-range image (values in [-1, 1]) on ``ax``, without axes."""
    ax.imshow(deprocess(x))
    _finish(ax, title)


def show_perturbation(ax, perturbation: np.ndarray, eps: float, title: str | None = None) -> None:
    """Draw ``adv - x`` scaled from [-eps, eps] to [0, 1] (grey = 0), so its sign pattern is visible."""
    scale = eps if eps > 0 else 1.0
    ax.imshow(np.clip(perturbation / (2 * scale) + 0.5, 0.0, 1.0))
    _finish(ax, title)


def show_heatmap(ax, saliency: np.ndarray, title: str | None = None, vmax: float | None = 1.0):
    """Draw a 2-D map alone on a [0, vmax] scale (``vmax=None``: the map's own maximum); return the image."""
    im = ax.imshow(saliency, cmap=HEATMAP_CMAP, vmin=0.0, vmax=vmax)
    _finish(ax, title)
    return im


def overlay(ax, x: np.ndarray, saliency: np.ndarray, title: str | None = None,
            vmax: float | None = 1.0, alpha: float = OVERLAY_ALPHA):
    """Draw a 2-D map over the de-processed photo (grey-scaled so the colours read as the map); return it."""
    ax.imshow(deprocess(x).mean(axis=-1), cmap="gray", vmin=0.0, vmax=1.0)
    im = ax.imshow(saliency, cmap=HEATMAP_CMAP, vmin=0.0, vmax=vmax, alpha=alpha)
    _finish(ax, title)
    return im


def normalize_for_display(saliency: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """Return a non-negative map divided by its ``percentile`` and clipped to [0, 1].

    Integrated Gradients maps are dominated by a few pixels; dividing by a high percentile rather than the
    maximum keeps the rest visible. Display only: numbers are always computed on the raw maps.
    """
    saliency = np.maximum(np.asarray(saliency, dtype=np.float64), 0.0)
    top = np.percentile(saliency, percentile)
    return np.clip(saliency / top, 0.0, 1.0) if top > 0 else np.zeros_like(saliency)


def attack_figure(x: np.ndarray, adv: np.ndarray, x_label: str, adv_label: str, eps: float,
                  eps_pixels: float | None = None) -> plt.Figure:
    """Return the assignment's Fig 1: original, perturbation (adv - x), adversarial, with labels."""
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6), constrained_layout=True)
    show_image(axes[0], x, f"Original\n{x_label}")
    units = f"eps = {eps:.4f}" + (f" ({eps_pixels:g}/255 levels)" if eps_pixels is not None else "")
    show_perturbation(axes[1], adv - x, eps, f"Perturbation, {units}\n(grey = 0, shown x1/eps)")
    show_image(axes[2], adv, f"Adversarial\n{adv_label}")
    return fig


def explanation_grid(images: Sequence[np.ndarray], maps: Sequence[Sequence[np.ndarray]],
                     row_labels: Sequence[str], map_labels: Sequence[str],
                     vmax: float | None = 1.0, colorbar_label: str = "importance (0 = none, 1 = max)"
                     ) -> plt.Figure:
    """Return a grid: one row per image, the photo then one overlay per map (the assignment's Figs 3-6).

    ``maps[r][c]`` is the c-th 2-D map of row r, already scaled for display (e.g. Grad-CAM in [0, 1],
    IG through ``normalize_for_display``); all overlays share one colour scale and one colour bar.
    """
    rows, cols = len(images), 1 + max(len(m) for m in maps)
    fig, axes = plt.subplots(rows, cols, figsize=(2.7 * cols + 0.6, 2.7 * rows), squeeze=False,
                             constrained_layout=True)
    im = None
    for r, (x, row_maps) in enumerate(zip(images, maps)):
        show_image(axes[r, 0], x, row_labels[r])
        for c, saliency in enumerate(row_maps, start=1):
            im = overlay(axes[r, c], x, saliency, map_labels[c - 1] if r == 0 else None, vmax=vmax)
    if im is not None:
        fig.colorbar(im, ax=axes[:, 1:].ravel().tolist(), shrink=0.8, label=colorbar_label)
    return fig


def _finish(ax, title: str | None) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


__all__ = ["HEATMAP_CMAP", "attack_figure", "explanation_grid", "normalize_for_display", "overlay",
           "show_heatmap", "show_image", "show_perturbation"]
