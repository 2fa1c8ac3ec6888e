"""The causal columns of one attack on a batch: which pixels carry it, where they lie, what is first-order.

Per photo the attack fools, with m = z_true - z_adv the margin it flips (column names: ``columns``):

* **which pixels** (``analysis.intervene``'s analysis): the share of the attack's change of m kept when only a
  ranking's top ``top_fraction`` pixels keep the perturbation, for each map, the attack attribution
  ("attack": IG along the clean-to-adversarial path, refined to 1% completeness), the attribution at
  Grad-CAM's 7 x 7 resolution ("attack7"), the first-order maps of the margin ("grad", "gradinput",
  "smoothgrad"; ``gradients``) and, on photos with an object mask, the object and the background; beside
  each, seeded random pixels and moved copies of the same top pixels (same shape and area), the
  shape-matched control;
* **necessity** (``sufficiency.region_verdicts``'s analysis): the same regions removed as well as kept, whether
  keeping only the region flips the label (a targeted attack: reaches its target) and whether removing it
  gives the true label back, and the smallest flipping fraction of the attack attribution's ranking;
* **where** (``location``): the share of the attribution's top pixels, of the smallest flipping region and
  of the adversarial class's evidence on the object and on the edges, and of the attribution's top pixels on
  the true class's evidence; the top-pixel overlap of the attribution with each first-order map.
"""
from __future__ import annotations

import numpy as np

from xai_helpers.classifier import passes
from xai_helpers.methods.compare import compare_maps, mask_iou, top_mask
from xai_helpers.methods.controls import moved_copies
from xai_helpers.methods.gradients import FIRST_ORDER, first_order_maps
from xai_helpers.methods.interventions import attack_attributions, shared_pass, shares_analysis, signed_map
from xai_helpers.methods.location import coarsen, share_inside
from xai_helpers.methods.sufficiency import smallest_flipping_fractions, verdicts_analysis
from xai_helpers.study import columns as col
from xai_helpers.study.analysis import intervention_analysis
from xai_helpers.study.rows_maps import ExplainedBatch, explained_maps

#: The rankings whose top pixels get moved copies (the shape-matched control), with the object mask.
MOVED_RANKINGS = ("gc_clean", "ig_clean", "gc_{a}adv", "ig_{a}adv", "attack", "grad")


def control_maps(batch: ExplainedBatch) -> dict[tuple[int, int], tuple]:
    """``{(photo, class): (Grad-CAM map, IG map, IG result)}``: the photo explained for each class an attack
    moved it to (the class changed, the image not), computed once when attacks pick the same class."""
    pairs = sorted({(i, cls[i]) for cls in batch.adv_cls.values() for i in range(len(batch.xs))
                    if cls[i] != batch.truth[i]})
    if not pairs:
        return {}
    maps = explained_maps(batch.model, {"control": (batch.xs[[i for i, _ in pairs]], [c for _, c in pairs])},
                 batch.settings, [batch.keys[i] for i, _ in pairs])
    return {pair: (maps["gc"]["control"][j], maps["ig"]["control"][j], maps["ig_result"]["control"][j])
            for j, pair in enumerate(pairs)}


def causal_columns(batch: ExplainedBatch, a: str, controls: dict) -> None:
    """Add attack ``a``'s causal columns to the rows of the photos it fooled (module docstring)."""
    fooled = [i for i in range(len(batch.xs)) if batch.adv_cls[a][i] != batch.truth[i]]
    if not fooled:
        return
    settings = batch.settings
    seeds = [[settings.seed, batch.seed_ids[i], col.ATTACKS.index(a)] for i in fooled]
    with passes.stage("first_order", [batch.keys[i] for i in fooled]):
        first = first_order_maps(batch.model, batch.xs[fooled], [batch.truth[i] for i in fooled],
                                 [batch.adv_cls[a][i] for i in fooled], seeds, settings.smoothgrad_samples)
    attributions = _attack_attributions(batch, a, fooled)
    towards = {}
    for j, i in enumerate(fooled):
        towards[i] = _photo_columns(batch, a, i, controls, {name: first[name][j] for name in FIRST_ORDER},
                                    seeds[j], attributions[j])
    _flip_columns(batch, a, fooled, towards)


