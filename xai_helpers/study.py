"""The many-photo study: FGSM and its explanations over the 1000 ImageNet sample photos.

Per photo (one per class, in a seeded random order so that any prefix is a random sample of classes):

1. attack: clean top-1, and untargeted FGSM against the true label at every eps of ``EPS_GRID_PIXELS``
   (one gradient, reused for every eps);
2. for photos the model gets right, at ``STUDY_EPS_PIXELS``: Grad-CAM (logits) and IG (softmax) maps of
   (clean, true class), (adversarial, adversarial class), (adversarial, true class) and, as a control,
   (clean + random-sign noise of the same eps, true class), compared with ``compare_maps`` (Ghorbani et
   al. 2019);
3. standard vs reversed targets (Grad-CAM logits vs softmax, IG softmax vs logits) on clean and
   adversarial images, next to the model's confidence;
4. deletion and insertion AUC (Petsiuk et al. 2018) of each map and of a random map;
5. (``sanity_check``) cascading randomisation of the top layers (Adebayo et al. 2018);
6. features that need only the image at hand, for telling clean from adversarial (``detection_auc``).

Everything is seeded; rows are appended to a CSV as batches finish, so a long run can be resumed.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .attacks import PGD_STEPS, loss_gradient_signs, pgd_batch, pixels_to_eps
from .compare import compare_maps, to_2d, top_mask
from .data import load_image, sample_image, sample_photos
from .gradcam import gradcam
from .integrated_gradients import adaptive_integrated_gradients_batch, integrated_gradients_batch
from .interventions import effect_shares, random_masks, signed_map
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


def analyse_batch(model, class_indices: Sequence[int], settings: StudySettings) -> list[dict]:
    """Return one result row (a flat dict of numbers) per photo of ``class_indices``."""
    photos = [sample_photos()[c] for c in class_indices]
    xs = np.stack([load_image(sample_image(int(c))) for c in class_indices])
    truth = np.array([p.class_index for p in photos])
    clean_probs = probabilities(model, xs)
    signs = loss_gradient_signs(model, xs, truth)
    rows = []
    for i, photo in enumerate(photos):
        top1 = int(np.argmax(clean_probs[i]))
        rows.append({"class_index": photo.class_index, "wnid": photo.wnid, "name": photo.name,
                     "clean_top1": top1, "clean_correct": int(top1 == photo.class_index),
                     "clean_p_true": float(clean_probs[i, photo.class_index]),
                     "clean_p_top1": float(clean_probs[i, top1]),
                     "clean_runnerup_share": runner_up_share(clean_probs[i])})
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
                                                       seeds=[[settings.seed, int(c)] for c in truth]))
            for i, row in enumerate(rows):
                top1 = int(np.argmax(pgd_probs[i]))
                row.update({f"pgd{levels:g}_top1": top1, f"pgd{levels:g}_p_top1": float(pgd_probs[i, top1]),
                            f"pgd{levels:g}_p_true": float(pgd_probs[i, truth[i]]),
                            f"pgd{levels:g}_changed": int(top1 != row["clean_top1"])})
    correct = [i for i, row in enumerate(rows) if row["clean_correct"]]
    if correct:
        _explain(model, xs[correct], signs[correct], [rows[i] for i in correct], settings)
    return rows


def _explain(model, xs: np.ndarray, signs: np.ndarray, rows: list[dict], settings: StudySettings) -> None:
    """Add the explanation columns (questions 2, 3, 4, 6) to the rows of correctly classified photos."""
    n = len(xs)
    eps = pixels_to_eps(settings.study_eps_pixels)
    truth = [row["class_index"] for row in rows]
    adv = np.clip(xs + eps * signs, -1, 1).astype(np.float32)
    noise = np.stack([random_sign_noise(x.shape, c, settings.seed) for x, c in zip(xs, truth)])
    noisy = np.clip(xs + eps * noise, -1, 1).astype(np.float32)
    adv_probs, noisy_probs = probabilities(model, adv), probabilities(model, noisy)
    adv_cls = [int(np.argmax(p)) for p in adv_probs]

    # Four (image, class) pairs per photo: clean/true, adv/adv, adv/true, noisy/true.
    images = np.concatenate([xs, adv, adv, noisy])
    classes = truth + adv_cls + truth + truth
    gc_logit = gradcam(model, images, classes, target="logits")
    ig_kw = dict(baseline=settings.ig_baseline, steps=settings.ig_steps, method=settings.ig_method)
    ig_soft = integrated_gradients_batch(model, images, classes, target="softmax", **ig_kw)
    # Reversed targets, on clean/true and adv/adv.
    gc_soft = gradcam(model, images[:2 * n], classes[:2 * n], target="softmax")
    ig_logit = integrated_gradients_batch(model, images[:2 * n], classes[:2 * n], target="logits", **ig_kw)
    ig_soft_2d = [to_2d(r.attributions) for r in ig_soft]
    ig_logit_2d = [to_2d(r.attributions) for r in ig_logit]

    curve_images, curve_classes, curve_names = [], [], []
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
            random_map = np.random.default_rng([settings.seed, truth[i], j // n]).random(x_j.shape[:2])
            for method, saliency in (("gc", gc_logit[j]), ("ig", ig_soft_2d[j]), ("random", random_map)):
                deletion, insertion = deletion_insertion_images(x_j, saliency, settings.deletion_steps,
                                                                settings.deletion_blur_sigma)
                curve_images += [deletion, insertion]
                curve_classes += [classes[j], classes[j]]
                curve_names += [(i, f"del_{method}_{image_kind}"), (i, f"ins_{method}_{image_kind}")]
    curves = class_probability_curves(model, np.concatenate(curve_images), curve_classes,
                                       settings.deletion_steps + 1)
    for (i, name), curve in zip(curve_names, curves):
        rows[i][f"{name}_auc"] = curve_auc(curve)
    maps = {"gc": {"clean": gc_logit[:n], "advadv": gc_logit[n:2 * n], "advtrue": gc_logit[2 * n:3 * n]},
            "ig": {"clean": ig_soft_2d[:n], "advadv": ig_soft_2d[n:2 * n], "advtrue": ig_soft_2d[2 * n:3 * n]}}
    _intervention_columns(model, xs, adv, rows, truth, adv_cls, maps, settings)


def _intervention_columns(model, xs: np.ndarray, adv: np.ndarray, rows: list[dict], truth: Sequence[int],
                          adv_cls: Sequence[int], maps: dict, settings: StudySettings) -> None:
    """Add the causal columns (``xai_helpers.interventions``) to the rows of the fooled photos.

    Per fooled photo, with m = z_true - z_adv the margin the attack flips:

    * ``{gc,ig}_cleanadv_{top_iou,spearman,com_shift_px}``: the control map (clean image explained for the
      adversarial class: the class changed, the image not) compared with the clean image's true-class map;
    * ``kept_{map}``: the share of the attack's change of m kept when the perturbation stays only on the
      map's top ``top_fraction`` pixels, for each map and for ``kept_random_median`` (median of
      ``intervention_random_masks`` seeded random pixel sets of the same size);
    * ``attack_logit_top_share``: the share of the true logit's drop carried by the top pixels of the attack
      attribution (IG from the clean to the adversarial image, refined to 1% completeness; its error and
      cost in ``attack_logit_reldelta`` and ``attack_logit_steps``), and ``kept_attack`` for its top pixels.
    """
    fooled = [i for i in range(len(xs)) if adv_cls[i] != truth[i]]
    if not fooled:
        return
    ig_kw = dict(baseline=settings.ig_baseline, steps=settings.ig_steps, method=settings.ig_method)
    classes = [adv_cls[i] for i in fooled]
    gc_control = gradcam(model, xs[fooled], classes, target="logits")
    ig_control = [to_2d(r.attributions) for r in
                  integrated_gradients_batch(model, xs[fooled], classes, target="softmax", **ig_kw)]
    attributions = adaptive_integrated_gradients_batch(model, adv[fooled], [truth[i] for i in fooled],
                                                       target="logits", baseline=xs[fooled])
    fraction = settings.top_fraction
    for j, i in enumerate(fooled):
        row = rows[i]
        for method, control in (("gc", gc_control[j]), ("ig", ig_control[j])):
            for metric, value in compare_maps(maps[method]["clean"][i], control, fraction).items():
                row[f"{method}_cleanadv_{metric}"] = value
        attribution = signed_map(attributions[j].attributions)
        drop = attribution.sum()
        toward_attack = np.sign(drop) * attribution
        row.update({"attack_logit_change": attributions[j].f_x - attributions[j].f_baseline,
                    "attack_logit_top_share": float(attribution[top_mask(toward_attack, fraction)].sum() / drop),
                    "attack_logit_reldelta": attributions[j].relative_delta,
                    "attack_logit_steps": attributions[j].steps})
        ranked = {f"{method}_{kind}": maps[method][kind][i] for method in ("gc", "ig")
                  for kind in ("clean", "advadv", "advtrue")}
        ranked.update({"gc_cleanadv": gc_control[j], "ig_cleanadv": ig_control[j], "attack": toward_attack})
        masks = np.concatenate([np.stack([top_mask(m, fraction) for m in ranked.values()]),
                                random_masks(xs[i].shape[:2], fraction, settings.intervention_random_masks,
                                             seed=[settings.seed, truth[i]])])
        shares = effect_shares(model, xs[i], adv[i], masks, truth[i], contrast_class=adv_cls[i])
        row.update({f"kept_{name}": float(share) for name, share in zip(ranked, shares)})
        row["kept_random_median"] = float(np.median(shares[len(ranked):]))


# ----------------------------------------------------------------------------------------------------
# Reading and writing result tables


def table_header(settings: StudySettings, n_photos: int, kind: str,
                 extra: dict[str, object] | None = None) -> list[str]:
    """Return the '# key: value' lines that open a result CSV (provenance of its numbers).

    ``extra`` adds settings particular to one table (e.g. the sanity check's IG steps).
    """
    from . import __version__

    fp = weights_fingerprint()
    return [f"# xai_helpers study table ({kind})", f"# photos: {n_photos}",
            f"# weights_sha256: {fp['sha256']}", f"# weights_source: {fp['source']}",
            f"# xai_helpers_version: {__version__}", f"# settings_key: {settings.key()}",
            f"# settings: {asdict(settings)}"] + [f"# {k}: {v}" for k, v in (extra or {}).items()]


def read_table(path: str | Path) -> tuple[dict[str, str], list[dict[str, float | str]]]:
    """Return (header metadata, rows) of a study CSV; numeric cells become floats, empty cells NaN."""
    meta, lines = {}, []
    for line in Path(path).read_text().splitlines():
        if line.startswith("# ") and ": " in line:
            key, value = line[2:].split(": ", 1)
            meta[key] = value
        elif not line.startswith("#"):
            lines.append(line)
    rows = []
    for raw in csv.DictReader(io.StringIO("\n".join(lines))):
        rows.append({k: _number(v) for k, v in raw.items()})
    return meta, rows


def _number(text: str) -> float | str:
    if text == "":
        return float("nan")  # a column that does not apply to this photo (e.g. maps of a missed photo)
    try:
        return float(text)
    except ValueError:
        return text


def write_table(path: Path, header: list[str], rows: list[dict]) -> None:
    """Write ``rows`` as CSV under the ``header`` comment lines (columns: union, in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with open(path, "w", newline="") as f:
        f.write("\n".join(header) + "\n")
        writer = csv.DictWriter(f, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def run_study(n_photos: int, out: str | Path, settings: StudySettings | None = None, batch_size: int = 8,
              sanity_photos: int = 20, progress: bool = True) -> Path:
    """Run the study on the first ``n_photos`` photos of ``photo_order`` and write ``out`` (CSV).

    Rows are rewritten after every batch (so an interrupted run keeps its finished photos) and an
    existing table made with the same settings is resumed. A sanity-check table is written next to it
    (``<out stem>_sanity.csv``) for the first ``sanity_photos`` correctly classified photos.
    """
    from tqdm.auto import tqdm

    from .model import load_model

    settings = settings or StudySettings()
    out = Path(out)
    model = load_model()
    order = [int(c) for c in photo_order(settings.seed)[:n_photos]]
    rows: list[dict] = []
    if out.exists():
        meta, old = read_table(out)
        if meta.get("settings_key") == settings.key():
            rows = [{k: (int(v) if isinstance(v, float) and v.is_integer() and k in _INT_COLUMNS else v)
                     for k, v in r.items()} for r in old if int(r["class_index"]) in order]
    done = {int(r["class_index"]) for r in rows}
    todo = [c for c in order if c not in done]
    start = time.perf_counter()
    with tqdm(total=len(order), initial=len(done), desc="photos", unit="photo", disable=not progress,
              file=sys.stderr) as bar:
        for b in range(0, len(todo), batch_size):
            batch = todo[b:b + batch_size]
            t0 = time.perf_counter()
            new = analyse_batch(model, batch, settings)
            per_photo = (time.perf_counter() - t0) / len(batch)
            for row in new:
                row["seconds"] = per_photo
            rows += new
            rank = {c: k for k, c in enumerate(order)}
            rows.sort(key=lambda r: rank[int(r["class_index"])])
            write_table(out, table_header(settings, len(rows), "per photo"), rows)
            bar.update(len(batch))
    elapsed = time.perf_counter() - start
    if sanity_photos:
        sanity_path = out.with_name(out.stem + "_sanity.csv")
        chosen = [int(r["class_index"]) for r in rows if int(r["clean_correct"])][:sanity_photos]
        sanity_rows = sanity_check(model, chosen, settings)
        write_table(sanity_path, table_header(settings, len(chosen), "sanity check",
                                              {"sanity_ig_steps": SANITY_IG_STEPS}), sanity_rows)
    if progress:
        print(f"wrote {out} ({len(rows)} photos; {len(todo)} new in {elapsed:.0f} s)", file=sys.stderr)
    return out


_INT_COLUMNS = {"class_index", "clean_top1", "clean_correct", "adv_top1", "fooled", "noise_top1"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``study`` sub-command's options to ``parser``."""
    parser.add_argument("--photos", type=int, default=300,
                        help="number of photos (classes) to analyse, in the seeded study order (max 1000)")
    parser.add_argument("--out", default="results/study.csv", help="CSV file to write (resumed if present)")
    parser.add_argument("--batch-size", type=int, default=8, help="photos per batch")
    parser.add_argument("--sanity-photos", type=int, default=20,
                        help="photos for the cascading-randomisation sanity check (0 to skip)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_from_args(args: argparse.Namespace) -> int:
    """Run the study from parsed command-line arguments; return the exit status."""
    if not 1 <= args.photos <= len(sample_photos()):
        raise ValueError(f"--photos must be in [1, {len(sample_photos())}], got {args.photos}.")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}.")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    run_study(args.photos, out, batch_size=args.batch_size, sanity_photos=args.sanity_photos,
              progress=not args.quiet)
    print(f"wrote {out}")
    return 0
