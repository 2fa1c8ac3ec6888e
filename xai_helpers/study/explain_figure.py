"""The figure of one photo's explanation (``explain``'s PNG), answer first.

Top row: the photo, the perturbation and the adversarial image, once, and a box of status lines (the
attack, its outcome, the target). Left, large: *which pixels carry the attack*, the attack attribution
(``interventions.attack_attribution``: IG of the true class's logit along the clean-to-adversarial path)
over the photo, with its own colour bar, the outline of its top 10% and a one-line verdict (and, when an
object mask is given, how much of that top 10% lies on the object). Right: Grad-CAM and IG of the clean and
the adversarial image for each target set, with the colour bar of those maps beside them. Bottom: each
map's perturbation curve against random pixels, its axes explained under it.
"""
from __future__ import annotations

import math

import numpy as np

from xai_helpers.methods.compare import DEFAULT_TOP_FRACTION, top_mask
from xai_helpers.methods.targets import TARGET_SETS, TARGET_WORDS

#: Standard deviation (pixels) of the Gaussian that smooths the attack attribution for display only.
DISPLAY_SMOOTHING = 2.0


def explain_figure(x: np.ndarray, result, attack: dict, eps: float, title: str | None = None,
                   object_mask: np.ndarray | None = None):
    """Return the figure of ``result`` (an ``analysis.PhotoExplanation`` of photo ``x``) for ``attack`` (the
    report's attack record: its description and whether it succeeded) at ``eps`` (model units).

    ``object_mask`` (H, W) bool, when known, adds the share of the attribution's top pixels on the object
    to the verdict.
    """
    import matplotlib.pyplot as plt

    n_sets = len(result.maps)
    map_cols = 2 * n_sets
    rows = 4 if result.intervention is not None else 3
    fig = plt.figure(figsize=(max(6.6 + 2.6 * map_cols, 12.0), 3.2 * rows + 0.8), constrained_layout=True)
    grid = fig.add_gridspec(rows, 2 + map_cols, height_ratios=[1, 1.1, 1.1] + [1.15] * (rows - 3))
    _images_row(fig, grid, x, result, attack, eps)
    _answer_panel(fig.add_subplot(grid[1:3, 0:2]), x, result, object_mask)
    _map_panels(fig, grid, x, result)
    if result.intervention is not None:
        _curves_panel(fig.add_subplot(grid[3, :]), result.intervention)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _images_row(fig, grid, x: np.ndarray, result, attack: dict, eps: float) -> None:
    """The photo, the perturbation, the adversarial image and the status box."""
    from xai_helpers.methods.attacks import eps_to_pixels
    from xai_helpers.methods.plotting import show_image, show_perturbation

    clean, adv = result.clean_top[0], result.adv_top[0]
    show_image(fig.add_subplot(grid[0, 0]), x, f"Photo\n{clean.name} {clean.probability:.1%}")
    levels = eps_to_pixels(eps)
    show_perturbation(fig.add_subplot(grid[0, 1]), result.adv - x, eps,
                      f"Perturbation, eps = {levels:g} level{'' if levels == 1 else 's'}\n(grey = 0, scaled to +-eps)")
    show_image(fig.add_subplot(grid[0, 2]), result.adv, f"Adversarial\n{adv.name} {adv.probability:.1%}")
    box = fig.add_subplot(grid[0, 3:])
    box.axis("off")
    box.text(0.02, 0.5, "\n".join(status_lines(result, attack)), va="center", ha="left", fontsize=9,
             wrap=True, bbox={"boxstyle": "round,pad=0.6", "facecolor": "#f4f4f4",
                              "edgecolor": "#b00000" if not attack["succeeded"] else "#999999"})


#: Characters per line of the status box (9 pt text in one map column).
STATUS_WIDTH = 40


def status_lines(result, attack: dict) -> list[str]:
    """The status box: the attack, its outcome, the target (if any), and why the causal panels are missing."""
    lines = [attack["description"]]
    clean, adv = result.clean_top[0], result.adv_top[0]
    if attack.get("target_class") is None:
        lines.append(f"outcome: {clean.name} -> {adv.name}" if attack["succeeded"] else
                     "outcome: FAILED, the top-1 class is unchanged")
    else:
        p = attack["target_probability"]["adversarial"]
        verdict = "reached" if attack["succeeded"] else "MISSED"
        lines.append(f"target {attack['target_class']['name']}: {p:.1%} ({verdict})")
    lines += search_lines(attack.get("eps_search") or {})
    if result.intervention is None:
        lines.append("no causal panels: the attack did not change the label")
    # Narrow enough to stay inside its column: text that overflowed it pushed the maps' colour bar away.
    return [_wrap(line, STATUS_WIDTH) for line in lines]


