"""The many-photo study: FGSM, PGD and their explanations over the 1000 ImageNet sample photos (or a folder).

Per photo (one per class, in a seeded random order so that any prefix is a random sample of classes):

1. attack: clean top-1, untargeted FGSM against the true label at every eps of ``EPS_GRID_PIXELS`` (one
   gradient, reused for every eps) and PGD (Madry et al. 2018; ``pgd_steps`` steps of eps/4, random start
   seeded per photo) at the same eps; columns ``{fgsm,pgd}{eps}_*``, with each image's high-frequency
   energy (``*_hf``);
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
   (refined to 1% completeness), and the (clean image, adversarial class) control map;
6. (``sanity_check``) cascading randomisation of the top layers (Adebayo et al. 2018);
7. features that need only the image at hand, for telling clean from adversarial (``detection``):
   confidence, high-frequency energy, the maps' entropy and agreement;
8. the cost: ``seconds`` and ``gradient_evals`` (IG, attack attributions, attacks) per photo, and
   ``ran_on``, the machine.

Everything is seeded per photo. The table is rewritten atomically after every batch (``table``), so a long
run can be interrupted and resumed without losing a row. A row depends on the batch it was computed in only
through floating-point summation order (IG's chunks hold ``batch_size // photos`` path points per image):
differences appear in the 6th significant digit; the Ray runner uses the serial runner's batches, so its
rows are identical.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .attacks import PGD_STEPS, loss_gradient_signs, pgd_batch, pixels_to_eps
from .compare import compare_maps
from .data import load_image, sample_image, sample_photos
from .analysis import IGSettings, explain, intervene
# One module per idea; re-exported so that ``study.<name>`` keeps working for the chapters.
from .detection import detection_auc, high_frequency_energy, transfer_detection_auc  # noqa: F401
from .faithfulness import (class_probability_curves, curve_auc, deletion_insertion_aucs,  # noqa: F401
                           deletion_insertion_images, road_scores)
from .interventions import signed_map
from .sanity import SANITY_IG_STEPS, SANITY_STAGES, randomize_top_layers, sanity_check  # noqa: F401
from .summary import binned, bootstrap_ci  # noqa: F401
from .model import probabilities, weights_fingerprint

EPS_GRID_PIXELS = (0.5, 1.0, 2.0, 4.0, 8.0)
#: The explanations' eps: one pixel level, as in the single-photo chapters (``attacks.DEFAULT_EPS_PIXELS``).
STUDY_EPS_PIXELS = 1.0
#: The attacks compared side by side at every eps (PGD is left out when ``pgd_steps`` is 0).
ATTACK_NAMES = ("fgsm", "pgd")
#: IG steps in the study: 32 trapezoid steps (4x cheaper than the report's default of 128); the
#: completeness error this costs is recorded per map (``ig_reldelta_*``) and shown in the chapter.
STUDY_IG_STEPS = 32
STUDY_IG_METHOD = "trapezoid"
#: Deletion/insertion: pixels are removed (replaced by the blurred photo) or inserted in this many equal
#: steps, most important first; the table also holds the area from every other point (``_auc_half``), so
#: that the chapter measures whether this many steps is enough.
DELETION_STEPS = 16
DELETION_BLUR_SIGMA = 10.0
SEED = 0
#: Random masks per fooled photo for the chance level of "share of the attack kept by a map's top pixels".
INTERVENTION_RANDOM_MASKS = 8
#: ROAD (noisy linear imputation, ~50 sparse solves per photo) runs on the explained photos among the first
#: this many of the seeded study order: a seeded random subset of about 330 correctly classified photos.
ROAD_PHOTOS = 400


@dataclass(frozen=True)
class StudySettings:
    """Everything that determines the numbers of a study run (recorded in the CSV header)."""

    eps_grid_pixels: tuple[float, ...] = EPS_GRID_PIXELS
    study_eps_pixels: float = STUDY_EPS_PIXELS
    ig_steps: int = STUDY_IG_STEPS
    ig_method: str = STUDY_IG_METHOD
    ig_baseline: str = "black"
    deletion_steps: int = DELETION_STEPS
    deletion_blur_sigma: float = DELETION_BLUR_SIGMA
    top_fraction: float = 0.10
    seed: int = SEED
    #: Random pixel masks per fooled photo, the chance level of the intervention columns.
    intervention_random_masks: int = INTERVENTION_RANDOM_MASKS
    #: PGD (Madry et al. 2018) beside FGSM on the eps grid: this many steps of eps/4, random start seeded
    #: per photo; 0 leaves PGD out.
    pgd_steps: int = PGD_STEPS
    #: ROAD's faithfulness numbers for the photos among the first this many of the study order.
    road_photos: int = ROAD_PHOTOS
    extra: dict = field(default_factory=dict)

    def key(self) -> str:
        """Return a short hash of the settings, to refuse resuming a table made with other settings."""
        text = repr(sorted((k, v) for k, v in asdict(self).items() if k != "extra"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def photo_order(seed: int = SEED) -> np.ndarray:
    """Return the class indices 0..999 in the study's seeded random order."""
    return np.random.default_rng(seed).permutation(len(sample_photos()))


