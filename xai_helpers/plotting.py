"""Figures of the report. These functions only draw results they are given; they never compute them.

Heat-maps use one colour map (``HEATMAP_CMAP``, dark = no evidence, bright = strong evidence) on a fixed
[0, 1] scale unless told otherwise, so panels that are compared share a scale.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import ConnectionPatch, Rectangle

from .data import deprocess

HEATMAP_CMAP = "inferno"
OVERLAY_ALPHA = 0.55
#: Integrated Gradients maps are shown divided by this percentile of their values (see normalize_for_display).
DISPLAY_PERCENTILE = 99.5


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


def normalize_for_display(saliency: np.ndarray, percentile: float = DISPLAY_PERCENTILE,
                          reference: np.ndarray | None = None) -> np.ndarray:
    """Return a non-negative map divided by its ``percentile`` and clipped to [0, 1].

    Integrated Gradients maps are dominated by a few pixels; dividing by a high percentile rather than the
    maximum keeps the rest visible. With ``reference``, the map is divided by the *reference* map's
    percentile instead, so that several maps share one colour scale (a weaker map looks darker). Display
    only: numbers are always computed on the raw maps.
    """
    saliency = np.maximum(np.asarray(saliency, dtype=np.float64), 0.0)
    scale_from = saliency if reference is None else np.maximum(np.asarray(reference, np.float64), 0.0)
    top = np.percentile(scale_from, percentile)
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


def prediction_figure(x: np.ndarray, names: Sequence[str], probabilities: Sequence[float],
                      title: str) -> plt.Figure:
    """Return the photo (left) and a horizontal bar chart of its top-k class probabilities (right)."""
    fig, (a_img, a_bar) = plt.subplots(1, 2, figsize=(8.4, 3.3), width_ratios=[1, 1.4],
                                       constrained_layout=True)
    show_image(a_img, x, title)
    positions = np.arange(len(names))[::-1]
    a_bar.barh(positions, probabilities, color="tab:green")
    a_bar.set_yticks(positions, [n.replace("_", " ") for n in names])
    for pos, prob in zip(positions, probabilities):
        a_bar.text(prob + 0.01, pos, f"{prob:.1%}", va="center", fontsize=8)
    a_bar.set_xlim(0, 1)
    a_bar.set_xlabel("softmax probability")
    return fig


def method_rows_figure(x: np.ndarray, maps: Mapping[str, np.ndarray], title: str,
                       colorbar_label: str = "importance (0 = none, 1 = max)") -> plt.Figure:
    """Return one row per explainer: the photo, the map alone, the map over the photo (assignment's Figs 3-4).

    ``maps`` maps a row label (e.g. "Grad-CAM") to a 2-D map already scaled to [0, 1] for display; all
    panels share the [0, 1] colour scale and one colour bar.
    """
    rows = len(maps)
    fig, axes = plt.subplots(rows, 3, figsize=(8.4, 2.6 * rows + 0.4), squeeze=False,
                             constrained_layout=True)
    im = None
    for r, (label, saliency) in enumerate(maps.items()):
        show_image(axes[r, 0], x, title if r == 0 else None)
        axes[r, 0].set_ylabel(label, fontsize=10)
        im = show_heatmap(axes[r, 1], saliency, "map" if r == 0 else None)
        overlay(axes[r, 2], x, saliency, "map over the photo" if r == 0 else None)
    fig.colorbar(im, ax=axes[:, 1:].ravel().tolist(), shrink=0.8, label=colorbar_label)
    return fig


def eps_sweep_figure(pixels: Sequence[float], eps: Sequence[float], top1_names: Sequence[str],
                     top1_probabilities: Sequence[float], tracked: Mapping[str, Sequence[float]],
                     title: str) -> plt.Figure:
    """Return a sweep over attack strength: top-1 confidence (labelled with the class) and tracked classes.

    One point per eps on a categorical axis whose tick labels give eps in 0-255 pixel levels and in model
    units; the y axis is the softmax probability on a log scale, so small probabilities stay visible.
    """
    fig, ax = plt.subplots(figsize=(8.4, 3.8), constrained_layout=True)
    positions = np.arange(len(pixels))
    ax.plot(positions, top1_probabilities, "o-", color="black", label="top-1 class (named)")
    for pos, name, prob in zip(positions, top1_names, top1_probabilities):
        ax.annotate(name.replace("_", " "), (pos, prob), textcoords="offset points", xytext=(0, 7),
                    ha="center", fontsize=8, rotation=20)
    for (label, values), style in zip(tracked.items(), ["s--", "^:", "v-."]):
        ax.plot(positions, values, style, label=f"p({label})")
    ax.set_yscale("log")
    ax.set_ylim(top=2.0)
    ax.margins(x=0.08)
    ax.set_xticks(positions, [f"{p:g}\n{e:.4f}" for p, e in zip(pixels, eps)], fontsize=8)
    ax.set_xlabel("eps: pixel levels (0-255 scale) / model units ([-1, 1] input)")
    ax.set_ylabel("softmax probability")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return fig


def completeness_figure(steps: Mapping[str, Mapping[str, Sequence[int]]],
                        relative_delta: Mapping[str, Mapping[str, Sequence[float]]],
                        reference: float | None = 0.01) -> plt.Figure:
    """Return one log-log panel per target: |delta| / |F(x) - F(x')| against gradient evaluations, per rule.

    ``steps[target][method]`` and ``relative_delta[target][method]`` are matching sequences; ``reference``
    draws a dashed horizontal line (an error tolerance).
    """
    targets = list(relative_delta)
    fig, axes = plt.subplots(1, len(targets), figsize=(8.4, 3.2), sharey=True, squeeze=False,
                             constrained_layout=True)
    for ax, target in zip(axes[0], targets):
        for (method, deltas), marker in zip(relative_delta[target].items(), "osd^"):
            ax.plot(steps[target][method], deltas, marker + "-", label=method.replace("_", " "))
        if reference is not None:
            ax.axhline(reference, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ticks = sorted({int(n) for values in steps[target].values() for n in values})
        ax.set_xticks(ticks, [str(n) for n in ticks])
        ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.set_xlabel("gradient evaluations (steps)")
        ax.set_title(f"F = {target}", fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
    axes[0, 0].set_ylabel("relative completeness error")
    axes[0, 0].legend(fontsize=8)
    return fig


def gradcam_workflow_figure(x: np.ndarray, feature_maps: np.ndarray, weights: np.ndarray,
                            weighted_sum: np.ndarray, cam: np.ndarray, upsampled: np.ndarray,
                            channels: Sequence[int], class_name: str) -> plt.Figure:
    """Return the assignment's Fig 2, drawn from the real arrays of one Grad-CAM computation.

    Six panels joined by arrows, read as a snake (top row left to right, then down, bottom row right to
    left): the input; the feature maps A^k of ``channels`` (tiled, one shared scale); the pooled gradient
    weights alpha_k of all channels, sorted, with ``channels`` marked; the signed weighted sum (blue < 0 <
    red, symmetric scale); its ReLU (same scale); the upsampled map over the photo, divided by its maximum.
    """
    fig, axes = plt.subplots(2, 3, figsize=(8.6, 6.8), constrained_layout=True)
    (a_in, a_maps, a_weights), (a_up, a_relu, a_sum) = axes
    show_image(a_in, x, "1. input $x$ (224 x 224 x 3)")

    tiles = [feature_maps[..., k] for k in channels]
    h, w = tiles[0].shape
    side = int(np.ceil(np.sqrt(len(tiles))))
    mosaic = np.full((side * (h + 1) - 1, side * (w + 1) - 1), np.nan)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, side)
        mosaic[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = tile
    im = a_maps.imshow(mosaic, cmap="viridis", vmin=0.0)
    _finish(a_maps, f"2. feature maps $A^k$ ({h} x {w} x {feature_maps.shape[-1]}):\n"
                    f"the {len(tiles)} that add most to $y^c$")
    fig.colorbar(im, ax=a_maps, location="bottom", shrink=0.7, label="activation")

    order = np.argsort(-weights, kind="stable")
    ranks = [int(np.flatnonzero(order == k)[0]) for k in channels]
    a_weights.plot(np.arange(len(weights)), weights[order], color="black", lw=1)
    a_weights.plot(ranks, weights[list(channels)], "o", color="tab:green", label="maps of panel 2")
    a_weights.axhline(0.0, color="grey", lw=0.6)
    a_weights.set_title("3. pooled gradients\n"
                        r"$\alpha_k^c = \frac{1}{Z}\sum_{ij} \partial y^c / \partial A^k_{ij}$, sorted",
                        fontsize=9)
    a_weights.set_xlabel("channel rank", fontsize=8)
    a_weights.yaxis.tick_right()
    a_weights.tick_params(labelsize=7)
    a_weights.legend(fontsize=7)

    bound = float(np.abs(weighted_sum).max()) or 1.0
    im = a_sum.imshow(weighted_sum, cmap="RdBu_r", vmin=-bound, vmax=bound)
    _finish(a_sum, "4. weighted sum\n" r"$S = \sum_k \alpha_k^c A^k$ (signed)")
    fig.colorbar(im, ax=a_sum, location="bottom", shrink=0.7, label="red: for, blue: against")
    im = a_relu.imshow(cam, cmap=HEATMAP_CMAP, vmin=0.0, vmax=bound)
    _finish(a_relu, "5. $L^c$ = ReLU($S$):\npositive evidence only")
    fig.colorbar(im, ax=a_relu, location="bottom", shrink=0.7, label="same scale as 4")
    im = overlay(a_up, x, upsampled / (upsampled.max() or 1.0),
                 f"6. upsampled to 224 x 224,\nover the photo: '{class_name}'")
    fig.colorbar(im, ax=a_up, location="bottom", shrink=0.7, label="share of the peak")

    arrow = dict(arrowstyle="-|>", mutation_scale=18, color="tab:blue", lw=2.5)
    for src, dst in [(a_in, a_maps), (a_maps, a_weights)]:
        fig.add_artist(ConnectionPatch((1.03, 0.5), (-0.03, 0.5), "axes fraction", "axes fraction",
                                       axesA=src, axesB=dst, **arrow))
    for src, dst in [(a_sum, a_relu), (a_relu, a_up)]:
        fig.add_artist(ConnectionPatch((-0.03, 0.5), (1.03, 0.5), "axes fraction", "axes fraction",
                                       axesA=src, axesB=dst, **arrow))
    fig.add_artist(ConnectionPatch((0.5, -0.22), (0.5, 1.3), "axes fraction", "axes fraction",
                                   axesA=a_weights, axesB=a_sum, **arrow))
    return fig


def region_figure(x: np.ndarray, boxes: Mapping[str, Sequence[int]],
                  panels: Mapping[str, Mapping[str, Mapping[str, float]]], ylabel: str,
                  reference: float | None = 1.0) -> plt.Figure:
    """Return the annotated regions drawn on the photo, then one grouped bar chart per panel.

    ``boxes[name] = (top, bottom, left, right)`` in pixels; ``panels[title][case][region]`` is one number
    per region and case (e.g. the enrichment, mass / area, of a map); all bar panels share the y axis.
    ``reference`` draws a dashed line (1 = a map spread evenly over the image).
    """
    fig, axes = plt.subplots(1, 1 + len(panels), figsize=(4.0 + 3.6 * len(panels), 3.9),
                             width_ratios=[1.0] + [1.2] * len(panels), constrained_layout=True)
    a_img, bars = axes[0], axes[1:]
    show_image(a_img, x, "hand-annotated regions\n(224 x 224 model frame)")
    for name, (top, bottom, left, right) in boxes.items():
        a_img.add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
                                  edgecolor="white", lw=1.5))
        a_img.text((left + right) / 2, top - 4, name, color="black", fontsize=8, ha="center",
                   va="bottom", bbox=dict(boxstyle="round,pad=0.15", facecolor="white", alpha=0.85,
                                          edgecolor="none"))
    top_value = max(v for panel in panels.values() for case in panel.values() for v in case.values())
    for ax, (title, values) in zip(bars, panels.items()):
        cases = list(values)
        regions = list(next(iter(values.values())))
        width = 0.8 / len(cases)
        for i, case in enumerate(cases):
            ax.bar(np.arange(len(regions)) + (i - (len(cases) - 1) / 2) * width,
                   [values[case][r] for r in regions], width, label=case)
        if reference is not None:
            ax.axhline(reference, color="black", lw=0.8, ls="--")
        ax.set_xticks(np.arange(len(regions)), regions)
        ax.set_ylim(0, 1.12 * top_value)
        ax.set_title(title, fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    bars[0].set_ylabel(ylabel)
    return fig


def _finish(ax, title: str | None) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


__all__ = ["DISPLAY_PERCENTILE", "HEATMAP_CMAP", "attack_figure", "completeness_figure", "eps_sweep_figure",
           "explanation_grid", "gradcam_workflow_figure", "method_rows_figure", "normalize_for_display",
           "overlay", "prediction_figure", "region_figure", "show_heatmap", "show_image", "show_perturbation"]
