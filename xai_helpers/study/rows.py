"""One batch of photos, analysed into the study's rows: attacks, maps, faithfulness, interventions.

Per photo (one per class, in a seeded random order so that any prefix is a random sample of classes):

1. attack: clean top-1, untargeted FGSM against the true label at every eps of ``EPS_GRID_PIXELS`` (one
   gradient, reused for every eps) and PGD (Madry et al. 2018; ``pgd_steps`` steps of eps/4, random start
   seeded per photo) at the same eps; columns ``{fgsm,pgd}{eps}_*``, with each image's high-frequency
   energy (``*_hf``); with ``targeted_pgd``, also PGD towards a seeded random target class per photo at
   the study eps (``tpgd_*``), whose image is explained and intervened on like the others';
2. for photos the model gets right, at ``STUDY_EPS_PIXELS`` (one pixel level, as in the single-photo
   chapters), per attack a: Grad-CAM and IG maps of logits (a class that has lost its probability is
   explained by its logit, not its softmax) of (clean, true class), (a's image, its class), (a's image, true
   class) and, as a control, (clean + random-sign noise of the same eps, true class), compared with
   ``compare_maps`` (Ghorbani et al. 2019); each IG map's completeness error ``ig_{pair}_reldelta``;
3. standard vs reversed targets (Grad-CAM logits vs softmax, IG softmax vs logits) on the clean and FGSM
   images, next to the model's confidence and the runner-up share ``p_2 / (1 - p_1)``;
4. faithfulness of each map (Grad-CAM, |IG|, signed IG positive first, a seeded random map) on the clean and
   FGSM images: deletion and insertion AUC (Petsiuk et al. 2018) normalised by the intact image's score, at
   ``deletion_steps`` and half as many (``_auc_half``); ROAD (Rong et al. 2022) on a seeded subset;
5. for the photos each attack fools, the causal columns (``analysis.intervene``): the share of the attack's
   margin change kept by each map's top pixels and by random pixels, the attack attribution's top share
   (refined to 1% completeness), and the (clean image, adversarial class) control map; with
   ``necessity_tests``, the same top pixels removed as well as kept, the smallest flipping fraction and
   shape-matched controls (``_necessity_columns``);
6. features that need only the image at hand, for telling clean from adversarial (``detection``):
   confidence, high-frequency energy, the maps' entropy and agreement;
7. the cost: ``gradient_evals`` and, per stage, the model passes (``passes_{stage}_forward`` and
   ``passes_{stage}_gradient``: images sent forward only, and forward and back; ``passes``).

Everything is seeded per photo, so a row never depends on the batch it was computed in except through
floating-point summation order (differences in the 6th significant digit).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from xai_helpers.classifier import passes
from xai_helpers.classifier.data import load_image, sample_image, sample_photos
from xai_helpers.classifier.forward import input_shape, probabilities
from xai_helpers.methods.attacks import loss_gradient_signs, pgd_batch, pixels_to_eps
from xai_helpers.methods.compare import compare_maps, top_mask
from xai_helpers.methods.detection import high_frequency_energy
from xai_helpers.methods.faithfulness import deletion_insertion_aucs, road_scores
from xai_helpers.methods.interventions import effect_shares, signed_map
from xai_helpers.study.analysis import IGSettings, explain, intervene
from xai_helpers.study.photos import StudyPhoto
from xai_helpers.study.settings import (
    ATTACK_NAMES,
    STUDY_GRADCAM_ENGINE,
    StudySettings,
    photo_order,
    random_sign_noise,
    random_target,
)


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


class _PhotoRecord(NamedTuple):
    """One photo of a batch: its record (``StudyPhoto`` or sample photo), file, label (None: unlabelled),
    the id its seeds derive from, and its position in the study order (which decides the ROAD subset)."""
    photo: object
    path: str | Path
    label: int | None
    seed_id: int
    position: int


def analyse_batch(model, photos: Sequence[int | StudyPhoto], settings: StudySettings) -> list[dict]:
    """Return one result row (a flat dict of numbers) per photo: sample photos by class index, or
    ``StudyPhoto`` records of a folder (rows keyed by ``file`` and ``sha256``; an unlabelled photo is attacked
    and explained for the model's own top-1 class, and its ``clean_correct`` stays empty).

    Every row has a ``status``: ``ok``, or ``error`` for a folder photo that cannot be read or decoded, whose
    row holds only its file, hash and the one-sentence ``error`` (the rest of the batch is analysed as
    usual). A sample photo that cannot be read stops the study instead: the Keras cache itself is broken.
    """
    rank = np.argsort(photo_order(settings.seed))  # position of each class in the study order
    size = input_shape(model)[0]
    records, xs, rows_at = [], [], {}
    for place, p in enumerate(photos):
        if isinstance(p, StudyPhoto):
            record = _PhotoRecord(p, p.path, p.label, p.seed_id, p.index)
            error = p.error
            if error is None:
                try:
                    xs.append(load_image(p.path, size))
                except (ValueError, OSError) as err:
                    error = str(err)
            if error is not None:
                rows_at[place] = {"file": p.name, "sha256": p.sha256, "status": "error", "error": error}
                continue
        else:
            sample = sample_photos()[int(p)]
            record = _PhotoRecord(sample, sample_image(int(p)), sample.class_index, sample.class_index,
                                  int(rank[int(p)]))
            xs.append(load_image(record.path, size))
        records.append((place, record))
    if records:
        keys = list(range(len(records)))  # each photo's key in the pass tally: its place among the analysed
        with passes.counting() as tally:
            rows = _analyse(model, [r for _, r in records], np.stack(xs), keys, settings)
        for key, (place, _), row in zip(keys, records, rows):
            row.update(tally.columns(key))
            rows_at[place] = row
    return [rows_at[place] for place in range(len(photos))]


def untargeted_images(model, xs: np.ndarray, truth: np.ndarray, eps: float, settings: StudySettings,
                      seed_ids: list, signs: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Return the study's untargeted adversarial images of a batch at ``eps``: FGSM, and PGD when
    ``settings.pgd_steps`` (random start seeded by ``[settings.seed, seed id]``); ``signs``: FGSM's, if known."""
    if signs is None:
        signs = loss_gradient_signs(model, xs, truth)
    attacked = {"fgsm": np.clip(xs + eps * signs, -1, 1).astype(np.float32)}
    if settings.pgd_steps:
        attacked["pgd"] = pgd_batch(model, xs, truth, eps, settings.pgd_steps,
                                    seeds=[[settings.seed, s] for s in seed_ids])
    return attacked


def _analyse(model, records: list[_PhotoRecord], xs: np.ndarray, keys: list[int],
             settings: StudySettings) -> list[dict]:
    """Return the rows of ``analyse_batch``, the pass columns still missing."""
    with passes.stage("classify", keys):
        clean_probs = probabilities(model, xs)
    clean_top = clean_probs.argmax(axis=1)
    truth = np.array([r.label if r.label is not None else int(clean_top[i]) for i, r in enumerate(records)])
    seed_ids = [r.seed_id for r in records]
    with passes.stage("attacks", keys):
        signs = loss_gradient_signs(model, xs, truth)
    rows = []
    for i, r in enumerate(records):
        top1 = int(clean_top[i])
        if isinstance(r.photo, StudyPhoto):
            row = {"file": r.photo.name, "sha256": r.photo.sha256, "status": "ok",
                   "class_index": "" if r.label is None else r.label,
                   "clean_top1": top1, "clean_correct": "" if r.label is None else int(top1 == r.label)}
        else:
            row = {"class_index": r.photo.class_index, "wnid": r.photo.wnid, "name": r.photo.name, "status": "ok",
                   "clean_top1": top1, "clean_correct": int(top1 == r.photo.class_index)}
        row.update({"clean_p_true": float(clean_probs[i, truth[i]]),
                    "clean_p_top1": float(clean_probs[i, top1]),
                    "clean_runnerup_share": runner_up_share(clean_probs[i]),
                    "clean_hf": high_frequency_energy(xs[i])})
        rows.append(row)
    at_study_eps: dict[str, np.ndarray] = {}  # the adversarial images the explanations use
    probs_at_study_eps: dict[str, np.ndarray] = {}  # and the model's probabilities on them (not recomputed)
    for levels in settings.eps_grid_pixels:
        eps = pixels_to_eps(levels)
        with passes.stage("attacks", keys):
            attacked = untargeted_images(model, xs, truth, eps, settings, seed_ids, signs)
            adv_probs_of = {name: probabilities(model, images) for name, images in attacked.items()}
        for name, images in attacked.items():
            adv_probs = adv_probs_of[name]
            for i, row in enumerate(rows):
                top1 = int(np.argmax(adv_probs[i]))
                row.update({f"{name}{levels:g}_top1": top1, f"{name}{levels:g}_p_top1": float(adv_probs[i, top1]),
                            f"{name}{levels:g}_p_true": float(adv_probs[i, truth[i]]),
                            f"{name}{levels:g}_changed": int(top1 != row["clean_top1"]),
                            f"{name}{levels:g}_hf": high_frequency_energy(images[i])})
            if levels == settings.study_eps_pixels:
                at_study_eps[name], probs_at_study_eps[name] = images, adv_probs
    missing = set(ATTACK_NAMES[:1 + bool(settings.pgd_steps)]) - set(at_study_eps)
    if missing:
        raise ValueError(f"study_eps_pixels ({settings.study_eps_pixels:g}) must be one of eps_grid_pixels "
                         f"{settings.eps_grid_pixels}.")
    if settings.targeted_pgd and settings.pgd_steps:
        at_study_eps["tpgd"], probs_at_study_eps["tpgd"] = _targeted_attack(model, xs, truth, rows, seed_ids,
                                                                            settings, keys)
    # Explained: correctly classified photos, and unlabelled ones (explained for their own top-1).
    correct = [i for i, row in enumerate(rows) if row["clean_correct"] != 0]
    if correct:
        _explain(model, xs[correct], {a: images[correct] for a, images in at_study_eps.items()},
                 {a: probs[correct] for a, probs in probs_at_study_eps.items()},
                 [rows[i] for i in correct], settings, [int(truth[i]) for i in correct],
                 [seed_ids[i] for i in correct], [records[i].position for i in correct], correct)
    return rows


def _targeted_attack(model, xs: np.ndarray, truth: np.ndarray, rows: list[dict], seed_ids: Sequence[int],
                     settings: StudySettings, keys: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """PGD towards each photo's ``random_target`` at the study eps: columns ``tpgd_target``,
    ``tpgd_p_target`` (its probability after the attack), ``tpgd_hit`` (the target is the top-1) and
    ``tpgd_hf``; returns the adversarial images and the model's probabilities on them."""
    eps = pixels_to_eps(settings.study_eps_pixels)
    targets = [random_target(int(t), s, settings.seed) for t, s in zip(truth, seed_ids)]
    with passes.stage("attacks", keys):
        images = pgd_batch(model, xs, targets, eps, settings.pgd_steps, targeted=True,
                           seeds=[[settings.seed, s, ATTACK_NAMES.index("tpgd")] for s in seed_ids])
        probs = probabilities(model, images)
    for i, row in enumerate(rows):
        row.update({"tpgd_target": targets[i], "tpgd_p_target": float(probs[i, targets[i]]),
                    "tpgd_hit": int(np.argmax(probs[i]) == targets[i]), "tpgd_hf": high_frequency_energy(images[i])})
    return images, probs


def _explain(model, xs: np.ndarray, attacked: dict[str, np.ndarray], attacked_probs: dict[str, np.ndarray],
             rows: list[dict], settings: StudySettings,
             truth: list[int], seed_ids: list[int], positions: list[int], keys: list[int]) -> None:
    """Add the explanation columns (questions 2-7 of the module's docstring) to the rows of explained photos.

    Maps are of logits (Grad-CAM and IG) wherever a class may have lost its probability (the true class on an
    attacked image, the adversarial class on the clean one); the softmax maps appear only in the
    standard-vs-reversed comparison, on the images whose top-1 class they explain.
    """
    n = len(xs)
    eps = pixels_to_eps(settings.study_eps_pixels)
    noise = np.stack([random_sign_noise(x.shape, s, settings.seed) for x, s in zip(xs, seed_ids)])
    noisy = np.clip(xs + eps * noise, -1, 1).astype(np.float32)
    with passes.stage("classify", keys):
        noisy_probs = probabilities(model, noisy)
    adv_cls = {}
    for a, images in attacked.items():
        probs = attacked_probs[a]
        adv_cls[a] = [int(np.argmax(p)) for p in probs]
        for i, row in enumerate(rows):
            row.update({f"{a}_top1": adv_cls[a][i], f"{a}_p_top1": float(probs[i, adv_cls[a][i]]),
                        f"{a}_p_true": float(probs[i, truth[i]]), f"{a}_runnerup_share": runner_up_share(probs[i]),
                        f"{a}_fooled": int(adv_cls[a][i] != truth[i])})
    for i, row in enumerate(rows):
        row.update({"noise_top1": int(np.argmax(noisy_probs[i])), "noise_p_true": float(noisy_probs[i, truth[i]])})

    # (image, class) pairs explained for logits: clean/true, per attack adversarial/adversarial and
    # adversarial/true, the random-sign control noisy/true; for softmax: clean/true and fgsm/adversarial.
    pairs = {"clean": (xs, truth)}
    for a, images in attacked.items():
        pairs[f"{a}adv"] = (images, adv_cls[a])
        pairs[f"{a}true"] = (images, truth)
    pairs["noise"] = (noisy, truth)
    logit_maps = _maps(model, pairs, settings, keys)
    soft_maps = _maps(model, {"clean": pairs["clean"], "fgsmadv": pairs["fgsmadv"]}, settings, keys,
                      target="softmax")
    ig_evals = (settings.ig_steps + 1) * (len(pairs) + 2) * n

    fraction = settings.top_fraction
    for i, row in enumerate(rows):
        for method in ("gc", "ig"):
            for pair in pairs:
                if pair != "clean":
                    for metric, value in compare_maps(logit_maps[method]["clean"][i], logit_maps[method][pair][i],
                                                      fraction).items():
                        row[f"{method}_{pair}_{metric}"] = value
        for pair in pairs:
            row[f"ig_{pair}_reldelta"] = logit_maps["ig_result"][pair][i].relative_delta
        # Standard vs reversed targets, and the detection features, per image (with its top-1 class).
        for kind in ("clean",) + tuple(attacked):
            pair = "clean" if kind == "clean" else f"{kind}adv"
            gc, ig = logit_maps["gc"][pair][i], logit_maps["ig"][pair][i]
            cross = compare_maps(gc, ig, fraction)
            row.update({f"{kind}_gc_entropy": normalized_entropy(gc), f"{kind}_ig_entropy": normalized_entropy(ig),
                        f"{kind}_gc_vs_ig_spearman": cross["spearman"], f"{kind}_gc_vs_ig_iou": cross["top_iou"]})
            if pair in soft_maps["gc"]:
                gc_pair = compare_maps(gc, soft_maps["gc"][pair][i], fraction)
                ig_pair = compare_maps(soft_maps["ig"][pair][i], ig, fraction)
                soft, logit = soft_maps["ig_result"][pair][i], logit_maps["ig_result"][pair][i]
                row.update({f"{kind}_gc_logit_vs_softmax_spearman": gc_pair["spearman"],
                            f"{kind}_gc_logit_vs_softmax_iou": gc_pair["top_iou"],
                            f"{kind}_ig_softmax_vs_logit_spearman": ig_pair["spearman"],
                            f"{kind}_ig_softmax_vs_logit_iou": ig_pair["top_iou"],
                            f"{kind}_ig_softmax_reldelta": soft.relative_delta,
                            f"{kind}_ig_logit_reldelta": logit.relative_delta,
                            f"{kind}_ig_softmax_total": float(soft.attributions.sum()),
                            f"{kind}_ig_logit_total": float(logit.attributions.sum())})
        # Faithfulness (clean photo, true class; FGSM image, its class): deletion/insertion with blur, and
        # ROAD on the photos among the first ``road_photos`` of the study order.
        for k, (kind, pair) in enumerate((("clean", "clean"), ("fgsm", "fgsmadv"))):
            image, cls = pairs[pair][0][i], pairs[pair][1][i]
            # Seeded per photo and image, so a row never depends on which batch it was computed in.
            random_map = np.random.default_rng([settings.seed, seed_ids[i], k]).random(image.shape[:2])
            ig_signed = signed_map(logit_maps["ig_result"][pair][i].attributions)
            ranked = {"gc": logit_maps["gc"][pair][i], "igabs": logit_maps["ig"][pair][i], "igpos": ig_signed,
                      "random": random_map}
            with passes.stage("deletion_insertion", [keys[i]]):
                p_intact, aucs = deletion_insertion_aucs(model, image, ranked, cls, settings.deletion_steps,
                                                         settings.deletion_blur_sigma,
                                                         logits=settings.logit_faithfulness)
            row[f"{kind}_faith_p"] = p_intact
            for name, values in aucs.items():
                for curve in ("deletion", "insertion"):
                    row[f"{curve[:3]}_{name}_{kind}_auc"] = values[curve]
                    row[f"{curve[:3]}_{name}_{kind}_auc_half"] = values[f"{curve}_half"]
                    if settings.logit_faithfulness:
                        row[f"{curve[:3]}_{name}_{kind}_auc_logit"] = values[f"{curve}_logit"]
            if positions[i] < settings.road_photos:
                with passes.stage("road", [keys[i]]):
                    road = road_scores(model, image, {m: ranked[m] for m in ("gc", "igpos", "random")}, cls,
                                       seed=[settings.seed, seed_ids[i], k])
                for name, values in road.items():
                    row.update({f"road_{order}_{name}_{kind}": value for order, value in values.items()})
        row["gradient_evals"] = 1 + settings.pgd_steps * len(settings.eps_grid_pixels) + ig_evals // n
    controls = _control_maps(model, xs, truth, adv_cls, settings, keys)
    for a in attacked:
        _intervention_columns(model, xs, a, attacked[a], rows, truth, adv_cls[a], logit_maps, settings, seed_ids,
                              keys, controls)


def _maps(model, pairs: dict[str, tuple[np.ndarray, Sequence[int]]], settings: StudySettings,
          keys: Sequence[int], target: str = "logits") -> dict[str, dict]:
    """Return Grad-CAM and IG maps (and IG results) of named (images, classes) pairs, for one target:
    ``{"gc": {pair: [maps]}, "ig": {pair: [maps]}, "ig_result": {pair: [IGResult]}}``, one batched call each."""
    images = np.concatenate([imgs for imgs, _ in pairs.values()])
    classes = [int(c) for _, cls in pairs.values() for c in cls]
    ig = IGSettings(steps=settings.ig_steps, method=settings.ig_method, baseline=settings.ig_baseline)
    with passes.stage("gradcam", keys):  # every pair holds one image of each photo of ``keys``
        gc_maps, _ = explain(model, images, classes, "gradcam", target, gradcam_engine=STUDY_GRADCAM_ENGINE,
                             gradcam_upsampling=settings.gradcam_upsampling)
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


def _control_maps(model, xs: np.ndarray, truth: Sequence[int], adv_cls: dict[str, list[int]],
                  settings: StudySettings, keys: Sequence[int]) -> dict[tuple[int, int], tuple]:
    """Return ``{(photo, class): (Grad-CAM map, IG map, IG result)}``: the clean image explained for each
    class an attack moved it to, computed once when FGSM and PGD pick the same class."""
    pairs = sorted({(i, cls[i]) for cls in adv_cls.values() for i in range(len(xs)) if cls[i] != truth[i]})
    if not pairs:
        return {}
    maps = _maps(model, {"control": (xs[[i for i, _ in pairs]], [c for _, c in pairs])}, settings,
                 [keys[i] for i, _ in pairs])
    return {pair: (maps["gc"]["control"][j], maps["ig"]["control"][j], maps["ig_result"]["control"][j])
            for j, pair in enumerate(pairs)}


def _intervention_columns(model, xs: np.ndarray, attack_name: str, adv: np.ndarray, rows: list[dict],
                          truth: Sequence[int], adv_cls: Sequence[int], maps: dict, settings: StudySettings,
                          seed_ids: Sequence[int], keys: Sequence[int], controls: dict) -> None:
    """Add one attack's causal columns (``analysis.intervene``) to the rows of the photos it fooled.

    Per fooled photo, with a = ``attack_name`` and m = z_true - z_adv the margin the attack flips:

    * ``{gc,ig}_clean{a}_{top_iou,spearman,com_shift_px}``: the control map (clean image explained for the
      adversarial class's logit: the class changed, the image not) compared with the clean image's map;
    * ``{a}_kept_{map}``: the share of the attack's change of m kept when the perturbation stays only on the
      map's top ``top_fraction`` pixels, for each map, and ``{a}_kept_random_median`` for
      ``intervention_random_masks`` seeded random pixel sets of the same size;
    * ``{a}_attack_top_share``: the share of the true logit's drop carried by the top pixels of the attack
      attribution (IG from the clean to the adversarial image, refined to 1% completeness; its error and
      cost in ``{a}_attack_reldelta`` and ``{a}_attack_steps``), and ``{a}_kept_attack`` for the top pixels
      of the margin's attribution (``{a}_attack_margin_steps`` evaluations).
    """
    fooled = [i for i in range(len(xs)) if adv_cls[i] != truth[i]]
    if not fooled:
        return
    fraction = settings.top_fraction
    margin_rankings: dict[int, np.ndarray] = {}
    for i in fooled:
        row = rows[i]
        ranked = {}
        for method in ("gc", "ig"):
            control = controls[(i, adv_cls[i])][("gc", "ig").index(method)]
            for metric, value in compare_maps(maps[method]["clean"][i], control,
                                              fraction).items():
                row[f"{method}_clean{attack_name}_{metric}"] = value
            for kind in ("clean", f"{attack_name}adv", f"{attack_name}true"):
                ranked[f"{method}_{kind}"] = maps[method][kind][i]
            ranked[f"{method}_clean{attack_name}"] = control
        row[f"ig_clean{attack_name}_reldelta"] = controls[(i, adv_cls[i])][2].relative_delta
        with passes.stage("interventions", [keys[i]]):
            result = intervene(model, xs[i], adv[i], truth[i], adv_cls[i], ranked, fractions=(fraction,),
                               n_random=settings.intervention_random_masks,
                               seed=[settings.seed, seed_ids[i], ATTACK_NAMES.index(attack_name)],
                               top_fraction=fraction)
        attribution = result.attribution
        row.update({f"{attack_name}_attack_change": attribution.f_x - attribution.f_baseline,
                    f"{attack_name}_attack_top_share": result.attribution_top_share,
                    f"{attack_name}_attack_reldelta": attribution.relative_delta,
                    f"{attack_name}_attack_steps": attribution.steps,
                    f"{attack_name}_attack_margin_steps": result.margin_attribution.steps})
        row.update({f"{attack_name}_kept_{name}": curve.share_at(fraction) for name, curve in result.curves.items()})
        row[f"{attack_name}_kept_random_median"] = result.curves["attack"].random_share_at(fraction)
        row["gradient_evals"] += (settings.ig_steps + 1) + attribution.steps + result.margin_attribution.steps
        if settings.necessity_tests:
            margin_rankings[i] = -signed_map(result.margin_attribution.attributions)
            with passes.stage("interventions", [keys[i]]):
                row.update(_necessity_columns(model, xs[i], adv[i], truth[i], adv_cls[i], attack_name, ranked,
                                              margin_rankings[i], settings,
                                              [settings.seed, seed_ids[i], ATTACK_NAMES.index(attack_name)]))
    if settings.necessity_tests:
        # The bisections of all fooled photos in lock-step: ~16 batched rounds instead of ~16 per photo.
        from xai_helpers.methods.sufficiency import smallest_flipping_fractions

        with passes.stage("interventions", [keys[i] for i in fooled]):
            flips = smallest_flipping_fractions(model, xs[fooled], adv[fooled],
                                                np.stack([margin_rankings[i] for i in fooled]),
                                                [truth[i] for i in fooled])
        for i, value in zip(fooled, flips):
            rows[i][f"{attack_name}_flip_fraction"] = float(value)


def _necessity_columns(model, x: np.ndarray, adv: np.ndarray, true_class: int, adv_class: int, attack_name: str,
                       ranked: dict, margin_ranking: np.ndarray, settings: StudySettings, seed: list) -> dict:
    """One fooled photo's necessity columns (``sufficiency``), with a = ``attack_name``:

    * ``{a}_removed_{map}``: the share of the margin change that survives removing the perturbation from
      the map's top ``top_fraction`` pixels (kept everywhere else); ``{a}_removed_attack`` for the margin
      attribution's top pixels; ``{a}_sufficient_{map}`` / ``{a}_necessary_{map}``: keeping only those
      pixels changes the label / removing them gives the true label back (1 or 0);
    * ``{a}_kept_moved_{gc,ig}_median``: the median share kept by ``intervention_random_masks`` moved
      copies (rotated, mirrored, shifted: same shape and area) of the clean map's top pixels, the
      shape-matched control of ``{a}_kept_{gc,ig}_clean`` (a scattered mask whose bounding box spans the
      image can only be turned and mirrored: then its copies are those).
    """
    from xai_helpers.methods.controls import moved_copies
    from xai_helpers.methods.sufficiency import region_verdicts

    fraction = settings.top_fraction
    masks = {name: top_mask(m, fraction) for name, m in ranked.items()}
    masks["attack"] = top_mask(margin_ranking, fraction)
    verdicts = region_verdicts(model, x, adv, masks, true_class, adv_class)
    columns: dict = {}
    for name, v in verdicts.items():
        columns.update({f"{attack_name}_removed_{name}": v.removed_share,
                        f"{attack_name}_sufficient_{name}": int(v.sufficient),
                        f"{attack_name}_necessary_{name}": int(v.necessary)})
    seed_value = int(np.random.SeedSequence(seed).generate_state(1)[0])
    for method in ("gc", "ig"):
        copies = moved_copies(masks[f"{method}_clean"], settings.intervention_random_masks, seed=seed_value)
        columns[f"{attack_name}_kept_moved_{method}_median"] = float(np.median(
            effect_shares(model, x, adv, copies, true_class, adv_class)))
    return columns


__all__ = ["analyse_batch", "normalized_entropy", "runner_up_share", "untargeted_images"]
