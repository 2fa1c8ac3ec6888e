"""Figures of the report. These functions only draw results they are given; they never compute them.

Heat-maps use one colour map (``HEATMAP_CMAP``, dark = no evidence, bright = strong evidence) on a fixed
[0, 1] scale unless told otherwise, so panels that are compared share a scale.
"""
from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import ConnectionPatch, Rectangle

from xai_helpers.classifier.data import deprocess

HEATMAP_CMAP = "inferno"
OVERLAY_ALPHA = 0.55
#: Smallest lettering any figure here draws, in points; the browser test checks figures are not shown smaller.
MIN_FONT_PT = 9.0
#: Width of the book's text column in inches (676 CSS px at 96 px/in, sphinx-book-theme in a 1280 px
#: window). A figure no wider than this is shown at full size, so its lettering keeps its point size.
PAGE_WIDTH_IN = 6.8  # a little under 676 px / 96, as tight bounding boxes add a few pixels
#: Signed maps (e.g. Integrated Gradients with its sign): red = for the class, blue = against, white = 0.
DIVERGING_CMAP = "RdBu_r"
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


def signed_overlay(ax, x: np.ndarray, values: np.ndarray, title: str | None = None,
                   bound: float | None = None, percentile: float = DISPLAY_PERCENTILE):
    """Draw a signed 2-D map over the grey-scaled photo: red > 0, blue < 0, transparent at 0; return the image.

    The colour scale is symmetric, [-bound, bound] (``bound=None``: the ``percentile`` of |values|, so a
    few extreme pixels do not wash out the rest; brighter values are clipped), and a pixel's opacity grows
    with |value|, so the photo shows through where the map is near zero. The returned image carries the
    [-bound, bound] colour map for a colour bar.
    """
    values = np.asarray(values, dtype=np.float64)
    if bound is None:
        bound = float(np.percentile(np.abs(values), percentile))
    bound = bound if bound > 0 else 1.0
    ax.imshow(deprocess(x).mean(axis=-1), cmap="gray", vmin=0.0, vmax=1.0)
    scaled = np.clip(values / bound, -1.0, 1.0)
    rgba = plt.get_cmap(DIVERGING_CMAP)((scaled + 1.0) / 2.0)
    rgba[..., 3] = np.clip(np.abs(scaled) * 1.5, 0.0, 0.9)
    ax.imshow(rgba)
    _finish(ax, title)
    return plt.cm.ScalarMappable(norm=plt.Normalize(-bound, bound), cmap=DIVERGING_CMAP)


def outline_regions(ax, boxes: Mapping[str, Sequence[int]], color: str = "white", labels: bool = True,
                    offset: tuple[int, int] = (0, 0)) -> None:
    """Outline named boxes ``(top, bottom, left, right)`` (pixels) on an image axis, each with its name.

    ``offset = (row, column)`` of the drawn image's top-left corner in the boxes' frame (for a crop); the
    names sit on a white label above each box, legible on any map.
    """
    r0, c0 = offset
    for name, (top, bottom, left, right) in boxes.items():
        top, bottom, left, right = top - r0, bottom - r0, left - c0, right - c0
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
                               edgecolor=color, lw=1.5))
        if labels:
            ax.text((left + right) / 2, top - 2, name, color="black", fontsize=MIN_FONT_PT, ha="center",
                    va="bottom", bbox=dict(boxstyle="round,pad=0.15", facecolor="white", alpha=0.85,
                                           edgecolor="none"), clip_on=True)


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
    fig, axes = plt.subplots(1, 3, figsize=(PAGE_WIDTH_IN, 3.0), constrained_layout=True)
    show_image(axes[0], x, f"Original\n{x_label}")
    units = f"eps = {eps:.4f}" + (f"\n({eps_pixels:g}/255 of a pixel's range)" if eps_pixels is not None else "")
    show_perturbation(axes[1], adv - x, eps, f"Perturbation, {units}\n(black -eps, grey 0, white +eps)")
    show_image(axes[2], adv, f"Adversarial\n{adv_label}")
    return fig


