"""The study's per-attack columns (issues: interventions; the study, rigorous): causal columns for fooled
photos, PGD beside FGSM, faithfulness and ROAD columns, cost columns; all in range and consistent."""
from __future__ import annotations

import numpy as np
import pytest

from xai_helpers.study import runner as study
from xai_helpers.study.rows import analyse_batch, runner_up_share
from xai_helpers.study.settings import StudySettings, photo_order, settings_for_key

ATTACKS = ("fgsm", "pgd")


def kept_maps(a: str) -> tuple[str, ...]:
    return ("gc_clean", f"gc_{a}adv", f"gc_{a}true", "ig_clean", f"ig_{a}adv", f"ig_{a}true", f"gc_clean{a}",
            f"ig_clean{a}", "attack", "random_median")


@pytest.fixture(scope="module")
def rows(mobilenet):
    # ROAD only for the first photo of the order (``road_photos=1``): both branches of the subset rule.
    settings = StudySettings(eps_grid_pixels=(1.0, 2.0), study_eps_pixels=2.0, ig_steps=4, deletion_steps=2,
                                   intervention_random_masks=3, road_photos=1)
    photos = [int(c) for c in photo_order(settings.seed)[:3]]
    return analyse_batch(mobilenet, photos, settings)


def explained(rows):
    return [r for r in rows if r["clean_correct"] == 1]


def test_intervention_columns_exist_exactly_for_the_photos_each_attack_fooled(rows):
    assert explained(rows), "the first photos of the study order include correctly classified ones"
    for a in ATTACKS:
        assert any(r.get(f"{a}_fooled") == 1 for r in rows), a
        for row in rows:
            assert (f"{a}_kept_attack" in row) == (row.get(f"{a}_fooled") == 1), (a, row["name"])


def test_intervention_columns_are_finite_and_the_attack_attribution_is_accurate(rows):
    for a in ATTACKS:
        for row in (r for r in rows if r.get(f"{a}_fooled") == 1):
            for name in kept_maps(a):
                assert np.isfinite(row[f"{a}_kept_{name}"]), (a, name)
            assert row[f"{a}_attack_change"] < 0  # the attack lowers the true logit
            assert row[f"{a}_attack_reldelta"] <= 0.01 or row[f"{a}_attack_steps"] >= 1025
            for method in ("gc", "ig"):
                assert 0.0 <= row[f"{method}_clean{a}_top_iou"] <= 1.0
                assert -1.0 <= row[f"{method}_clean{a}_spearman"] <= 1.0


def test_top_pixels_of_the_attack_attribution_carry_more_than_their_share(rows):
    # 10% of the pixels, ranked by their contribution to the drop, carry far more than 10% of it.
    for a in ATTACKS:
        for row in (r for r in rows if r.get(f"{a}_fooled") == 1):
            assert row[f"{a}_attack_top_share"] > 0.3, a


def test_necessity_columns_sit_beside_sufficiency_for_every_fooled_photo(rows):
    """Kept + removed shares, the verdicts, the smallest flipping fraction and the shape-matched control."""
    for a in ATTACKS:
        for row in (r for r in rows if r.get(f"{a}_fooled") == 1):
            for name in kept_maps(a)[:-1]:
                assert np.isfinite(row[f"{a}_removed_{name}"]), (a, name)
                assert row[f"{a}_sufficient_{name}"] in (0, 1) and row[f"{a}_necessary_{name}"] in (0, 1)
                # removing a region that is necessary leaves less than the whole effect
                if row[f"{a}_necessary_{name}"]:
                    assert row[f"{a}_removed_{name}"] < 1.0
            if row["clean_correct"] == 1:
                assert 0.0 < row[f"{a}_flip_fraction"] <= 1.0
            for method in ("gc", "ig"):
                assert np.isfinite(row[f"{a}_kept_moved_{method}_median"])
    # a table made before these columns keeps its key, and is recognised for what it was made with
    legacy = settings_for_key("5606bc5ac0c9")  # (the committed results/study.csv)
    assert not legacy.necessity_tests and not legacy.targeted_pgd and legacy.gradcam_upsampling == "corner"
    assert settings_for_key(StudySettings().key()) == StudySettings()


