"""What every chapter of the book's study part reads: the committed table, its settings, the photos it explains.

One loader, so that the chapters of *A thousand photos* agree on which rows they read (photos that could not
be read are counted, not analysed), which settings made them (recognised by the key in the table's header,
``settings.settings_from_header``) and which subsets the verdicts are over: the correctly classified photos,
and among them those each attack fools. It also formats the intervals the chapters' tables print.
It reads results; it never runs the model.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from xai_helpers.chapters.paths import results_path
from xai_helpers.classifier.data import sample_photos
from xai_helpers.study.columns import ATTACK_TITLES
from xai_helpers.study.settings import StudySettings, settings_from_header
from xai_helpers.study.summary import bootstrap_ci, proportion_ci
from xai_helpers.study.table import analysed_rows, read_table

#: The attacks at the study eps, with their names in tables and figures.
ATTACKS = {"fgsm": "FGSM", "pgd": "PGD"}
#: Every attack a table holds: those and PGD towards a seeded random class per photo, and the just-flipping
#: PGD (the smallest budget that flips the label).
ALL_ATTACKS = dict(ATTACK_TITLES)


@dataclass(frozen=True)
class StudyBook:
    """The study table of one run, with the subsets the chapters' verdicts are over."""

    meta: dict
    rows: list[dict]
    n_skipped: int
    sanity_meta: dict
    sanity_rows: list[dict]

    @cached_property
    def settings(self) -> StudySettings:
        """The settings the table was made with (its header's settings line, checked against its key)."""
        return settings_from_header(self.meta, self.meta.get("path", "the study table"))

    @cached_property
    def table(self):
        """All analysed photos, one row each, indexed by class."""
        import pandas as pd

        frame = pd.DataFrame(self.rows)
        key = "class_index" if "class_index" in frame else "file" if "file" in frame else None
        return frame.set_index(key, drop=False) if key else frame

    @cached_property
    def sanity(self):
        """The sanity check's table: one row per (photo, randomised stage)."""
        import pandas as pd

        return pd.DataFrame(self.sanity_rows)

    @cached_property
    def correct(self):
        """The photos the model classifies correctly, the only ones an attack can fool (and a folder's
        unlabelled photos, explained for the model's own top-1 class)."""
        if "clean_correct" not in self.table:   # (a table of photos without labels: each explained as it is)
            return self.table
        return self.table[self.table.clean_correct.fillna(1) == 1]

    @cached_property
    def fooled(self) -> dict:
        """For each attack of the table (``ALL_ATTACKS``), the correct photos it fools at the study's eps."""
        correct = self.correct
        return {a: correct[correct[f"{a}_fooled"] == 1] for a in ALL_ATTACKS if f"{a}_fooled" in correct}

    @property
    def attacks(self) -> dict[str, str]:
        """The attacks this table holds, with their names."""
        return {a: name for a, name in ALL_ATTACKS.items() if a in self.fooled}

    @property
    def model_name(self) -> str:
        """The network the table was made with, as its header names it."""
        return self.meta.get("model", "MobileNetV2")

    def class_share(self, attack: str, method: str) -> float:
        """How much of the adversarial-class map's lost overlap the class change alone already gives.

        ``(1 - median IoU(clean map, map of the clean image for the adversarial class)) /
        (1 - median IoU(clean map, map of the adversarial image for the adversarial class))`` over the photos
        ``attack`` fools, for ``method`` "gc" or "ig": 1 means the (clean image, adversarial class) control
        loses as much overlap as the attacked image, so the class, not the perturbation, moves the map.
        """
        f = self.fooled[attack]
        return _class_share(f[f"{method}_clean{attack}_top_iou"].to_numpy(),
                            f[f"{method}_{attack}adv_top_iou"].to_numpy())

    def class_share_interval(self, attack: str, method: str, n_boot: int = 1000, level: float = 0.95,
                             seed: int = 0) -> tuple[float, float]:
        """The percentile bootstrap interval of ``class_share`` over the fooled photos (resampled in pairs)."""
        f = self.fooled[attack]
        control = f[f"{method}_clean{attack}_top_iou"].to_numpy()
        attacked = f[f"{method}_{attack}adv_top_iou"].to_numpy()
        rng = np.random.default_rng(seed)
        draws = [_class_share(control[i], attacked[i]) for i in rng.integers(0, len(f), (n_boot, len(f)))]
        tail = (1 - level) / 2 * 100
        return float(np.nanpercentile(draws, tail)), float(np.nanpercentile(draws, 100 - tail))

    def glue_values(self) -> dict[str, object]:
        """The numbers and words every study chapter may quote: photo counts and the run's settings."""
        s = self.settings
        n_photos, n_all = len(self.table), len(sample_photos())
        return {
            "n_photos": n_photos, "n_all": n_all, "n_correct": len(self.correct),
            "n_fooled_fgsm": len(self.fooled["fgsm"]), "n_fooled_pgd": len(self.fooled["pgd"]),
            "n_skipped": "every photo could be read" if self.n_skipped == 0 else
                         f"{self.n_skipped} photo(s) could not be read and were skipped",
            "which_photos": "one for every class" if n_photos == n_all else
                            f"the first {n_photos} of a seeded random order of the {n_all} classes, so a random "
                            f"sample of classes; the run is resumable and continues with the same command until it "
                            f"covers all {n_all}",
            "study_eps": s.study_eps_pixels, "ig_steps_study": s.ig_steps, "pgd_steps": s.pgd_steps,
            "deletion_steps": s.deletion_steps, "deletion_half": s.deletion_steps // 2,
            "deletion_sigma": s.deletion_blur_sigma, "top_percent": 100 * s.top_fraction,
            "random_masks": s.intervention_random_masks, "road_photos": s.road_photos,
        }