def explanation_grid(images: Sequence[np.ndarray], maps: Sequence[Sequence[np.ndarray]],
                     row_labels: Sequence[str], map_labels: Sequence[str],
                     vmax: float | None = 1.0, colorbar_label: str = "importance (0 = none, 1 = max)",
                     show_images: bool = True, boxes: Mapping[str, Sequence[int]] | None = None
                     ) -> plt.Figure:
    """Return a grid: one row per image, the photo then one overlay per map (the assignment's Figs 3-6).

    ``maps[r][c]`` is the c-th 2-D map of row r, already scaled for display (e.g. Grad-CAM in [0, 1],
    IG through ``normalize_for_display``); all overlays share one colour scale and one colour bar.
    ``show_images=False`` drops the photo column (when every row explains the same image, it would repeat
    it) and puts the row labels beside the first map. ``boxes``: regions ``(top, bottom, left, right)``
    outlined on every overlay (``outline_regions``).
    """
    first = 1 if show_images else 0
    rows, cols = len(images), first + max(len(m) for m in maps)
    side = min(2.7, (PAGE_WIDTH_IN - 1.0) / cols)  # panel size: the grid and its colour bar fit the page
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols + 0.9, side * rows + 0.3), squeeze=False,
                             constrained_layout=True)
    im = None
    for r, (x, row_maps) in enumerate(zip(images, maps)):
        if show_images:
            show_image(axes[r, 0], x, row_labels[r])
        for c, saliency in enumerate(row_maps, start=first):
            im = overlay(axes[r, c], x, saliency, map_labels[c - first] if r == 0 else None, vmax=vmax)
            if boxes:
                outline_regions(axes[r, c], boxes, labels=r == 0 and c == first)
        if not show_images:
            axes[r, 0].set_ylabel(row_labels[r], fontsize=10)
    if im is not None:
        fig.colorbar(im, ax=axes[:, first:].ravel().tolist(), shrink=0.8, label=colorbar_label)
    return fig


def prediction_figure(x: np.ndarray, names: Sequence[str], probabilities: Sequence[float],
                      title: str) -> plt.Figure:
    """Return the photo (left) and a horizontal bar chart of its top-k class probabilities (right)."""
    fig, (a_img, a_bar) = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 2.9), width_ratios=[1, 1.4],
                                       constrained_layout=True)
    show_image(a_img, x, title)
    positions = np.arange(len(names))[::-1]
    a_bar.barh(positions, probabilities, color="tab:green")
    a_bar.set_yticks(positions, [n.replace("_", " ") for n in names])
    for pos, prob in zip(positions, probabilities):
        a_bar.text(prob + 0.01, pos, f"{prob:.1%}", va="center", fontsize=MIN_FONT_PT)
    a_bar.set_xlim(0, 1)
    a_bar.set_xlabel("softmax probability")
    return fig


def method_rows_figure(x: np.ndarray, maps: Mapping[str, np.ndarray], title: str,
                       colorbar_label: str = "importance (0 = none, 1 = max)",
                       boxes: Mapping[str, Sequence[int]] | None = None) -> plt.Figure:
    """Return the photo once (left), then one row per explainer: the map alone, the map over the photo
    (the assignment's Figs 3-4).

    ``maps`` maps a row label (e.g. "Grad-CAM") to a 2-D map already scaled to [0, 1] for display; all
    panels share the [0, 1] colour scale and one colour bar. ``boxes``: regions outlined on every map.
    """
    rows = len(maps)
    fig, axes = plt.subplots(rows, 3, figsize=(PAGE_WIDTH_IN, 2.2 * rows + 0.4), squeeze=False,
                             constrained_layout=True)
    im = None
    for r, (label, saliency) in enumerate(maps.items()):
        if r == 0:  # a long title is wrapped, so that it stays within its panel
            show_image(axes[0, 0], x, "\n".join(textwrap.fill(line, 30) for line in title.split("\n")))
        else:  # the photo is shown once, not repeated on every row
            axes[r, 0].set_axis_off()
        axes[r, 1].set_ylabel(label, fontsize=10)
        im = show_heatmap(axes[r, 1], saliency, "map" if r == 0 else None)
        overlay(axes[r, 2], x, saliency, "map over the photo" if r == 0 else None)
        if boxes:
            for ax in axes[r, 1:]:
                outline_regions(ax, boxes, labels=r == 0 and ax is axes[r, 1])
    fig.colorbar(im, ax=axes[:, 1:].ravel().tolist(), shrink=0.8, label=colorbar_label)
    return fig


def eps_sweep_figure(pixels: Sequence[float], eps: Sequence[float], top1_names: Sequence[str],
                     top1_probabilities: Sequence[float], tracked: Mapping[str, Sequence[float]],
                     title: str) -> plt.Figure:
    """Return a sweep over attack strength: top-1 confidence (labelled with the class) and tracked classes.

    One point per eps on a categorical axis whose tick labels give eps in 0-255 pixel levels and in model
    units; the y axis is the softmax probability on a log scale, so small probabilities stay visible.
    """
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH_IN, 3.8), constrained_layout=True)
    positions = np.arange(len(pixels))
    ax.plot(positions, top1_probabilities, "o-", color="black", label="top-1 class (named)")
    for pos, name, prob in zip(positions, top1_names, top1_probabilities):
        ax.annotate(name.replace("_", " "), (pos, prob), textcoords="offset points", xytext=(0, 7),
                    ha="center", fontsize=MIN_FONT_PT, rotation=20)
    for (label, values), style in zip(tracked.items(), ["s--", "^:", "v-."]):
        ax.plot(positions, values, style, label=f"p({label})")
    ax.set_yscale("log")
    ax.set_ylim(top=8.0)  # room above the top-1 line for the class names
    ax.margins(x=0.1)
    ax.set_xticks(positions, [f"{p:g}\n{e:.4f}" for p, e in zip(pixels, eps)], fontsize=MIN_FONT_PT)
    ax.set_xlabel("eps: pixel levels (0-255 scale) / model units ([-1, 1] input)")
    ax.set_ylabel("softmax probability")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=MIN_FONT_PT, loc="lower left")
    return fig


