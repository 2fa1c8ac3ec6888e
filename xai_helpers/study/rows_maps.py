"""The explanation columns of a batch's correctly classified photos: maps, their comparisons, faithfulness,
the class-share controls and where the true class's evidence lies.

Maps are of logits (Grad-CAM and IG) wherever a class may have lost its probability (the true class on an
attacked image, the adversarial class on the photo); the softmax maps appear only in the standard-vs-reversed
comparison, on the images whose top-1 class they explain. The column names are ``columns``'s.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from xai_helpers.classifier import passes
from xai_helpers.classifier.forward import num_classes
from xai_helpers.methods.compare import compare_maps, top_mask
from xai_helpers.methods.faithfulness import deletion_insertion_aucs, road_scores
from xai_helpers.methods.interventions import signed_map
from xai_helpers.methods.location import share_inside
from xai_helpers.study import columns as col
from xai_helpers.study.analysis import IGSettings, explain
from xai_helpers.study.settings import STUDY_GRADCAM_ENGINE, StudySettings, random_target


@dataclass
class ExplainedBatch:
    """The correctly classified photos of a batch, as the explanation and causal stages see them."""

    model: object
    settings: StudySettings
    xs: np.ndarray  #: the photos (N, H, W, C)
    truth: list[int]  #: each photo's class
    seed_ids: list[int]  #: what each photo's seeds derive from
    positions: list[int]  #: each photo's place in the study order (the ROAD subset)
    keys: list[int]  #: each photo's key in the pass tally
    rows: list[dict]  #: each photo's row, filled in place
    clean_probs: np.ndarray  #: the model's probabilities on the photos (N, classes)
    objects: list[np.ndarray | None]  #: each photo's object mask (None: no mask)
    edges: list[np.ndarray]  #: each photo's edge pixels
    attacked: dict[str, np.ndarray]  #: each attack's images (N, H, W, C)
    adv_cls: dict[str, list[int]] = field(default_factory=dict)  #: each attack's top-1 class per photo
    targets: list[int] | None = None  #: the targeted attack's class per photo
    maps: dict = field(default_factory=dict)  #: ``explained_maps``'s logit maps of every explained pair

    def regions(self, i: int) -> dict[str, np.ndarray]:
        """Photo ``i``'s regions (``columns.REGIONS``): its edges, and its object when it has a mask."""
        return {"edges": self.edges[i], **({"object": self.objects[i]} if self.objects[i] is not None else {})}


def explain_batch(batch: ExplainedBatch, probs: dict[str, np.ndarray]) -> None:
    """Fill the explanation columns of ``batch.rows``; ``probs``: the model's probabilities on each attack's
    images. Leaves the logit maps in ``batch.maps`` for the causal stage."""
    settings, xs, truth, keys = batch.settings, batch.xs, batch.truth, batch.keys
    for a, images in batch.attacked.items():
        batch.adv_cls[a] = [int(np.argmax(p)) for p in probs[a]]
        for i, row in enumerate(batch.rows):
            row.update({col.attacked(a, "top1"): batch.adv_cls[a][i],
                        col.attacked(a, "p_top1"): float(probs[a][i].max()),
                        col.attacked(a, "p_true"): float(probs[a][i, truth[i]]),
                        col.attacked(a, "runnerup_share"): runner_up_share(probs[a][i]),
                        col.attacked(a, "fooled"): int(batch.adv_cls[a][i] != truth[i])})
    pairs = {"clean": (xs, truth)}
    for a, images in batch.attacked.items():
        pairs[f"{a}adv"] = (images, batch.adv_cls[a])
        pairs[f"{a}true"] = (images, truth)
    pairs["noise"] = (_noisy(batch), truth)
    pairs.update(_control_pairs(batch))
    batch.maps = explained_maps(batch.model, pairs, settings, keys)
    soft = explained_maps(batch.model, {"clean": pairs["clean"], "fgsmadv": pairs["fgsmadv"]}, settings, keys,
                 target="softmax")
    for i, row in enumerate(batch.rows):
        _comparisons(row, batch.maps, i, settings.top_fraction)
        _standard_vs_reversed(row, batch.maps, soft, i, tuple(batch.attacked), settings.top_fraction)
        for method in ("gc", "ig"):
            clean_top = top_mask(batch.maps[method]["clean"][i], settings.top_fraction)
            for region, mask in batch.regions(i).items():
                row[col.clean_located(method, region)] = share_inside(clean_top, mask)
        _faithfulness(batch, pairs, i)
        row["gradient_evals"] = (1 + settings.pgd_steps * len(settings.eps_grid_pixels)
                                 + (settings.ig_steps + 1) * (len(pairs) + 2))