def _attack_attributions(batch: ExplainedBatch, a: str, fooled: list[int]) -> list[tuple]:
    """Each fooled photo's attack attributions (true logit, margin), computed for all of them at once: the
    numbers each photo gets alone, in fuller chunks; each photo's passes recorded as its own."""
    xs, advs, truth = batch.xs[fooled], batch.attacked[a][fooled], [batch.truth[i] for i in fooled]
    with passes.stage("attack_attribution", [batch.keys[i] for i in fooled]):
        logit = attack_attributions(batch.model, xs, advs, truth)
        margin = attack_attributions(batch.model, xs, advs, truth, [batch.adv_cls[a][i] for i in fooled])
    return list(zip(logit, margin))


def _rankings(batch: ExplainedBatch, a: str, i: int, controls: dict) -> dict[str, np.ndarray]:
    """Photo ``i``'s maps that rank pixels for attack ``a``, and the control map's comparison columns."""
    row, maps, ranked = batch.rows[i], batch.maps, {}
    for k, method in enumerate(("gc", "ig")):
        control = controls[(i, batch.adv_cls[a][i])][k]
        for metric, value in compare_maps(maps[method]["clean"][i], control, batch.settings.top_fraction).items():
            row[col.compared(method, f"clean{a}", metric)] = value
        for kind in ("clean", f"{a}adv", f"{a}true"):
            ranked[f"{method}_{kind}"] = maps[method][kind][i]
        ranked[f"{method}_clean{a}"] = control
    row[f"ig_clean{a}_reldelta"] = controls[(i, batch.adv_cls[a][i])][2].relative_delta
    return ranked


# long: one photo's whole causal analysis for one attack: its maps, the first-order maps, its seed, its attributions
def _photo_columns(batch: ExplainedBatch, a: str, i: int, controls: dict, first: dict[str, np.ndarray],
                   seed: list, attributions: tuple) -> np.ndarray:
    """Fill photo ``i``'s columns for attack ``a``; return the attack attribution's ranking (toward the attack).

    The curves, the regions' verdicts and the moved copies share one pass of the model (``shared_pass``)."""
    settings, row, fraction = batch.settings, batch.rows[i], batch.settings.top_fraction
    x, adv, truth, adv_class = batch.xs[i], batch.attacked[a][i], batch.truth[i], batch.adv_cls[a][i]
    ranked = {**_rankings(batch, a, i, controls), **first}
    attribution, margin = attributions
    toward = -signed_map(margin.attributions)
    masks = {name: top_mask(m, fraction) for name, m in ranked.items()}
    masks["attack"], masks["attack7"] = top_mask(toward, fraction), top_mask(coarsen(toward, 7), fraction)
    if batch.objects[i] is not None:
        masks["object"], masks["background"] = batch.objects[i], ~batch.objects[i]
    target = batch.targets[i] if a == "tpgd" and batch.targets is not None else None
    moved = [name.format(a=a) for name in MOVED_RANKINGS] + (["object"] if "object" in masks else [])
    with passes.stage("interventions", [batch.keys[i]]):
        result, verdicts, shares = shared_pass(
            batch.model, x, adv,
            intervention_analysis(batch.model, x, adv, truth, adv_class, ranked, attributions, (fraction,),
                                  settings.intervention_random_masks, seed, fraction),
            verdicts_analysis(batch.model, x, adv, masks, truth, adv_class, target=target),
            shares_analysis(batch.model, x, adv, _moved_copies(masks, moved, seed, settings), truth, adv_class))
    row.update({col.attacked(a, "attack_change"): attribution.f_x - attribution.f_baseline,
                col.attacked(a, "attack_top_share"): result.attribution_top_share,
                col.attacked(a, "attack_reldelta"): attribution.relative_delta,
                col.attacked(a, "attack_steps"): attribution.steps,
                col.attacked(a, "attack_margin_steps"): margin.steps})
    row.update({col.kept(a, name): curve.share_at(fraction) for name, curve in result.curves.items()})
    row[col.kept(a, "random_median")] = result.curves["attack"].random_share_at(fraction)
    row["gradient_evals"] += (settings.ig_steps + 1) + attribution.steps + margin.steps + \
        (1 + settings.smoothgrad_samples)
    _necessity(row, a, verdicts, dict(zip(moved, shares.reshape(len(moved), -1))))
    _location(batch, a, i, masks)
    for name in FIRST_ORDER:  # compare_maps' top_iou from the top sets at hand (NaN for a constant map)
        constant = np.ptp(toward) == 0 or np.ptp(ranked[name]) == 0
        row[col.overlap(a, name)] = float("nan") if constant else mask_iou(masks["attack"], masks[name])
    return toward


