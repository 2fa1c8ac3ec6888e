"""The study's rows (``study.rows``): the causal, location and first-order columns of each attack on the photos
it fooled, the just-flipping attack, the class-share controls; all in range, consistent, and the same whatever
batch a photo came in."""
from __future__ import annotations

import math

import numpy as np
import pytest

from xai_helpers.study import columns as col
from xai_helpers.study.rows import analyse_batch
from xai_helpers.study.rows_maps import runner_up_share
from xai_helpers.study.settings import StudySettings, photo_order

ATTACKS = col.ATTACKS
#: Cheap settings that still reach every branch: ROAD only for the first two photos of the order (both branches
#: of the subset rule), a coarse just-flipping grid, few IG steps, random masks and noisy copies.
CHEAP = StudySettings(eps_grid_pixels=(1.0, 2.0), study_eps_pixels=2.0, ig_steps=4, deletion_steps=2,
                      intervention_random_masks=2, road_photos=2, pgd_steps=3, jf_step_levels=1.0,
                      jf_max_levels=4.0, smoothgrad_samples=2)
#: A batch: the first photos of the study order, and one photo with an object mask (a dog) among them.
DOG = 206   # curly-coated retriever: the segmenter finds its dog on most of the photo


def kept_maps(a: str) -> tuple[str, ...]:
    return ("gc_clean", f"gc_{a}adv", f"gc_{a}true", "ig_clean", f"ig_{a}adv", f"ig_{a}true", f"gc_clean{a}",
            f"ig_clean{a}", "attack", "grad", "gradinput", "smoothgrad", "random_median")


@pytest.fixture(scope="module")
def batch_photos():
    return [DOG] + [int(c) for c in photo_order(CHEAP.seed)[:7] if int(c) != DOG][:7]


@pytest.fixture(scope="module")
def rows(mobilenet, batch_photos):
    return analyse_batch(mobilenet, batch_photos, CHEAP)


def explained(rows):
    return [r for r in rows if r["clean_correct"] == 1]


def test_intervention_columns_exist_exactly_for_the_photos_each_attack_fooled(rows):
    assert explained(rows), "the first photos of the study order include correctly classified ones"
    for a in ATTACKS:
        assert any(r.get(f"{a}_fooled") == 1 for r in rows) or a == "tpgd", a
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
    """Kept + removed shares, the verdicts, the smallest flipping fraction and the shape-matched controls."""
    for a in ATTACKS:
        for row in (r for r in rows if r.get(f"{a}_fooled") == 1):
            for name in kept_maps(a)[:-1] + ("attack7",):
                assert np.isfinite(row[col.removed(a, name)]), (a, name)
                assert row[col.verdict(a, "sufficient", name)] in (0, 1)
                assert row[col.verdict(a, "necessary", name)] in (0, 1)
                if row[col.verdict(a, "necessary", name)]:   # removing a necessary region leaves less than all
                    assert row[col.removed(a, name)] < 1.0
            flip = row[col.attacked(a, "flip_fraction")]
            assert (0.0 < flip <= 1.0) or (a == "tpgd" and math.isnan(flip) and row["tpgd_hit"] == 0)
            for name in ("gc_clean", "ig_clean", f"gc_{a}adv", f"ig_{a}adv", "attack", "grad"):
                assert np.isfinite(row[col.kept_moved(a, name)]), (a, name)


def test_where_the_attack_acts_is_located_on_the_object_and_the_edges(rows):
    dog = next(r for r in rows if r["class_index"] == DOG)
    assert dog["object_category"] == "dog" and dog["object_share"] > 0.2
    for r in rows:
        assert (r["object_category"] == "") == (r["object_share"] == "")
    for a in ATTACKS:
        for row in (r for r in rows if r.get(f"{a}_fooled") == 1):
            has_object = row["object_share"] != "" and row["object_share"] >= 0.05
            for pixels in ("attack", "gcadv", "igadv"):
                assert 0.0 <= row[col.located(a, pixels, "edges")] <= 1.0
                assert (col.located(a, pixels, "object") in row) == has_object
            if has_object:
                # keeping the perturbation on the object and on the background: two shares and their verdicts
                assert {col.kept(a, "object"), col.kept(a, "background"), col.kept_moved(a, "object"),
                        col.verdict(a, "sufficient", "object")} <= set(row)
            for name in col.FIRST_ORDER:
                assert 0.0 <= row[col.overlap(a, name)] <= 1.0
            for method in ("gc", "ig"):
                assert 0.0 <= row[col.located(a, "attack", f"{method}clean")] <= 1.0
    for row in explained(rows):
        assert 0.0 <= row[col.clean_located("gc", "edges")] <= 1.0
        for method in ("gc", "ig"):
            for control in ("cleanrunnerup", "cleanrandom"):
                assert 0.0 <= row[col.compared(method, control, "top_iou")] <= 1.0


