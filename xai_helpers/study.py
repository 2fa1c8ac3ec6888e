"""The many-photo study: FGSM, PGD and their explanations over the 1000 ImageNet sample photos (or a folder).

Per photo (one per class, in a seeded random order so that any prefix is a random sample of classes):

1. attack: clean top-1, untargeted FGSM against the true label at every eps of ``EPS_GRID_PIXELS`` (one
   gradient, reused for every eps), and PGD (Madry et al. 2018; ``pgd_steps`` steps, seeded per photo)
   at the same eps;
2. for photos the model gets right, at ``STUDY_EPS_PIXELS``: Grad-CAM (logits) and IG (softmax) maps of
   (clean, true class), (adversarial, adversarial class), (adversarial, true class) and, as a control,
   (clean + random-sign noise of the same eps, true class), compared with ``compare_maps`` (Ghorbani et
   al. 2019);
3. standard vs reversed targets (Grad-CAM logits vs softmax, IG softmax vs logits) on clean and
   adversarial images, next to the model's confidence and the runner-up share ``p_2 / (1 - p_1)``;
4. deletion and insertion AUC (Petsiuk et al. 2018) of each map and of a random map;
5. for fooled photos, the causal columns (``analysis.intervene``): the share of the attack's margin change
   kept by each map's top pixels and by random pixels, the attack attribution's top share, and the
   (clean image, adversarial class) control map;
6. (``sanity_check``) cascading randomisation of the top layers (Adebayo et al. 2018);
7. features that need only the image at hand, for telling clean from adversarial (``detection_auc``).

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

import numpy as np

from .attacks import PGD_STEPS, loss_gradient_signs, pgd_batch, pixels_to_eps
from .compare import compare_maps
from .data import load_image, sample_image, sample_photos
from .analysis import IGSettings, explain, intervene
# One module per idea; re-exported so that ``study.<name>`` keeps working for the chapters.
from .detection import detection_auc  # noqa: F401
from .faithfulness import class_probability_curves, curve_auc, deletion_insertion_images  # noqa: F401
from .sanity import SANITY_IG_STEPS, SANITY_STAGES, randomize_top_layers, sanity_check  # noqa: F401
from .summary import binned, bootstrap_ci  # noqa: F401
from .model import probabilities, weights_fingerprint

EPS_GRID_PIXELS = (0.5, 1.0, 2.0, 4.0, 8.0)
STUDY_EPS_PIXELS = 2.0
#: IG steps in the study: 32 trapezoid steps (4x cheaper than the report's default of 128); the
#: completeness error this costs is recorded per map (``ig_reldelta_*``) and shown in the chapter.
STUDY_IG_STEPS = 32
STUDY_IG_METHOD = "trapezoid"
#: Deletion/insertion: pixels are removed (replaced by the blurred photo) or inserted in this many equal
#: steps, most important first.
DELETION_STEPS = 10
DELETION_BLUR_SIGMA = 10.0
SEED = 0
#: Random masks per fooled photo for the chance level of "share of the attack kept by a map's top pixels".
INTERVENTION_RANDOM_MASKS = 8


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


def analyse_batch(model, photos: Sequence[int | StudyPhoto], settings: StudySettings) -> list[dict]:
    """Return one result row (a flat dict of numbers) per photo: sample photos by class index, or
    ``StudyPhoto`` records of a folder (rows keyed by ``photo_index``; an unlabelled photo is attacked and
    explained for the model's own top-1 class, and its ``clean_correct`` stays empty)."""
    records = []
    for p in photos:
        if isinstance(p, StudyPhoto):
            records.append((p, p.path, p.label, p.seed_id))
        else:
            sample = sample_photos()[int(p)]
            records.append((sample, sample_image(int(p)), sample.class_index, sample.class_index))
    xs = np.stack([load_image(path) for _, path, _, _ in records])
    clean_probs = probabilities(model, xs)
    clean_top = clean_probs.argmax(axis=1)
    truth = np.array([label if label is not None else int(clean_top[i])
                      for i, (_, _, label, _) in enumerate(records)])
    seed_ids = [seed_id for *_, seed_id in records]
    signs = loss_gradient_signs(model, xs, truth)
    rows = []
    for i, (photo, path, label, _) in enumerate(records):
        top1 = int(clean_top[i])
        if isinstance(photo, StudyPhoto):
            row = {"photo_index": photo.index, "file": Path(path).name, "class_index": "" if label is None else label,
                   "clean_top1": top1, "clean_correct": "" if label is None else int(top1 == label)}
        else:
            row = {"class_index": photo.class_index, "wnid": photo.wnid, "name": photo.name,
                   "clean_top1": top1, "clean_correct": int(top1 == photo.class_index)}
        row.update({"clean_p_true": float(clean_probs[i, truth[i]]),
                    "clean_p_top1": float(clean_probs[i, top1]),
                    "clean_runnerup_share": runner_up_share(clean_probs[i])})
        rows.append(row)
    for levels in settings.eps_grid_pixels:
        adv_probs = probabilities(model, np.clip(xs + pixels_to_eps(levels) * signs, -1, 1))
        for i, row in enumerate(rows):
            top1 = int(np.argmax(adv_probs[i]))
            row[f"adv{levels:g}_top1"] = top1
            row[f"adv{levels:g}_p_top1"] = float(adv_probs[i, top1])
            row[f"adv{levels:g}_p_true"] = float(adv_probs[i, truth[i]])
            row[f"adv{levels:g}_changed"] = int(top1 != row["clean_top1"])
        if settings.pgd_steps:
            pgd_probs = probabilities(model, pgd_batch(model, xs, truth, pixels_to_eps(levels), settings.pgd_steps,
                                                       seeds=[[settings.seed, s] for s in seed_ids]))
            for i, row in enumerate(rows):
                top1 = int(np.argmax(pgd_probs[i]))
                row.update({f"pgd{levels:g}_top1": top1, f"pgd{levels:g}_p_top1": float(pgd_probs[i, top1]),
                            f"pgd{levels:g}_p_true": float(pgd_probs[i, truth[i]]),
                            f"pgd{levels:g}_changed": int(top1 != row["clean_top1"])})
    # Explained: correctly classified photos, and unlabelled ones (explained for their own top-1).
    correct = [i for i, row in enumerate(rows) if row["clean_correct"] != 0]
    if correct:
        _explain(model, xs[correct], signs[correct], [rows[i] for i in correct], settings,
                 [int(truth[i]) for i in correct], [seed_ids[i] for i in correct])
    return rows


def _explain(model, xs: np.ndarray, signs: np.ndarray, rows: list[dict], settings: StudySettings,
             truth: list[int], seed_ids: list[int]) -> None:
    """Add the explanation columns (questions 2, 3, 4, 6) to the rows of correctly classified photos."""
    n = len(xs)
    eps = pixels_to_eps(settings.study_eps_pixels)
    adv = np.clip(xs + eps * signs, -1, 1).astype(np.float32)
    noise = np.stack([random_sign_noise(x.shape, s, settings.seed) for x, s in zip(xs, seed_ids)])
    noisy = np.clip(xs + eps * noise, -1, 1).astype(np.float32)
    adv_probs, noisy_probs = probabilities(model, adv), probabilities(model, noisy)
    adv_cls = [int(np.argmax(p)) for p in adv_probs]

    # Four (image, class) pairs per photo: clean/true, adv/adv, adv/true, noisy/true.
    images = np.concatenate([xs, adv, adv, noisy])
    classes = truth + adv_cls + truth + truth
    ig = IGSettings(steps=settings.ig_steps, method=settings.ig_method, baseline=settings.ig_baseline)
    gc_logit, _ = explain(model, images, classes, "gradcam", "logits")
    ig_soft_2d, ig_soft = explain(model, images, classes, "ig", "softmax", ig)
    # Reversed targets, on clean/true and adv/adv.
    gc_soft, _ = explain(model, images[:2 * n], classes[:2 * n], "gradcam", "softmax")
    ig_logit_2d, ig_logit = explain(model, images[:2 * n], classes[:2 * n], "ig", "logits", ig)

    for i, row in enumerate(rows):
        clean, advadv, advtrue, control = i, n + i, 2 * n + i, 3 * n + i
        row.update({"adv_top1": adv_cls[i], "adv_p_top1": float(adv_probs[i, adv_cls[i]]),
                    "adv_runnerup_share": runner_up_share(adv_probs[i]),
                    "adv_p_true": float(adv_probs[i, truth[i]]), "fooled": int(adv_cls[i] != truth[i]),
                    "noise_top1": int(np.argmax(noisy_probs[i])),
                    "noise_p_true": float(noisy_probs[i, truth[i]])})
        for method, maps in (("gc", gc_logit), ("ig", ig_soft_2d)):
            for pair, other in (("advadv", advadv), ("advtrue", advtrue), ("noise", control)):
                for metric, value in compare_maps(maps[clean], maps[other], settings.top_fraction).items():
                    row[f"{method}_{pair}_{metric}"] = value
        for image_kind, j in (("clean", clean), ("adv", advadv)):
            gc_pair = compare_maps(gc_logit[j], gc_soft[j], settings.top_fraction)
            ig_pair = compare_maps(ig_soft_2d[j], ig_logit_2d[j], settings.top_fraction)
            cross = compare_maps(gc_logit[j], ig_soft_2d[j], settings.top_fraction)
            row.update({f"{image_kind}_gc_logit_vs_softmax_spearman": gc_pair["spearman"],
                        f"{image_kind}_gc_logit_vs_softmax_iou": gc_pair["top_iou"],
                        f"{image_kind}_ig_softmax_vs_logit_spearman": ig_pair["spearman"],
                        f"{image_kind}_ig_softmax_vs_logit_iou": ig_pair["top_iou"],
                        f"{image_kind}_gc_vs_ig_spearman": cross["spearman"],
                        f"{image_kind}_gc_vs_ig_iou": cross["top_iou"],
                        f"{image_kind}_gc_entropy": normalized_entropy(gc_logit[j]),
                        f"{image_kind}_ig_entropy": normalized_entropy(ig_soft_2d[j]),
                        f"{image_kind}_ig_softmax_reldelta": ig_soft[j].relative_delta,
                        f"{image_kind}_ig_logit_reldelta": ig_logit[j].relative_delta,
                        f"{image_kind}_ig_logit_total": float(ig_logit[j].attributions.sum()),
                        f"{image_kind}_ig_softmax_total": float(ig_soft[j].attributions.sum())})
            x_j = images[j]
            # Seeded per photo and image, so a row never depends on which batch it was computed in.
            random_map = np.random.default_rng([settings.seed, seed_ids[i], j // n]).random(x_j.shape[:2])
            # One photo's curves at a time: the curve images of a whole batch would cost ~1 GB.
            curve_images, curve_names = [], []
            for method, saliency in (("gc", gc_logit[j]), ("ig", ig_soft_2d[j]), ("random", random_map)):
                deletion, insertion = deletion_insertion_images(x_j, saliency, settings.deletion_steps,
                                                                settings.deletion_blur_sigma)
                curve_images += [deletion, insertion]
                curve_names += [f"del_{method}_{image_kind}", f"ins_{method}_{image_kind}"]
            curves = class_probability_curves(model, np.concatenate(curve_images), [classes[j]] * len(curve_names),
                                              settings.deletion_steps + 1)
            for name, curve in zip(curve_names, curves):
                row[f"{name}_auc"] = curve_auc(curve)
    maps = {"gc": {"clean": gc_logit[:n], "advadv": gc_logit[n:2 * n], "advtrue": gc_logit[2 * n:3 * n]},
            "ig": {"clean": ig_soft_2d[:n], "advadv": ig_soft_2d[n:2 * n], "advtrue": ig_soft_2d[2 * n:3 * n]}}
    _intervention_columns(model, xs, adv, rows, truth, adv_cls, maps, settings, seed_ids)


def _intervention_columns(model, xs: np.ndarray, adv: np.ndarray, rows: list[dict], truth: Sequence[int],
                          adv_cls: Sequence[int], maps: dict, settings: StudySettings,
                          seed_ids: Sequence[int]) -> None:
    """Add the causal columns (``analysis.intervene``) to the rows of the fooled photos.

    Per fooled photo, with m = z_true - z_adv the margin the attack flips:

    * ``{gc,ig}_cleanadv_{top_iou,spearman,com_shift_px}``: the control map (clean image explained for the
      adversarial class: the class changed, the image not) compared with the clean image's true-class map;
    * ``kept_{map}``: the share of the attack's change of m kept when the perturbation stays only on the
      map's top ``top_fraction`` pixels, for each map, and ``kept_random_median`` for
      ``intervention_random_masks`` seeded random pixel sets of the same size;
    * ``attack_logit_top_share``: the share of the true logit's drop carried by the top pixels of the attack
      attribution (IG from the clean to the adversarial image, refined to 1% completeness; its error and
      cost in ``attack_logit_reldelta`` and ``attack_logit_steps``), and ``kept_attack`` for its top pixels.
    """
    fooled = [i for i in range(len(xs)) if adv_cls[i] != truth[i]]
    if not fooled:
        return
    ig = IGSettings(steps=settings.ig_steps, method=settings.ig_method, baseline=settings.ig_baseline)
    classes = [adv_cls[i] for i in fooled]
    gc_control, _ = explain(model, xs[fooled], classes, "gradcam", "logits")
    ig_control, _ = explain(model, xs[fooled], classes, "ig", "softmax", ig)
    fraction = settings.top_fraction
    for j, i in enumerate(fooled):
        row = rows[i]
        for method, control in (("gc", gc_control[j]), ("ig", ig_control[j])):
            for metric, value in compare_maps(maps[method]["clean"][i], control, fraction).items():
                row[f"{method}_cleanadv_{metric}"] = value
        ranked = {f"{method}_{kind}": maps[method][kind][i] for method in ("gc", "ig")
                  for kind in ("clean", "advadv", "advtrue")}
        ranked.update({"gc_cleanadv": gc_control[j], "ig_cleanadv": ig_control[j]})
        result = intervene(model, xs[i], adv[i], truth[i], adv_cls[i], ranked, fractions=(fraction,),
                           n_random=settings.intervention_random_masks, seed=[settings.seed, seed_ids[i]],
                           top_fraction=fraction)
        attribution = result.attribution
        row.update({"attack_logit_change": attribution.f_x - attribution.f_baseline,
                    "attack_logit_top_share": result.attribution_top_share,
                    "attack_logit_reldelta": attribution.relative_delta,
                    "attack_logit_steps": attribution.steps})
        row.update({f"kept_{name}": curve.share_at(fraction) for name, curve in result.curves.items()})
        row["kept_random_median"] = result.curves["attack"].random_share_at(fraction)


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
    results = (serial_shards(load_model(), shards, settings) if ray is None else
               ray_shards(shards, settings, address=ray[0], workers=ray[1]))
    with tqdm(total=len(order), initial=len(order) - len(todo), desc="photos", unit="photo",
              disable=not progress, file=sys.stderr) as bar:
        for batch, new, seconds in results:
            per_photo = seconds / len(batch)
            for row in new:
                row["seconds"] = per_photo
            merged = sorted(state["rows"] + new, key=lambda r: rank[int(float(r[key_column]))])
            lines = [f"# photos: {len(merged)}" if h.startswith("# photos:") else h for h in header]
            with signals_deferred():  # the table on disk and `state` change together
                write_table(out, lines, merged)
                state.update(rows=merged, kept=len(merged), new=state["new"] + len(new))
            bar.update(len(batch))
    state["seconds"] = time.perf_counter() - start


#: Columns holding whole numbers (for readers of ``read_table``, which gives floats).
_INT_COLUMNS = {"class_index", "clean_top1", "clean_correct", "adv_top1", "fooled", "noise_top1"}


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