def _moved_copies(masks: dict[str, np.ndarray], names: list[str], seed: list, settings) -> np.ndarray:
    """The seeded moved copies of the named masks (the shape-matched control), stacked name by name."""
    seed_value = int(np.random.SeedSequence(seed).generate_state(1)[0])
    return np.concatenate([moved_copies(masks[name], settings.intervention_random_masks, seed=seed_value)
                           for name in names])


def _necessity(row: dict, a: str, verdicts: dict, moved: dict[str, np.ndarray]) -> None:
    """Keeping and removing each region (sufficient / necessary), and the median share its moved copies keep."""
    for name, v in verdicts.items():
        row.update({col.removed(a, name): v.removed_share, col.verdict(a, "sufficient", name): int(v.sufficient),
                    col.verdict(a, "necessary", name): int(v.necessary)})
        if name in ("attack7", "object", "background"):
            row[col.kept(a, name)] = v.kept_share
    for name, kept in moved.items():
        row[col.kept_moved(a, name)] = float(np.median(kept))


def _location(batch: ExplainedBatch, a: str, i: int, masks: dict[str, np.ndarray]) -> None:
    """Where the attribution's top pixels and the adversarial class's evidence lie."""
    row = batch.rows[i]
    for region, mask in batch.regions(i).items():
        row[col.located(a, "attack", region)] = share_inside(masks["attack"], mask)
        for method in ("gc", "ig"):
            row[col.located(a, f"{method}adv", region)] = share_inside(masks[f"{method}_{a}adv"], mask)
    for method in ("gc", "ig"):
        row[col.located(a, "attack", f"{method}clean")] = share_inside(masks["attack"], masks[f"{method}_clean"])


def _flip_columns(batch: ExplainedBatch, a: str, fooled: list[int], towards: dict[int, np.ndarray]) -> None:
    """The smallest flipping fraction of each fooled photo (the bisections in lock-step: ~16 batched rounds
    instead of ~16 per photo), and where that region lies."""
    targets = [batch.targets[i] for i in fooled] if a == "tpgd" and batch.targets is not None else None
    with passes.stage("interventions", [batch.keys[i] for i in fooled]):
        flips = smallest_flipping_fractions(batch.model, batch.xs[fooled], batch.attacked[a][fooled],
                                            np.stack([towards[i] for i in fooled]),
                                            [batch.truth[i] for i in fooled], targets)
    for i, value in zip(fooled, flips):
        row = batch.rows[i]
        row[col.attacked(a, "flip_fraction")] = float(value)
        if np.isfinite(value):
            region = _top_pixels(towards[i], value)
            for name, mask in batch.regions(i).items():
                row[col.located(a, "flip", name)] = share_inside(region, mask)


def _top_pixels(ranking: np.ndarray, fraction: float) -> np.ndarray:
    """The first ``fraction`` of the pixels in the order of ``ranking`` (highest first; the bisection's order)."""
    order = np.argsort(-ranking.ravel(), kind="stable")
    mask = np.zeros(ranking.size, bool)
    mask[order[:int(round(fraction * ranking.size))]] = True
    return mask.reshape(ranking.shape)


__all__ = ["MOVED_RANKINGS", "causal_columns", "control_maps"]
