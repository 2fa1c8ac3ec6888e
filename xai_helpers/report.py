"""What ``explain`` reports for one photo: the printed table, the JSON's parts and the figure.

The command line computes (``analysis``), then hands the results here to be laid out; nothing here runs a
model. The figure: row 1 original / perturbation / adversarial (the assignment's Fig 1), rows 2-3 each
image with its Grad-CAM and IG overlays (Fig 5), and the causal row (the attack attribution and every
map's perturbation curve).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

#: Explanation targets: (Grad-CAM target, IG target). "standard" is the usual choice (Grad-CAM on the
#: pre-softmax score as in Selvaraju et al., IG on the softmax probability as in the assignment);
#: "reversed" is the assignment's question 3 (Grad-CAM on the softmax, IG on the logits).
TARGET_SETS = {"standard": ("logits", "softmax"), "reversed": ("softmax", "logits")}
#: What each explainer differentiates, in plain words (figure titles, the printed table).
TARGET_WORDS = {"logits": "class score (logit)", "softmax": "class probability (softmax)"}


def target_note(attack: dict) -> str | None:
    """Return the figure's line about a targeted attack's target ("target X: p% (missed)"), or None."""
    if attack.get("target_class") is None:
        return None
    p = attack["target_probability"]["adversarial"]
    outcome = "reached" if attack["succeeded"] else "MISSED"
    return f"target {attack['target_class']['name']}: {p:.1%} ({outcome})"


def eps_words(levels: float, eps: float) -> str:
    """Return an attack's size as a newcomer reads it, e.g. "eps = 1 pixel level (1/255 of the 0-255 range;
    2/255 = 0.0078 model units)": the model's input spans [-1, 1], so one grey level is 2/255 of it."""
    plural = "" if levels == 1 else "s"
    return (f"eps = {levels:g} pixel level{plural} ({levels:g}/255 of the 0-255 range; {2 * levels:g}/255 = "
            f"{eps:.4f} model units)")


def attack_description(eps: float, levels: float, target_class: int | None, iterations: int,
                        adv_top) -> dict:
    from .model import class_labels

    size = eps_words(levels, eps)
    if target_class is None:
        return {"kind": "fgsm", "target_class": None, "iterations": None,
                "description": f"untargeted FGSM, {size}"}
    wnid, name = class_labels()[target_class]
    return {"kind": "iterative_fgsm_targeted",
            "target_class": {"class_index": target_class, "wnid": wnid, "name": name},
            "iterations": iterations,
            "description": f"targeted iterative FGSM toward {name} ({iterations} its), {size}"}


def versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    from . import __version__

    return {"xai_helpers": __version__, "tensorflow": tf.__version__, "keras": keras.__version__}


