"""What ``explain`` reports for one photo: the JSON (``explain_report``), whether the attack succeeded
(``attack_record``) and the printed table (``format_report``). The command line
computes (``study.analysis``) and hands the results here; the figure is ``study.explain_figure``.
"""
from __future__ import annotations

import math

import numpy as np

from xai_helpers.methods.targets import TARGET_WORDS
from xai_helpers.study.explain_figure import search_lines


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
    from xai_helpers.classifier.labels import class_labels

    size = eps_words(levels, eps)
    if target_class is None:
        return {"kind": "fgsm", "target_class": None, "iterations": None, "eps": eps,
                "description": f"untargeted FGSM, {size}"}
    wnid, name = class_labels()[target_class]
    return {"kind": "iterative_fgsm_targeted",
            "target_class": {"class_index": target_class, "wnid": wnid, "name": name},
            "iterations": iterations, "eps": eps,
            "description": f"targeted iterative FGSM toward {name} ({iterations} its), {size}"}


def attack_record(model, x: np.ndarray, result, eps: float, target_class: int | None, iterations: int) -> dict:
    """The JSON's ``attack``: what the attack was (``attack_description``) and whether it succeeded: an
    untargeted attack when it changed the top-1 class, a targeted one when the top-1 class is its target
    (then also the target's probability before and after)."""
    from xai_helpers.classifier.forward import probabilities
    from xai_helpers.methods.attacks import eps_to_pixels

    attack = attack_description(eps, eps_to_pixels(eps), target_class, iterations, result.adv_top)
    if target_class is None:
        attack["succeeded"] = bool(result.adv_top[0].class_index != result.clean_top[0].class_index)
    else:
        p_clean, p_adv = probabilities(model, np.stack([x, result.adv]))[:, target_class]
        attack["target_probability"] = {"clean": float(p_clean), "adversarial": float(p_adv)}
        attack["succeeded"] = bool(result.adv_top[0].class_index == target_class)
    return attack


def explain_report(image, figure, model, x: np.ndarray, result, attack: dict, seconds: float) -> dict:
    """The JSON ``explain`` writes for one photo (and ``format_report`` prints)."""
    from xai_helpers.classifier.file_names import absolute
    from xai_helpers.classifier.provenance import weights_fingerprint
    from xai_helpers.methods.attacks import eps_to_pixels

    eps = attack_eps(attack)
    return {"image": str(absolute(image)), "figure": str(figure),
            "eps": {"levels": eps_to_pixels(eps), "model_units": eps}, "attack": attack,
            "clean": {"top5": [p._asdict() for p in result.clean_top]},
            "adversarial": {"top5": [p._asdict() for p in result.adv_top],
                            "linf_levels": eps_to_pixels(float(np.abs(result.adv - x).max()))},
            "explanations": result.explanations, "interventions": result.causal,
            "weights": weights_fingerprint(model), "versions": versions(), "seconds": seconds}


def attack_eps(attack: dict) -> float:
    """The attack's eps in model units (``attack_description`` records it)."""
    return attack["eps"]


def missed_target(report: dict) -> str | None:
    """One sentence when a targeted attack missed its class (what the top-1 class is, what the target
    reached), else None."""
    attack = report["attack"]
    if attack.get("target_class") is None or attack["succeeded"]:
        return None
    top = report["adversarial"]["top5"][0]
    name, p = attack["target_class"]["name"], attack["target_probability"]
    return (f"the targeted attack missed: the adversarial image is {top['name']} ({top['probability']:.1%}), and "
            f"{name} has {p['adversarial']:.1%} (it had {p['clean']:.1%}); try a larger --eps or more --iterations")


def versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    from xai_helpers import __version__

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
    lines += [f"         {line}" for line in search_lines(attack.get("eps_search") or {})]
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


__all__ = ["attack_description", "attack_eps", "attack_record", "eps_words", "explain_report", "format_report",
           "jsonable", "missed_target", "target_note", "versions"]
