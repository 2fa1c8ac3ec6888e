"""The study's causal columns (issue: interventions): filled for fooled photos, in range, consistent."""
from __future__ import annotations

import numpy as np
import pytest

from xai_helpers import study

MAPS = ("gc_clean", "gc_advadv", "gc_advtrue", "ig_clean", "ig_advadv", "ig_advtrue", "gc_cleanadv",
        "ig_cleanadv", "attack", "random_median")


@pytest.fixture(scope="module")
def rows(mobilenet):
    settings = study.StudySettings(eps_grid_pixels=(2.0,), ig_steps=4, deletion_steps=2,
                                   intervention_random_masks=3)
    photos = [int(c) for c in study.photo_order(settings.seed)[:3]]
    return study.analyse_batch(mobilenet, photos, settings)


def test_intervention_columns_exist_exactly_for_fooled_photos(rows):
    fooled = [r for r in rows if r.get("fooled") == 1]
    assert fooled, "the first photos of the study order include fooled ones"
    for row in rows:
        has = "kept_attack" in row
        assert has == (row.get("fooled") == 1), row["name"]


def test_intervention_columns_are_finite_and_the_attack_attribution_is_accurate(rows):
    for row in (r for r in rows if r.get("fooled") == 1):
        for name in MAPS:
            assert np.isfinite(row[f"kept_{name}"]), name
        assert row["attack_logit_change"] < 0  # the attack lowers the true logit
        assert row["attack_logit_reldelta"] <= 0.01 or row["attack_logit_steps"] >= 1025
        for method in ("gc", "ig"):
            assert 0.0 <= row[f"{method}_cleanadv_top_iou"] <= 1.0
            assert -1.0 <= row[f"{method}_cleanadv_spearman"] <= 1.0


def test_top_pixels_of_the_attack_attribution_carry_more_than_their_share(rows):
    # 10% of the pixels, ranked by their contribution to the drop, carry far more than 10% of it.
    for row in (r for r in rows if r.get("fooled") == 1):
        assert row["attack_logit_top_share"] > 0.3


def test_runner_up_share_is_the_runner_ups_part_of_what_the_top_class_leaves():
    assert study.runner_up_share(np.array([0.2, 0.5, 0.3])) == pytest.approx(0.6)
    assert study.runner_up_share(np.array([0.9, 0.05, 0.05])) == pytest.approx(0.5)
    assert np.isnan(study.runner_up_share(np.array([1.0, 0.0])))


def test_pgd_columns_sit_beside_fgsm_on_the_eps_grid(rows):
    for row in rows:
        assert {"pgd2_top1", "pgd2_p_top1", "pgd2_p_true", "pgd2_changed"} <= set(row)
        assert 0.0 <= row["pgd2_p_true"] <= row["pgd2_p_top1"] + 1e-12 <= 1.0 + 1e-9
        assert 0.0 <= row["clean_runnerup_share"] <= 1.0