def jsonable(value):
    """Return ``value`` with NumPy scalars as Python numbers and NaN/inf as null (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


_IG_DELTA_HEADER = "IG |delta|/|F(x)-F(x')| clean, adv"


def format_report(report: dict) -> str:
    """Return the text table ``explain`` prints: top-5 before/after, map comparison, IG delta, weights."""
    attack = report["attack"]
    if attack.get("target_class") is None:
        outcome = "changed the top-1 class" if attack["succeeded"] else "did not change the top-1 class"
    else:
        p = attack["target_probability"]["adversarial"]
        outcome = (f"reached its target ({attack['target_class']['name']} {p:.1%})" if attack["succeeded"]
                   else f"MISSED its target: {attack['target_class']['name']} has {p:.1%}")
    lines = [f"photo:   {report['image']}", f"attack:  {attack['description']}; {outcome}"]
    lines += ["", f"{'':3}{'clean':<34}{'adversarial':<34}"]
    for k, (a, b) in enumerate(zip(report["clean"]["top5"], report["adversarial"]["top5"]), start=1):
        lines.append(f"{k:<3}{_pred(a):<34}{_pred(b):<34}")
    lines += ["", "maps: clean image (its top-1 class) vs adversarial image (its top-1 class)",
              f"{'map (what it explains)':<45}{'top-10% IoU':>12}{'Spearman':>10}{'CoM shift':>11}"
              f"{_IG_DELTA_HEADER:>37}"]
    for e in report["explanations"]:
        c = e["compare"]
        method = "Grad-CAM" if e["method"] == "gradcam" else "IG"
        label = f"{method} of the {TARGET_WORDS.get(e['target'], e['target'])}"
        delta = ""
        if e["method"] == "integrated_gradients":
            delta = f"{e['clean']['relative_delta']:.2%}, {e['adversarial']['relative_delta']:.2%}" \
                    f" ({e['steps']} {e['quadrature']})"
        lines.append(f"{label:<45}{c['top_iou']:>12.2f}{c['spearman']:>10.2f}"
                     f"{c['com_shift_px']:>9.1f}px{delta:>37}")
    worst = max((e[side]["relative_delta"] for e in report["explanations"]
                 if e["method"] == "integrated_gradients" for side in ("clean", "adversarial")), default=0.0)
    if worst > 0.05:
        lines.append(f"(IG's completeness error reaches {worst:.0%}: raise --steps for a more exact IG map)")
    causal = report.get("interventions") or {}
    if "maps" in causal:
        a, r = causal["attribution"], causal["random"]
        lines += ["", "which pixels carry the attack (the perturbation kept on each map's top pixels only; "
                      "share of the margin change z_true - z_adv kept)",
                  f"{'ranking':<45}{'AUC':>8}{'kept at top 10%':>17}",
                  f"{'random pixels (median)':<45}{r['auc_median']:>8.2f}{r['kept_at_top']:>17.2f}"]
        for name, m in causal["maps"].items():
            label = "attack attribution" if name == "attack" else name
            lines.append(f"{label[:44]:<45}{m['auc']:>8.2f}{m['kept_at_top']:>17.2f}")
        lines.append(f"(attack attribution: {a['gradient_evaluations']} gradient evaluations, completeness error "
                     f"{a['relative_delta']:.2%}; its top 10% carry {a['top_share']:.0%} of the true logit's change)")
    elif causal:
        lines += ["", f"interventions: skipped ({causal['skipped']})"]
    w = report["weights"]
    lines += ["", f"weights: sha256 {w['sha256'][:16]}... {w['path']}", f"         {w['source']}",
              f"time:    {report['seconds']:.1f} s"]
    return "\n".join(line.rstrip() for line in lines)


def _pred(p: dict) -> str:
    return f"{p['name'][:24]:<25}{p['probability']:>7.2%}"


def explain_figure(x: np.ndarray, adv: np.ndarray, eps: float, eps_pixels: float, clean_top1, adv_top1,
                   maps: dict, title: str | None = None, *, comparisons: dict | None = None,
                   target: str | None = None, intervention=None, attack_failed: bool = False):
    """Return the figure: row 1 original / perturbation / adversarial (assignment Fig 1); rows 2-3 each
    image with its Grad-CAM and IG overlays (assignment Fig 5), one pair of columns per target set, each
    column titled with what its map explains in plain words.

    ``maps[name] = (gradcam maps [clean, adv], IG maps scaled for display [clean, adv])``;
    ``comparisons[name] = (compare_maps of the Grad-CAM pair, of the IG pair)``, written under the
    adversarial maps (how alike they are to the clean ones); ``target``: a line about a targeted attack's
    target class (its probability, reached or missed), shown under the adversarial image.
    ``intervention`` (an ``analysis.Intervention``) adds a last row: the attack attribution of the true
    class's logit (signed) and the perturbation curve of each map against random pixels. ``attack_failed``
    says so in red under the adversarial image. With two target sets the first row's spare columns hold a
    key to the figure instead of staying empty; one colour bar serves every map, beside the map rows.
    """
    import matplotlib.pyplot as plt

    from .plotting import overlay, show_image, show_perturbation

    cols = 1 + 2 * len(maps)
    n_rows = 3 if intervention is None else 4
    # At least 12 in wide: the overlap numbers under each map need about 3.5 in per column.
    fig, axes = plt.subplots(n_rows, cols, figsize=(max(3.6 * cols + 1.2, 12.0), n_rows * 3.3), squeeze=False,
                             constrained_layout=True)
    if intervention is not None:
        _intervention_row(fig, axes[3], x, intervention)
    labels = [f"{p.name} {p.probability:.1%}" for p in (clean_top1, adv_top1)]
    show_image(axes[0, 0], x, f"Original\n{labels[0]}")
    plural = "" if eps_pixels == 1 else "s"
    show_perturbation(axes[0, 1], adv - x, eps,
                      f"Perturbation, eps = {eps_pixels:g} pixel level{plural}\n(grey = 0, scaled to +-eps)")
    show_image(axes[0, 2], adv, f"Adversarial\n{labels[1]}" + (f"\n{target}" if target else ""))
    if attack_failed:
        axes[0, 2].text(0.5, -0.04, "the attack failed: the top-1 class is unchanged" if target is None else
                        "the attack missed its target class", transform=axes[0, 2].transAxes, ha="center",
                        va="top", color="#b00000", fontsize=9, fontweight="bold")
    if cols > 3:  # (two target sets) a key to the figure where the first row would leave slots empty
        grid = axes[0, 3].get_gridspec()
        for ax in axes[0, 3:]:
            ax.remove()
        key = fig.add_subplot(grid[0, 3:])
        key.axis("off")
        key.text(0.0, 0.5, "Rows: the original image, then the adversarial one, each with its maps.\n"
                 "Each pair of columns is one target set (named above each map): what\n"
                 "Grad-CAM and IG differentiate. Under an adversarial map: how alike it\n"
                 "is to the clean image's map of the same kind.", va="center", fontsize=9)
    im = None
    for row, (image, kind) in enumerate(((x, "Original"), (adv, "Adversarial")), start=1):
        show_image(axes[row, 0], image, f"{kind}: {labels[row - 1]}")
        col = 1
        for name, (cams, igs) in maps.items():
            pair_numbers = (comparisons or {}).get(name, (None, None))
            for k, (method, what, panel_maps) in enumerate(zip(("Grad-CAM", "IG"), TARGET_SETS[name],
                                                               (cams, igs))):
                panel_title = f"{method} of the\n{TARGET_WORDS[what]}"
                if row == 2 and pair_numbers[k] is not None:
                    panel_title += "\n" + _overlap_words(pair_numbers[k])
                im = overlay(axes[row, col + k], image, panel_maps[row - 1], panel_title)
            col += 2
    if im is not None:
        # Beside every column of the three image rows alike, so that the columns stay aligned.
        image_axes = [ax for ax in fig.axes if ax in set(axes[:3].ravel().tolist())] or axes[1:3].ravel().tolist()
        fig.colorbar(im, ax=image_axes, shrink=0.6, pad=0.01, aspect=30,
                     label="importance (Grad-CAM / max; IG / 99.5th pct.)")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _intervention_row(fig, row_axes, x: np.ndarray, intervention) -> None:
    """Draw the causal row: the signed attack attribution, then every map's perturbation curve vs random."""
    from .interventions import signed_map
    from .plotting import draw_perturbation_curves, signed_overlay

    attribution = signed_map(intervention.attribution.attributions)
    signed_overlay(row_axes[0], x, attribution,
                   f"Attack attribution (blue: lowered\nthe true class's logit; its top 10%\n"
                   f"carry {intervention.attribution_top_share:.0%} of the change)")
    grid = row_axes[1].get_gridspec()
    for ax in row_axes[1:]:
        ax.remove()
    ax = fig.add_subplot(grid[-1, 1:])
    labels = {name: f"{'attack attribution' if name == 'attack' else name}: AUC {curve.auc:.2f}"
              for name, curve in intervention.curves.items()}
    draw_perturbation_curves(ax, intervention.curves, {"attack": {"color": "black", "lw": 2.2}}, labels)
    ax.set_xlabel("share of pixels that keep the perturbation (each map's top pixels first)", fontsize=9)
    ax.set_ylabel("share of the margin change kept", fontsize=9)
    ax.set_title("Which pixels carry the attack? (the perturbation kept on each map's top pixels only; a share "
                 "above 1:\nthose pixels do more than the whole attack, because the other pixels work against it)",
                 fontsize=9)
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.grid(True, alpha=0.3)
    # (inside the axes: a legend outside would widen the figure and push the colour bar away from the maps)
    ax.legend(fontsize=8, loc="lower right", framealpha=0.9)