def test_the_just_flipping_attack_flips_at_the_budget_it_records(rows):
    for row in explained(rows):
        levels = row[col.attacked("jf", "levels")]
        if math.isnan(levels):
            assert row["jf_fooled"] == 0 and row["pgd4_changed"] == 0 or CHEAP.jf_max_levels < 4
        else:
            assert row["jf_fooled"] == 1 and CHEAP.jf_step_levels <= levels <= CHEAP.jf_max_levels
            # the study's PGD at 2 levels flips it, so the just-flipping budget is at most 2 levels
            if row["pgd_fooled"] == 1:
                assert levels <= CHEAP.study_eps_pixels
    assert any(r.get("jf_fooled") == 1 for r in rows)


def test_every_row_records_the_code_that_made_it(rows):
    assert len({r["code_sha"] for r in rows}) == 1 and len(rows[0]["code_sha"]) == 12


#: Columns a photo's row may differ in between a batch and alone: the model passes counted per stage, which a
#: batch shares equally among its photos (accounting, not a result).
BATCH_SHARED = ("passes_",)


def _assert_same_row(alone: dict, in_batch: dict) -> None:
    assert set(alone) == set(in_batch)
    for name, value in alone.items():
        if name.startswith(BATCH_SHARED):
            continue
        other = in_batch[name]
        if isinstance(value, float) and isinstance(other, float):
            assert (math.isnan(value) and math.isnan(other)) or value == pytest.approx(other, rel=1e-4, abs=1e-9), \
                (name, value, other)
        else:
            assert value == other, (name, value, other)


def test_a_photo_alone_gets_its_row_from_a_batch_of_8(mobilenet, rows, batch_photos):
    fooled_by_all = [r for r in rows if all(r.get(f"{a}_fooled") == 1 for a in ("fgsm", "pgd", "jf"))]
    photo = (fooled_by_all or explained(rows))[0]
    _assert_same_row(analyse_batch(mobilenet, [photo["class_index"]], CHEAP)[0], photo)


def test_a_photo_alone_gets_its_row_from_a_batch_on_the_tiny_model(tiny_study_model):
    settings = StudySettings(eps_grid_pixels=(2.0,), study_eps_pixels=2.0, ig_steps=4, deletion_steps=2,
                             intervention_random_masks=2, road_photos=2, pgd_steps=2, jf_step_levels=1.0,
                             jf_max_levels=4.0, smoothgrad_samples=2)
    model = tiny_study_model.load()
    photos = [int(c) for c in photo_order(0)[:6]]
    batch = analyse_batch(model, photos, settings)
    for k in (0, 3):
        _assert_same_row(analyse_batch(model, [photos[k]], settings)[0], batch[k])


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
        for a in ("fgsm", "pgd"):
            for eps in ("1", "2"):
                assert {f"{a}{eps}_top1", f"{a}{eps}_p_top1", f"{a}{eps}_p_true", f"{a}{eps}_changed",
                        f"{a}{eps}_hf"} <= set(row)
                assert 0.0 <= row[f"{a}{eps}_p_true"] <= row[f"{a}{eps}_p_top1"] + 1e-12 <= 1.0 + 1e-9
            # sign noise of a larger eps raises the image's high-frequency energy
            assert row[f"{a}2_hf"] > row["clean_hf"]
        assert 0.0 <= row["clean_runnerup_share"] <= 1.0
    for row in explained(rows):  # the explained images are the grid's images at study_eps_pixels
        for a in ("fgsm", "pgd"):
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
    first = [int(c) for c in photo_order()[:CHEAP.road_photos]]
    assert any(r["class_index"] in first for r in explained(rows))
    for row in explained(rows):
        has = "road_morf_gc_clean" in row
        assert has == (row["class_index"] in first), row["name"]
        if has:
            for kind in ("clean", "fgsm"):
                for name in ("gc", "igpos", "random"):
                    assert row[f"road_morf_{name}_{kind}"] >= 0.0 and row[f"road_lerf_{name}_{kind}"] >= 0.0


def test_every_ig_map_records_its_completeness_error_and_each_photo_its_cost(rows):
    for row in explained(rows):
        for pair in ("clean", "fgsmadv", "fgsmtrue", "pgdadv", "pgdtrue", "noise"):
            assert row[f"ig_{pair}_reldelta"] >= 0.0, pair
        # at least: FGSM's gradient, PGD's steps on the grid and 12 IG maps of ig_steps + 1 points
        assert row["gradient_evals"] >= 1 + CHEAP.pgd_steps * 2 + 12 * 5


def test_machine_description_names_the_cpus():
    from xai_helpers.study.runner import machine_description

    assert "CPUs" in machine_description()