def random_sign_noise(shape: tuple[int, ...], class_index: int, seed: int = SEED) -> np.ndarray:
    """Return a {-1, +1} array, seeded by (seed, class_index) so each photo's control noise is fixed."""
    rng = np.random.default_rng([seed, class_index])
    return rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=shape)


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


@dataclass(frozen=True)
class StudyPhoto:
    """One photo of a study that is not an ImageNet sample photo (``folder_photos``)."""

    index: int  #: the row's identity: position in the folder's sorted file list
    path: str
    label: int | None  #: true class index, or None: then the model's own top-1 is attacked and explained

    @property
    def seed_id(self) -> int:
        """What this photo's random draws are seeded with (sample photos use their class index 0..999)."""
        return 1_000_000 + self.index


#: Photo files a folder source takes (by suffix, case-insensitive).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def folder_photos(folder: str | Path, labels: str | Path | None = None) -> list[StudyPhoto]:
    """Return the photos of ``folder`` (sorted by file name) with their classes from an optional labels CSV.

    The CSV has two columns, file name and class (a Keras class name, a WNID or an index 0-999), with or
    without a header line; photos it does not list are unlabelled. Raises ``FileNotFoundError`` for a
    missing folder or CSV and ``ValueError`` for an empty folder, an unknown class or a file the CSV names
    that the folder lacks.
    """
    from .cli import resolve_class

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"No folder of photos at {folder}.")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder} holds no photos (files ending in {', '.join(IMAGE_SUFFIXES)}).")
    classes: dict[str, int] = {}
    if labels is not None:
        labels = Path(labels)
        if not labels.is_file():
            raise FileNotFoundError(f"No labels file at {labels}.")
        with open(labels, newline="") as f:
            for number, cells in enumerate(csv.reader(f), start=1):
                if not cells or (number == 1 and cells[0].strip().lower() in ("file", "filename", "photo")):
                    continue
                if len(cells) != 2:
                    raise ValueError(f"{labels}, line {number}: expected 'file,class', got {len(cells)} cells.")
                try:
                    classes[cells[0].strip()] = resolve_class(cells[1].strip())
                except ValueError as err:
                    raise ValueError(f"{labels}, line {number}: {str(err).removeprefix('--target-class: ')}") \
                        from None
        missing = sorted(set(classes) - {p.name for p in files})
        if missing:
            raise ValueError(f"{labels} names {len(missing)} photo(s) that {folder} lacks, e.g. {missing[0]!r}.")
    return [StudyPhoto(i, str(p), classes.get(p.name)) for i, p in enumerate(files)]


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
    ``StudyPhoto`` records of a folder (rows keyed by ``photo_index``; an unlabelled photo is attacked and
    explained for the model's own top-1 class, and its ``clean_correct`` stays empty)."""
    records = []
    rank = np.argsort(photo_order(settings.seed))  # position of each class in the study order
    for p in photos:
        if isinstance(p, StudyPhoto):
            records.append(_PhotoRecord(p, p.path, p.label, p.seed_id, p.index))
        else:
            sample = sample_photos()[int(p)]
            records.append(_PhotoRecord(sample, sample_image(int(p)), sample.class_index, sample.class_index,
                                        int(rank[int(p)])))
    xs = np.stack([load_image(r.path) for r in records])
    clean_probs = probabilities(model, xs)
    clean_top = clean_probs.argmax(axis=1)
    truth = np.array([r.label if r.label is not None else int(clean_top[i]) for i, r in enumerate(records)])
    seed_ids = [r.seed_id for r in records]
    signs = loss_gradient_signs(model, xs, truth)
    rows = []
    for i, r in enumerate(records):
        top1 = int(clean_top[i])
        if isinstance(r.photo, StudyPhoto):
            row = {"photo_index": r.photo.index, "file": Path(r.path).name,
                   "class_index": "" if r.label is None else r.label,
                   "clean_top1": top1, "clean_correct": "" if r.label is None else int(top1 == r.label)}
        else:
            row = {"class_index": r.photo.class_index, "wnid": r.photo.wnid, "name": r.photo.name,
                   "clean_top1": top1, "clean_correct": int(top1 == r.photo.class_index)}
        row.update({"clean_p_true": float(clean_probs[i, truth[i]]),
                    "clean_p_top1": float(clean_probs[i, top1]),
                    "clean_runnerup_share": runner_up_share(clean_probs[i]),
                    "clean_hf": high_frequency_energy(xs[i])})
        rows.append(row)
    at_study_eps: dict[str, np.ndarray] = {}  # the adversarial images the explanations use
    for levels in settings.eps_grid_pixels:
        eps = pixels_to_eps(levels)
        attacked = {"fgsm": np.clip(xs + eps * signs, -1, 1).astype(np.float32)}
        if settings.pgd_steps:
            attacked["pgd"] = pgd_batch(model, xs, truth, eps, settings.pgd_steps,
                                        seeds=[[settings.seed, s] for s in seed_ids])
        for name, images in attacked.items():
            adv_probs = probabilities(model, images)
            for i, row in enumerate(rows):
                top1 = int(np.argmax(adv_probs[i]))
                row.update({f"{name}{levels:g}_top1": top1, f"{name}{levels:g}_p_top1": float(adv_probs[i, top1]),
                            f"{name}{levels:g}_p_true": float(adv_probs[i, truth[i]]),
                            f"{name}{levels:g}_changed": int(top1 != row["clean_top1"]),
                            f"{name}{levels:g}_hf": high_frequency_energy(images[i])})
            if levels == settings.study_eps_pixels:
                at_study_eps[name] = images
    missing = set(ATTACK_NAMES[:1 + bool(settings.pgd_steps)]) - set(at_study_eps)
    if missing:
        raise ValueError(f"study_eps_pixels ({settings.study_eps_pixels:g}) must be one of eps_grid_pixels "
                         f"{settings.eps_grid_pixels}.")
    # Explained: correctly classified photos, and unlabelled ones (explained for their own top-1).
    correct = [i for i, row in enumerate(rows) if row["clean_correct"] != 0]
    if correct:
        _explain(model, xs[correct], {a: images[correct] for a, images in at_study_eps.items()},
                 [rows[i] for i in correct], settings, [int(truth[i]) for i in correct],
                 [seed_ids[i] for i in correct], [records[i].position for i in correct])
    return rows


def _explain(model, xs: np.ndarray, attacked: dict[str, np.ndarray], rows: list[dict], settings: StudySettings,
             truth: list[int], seed_ids: list[int], positions: list[int]) -> None:
    """Add the explanation columns (questions 2-7 of the module's docstring) to the rows of explained photos.

    Maps are of logits (Grad-CAM and IG) wherever a class may have lost its probability (the true class on an
    attacked image, the adversarial class on the clean one); the softmax maps appear only in the
    standard-vs-reversed comparison, on the images whose top-1 class they explain.
    """
    n = len(xs)
    eps = pixels_to_eps(settings.study_eps_pixels)
    noise = np.stack([random_sign_noise(x.shape, s, settings.seed) for x, s in zip(xs, seed_ids)])
    noisy = np.clip(xs + eps * noise, -1, 1).astype(np.float32)
    noisy_probs = probabilities(model, noisy)
    adv_cls = {}
    for a, images in attacked.items():
        probs = probabilities(model, images)
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
    logit_maps = _maps(model, pairs, settings)
    soft_maps = _maps(model, {"clean": pairs["clean"], "fgsmadv": pairs["fgsmadv"]}, settings, target="softmax")
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
            p_intact, aucs = deletion_insertion_aucs(model, image, ranked, cls, settings.deletion_steps,
                                                     settings.deletion_blur_sigma)
            row[f"{kind}_faith_p"] = p_intact
            for name, values in aucs.items():
                for curve in ("deletion", "insertion"):
                    row[f"{curve[:3]}_{name}_{kind}_auc"] = values[curve]
                    row[f"{curve[:3]}_{name}_{kind}_auc_half"] = values[f"{curve}_half"]
            if positions[i] < settings.road_photos:
                road = road_scores(model, image, {m: ranked[m] for m in ("gc", "igpos", "random")}, cls,
                                   seed=[settings.seed, seed_ids[i], k])
                for name, values in road.items():
                    row.update({f"road_{order}_{name}_{kind}": value for order, value in values.items()})
        row["gradient_evals"] = 1 + settings.pgd_steps * len(settings.eps_grid_pixels) + ig_evals // n
    for a in attacked:
        _intervention_columns(model, xs, a, attacked[a], rows, truth, adv_cls[a], logit_maps, settings, seed_ids)


def _maps(model, pairs: dict[str, tuple[np.ndarray, Sequence[int]]], settings: StudySettings,
          target: str = "logits") -> dict[str, dict]:
    """Return Grad-CAM and IG maps (and IG results) of named (images, classes) pairs, for one target:
    ``{"gc": {pair: [maps]}, "ig": {pair: [maps]}, "ig_result": {pair: [IGResult]}}``, one batched call each."""
    images = np.concatenate([imgs for imgs, _ in pairs.values()])
    classes = [int(c) for _, cls in pairs.values() for c in cls]
    ig = IGSettings(steps=settings.ig_steps, method=settings.ig_method, baseline=settings.ig_baseline)
    gc_maps, _ = explain(model, images, classes, "gradcam", target)
    ig_maps, ig_results = explain(model, images, classes, "ig", target, ig)
    out: dict[str, dict] = {"gc": {}, "ig": {}, "ig_result": {}}
    start = 0
    for name, (imgs, _) in pairs.items():
        stop = start + len(imgs)
        out["gc"][name], out["ig"][name] = gc_maps[start:stop], ig_maps[start:stop]
        out["ig_result"][name] = ig_results[start:stop]
        start = stop
    return out


def _intervention_columns(model, xs: np.ndarray, attack_name: str, adv: np.ndarray, rows: list[dict],
                          truth: Sequence[int], adv_cls: Sequence[int], maps: dict, settings: StudySettings,
                          seed_ids: Sequence[int]) -> None:
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
    control = _maps(model, {"control": (xs[fooled], [adv_cls[i] for i in fooled])}, settings)
    fraction = settings.top_fraction
    for j, i in enumerate(fooled):
        row = rows[i]
        ranked = {}
        for method in ("gc", "ig"):
            for metric, value in compare_maps(maps[method]["clean"][i], control[method]["control"][j],
                                              fraction).items():
                row[f"{method}_clean{attack_name}_{metric}"] = value
            for kind in ("clean", f"{attack_name}adv", f"{attack_name}true"):
                ranked[f"{method}_{kind}"] = maps[method][kind][i]
            ranked[f"{method}_clean{attack_name}"] = control[method]["control"][j]
        row[f"ig_clean{attack_name}_reldelta"] = control["ig_result"]["control"][j].relative_delta
        result = intervene(model, xs[i], adv[i], truth[i], adv_cls[i], ranked, fractions=(fraction,),
                           n_random=settings.intervention_random_masks,
                           seed=[settings.seed, seed_ids[i], ATTACK_NAMES.index(attack_name)], top_fraction=fraction)
        attribution = result.attribution
        row.update({f"{attack_name}_attack_change": attribution.f_x - attribution.f_baseline,
                    f"{attack_name}_attack_top_share": result.attribution_top_share,
                    f"{attack_name}_attack_reldelta": attribution.relative_delta,
                    f"{attack_name}_attack_steps": attribution.steps,
                    f"{attack_name}_attack_margin_steps": result.margin_attribution.steps})
        row.update({f"{attack_name}_kept_{name}": curve.share_at(fraction) for name, curve in result.curves.items()})
        row[f"{attack_name}_kept_random_median"] = result.curves["attack"].random_share_at(fraction)
        row["gradient_evals"] += (settings.ig_steps + 1) + attribution.steps + result.margin_attribution.steps



# ----------------------------------------------------------------------------------------------------
# Reading and writing result tables: ``xai_helpers.table`` (re-exported, so ``study.read_table`` works)

from .table import (check_resumable, load_table, read_table, set_aside, table_header,  # noqa: E402,F401
                    write_table)

import contextlib  # noqa: E402  (the runner's own import, kept in its section)


class StudyInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped ``run_study``; ``rows_kept`` rows are in the table at ``path``."""

    def __init__(self, rows_kept: int, path: Path, sanity_written: bool = True):
        super().__init__(f"interrupted, {rows_kept} rows kept in {path}")
        self.rows_kept, self.path, self.sanity_written = rows_kept, path, sanity_written


class _ExpectedRetracing:
    """A logging filter for TensorFlow's "triggered tf.function retracing" warning, which the study gets
    by design: the sanity check builds a new randomised model per stage, and each new model needs its own
    trace of the compiled explainers (one trace per model, not a retrace per call)."""

    @staticmethod
    def filter(record) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def _study_warnings():
    """Inside: no TensorFlow retracing warning (``_ExpectedRetracing``) and no ``compare_maps`` warning
    about constant maps, whose NaN cells the table records and the study chapter counts."""
    import logging
    import warnings

    logger = logging.getLogger("tensorflow")
    logger.addFilter(_ExpectedRetracing)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="compare_maps: map", category=RuntimeWarning)
            yield
    finally:
        logger.removeFilter(_ExpectedRetracing)


def run_study(n_photos: int, out: str | Path, settings: StudySettings | None = None, batch_size: int = 8,
              sanity_photos: int = 20, progress: bool = True, force_new: bool = False,
              ray_address: str | None = None, use_ray: bool = False, ray_workers: int | None = None,
              images: str | Path | None = None, labels: str | Path | None = None) -> Path:
    """Run the study on the first ``n_photos`` photos of ``photo_order`` and write ``out`` (CSV).

    The table is rewritten atomically after every batch (``table.write_table``: temporary file, fsync,
    rename), so an interrupted run keeps every finished batch and never leaves a cut table. An existing
    table is checked (``table.load_table``: damaged or repeated rows raise ``ValueError`` naming the file
    and line) and resumed when it was made with the same settings, weights and package version; otherwise
    ``ValueError`` says so in one sentence, unless ``force_new``, which renames it to ``<stem>.old.csv``
    (``.old2.csv``, ...) and starts a new table. Resumed rows keep their cells' text exactly; rows of photos
    beyond ``n_photos`` are kept too. A sanity-check table (``<out stem>_sanity.csv``, rewritten whole) is
    made for the first ``sanity_photos`` correctly classified photos.

    ``images`` studies the photos of a folder instead of the ImageNet sample photos (``folder_photos``, with
    the optional ``labels`` CSV; rows keyed by ``photo_index``, in file-name order; ``n_photos`` of them).
    With ``use_ray`` the batches run as Ray tasks (``distributed.ray_shards``: one model per worker, the same
    batches as a serial run, so the same rows; ``ray_address=None`` starts a local cluster of
    ``ray_workers`` CPUs, default all). Rows are written as batches finish, whichever finishes first.

    Ctrl-C (``KeyboardInterrupt``) raises ``StudyInterrupted`` with the number of rows kept. Returns the
    absolute path of ``out``.
    """
    from .outputs import absolute, check_outputs

    settings = settings or StudySettings()
    out = absolute(out)
    sanity_path = out.with_name(out.stem + "_sanity.csv") if sanity_photos else None
    state: dict = {"rows": [], "kept": None, "new": 0}
    try:
        check_outputs({"--out": out, "the sanity table": sanity_path}, force=True)
        header = table_header(settings, 0, "per photo")
        if out.exists() or out.is_symlink():
            if force_new:
                old = set_aside(out)
                if sanity_path is not None and sanity_path.exists():
                    set_aside(sanity_path)
                print(f"kept the old table as {old}", file=sys.stderr)
            else:
                table = load_table(out)
                check_resumable(table, header)
                state["rows"] = table.rows
        state["kept"] = len(state["rows"])
        with _study_warnings():
            photos = None if images is None else folder_photos(images, labels)
            _run_batches(n_photos, out, settings, batch_size, progress, header, state,
                         ray=(ray_address, ray_workers) if use_ray else None, photos=photos)
            if sanity_path is not None:
                from .model import load_model

                # (sample photos only: the sanity check loads photos by class index)
                chosen = [int(r["class_index"]) for r in state["rows"]
                          if "photo_index" not in r and str(r.get("clean_correct", "")) in ("1", "1.0")]
                sanity_rows = sanity_check(load_model(), chosen[:sanity_photos], settings)
                write_table(sanity_path, table_header(settings, len(chosen[:sanity_photos]), "sanity check",
                                                      {"sanity_ig_steps": SANITY_IG_STEPS}), sanity_rows)
    except StudyInterrupted:
        raise
    except KeyboardInterrupt:
        kept = state["kept"] if state["kept"] is not None else rows_on_disk(out)
        raise StudyInterrupted(kept, out, sanity_written=False) from None
    if progress:
        print(f"wrote {out} ({len(state['rows'])} photos; {state['new']} new in {state['seconds']:.0f} s)",
              file=sys.stderr)
    return out


def rows_on_disk(path: Path) -> int:
    """Return the number of rows of the table at ``path`` (0 when there is none or it cannot be read)."""
    try:
        return len(load_table(path).rows)
    except (OSError, ValueError):
        return 0


def _run_batches(n_photos: int, out: Path, settings: StudySettings, batch_size: int, progress: bool,
                 header: list[str], state: dict, ray: tuple[str | None, int | None] | None = None,
                 photos: list[StudyPhoto] | None = None) -> None:
    """Analyse the photos ``state["rows"]`` lacks, batch by batch, rewriting ``out`` after each batch;
    ``state`` always says what the table on disk holds (``rows``, ``kept``), even when interrupted.
    ``ray = (address, workers)`` runs the batches on Ray instead of here."""
    from tqdm.auto import tqdm

    from .distributed import ray_shards, serial_shards
    from .model import load_model
    from .outputs import signals_deferred

    if photos is None:  # the ImageNet sample photos, by class index, in the seeded study order
        full_order: list = [int(c) for c in photo_order(settings.seed)]
        key_of_photo, key_column = (lambda c: c), "class_index"
    else:  # a folder's photos, in file-name order
        full_order, key_of_photo, key_column = photos, (lambda p: p.index), "photo_index"
    rank = {key_of_photo(p): k for k, p in enumerate(full_order)}
    order = full_order[:n_photos]
    done = {int(float(r[key_column])) for r in state["rows"]}
    todo = [p for p in order if key_of_photo(p) not in done]
    shards = [todo[b:b + batch_size] for b in range(0, len(todo), batch_size)]
    start = time.perf_counter()
    where = machine_description()
    results = (serial_shards(load_model(), shards, settings) if ray is None else
               ray_shards(shards, settings, address=ray[0], workers=ray[1]))
    with tqdm(total=len(order), initial=len(order) - len(todo), desc="photos", unit="photo",
              disable=not progress, file=sys.stderr) as bar:
        for batch, new, seconds in results:
            per_photo = seconds / len(batch)
            for row in new:
                row.update(seconds=per_photo, ran_on=where)
            merged = sorted(state["rows"] + new, key=lambda r: rank[int(float(r[key_column]))])
            lines = [f"# photos: {len(merged)}" if h.startswith("# photos:") else h for h in header]
            with signals_deferred():  # the table on disk and `state` change together
                write_table(out, lines, merged)
                state.update(rows=merged, kept=len(merged), new=state["new"] + len(new))
            bar.update(len(batch))
    state["seconds"] = time.perf_counter() - start


def machine_description() -> str:
    """Return where a study row was computed, e.g. ``x86_64, 2 CPUs`` or ``x86_64, 16 CPUs, NVIDIA H100``
    (the table's ``ran_on`` column: the same code and seeds give the same rows up to float summation order)."""
    import os
    import platform

    import tensorflow as tf

    words = [platform.machine(), f"{os.cpu_count()} CPUs"]
    for gpu in tf.config.list_physical_devices("GPU"):
        words.append(tf.config.experimental.get_device_details(gpu).get("device_name", "GPU"))
    return ", ".join(words)


#: Columns holding whole numbers (for readers of ``read_table``, which gives floats).
_INT_COLUMNS = {"class_index", "clean_top1", "clean_correct", "fgsm_top1", "pgd_top1", "fgsm_fooled", "pgd_fooled",
                "noise_top1"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``study`` sub-command's options to ``parser`` (defined in ``cli.add_study_arguments``)."""
    from .cli import add_study_arguments

    add_study_arguments(parser)


def run_from_args(args: argparse.Namespace) -> int:
    """Run the study from parsed command-line arguments; return the exit status.

    0 = done; 130 = interrupted by Ctrl-C or SIGTERM ("interrupted, N rows kept in FILE" on stderr; the
    table holds every finished batch, and running the same command again resumes it).
    """
    import signal

    from .outputs import absolute

    images = getattr(args, "images", None)
    n_max = len(sample_photos()) if images is None else len(folder_photos(images, getattr(args, "labels", None)))
    if not 1 <= args.photos <= n_max:
        where = "sample photos" if images is None else f"photos in {images}"
        raise ValueError(f"--photos must be in [1, {n_max}] (the number of {where}), got {args.photos}.")
    if images is None and getattr(args, "labels", None) is not None:
        raise ValueError("--labels goes with --images (the sample photos' classes are known).")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}.")
    if args.sanity_photos < 0:
        raise ValueError(f"--sanity-photos must be 0 or more, got {args.sanity_photos}.")
    out = absolute(args.out)
    prog = getattr(args, "_prog", "xai_helpers study")

    def terminate(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)  # (``cli.main`` sets the same for the whole run)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        ray_address = getattr(args, "ray", None)
        run_study(args.photos, out, batch_size=args.batch_size, sanity_photos=args.sanity_photos,
                  progress=not args.quiet, force_new=getattr(args, "force_new", False),
                  use_ray=ray_address is not None, ray_address=ray_address or None,
                  ray_workers=getattr(args, "ray_workers", None), images=images,
                  labels=getattr(args, "labels", None))
        print(f"wrote {out}", flush=True)
    except KeyboardInterrupt as stop:  # StudyInterrupted, or Ctrl-C just before or after the study
        kept = stop.rows_kept if isinstance(stop, StudyInterrupted) else rows_on_disk(out)
        note = "" if getattr(stop, "sanity_written", True) or not args.sanity_photos else \
            " (the sanity table was not written)"
        print(f"{prog}: interrupted, {kept} rows kept in {out}{note}", file=sys.stderr, flush=True)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