def _overlap_words(c: dict) -> str:
    """Return ``compare_maps`` numbers as the figure shows them under an adversarial map."""
    def num(v, fmt):
        return format(v, fmt) if v is not None and math.isfinite(v) else "undefined"
    return (f"vs clean: top-10% IoU {num(c['top_iou'], '.2f')}\nSpearman {num(c['spearman'], '.2f')}, "
            f"shift {num(c['com_shift_px'], '.0f')} px")


def index_page(entries: Sequence[Mapping], title: str) -> str:
    """Return an HTML page of several photos' explanations: one table row a photo, its figure linked.

    ``entries``: per photo ``{"photo": name, "figure": file name beside the page, "report": explain's JSON
    report}`` or ``{"photo": name, "error": one sentence}`` for a photo that could not be explained.
    """
    from html import escape

    def top1(report: Mapping, which: str) -> str:
        best = report[which]["top5"][0]
        return f"{escape(best['name'])} ({best['probability']:.1%})"

    rows = []
    for entry in entries:
        photo = escape(entry["photo"])
        if "error" in entry:
            rows.append(f"<tr class='error'><td>{photo}</td><td colspan='4'>not explained: "
                        f"{escape(entry['error'])}</td></tr>")
            continue
        report, figure = entry["report"], escape(entry["figure"])
        attack = report["attack"]
        verdict = "yes" if attack["succeeded"] else "<strong>no: the attack failed</strong>"
        rows.append(f"<tr><td>{photo}</td><td>{top1(report, 'clean')}</td><td>{top1(report, 'adversarial')}</td>"
                    f"<td>{verdict}</td><td><a href='{figure}'><img src='{figure}' alt='{photo} explained' "
                    f"width='360'></a></td></tr>")
    explained = sum("error" not in e for e in entries)
    fooled = sum("error" not in e and e["report"]["attack"]["succeeded"] for e in entries)
    return "\n".join([
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>", f"<title>{escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:.4em;vertical-align:top;text-align:left}"
        "tr.error td{color:#a00}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p>{explained} of {len(entries)} photos explained; the attack changed the top-1 class of {fooled} of "
        f"them. Each figure: the photo, the perturbation and the adversarial image, then Grad-CAM and "
        f"Integrated Gradients of both (click to enlarge).</p>",
        "<table><thead><tr><th>photo</th><th>clean top-1</th><th>adversarial top-1</th><th>attack "
        "succeeded</th><th>figure</th></tr></thead><tbody>", *rows, "</tbody></table></body></html>", ""])


__all__ = ["TARGET_SETS", "index_page", "eps_words", "TARGET_WORDS", "attack_description", "explain_figure", "format_report",
           "jsonable", "target_note", "versions"]