def test_the_targeted_attack_is_explained_and_intervened_on_like_the_others(rows):
    for row in rows:
        assert row["tpgd_target"] != row["class_index"] and row["tpgd_hit"] in (0, 1)
        assert 0.0 <= row["tpgd_p_target"] <= 1.0
    for row in explained(rows):
        assert "tpgd_top1" in row and "gc_tpgdadv_top_iou" in row and "ig_tpgdtrue_spearman" in row
        if row["tpgd_fooled"] == 1:
            assert np.isfinite(row["tpgd_kept_attack"]) and np.isfinite(row["tpgd_removed_attack"])
        if row["tpgd_hit"] == 1:
            assert row["tpgd_top1"] == row["tpgd_target"]


def test_runner_up_share_is_the_runner_ups_part_of_what_the_top_class_leaves():
    assert runner_up_share(np.array([0.2, 0.5, 0.3])) == pytest.approx(0.6)
    assert runner_up_share(np.array([0.9, 0.05, 0.05])) == pytest.approx(0.5)
    assert np.isnan(runner_up_share(np.array([1.0, 0.0])))


def test_pgd_and_fgsm_columns_sit_side_by_side_on_the_eps_grid(rows):
    for row in rows:
        for a in ATTACKS:
            for eps in ("1", "2"):
                assert {f"{a}{eps}_top1", f"{a}{eps}_p_top1", f"{a}{eps}_p_true", f"{a}{eps}_changed",
                        f"{a}{eps}_hf"} <= set(row)
                assert 0.0 <= row[f"{a}{eps}_p_true"] <= row[f"{a}{eps}_p_top1"] + 1e-12 <= 1.0 + 1e-9
            # sign noise of a larger eps raises the image's high-frequency energy
            assert row[f"{a}2_hf"] > row["clean_hf"]
        assert 0.0 <= row["clean_runnerup_share"] <= 1.0
    for row in explained(rows):  # the explained images are the grid's images at study_eps_pixels
        for a in ATTACKS:
            assert row[f"{a}_top1"] == row[f"{a}2_top1"] and row[f"{a}_p_true"] == row[f"{a}2_p_true"]
            assert 0.0 <= row[f"{a}_runnerup_share"] <= 1.0


def test_a_study_eps_off_the_grid_is_refused(mobilenet, one_sentence):
    settings = StudySettings(eps_grid_pixels=(2.0,), study_eps_pixels=1.0)
    with pytest.raises(ValueError) as excinfo:
        analyse_batch(mobilenet, [int(photo_order()[0])], settings)
    one_sentence(excinfo, "study_eps_pixels", "eps_grid_pixels")


def test_faithfulness_columns_are_normalised_and_hold_the_half_step_areas(rows):
    for row in explained(rows):
        for kind in ("clean", "fgsm"):
            assert 0.0 < row[f"{kind}_faith_p"] <= 1.0
            for name in ("gc", "igabs", "igpos", "random"):
                for curve in ("del", "ins"):
                    full, half = row[f"{curve}_{name}_{kind}_auc"], row[f"{curve}_{name}_{kind}_auc_half"]
                    assert np.isfinite(full) and np.isfinite(half) and full >= 0.0


def test_road_columns_exist_only_for_the_seeded_subset(rows):
    first = int(photo_order()[0])
    for row in explained(rows):
        has = "road_morf_gc_clean" in row
        assert has == (row["class_index"] == first), row["name"]
        if has:
            for kind in ("clean", "fgsm"):
                for name in ("gc", "igpos", "random"):
                    assert row[f"road_morf_{name}_{kind}"] >= 0.0 and row[f"road_lerf_{name}_{kind}"] >= 0.0


def test_every_ig_map_records_its_completeness_error_and_each_photo_its_cost(rows):
    for row in explained(rows):
        for pair in ("clean", "fgsmadv", "fgsmtrue", "pgdadv", "pgdtrue", "noise"):
            assert row[f"ig_{pair}_reldelta"] >= 0.0, pair
        # at least: FGSM's gradient, PGD's steps on the grid and 8 IG maps of ig_steps + 1 points
        assert row["gradient_evals"] >= 1 + 10 * 2 + 8 * 5


def test_machine_description_names_the_cpus():
    assert "CPUs" in study.machine_description()