def normalized_entropy(saliency: np.ndarray) -> float:
    """Return the entropy of a non-negative map seen as a distribution, divided by log(pixels) (0..1).

    1 = evidence spread evenly over the image, 0 = all evidence in one pixel.
    """
    m = np.maximum(np.asarray(saliency, dtype=np.float64).ravel(), 0.0)
    total = m.sum()
    if total <= 0:
        return float("nan")
    p = m[m > 0] / total
    return float(-(p * np.log(p)).sum() / np.log(m.size))


def runner_up_share(probs: np.ndarray) -> float:
    """Return ``p_2 / (1 - p_1)``: how much of the probability the top class leaves goes to the runner-up.

    The softmax gradient of class c is ``p_c (grad z_c - sum_j p_j grad z_j)``; normalised by ``p_c`` it is
    ``(1 - p_c) (grad z_c - sum_{j != c} p_j / (1 - p_c) grad z_j)``, so the mix of the *other* classes, and
    how concentrated it is on one runner-up, decides how a softmax map differs from a logit map at any
    confidence (NaN when p_1 = 1).
    """
    p = np.sort(np.asarray(probs, dtype=np.float64))[::-1]
    rest = 1.0 - p[0]
    return float(p[1] / rest) if rest > 0 else float("nan")


def _noisy(batch: ExplainedBatch) -> np.ndarray:
    """The photos with random-sign noise of the study eps (seeded per photo): the control image."""
    from xai_helpers.methods.attacks import pixels_to_eps
    from xai_helpers.study.settings import random_sign_noise

    eps = pixels_to_eps(batch.settings.study_eps_pixels)
    noise = np.stack([random_sign_noise(x.shape, s, batch.settings.seed) for x, s in zip(batch.xs, batch.seed_ids)])
    return np.clip(batch.xs + eps * noise, -1, 1).astype(np.float32)


def _control_pairs(batch: ExplainedBatch) -> dict[str, tuple]:
    """The class-share controls: the photo explained for its runner-up class and for a seeded random class
    (pairs "cleanrunnerup", "cleanrandom"), beside the adversarial class's control "clean{a}" (causal stage)."""
    runner_up = [int(np.argsort(-p, kind="stable")[1]) for p in batch.clean_probs]
    random = [random_target(t, s, batch.settings.seed + 1, num_classes(batch.model))
              for t, s in zip(batch.truth, batch.seed_ids)]
    return {"cleanrunnerup": (batch.xs, runner_up), "cleanrandom": (batch.xs, random)}


def explained_maps(model, pairs: dict[str, tuple[np.ndarray, Sequence[int]]], settings: StudySettings,
          keys: Sequence[int], target: str = "logits") -> dict[str, dict]:
    """Grad-CAM and IG maps (and IG results) of named (images, classes) pairs, for one target:
    ``{"gc": {pair: [maps]}, "ig": {pair: [maps]}, "ig_result": {pair: [IGResult]}}``, one batched call each."""
    images = np.concatenate([imgs for imgs, _ in pairs.values()])
    classes = [int(c) for _, cls in pairs.values() for c in cls]
    ig = IGSettings(steps=settings.ig_steps, method=settings.ig_method, baseline=settings.ig_baseline)
    with passes.stage("gradcam", keys):  # every pair holds one image of each photo of ``keys``
        gc_maps, _ = explain(model, images, classes, "gradcam", target, gradcam_engine=STUDY_GRADCAM_ENGINE)
    with passes.stage("ig", keys):
        ig_maps, ig_results = explain(model, images, classes, "ig", target, ig)
    out: dict[str, dict] = {"gc": {}, "ig": {}, "ig_result": {}}
    start = 0
    for name, (imgs, _) in pairs.items():
        stop = start + len(imgs)
        out["gc"][name], out["ig"][name] = gc_maps[start:stop], ig_maps[start:stop]
        out["ig_result"][name] = ig_results[start:stop]
        start = stop
    return out


