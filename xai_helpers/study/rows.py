"""One batch of photos, analysed into the study's rows: attacks, maps, faithfulness, interventions, location.

Per photo (one per class, in a seeded random order so that any prefix is a random sample of classes):

1. the photo: clean top-1 and probabilities; its object mask (``segmentation``: DeepLab v3's pixels of
   the class's own PASCAL category, when it has one on at least 5% of the photo) and its edge pixels;
2. attacks: untargeted FGSM against the true label at every eps of ``EPS_GRID_PIXELS`` (one gradient,
   reused for every eps) and PGD (Madry et al. 2018; ``pgd_steps`` steps of eps/4, random start seeded per
   photo) at the same eps; PGD towards a seeded random target class at the study eps ("tpgd"); and, for the
   photos the model gets right, the just-flipping PGD ("jf", ``just_flipping``): the smallest budget on a
   grid of 1/8 pixel level at which PGD flips the label, which removes the overshoot of a fixed eps;
3. for the photos the model gets right, at ``STUDY_EPS_PIXELS`` (and jf at its own budget), the maps,
   their comparisons, faithfulness and the class-share controls (``rows_maps``);
4. for the photos each attack fools, the causal and location columns (``rows_causal``);
5. the cost: ``gradient_evals`` and, per stage, the model passes (``passes``).

Every model pass runs on chunks of exactly ``forward.CHUNK`` images and every random draw is seeded per
photo, so a photo's row is the same whatever batch it was computed in (``tests/test_study_rows.py`` checks a
photo alone against its row from a batch of 8), except ``seconds`` and the ``passes_*`` columns: a stage's
passes are shared equally among the photos of its batch (accounting, not a result). Each row records
``code_sha``, the first 12 digits of the SHA-256 of the package's source (``provenance.source_digest``).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from xai_helpers.classifier import passes
from xai_helpers.classifier.data import load_image, sample_image, sample_photos
from xai_helpers.classifier.forward import input_shape, probabilities
from xai_helpers.classifier.pascal import PASCAL_CATEGORIES, pascal_category
from xai_helpers.classifier.provenance import source_digest
from xai_helpers.classifier.segmentation import MIN_OBJECT_SHARE, segment
from xai_helpers.methods.attacks import loss_gradient_signs, pgd_batch, pixels_to_eps
from xai_helpers.methods.detection import high_frequency_energy
from xai_helpers.methods.just_flipping import just_flipping
from xai_helpers.methods.location import edge_mask
from xai_helpers.study import columns as col
from xai_helpers.study.photos import StudyPhoto
from xai_helpers.study.rows_causal import causal_columns, control_maps
from xai_helpers.study.rows_maps import ExplainedBatch, explain_batch, runner_up_share
from xai_helpers.study.settings import StudySettings, photo_order, random_target


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
                    xs.append(load_image(p.path, size, settings.resize))
                except (ValueError, OSError) as err:
                    error = str(err)
            if error is not None:
                rows_at[place] = {"file": p.name, "sha256": p.sha256, "status": "error", "error": error}
                continue
        else:
            sample = sample_photos()[int(p)]
            record = _PhotoRecord(sample, sample_image(int(p)), sample.class_index, sample.class_index,
                                  int(rank[int(p)]))
            xs.append(load_image(record.path, size, settings.resize))
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
    rows = [_clean_row(r, xs[i], clean_probs[i], int(truth[i])) for i, r in enumerate(records)]
    objects = [_object(xs[i], r.label, rows[i]) for i, r in enumerate(records)]
    seed_ids = [r.seed_id for r in records]
    attacked, probs = _grid_attacks(model, xs, truth, rows, seed_ids, settings, keys)
    attacked["tpgd"], probs["tpgd"], targets = _targeted_attack(model, xs, truth, rows, seed_ids, settings, keys)
    # Explained: correctly classified photos, and unlabelled ones (explained for their own top-1).
    correct = [i for i, row in enumerate(rows) if row["clean_correct"] != 0]
    if correct:
        attacked["jf"], probs["jf"] = _just_flipping(model, xs[correct], truth[correct],
                                                     [rows[i] for i in correct], [seed_ids[i] for i in correct],
                                                     settings, [keys[i] for i in correct])
        batch = ExplainedBatch(model, settings, xs[correct], [int(truth[i]) for i in correct],
                               [seed_ids[i] for i in correct], [records[i].position for i in correct],
                               [keys[i] for i in correct], [rows[i] for i in correct], clean_probs[correct],
                               [objects[i] for i in correct], [edge_mask(xs[i]) for i in correct],
                               {a: images if a == "jf" else images[correct] for a, images in attacked.items()},
                               targets=[targets[i] for i in correct])
        explain_batch(batch, {a: p if a == "jf" else p[correct] for a, p in probs.items()})
        controls = control_maps(batch)
        for a in col.ATTACKS:
            causal_columns(batch, a, controls)
    code = source_digest()[:12]
    for row in rows:
        row["code_sha"] = code
    return rows


def _clean_row(record: _PhotoRecord, x: np.ndarray, probs: np.ndarray, truth: int) -> dict:
    """The photo's own columns: who it is, its top-1 class and confidence, its high-frequency energy."""
    top1 = int(np.argmax(probs))
    if isinstance(record.photo, StudyPhoto):
        row = {"file": record.photo.name, "sha256": record.photo.sha256, "status": "ok",
               "class_index": "" if record.label is None else record.label,
               "clean_top1": top1, "clean_correct": "" if record.label is None else int(top1 == record.label)}
    else:
        row = {"class_index": record.photo.class_index, "wnid": record.photo.wnid, "name": record.photo.name,
               "status": "ok", "clean_top1": top1, "clean_correct": int(top1 == record.photo.class_index)}
    row.update({"clean_p_true": float(probs[truth]), "clean_p_top1": float(probs[top1]),
                "clean_runnerup_share": runner_up_share(probs), "clean_hf": high_frequency_energy(x)})
    return row