def search_lines(search: dict) -> list[str]:
    """What the budget search says: the eps chosen automatically, or the eps that would have flipped the label."""
    levels, top = search.get("flipping_levels"), search.get("max_levels", 16)
    if search.get("auto"):
        return (["eps chosen automatically: the smallest budget (in steps of 1/8 level) at which it succeeds"]
                if levels is not None else [f"no eps up to {top:g} levels succeeds: shown at {top:g}"])
    if "flipping_levels" in search:
        return [f"--eps {levels:g} would succeed" if levels is not None else f"no eps up to {top:g} levels would"]
    return []


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _answer_panel(ax, x: np.ndarray, result, object_mask: np.ndarray | None) -> None:
    """The attack attribution over the photo (smoothed for display), its top-10% outline and a verdict."""
    import matplotlib.pyplot as plt
    from scipy.ndimage import gaussian_filter

    from xai_helpers.methods.interventions import signed_map
    from xai_helpers.methods.plotting import show_image, signed_overlay

    if result.intervention is None:
        show_image(ax, x, "Which pixels carry the attack?\n(none: the attack did not change the label)")
        return
    values = signed_map(result.intervention.attribution.attributions)
    shown = signed_overlay(ax, x, gaussian_filter(values, DISPLAY_SMOOTHING), None)
    top = top_mask(np.abs(values), DEFAULT_TOP_FRACTION)
    ax.contour(gaussian_filter(top.astype(float), 1.5), levels=[0.5], colors="black", linewidths=0.8)
    ax.set_title(f"Which pixels carry the attack?\n{attribution_verdict(result.intervention, top, object_mask)}",
                 fontsize=9)
    bar = plt.colorbar(shown, ax=ax, orientation="horizontal", fraction=0.05, pad=0.03, aspect=30)
    bar.set_label("change of the true class's logit by each pixel (blue: lowered it)", fontsize=8)


def attribution_verdict(intervention, top: np.ndarray, object_mask: np.ndarray | None) -> str:
    """One line: the share of the attack its top 10% carry, and (with a mask) how much of it is on the object."""
    share = intervention.attribution_top_share
    carry = (f"which carry {share:.0%} of the attack" if share <= 1 else
             f"which do {share:.1f} times what the whole attack does\n(the other pixels work against it)")
    words = f"black outline: the top {DEFAULT_TOP_FRACTION:.0%} of pixels,\n{carry}"
    if object_mask is not None and object_mask.any():
        on = float(top[object_mask].sum() / max(top.sum(), 1))
        words += f"; {on:.0%} of them on the object\n(the object is {float(object_mask.mean()):.0%} of the photo)"
    return words


def _map_panels(fig, grid, x: np.ndarray, result) -> None:
    """Grad-CAM (row 1) and IG (row 2) of the clean and the adversarial image, one column pair per target
    set, and their shared colour bar beside them."""
    from xai_helpers.methods.plotting import normalize_for_display, overlay

    axes, im = [], None
    for k, (name, (cams, ig_maps)) in enumerate(result.maps.items()):
        numbers = result.comparisons.get(name, (None, None))
        for row, (method, what, maps) in enumerate(zip(("Grad-CAM", "IG"), TARGET_SETS[name], (cams, ig_maps))):
            shown = maps if method == "Grad-CAM" else [normalize_for_display(m) for m in maps]
            for col, (image, label) in enumerate(((x, "photo"), (result.adv, "adversarial"))):
                ax = fig.add_subplot(grid[1 + row, 2 + 2 * k + col])
                title = f"{method} of the {TARGET_WORDS[what]}\non the {label}"
                if col == 1 and numbers[row] is not None:
                    title += "\n" + _overlap_words(numbers[row])
                im = overlay(ax, image, shown[col], title)
                axes.append(ax)
    if im is not None:
        bar = fig.colorbar(im, ax=axes, shrink=0.8, pad=0.01, aspect=30)
        bar.set_label("importance (Grad-CAM / max; IG / 99.5th pct.)", fontsize=8)


def _overlap_words(c: dict) -> str:
    """``compare_maps`` numbers as the figure shows them under an adversarial map."""
    def num(v, fmt):
        return format(v, fmt) if v is not None and math.isfinite(v) else "undefined"
    return f"vs photo: IoU {num(c['top_iou'], '.2f')}, Spearman {num(c['spearman'], '.2f')}"


def _curves_panel(ax, intervention) -> None:
    """Each map's perturbation curve against random pixels, the axes and the legend explained."""
    from xai_helpers.methods.plotting import draw_perturbation_curves

    labels = {name: f"{'attack attribution' if name == 'attack' else name}: AUC {curve.auc:.2f}"
              for name, curve in intervention.curves.items()}
    draw_perturbation_curves(ax, intervention.curves, {"attack": {"color": "black", "lw": 2.2}}, labels)
    ax.set_xlabel("share of pixels that keep the perturbation (each map's top pixels first; the rest get the "
                  "clean photo back)", fontsize=9)
    ax.set_ylabel("share of the attack's\nmargin change kept", fontsize=9)
    ax.set_title("Which ranking finds the pixels that carry the attack? Higher and earlier is better; the grey band "
                 "is random pixels.\nA share above 1: those pixels do more than the whole attack.", fontsize=9)
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    top = max(1.05, *(float(np.nanmax(c.kept)) for c in intervention.curves.values()))
    ax.set_ylim(min(0.0, *(float(np.nanmin(c.kept)) for c in intervention.curves.values())) - 0.05, top + 0.05)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", framealpha=0.9)


__all__ = ["DISPLAY_SMOOTHING", "attribution_verdict", "explain_figure", "search_lines", "status_lines"]