def _comparisons(row: dict, maps: dict, i: int, fraction: float) -> None:
    """Each pair's map against the clean map (``compare_maps``), and each IG map's completeness error."""
    for method in ("gc", "ig"):
        for pair in maps[method]:
            if pair != "clean":
                for metric, value in compare_maps(maps[method]["clean"][i], maps[method][pair][i], fraction).items():
                    row[col.compared(method, pair, metric)] = value
    for pair in maps["ig_result"]:
        row[f"ig_{pair}_reldelta"] = maps["ig_result"][pair][i].relative_delta


def _standard_vs_reversed(row: dict, maps: dict, soft: dict, i: int, attacks: Sequence[str],
                          fraction: float) -> None:
    """Per image (with its top-1 class): entropy and agreement of its maps, and the logit vs softmax maps."""
    for kind in ("clean",) + tuple(attacks):
        pair = "clean" if kind == "clean" else f"{kind}adv"
        gc, ig = maps["gc"][pair][i], maps["ig"][pair][i]
        cross = compare_maps(gc, ig, fraction)
        row.update({f"{kind}_gc_entropy": normalized_entropy(gc), f"{kind}_ig_entropy": normalized_entropy(ig),
                    f"{kind}_gc_vs_ig_spearman": cross["spearman"], f"{kind}_gc_vs_ig_iou": cross["top_iou"]})
        if pair in soft["gc"]:
            gc_pair = compare_maps(gc, soft["gc"][pair][i], fraction)
            ig_pair = compare_maps(soft["ig"][pair][i], ig, fraction)
            s, z = soft["ig_result"][pair][i], maps["ig_result"][pair][i]
            row.update({f"{kind}_gc_logit_vs_softmax_spearman": gc_pair["spearman"],
                        f"{kind}_gc_logit_vs_softmax_iou": gc_pair["top_iou"],
                        f"{kind}_ig_softmax_vs_logit_spearman": ig_pair["spearman"],
                        f"{kind}_ig_softmax_vs_logit_iou": ig_pair["top_iou"],
                        f"{kind}_ig_softmax_reldelta": s.relative_delta, f"{kind}_ig_logit_reldelta": z.relative_delta,
                        f"{kind}_ig_softmax_total": float(s.attributions.sum()),
                        f"{kind}_ig_logit_total": float(z.attributions.sum())})


def _faithfulness(batch: ExplainedBatch, pairs: dict, i: int) -> None:
    """Deletion and insertion (blurred photo, probability and logit) of each map on the photo and its FGSM
    image, and ROAD on the photos among the first ``road_photos`` of the study order."""
    settings, row, maps = batch.settings, batch.rows[i], batch.maps
    for k, (kind, pair) in enumerate((("clean", "clean"), ("fgsm", "fgsmadv"))):
        image, cls = pairs[pair][0][i], pairs[pair][1][i]
        # Seeded per photo and image, so a row never depends on which batch it was computed in.
        random_map = np.random.default_rng([settings.seed, batch.seed_ids[i], k]).random(image.shape[:2])
        ranked = {"gc": maps["gc"][pair][i], "igabs": maps["ig"][pair][i],
                  "igpos": signed_map(maps["ig_result"][pair][i].attributions), "random": random_map}
        with passes.stage("deletion_insertion", [batch.keys[i]]):
            p_intact, aucs = deletion_insertion_aucs(batch.model, image, ranked, cls, settings.deletion_steps,
                                                     settings.deletion_blur_sigma, logits=True)
        row[f"{kind}_faith_p"] = p_intact
        for name, values in aucs.items():
            for curve in ("deletion", "insertion"):
                row[col.faithfulness(curve, name, kind)] = values[curve]
                row[col.faithfulness(curve, name, kind, "half")] = values[f"{curve}_half"]
                row[col.faithfulness(curve, name, kind, "logit")] = values[f"{curve}_logit"]
        if batch.positions[i] < settings.road_photos:
            with passes.stage("road", [batch.keys[i]]):
                road = road_scores(batch.model, image, {m: ranked[m] for m in ("gc", "igpos", "random")}, cls,
                                   seed=[settings.seed, batch.seed_ids[i], k])
            for name, values in road.items():
                row.update({f"road_{order}_{name}_{kind}": value for order, value in values.items()})


__all__ = ["ExplainedBatch", "explain_batch", "explained_maps", "normalized_entropy", "runner_up_share"]