def _object(x: np.ndarray, label: int | None, row: dict) -> np.ndarray | None:
    """The photo's object mask (None: its class has no PASCAL category, or the segmenter found it on less
    than ``MIN_OBJECT_SHARE``); its category and share go into the row."""
    category = None if label is None else pascal_category(label)
    row["object_category"] = "" if category is None else PASCAL_CATEGORIES[category]
    if category is None:
        row["object_share"] = ""
        return None
    mask = segment(x) == category
    row["object_share"] = float(mask.mean())
    return mask if mask.mean() >= MIN_OBJECT_SHARE else None


# long: the batch's photos, labels, rows and seeds, the settings and the pass tally's keys
def _grid_attacks(model, xs: np.ndarray, truth: np.ndarray, rows: list[dict], seed_ids: list[int],
                  settings: StudySettings, keys: list[int]) -> tuple[dict, dict]:
    """FGSM and PGD at every eps of the grid (columns ``columns.at_eps``); return the images at the study
    eps and the model's probabilities on them."""
    with passes.stage("attacks", keys):
        signs = loss_gradient_signs(model, xs, truth)
    images_at, probs_at = {}, {}
    for levels in settings.eps_grid_pixels:
        with passes.stage("attacks", keys):
            attacked = untargeted_images(model, xs, truth, pixels_to_eps(levels), settings, seed_ids, signs)
            probs_of = {name: probabilities(model, images) for name, images in attacked.items()}
        for name, images in attacked.items():
            for i, row in enumerate(rows):
                top1 = int(np.argmax(probs_of[name][i]))
                row.update({col.at_eps(name, levels, "top1"): top1,
                            col.at_eps(name, levels, "p_top1"): float(probs_of[name][i, top1]),
                            col.at_eps(name, levels, "p_true"): float(probs_of[name][i, truth[i]]),
                            col.at_eps(name, levels, "changed"): int(top1 != row["clean_top1"]),
                            col.at_eps(name, levels, "hf"): high_frequency_energy(images[i])})
            if levels == settings.study_eps_pixels:
                images_at[name], probs_at[name] = images, probs_of[name]
    if set(images_at) != {"fgsm", "pgd"}:
        raise ValueError(f"study_eps_pixels ({settings.study_eps_pixels:g}) must be one of eps_grid_pixels "
                         f"{settings.eps_grid_pixels}, and pgd_steps positive.")
    return images_at, probs_at


# long: the batch's photos, labels, rows and seeds, the settings and the pass tally's keys
def _targeted_attack(model, xs: np.ndarray, truth: np.ndarray, rows: list[dict], seed_ids: Sequence[int],
                     settings: StudySettings, keys: Sequence[int]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """PGD towards each photo's ``random_target`` at the study eps: columns ``tpgd_target``,
    ``tpgd_p_target`` (its probability after the attack), ``tpgd_hit`` (the target is the top-1) and
    ``tpgd_hf``; returns the adversarial images, the model's probabilities on them and the targets."""
    eps = pixels_to_eps(settings.study_eps_pixels)
    targets = [random_target(int(t), s, settings.seed) for t, s in zip(truth, seed_ids)]
    with passes.stage("attacks", keys):
        images = pgd_batch(model, xs, targets, eps, settings.pgd_steps, targeted=True,
                           seeds=[[settings.seed, s, col.ATTACKS.index("tpgd")] for s in seed_ids])
        probs = probabilities(model, images)
    for i, row in enumerate(rows):
        row.update({"tpgd_target": targets[i], "tpgd_p_target": float(probs[i, targets[i]]),
                    "tpgd_hit": int(np.argmax(probs[i]) == targets[i]), "tpgd_hf": high_frequency_energy(images[i])})
    return images, probs, targets


# long: the batch's photos, labels, rows and seeds, the settings and the pass tally's keys
def _just_flipping(model, xs: np.ndarray, truth: np.ndarray, rows: list[dict], seed_ids: Sequence[int],
                   settings: StudySettings, keys: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The just-flipping PGD of the correct photos (seeded as the study's PGD, so at one pixel level it is
    that PGD): column ``jf_levels`` (NaN: not even ``jf_max_levels`` flips it); returns the images (the
    photo itself where nothing flips) and the model's probabilities on them."""
    with passes.stage("just_flipping", keys):
        levels, images = just_flipping(model, xs, truth, [[settings.seed, s] for s in seed_ids],
                                       settings.pgd_steps, settings.jf_step_levels, settings.jf_max_levels)
        probs = probabilities(model, images)
    for row, value in zip(rows, levels):
        row[col.attacked("jf", "levels")] = float(value)
    return images, probs


__all__ = ["analyse_batch", "untargeted_images"]