def completeness_figure(steps: Mapping[str, Mapping[str, Sequence[int]]],
                        relative_delta: Mapping[str, Mapping[str, Sequence[float]]],
                        reference: float | None = 0.01) -> plt.Figure:
    """Return one log-log panel per target: |delta| / |F(x) - F(x')| against gradient evaluations, per rule.

    ``steps[target][method]`` and ``relative_delta[target][method]`` are matching sequences; ``reference``
    draws a dashed horizontal line (an error tolerance).
    """
    targets = list(relative_delta)
    fig, axes = plt.subplots(1, len(targets), figsize=(PAGE_WIDTH_IN, 3.2), sharey=True, squeeze=False,
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
    axes[0, 0].legend(fontsize=MIN_FONT_PT)
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
    fig, axes = plt.subplots(2, 3, figsize=(PAGE_WIDTH_IN, 6.4), constrained_layout=True)
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
    a_weights.set_xlabel("channel rank", fontsize=MIN_FONT_PT)
    a_weights.yaxis.tick_right()
    a_weights.tick_params(labelsize=MIN_FONT_PT)
    a_weights.legend(fontsize=MIN_FONT_PT)

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
    fig, axes = plt.subplots(1, 1 + len(panels), figsize=(PAGE_WIDTH_IN, 3.6),
                             width_ratios=[1.0] + [1.0] * len(panels), constrained_layout=True)
    a_img, bars = axes[0], axes[1:]
    show_image(a_img, x, "hand-annotated regions\n(224 x 224 model frame)")
    outline_regions(a_img, boxes)
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
        ax.set_xticks(np.arange(len(regions)), regions, rotation=30, ha="right", rotation_mode="anchor")
        ax.set_ylim(0, 1.12 * top_value)
        ax.set_title(title, fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
    bars[0].set_ylabel(ylabel)
    handles, names = bars[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=len(names), fontsize=MIN_FONT_PT)
    return fig


def _finish(ax, title: str | None) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


__all__ = ["DISPLAY_PERCENTILE", "DIVERGING_CMAP", "HEATMAP_CMAP", "MIN_FONT_PT", "PAGE_WIDTH_IN", "attack_figure",
           "completeness_figure", "eps_sweep_figure", "explanation_grid", "gradcam_workflow_figure",
           "method_rows_figure", "normalize_for_display", "outline_regions", "overlay", "prediction_figure",
           "region_figure", "show_heatmap", "show_image", "show_perturbation", "signed_overlay"]


# ------------------------------------------------------------------------------------------------------
# Interventions (book chapter "interventions"; the numbers come from xai_helpers.methods.interventions)

def signed_maps_figure(x: np.ndarray, maps: Mapping[str, np.ndarray], boxes: Mapping[str, Sequence[int]],
                       zoom: Sequence[int], colorbar_label: str, percentile: float = 99.0) -> plt.Figure:
    """Return one row per signed (H, W) map: over the whole photo, then a zoomed crop of ``zoom``.

    Red = positive, blue = negative, white = 0, on a symmetric scale at each map's ``percentile`` of |map|
    (brighter values are clipped); the photo shows through in grey and the region ``boxes`` are outlined.
    ``zoom = (top, bottom, left, right)`` in pixels.
    """
    top, bottom, left, right = zoom
    fig, axes = plt.subplots(len(maps), 2, figsize=(PAGE_WIDTH_IN, 2.9 * len(maps)), squeeze=False,
                             width_ratios=[1.0, (right - left) / (bottom - top) * 0.9], constrained_layout=True)
    grey = deprocess(x).mean(axis=-1)
    for (title, m), (a_full, a_zoom) in zip(maps.items(), axes):
        scale = float(np.percentile(np.abs(m), percentile)) or 1.0
        height, width = m.shape
        for ax, (r0, r1, c0, c1) in ((a_full, (0, height, 0, width)), (a_zoom, (top, bottom, left, right))):
            ax.imshow(grey[r0:r1, c0:c1], cmap="gray", vmin=0.0, vmax=1.0)
            im = ax.imshow(m[r0:r1, c0:c1], cmap=DIVERGING_CMAP, vmin=-scale, vmax=scale, alpha=0.75)
            outline_regions(ax, boxes, color="black", labels=ax is a_zoom, offset=(r0, c0))
            _finish(ax, None)
        a_full.set_title(textwrap.fill(title, 34), fontsize=10, loc="left")  # fits its panel at page width
        a_zoom.set_title("zoom on the animal", fontsize=10)
        fig.colorbar(im, ax=a_zoom, shrink=0.8).set_label(colorbar_label, fontsize=MIN_FONT_PT)
    return fig


def restriction_figure(panels: Mapping[str, Mapping[str, tuple[float, float, float, float]]],
                       ylabel: str) -> plt.Figure:
    """Return one bar chart per attack: a region's share of the effect, beside its random-box control.

    ``panels[attack][region] = (share, control_low, control_median, control_high)``; a NaN control draws
    no control bar. Bars: the region; grey dots with whiskers: same-shape boxes placed off the animal
    (median and 95% range).
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(PAGE_WIDTH_IN, 4.2), squeeze=False,
                             sharey=True, constrained_layout=True)
    for ax, (title, rows) in zip(axes[0], panels.items()):
        names = list(rows)
        share = np.array([rows[n][0] for n in names])
        low, mid, high = (np.array([rows[n][k] for n in names]) for k in (1, 2, 3))
        pos = np.arange(len(names))
        ax.bar(pos, share, 0.55, color="tab:red", label="perturbation kept only in the region")
        ok = np.isfinite(mid)
        ax.errorbar(pos[ok] + 0.33, mid[ok], yerr=[mid[ok] - low[ok], high[ok] - mid[ok]], fmt="o",
                    color="0.35", capsize=3, label="same-shape boxes off the animal (median, 95%)")
        ax.axhline(1.0, color="black", lw=0.8, ls="--")
        ax.axhline(0.0, color="black", lw=0.6)
        ax.set_xticks(pos, names, rotation=25, ha="right", fontsize=MIN_FONT_PT + 1)
        ax.set_title(title, fontsize=11)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0, 0].set_ylabel(ylabel, fontsize=10)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncols=2,
               fontsize=MIN_FONT_PT)  # below the panels, so that it covers no bar
    return fig


def draw_perturbation_curves(ax, curves: Mapping[str, object],
                             styles: Mapping[str, Mapping[str, object]] | None = None,
                             labels: Mapping[str, str] | None = None) -> None:
    """Draw perturbation curves (``interventions.PerturbationCurve``, one shared random control) on ``ax``.

    The random control is a grey band (2.5th-97.5th percentile) with a dashed median; ``styles[name]``:
    matplotlib line keywords; ``labels[name]``: legend text (default: the name).
    """
    first = next(iter(curves.values()))
    low, mid, high = np.percentile(first.random, [2.5, 50, 97.5], axis=0)
    ax.fill_between(first.fractions, low, high, color="0.8", label="random pixels (95% band)")
    ax.plot(first.fractions, mid, color="0.4", ls="--", lw=1.2, label="random pixels (median)")
    for name, curve in curves.items():
        style = dict((styles or {}).get(name, {}))
        style.setdefault("lw", 1.5)
        ax.plot(curve.fractions, curve.kept, label=(labels or {}).get(name, name), **style)


def perturbation_curves_figure(panels: Mapping[str, Mapping[str, object]], ylabel: str,
                               styles: Mapping[str, Mapping[str, object]] | None = None) -> plt.Figure:
    """Return one panel per attack with the perturbation curve of each map over its random control.

    ``panels[attack][map name]`` is an ``interventions.PerturbationCurve``; all curves of a panel share
    one random control, drawn as a grey band (2.5th-97.5th percentile) and a dashed median.
    ``styles[map name]``: matplotlib line keywords (colour, dashes) so that families of maps read apart.
    """
    fig, axes = plt.subplots(len(panels), 1, figsize=(PAGE_WIDTH_IN, 3.6 * len(panels) + 1.8), squeeze=False,
                             sharey=True, constrained_layout=True)
    for ax, (title, curves) in zip(axes[:, 0], panels.items()):
        draw_perturbation_curves(ax, curves, styles)
        ax.axhline(1.0, color="black", lw=0.6, ls=":")
        ax.set_xlabel("share of pixels that keep the perturbation (top of each map first)", fontsize=10)
        ax.set_ylabel(ylabel, fontsize=10)
        ax.set_title(title, fontsize=11)
        ax.grid(True, alpha=0.3)
    # One legend for all panels (they draw the same maps), below them, so the panels keep the page's width.
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncols=2,
               fontsize=MIN_FONT_PT)
    return fig


__all__ += ["draw_perturbation_curves", "perturbation_curves_figure", "restriction_figure", "signed_maps_figure"]