def _class_share(control_iou: np.ndarray, attacked_iou: np.ndarray) -> float:
    lost = 1 - np.nanmedian(attacked_iou)
    return float((1 - np.nanmedian(control_iou)) / lost) if lost > 0 else float("nan")


def load_study(table: str | Path = "study.csv", sanity: str | Path | None = "study_sanity.csv") -> StudyBook:
    """Read the study's table and its sanity table (names are looked up in ``results/``, paths used as given).

    ``sanity=None`` for a table whose run had no sanity check (``--sanity-photos 0``): its sanity rows are empty.
    """
    def path(name):
        return Path(name) if Path(name).parent != Path() else results_path(str(name))

    meta, all_rows = read_table(path(table))
    rows, n_skipped = analysed_rows(all_rows)
    sanity_meta, sanity_rows = read_table(path(sanity)) if sanity is not None else ({}, [])
    return StudyBook(meta, rows, n_skipped, sanity_meta, sanity_rows)


def interval(d: dict, fmt: str = ".3f") -> str:
    """'mean [low, high]' of a paired difference, an AUC or a difference, signed, for tables."""
    centre = d.get("mean", d.get("auc", d.get("difference")))
    return f"{centre:+{fmt}} [{d['ci_low']:+{fmt}}, {d['ci_high']:+{fmt}}]"


def triple(values, fmt: str) -> str:
    """'centre [low, high]' of a (centre, low, high, ...) triple in format ``fmt``; '-' when it is undefined."""
    centre, low, high = values[:3]
    if not np.isfinite(centre):
        return "-"
    return f"{centre:{fmt}} [{low:{fmt}}, {high:{fmt}}]"


def share_ci(flags) -> tuple[float, float, float]:
    """A proportion with its 95% Wilson interval (which, unlike a bootstrap, does not collapse at 0% or 100%)."""
    flags = np.asarray(flags, dtype=bool)
    if flags.size == 0:
        raise ValueError("share_ci needs at least one observation, got none.")
    return (float(flags.mean()), *proportion_ci(int(flags.sum()), len(flags)))


def column(frame, name: str) -> np.ndarray:
    """The column ``name`` of a table's rows as floats; NaN throughout when the table has no such column."""
    return frame[name].to_numpy(dtype=np.float64) if name in frame else np.full(len(frame), np.nan)


def _finite(values) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def median(values) -> float:
    """The median of the finite values; NaN when there are none (no interval: see ``median_ci``)."""
    values = _finite(values)
    return float(np.median(values)) if len(values) else float("nan")


def median_ci(values) -> tuple[float, float, float]:
    """(median, low, high): the median of the finite values and its seeded 95% bootstrap interval."""
    values = _finite(values)
    return (median(values), *bootstrap_ci(values)) if len(values) else (float("nan"),) * 3


__all__ = ["ALL_ATTACKS", "ATTACKS", "StudyBook", "column", "interval", "load_study", "median", "median_ci", "share_ci",
           "triple"]
