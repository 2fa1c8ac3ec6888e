"""The words the chapters glue follow the data: known answers on a study table whose columns are set by hand."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from xai_helpers.chapters.contrasts import (
    class_or_perturbation,
    gradcam_controls,
    gradient_share,
    object_controls,
    target_swap,
)
from xai_helpers.chapters.study_tables import load_study
from xai_helpers.study import columns as col


@pytest.fixture(scope="module")
def table():
    book = load_study("study.csv", sanity=None)
    return dataclasses.replace(book, rows=book.rows[:48])


def _with(book, **columns):
    """The book with, on every row, each column set in turn to ``f(row)`` (``columns``: name -> f; each f sees
    the columns set before it)."""
    rows = []
    for row in book.rows:
        row = dict(row)
        for name, f in columns.items():
            row[name] = f(row)
        rows.append(row)
    return dataclasses.replace(book, rows=rows)


def test_the_gradient_share_is_the_ratio_of_the_kept_medians_and_the_overlap_over_chance(table):
    book = _with(table, **{col.kept("fgsm", "grad"): lambda r: 0.5 * r[col.kept("fgsm", "attack")],
                           col.overlap("fgsm", "grad"): lambda r: 0.2})
    share = gradient_share(book)
    f = book.settings.top_fraction
    assert share["ratio"] == pytest.approx(0.5, rel=1e-6) and share["iou"] == pytest.approx(0.2)
    assert share["iou_times"] == pytest.approx(0.2 * (2 - f) / f)


@pytest.mark.parametrize(("shift", "words"), [(0.1, "more than"), (-0.1, "less than"), (0.0, "no different from")])
def test_gradcam_against_its_controls_is_worded_by_the_sign_of_a_clear_difference(table, shift, words):
    noise = np.random.default_rng(0)
    book = _with(table, **{col.kept("fgsm", "random_median"): lambda r: float(noise.uniform(0.2, 0.3)),
                           col.kept_moved("fgsm", "gc_clean"): lambda r: r[col.kept("fgsm", "random_median")],
                           col.kept("fgsm", "gc_clean"): lambda r: r[col.kept("fgsm", "random_median")]
                           + shift * float(noise.uniform(0.5, 1.5))})
    result = gradcam_controls(book)
    assert result["moved"]["words"] == result["random"]["words"] == words
    assert result["random"]["mean"] == pytest.approx(shift, abs=0.03)
    assert result["random"]["ci_low"] <= result["random"]["mean"] <= result["random"]["ci_high"]


def test_the_object_against_its_controls_reads_only_the_photos_with_a_mask(table):
    has_mask = lambda r: int(r["class_index"]) % 2 == 0
    book = _with(table, **{col.kept("fgsm", "background"): lambda r: 0.3 if has_mask(r) else np.nan,
                           col.kept_moved("fgsm", "object"): lambda r: 0.5 if has_mask(r) else np.nan,
                           col.kept("fgsm", "object"): lambda r: 0.5 if has_mask(r) else np.nan})
    result = object_controls(book)
    assert result["background"]["words"] == "more than" and result["background"]["mean"] == pytest.approx(0.2)
    assert result["moved"]["words"] == "no different from"
    assert result["background"]["n"] == sum(has_mask(r) for r in book.fooled["fgsm"].to_dict("records"))


def test_the_class_alone_moving_the_map_as_far_as_the_attack_reads_as_the_class_s_move(table):
    same = _with(table, **{col.compared("gc", "cleanfgsm", "top_iou"): lambda r: r[col.compared("gc", "fgsmadv",
                                                                                               "top_iou")]})
    moved = class_or_perturbation(same)
    assert moved["share"] == pytest.approx(1.0) and moved["words"] == "as far as"
    assert moved["sentence"] == "the map's move belongs to the class, not to the perturbation"
    still = _with(table, **{col.compared("gc", "cleanfgsm", "top_iou"): lambda r: 1.0})
    alone = class_or_perturbation(still)
    assert alone["share"] == 0.0 and alone["words"] == "further than" and "0%" in alone["sentence"]


@pytest.mark.parametrize(("shift", "changes"), [(0.2, "IG"), (-0.2, "Grad-CAM"), (0.0, "neither")])
def test_the_explainer_whose_maps_agree_less_across_targets_is_the_one_that_changes_more(table, shift, changes):
    noise = np.random.default_rng(1)
    book = _with(table, clean_ig_softmax_vs_logit_spearman=lambda r: float(noise.uniform(0.3, 0.7)),
                 clean_gc_logit_vs_softmax_spearman=lambda r: r["clean_ig_softmax_vs_logit_spearman"]
                 + shift * float(noise.uniform(0.5, 1.5)))
    swap = target_swap(book)
    assert swap["words"] == changes and swap["n"] == len(book.correct)
    assert ("more than Grad-CAM" in swap["sentence"]) == (changes == "IG")
