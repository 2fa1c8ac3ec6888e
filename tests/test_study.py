"""The study's pure functions, the region annotation helpers and the step-by-step Grad-CAM."""
from __future__ import annotations

import numpy as np
import pytest

import xai_helpers as xh
from xai_helpers.methods import regions
from xai_helpers.methods.detection import detection_auc
from xai_helpers.methods.faithfulness import curve_auc, deletion_insertion_images
from xai_helpers.methods.gradcam_steps import gradcam_steps
from xai_helpers.study.rows_maps import normalized_entropy
from xai_helpers.study.sanity import randomize_top_layers
from xai_helpers.study.settings import StudySettings, photo_order, random_sign_noise
from xai_helpers.study.summary import binned, bootstrap_ci
from xai_helpers.study.table import read_table, table_header, write_table


def test_photo_order_is_a_seeded_permutation_of_all_classes():
    order = photo_order(0)
    assert sorted(order.tolist()) == list(range(1000))
    assert np.array_equal(order, photo_order(0))
    assert not np.array_equal(order, photo_order(1))


def test_random_sign_noise_is_plus_minus_one_and_fixed_per_photo():
    a = random_sign_noise((8, 8, 3), class_index=5)
    assert set(np.unique(a)) == {-1.0, 1.0}
    assert np.array_equal(a, random_sign_noise((8, 8, 3), class_index=5))
    assert not np.array_equal(a, random_sign_noise((8, 8, 3), class_index=6))


def test_normalized_entropy_is_one_for_a_flat_map_and_zero_for_a_single_pixel():
    assert normalized_entropy(np.ones((10, 10))) == pytest.approx(1.0)
    spike = np.zeros((10, 10))
    spike[3, 4] = 2.0
    assert normalized_entropy(spike) == pytest.approx(0.0)
    assert np.isnan(normalized_entropy(np.zeros((4, 4))))


def test_deletion_removes_the_most_important_pixels_first_and_insertion_mirrors_it():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (16, 16, 3)).astype(np.float32)
    saliency = np.arange(256, dtype=float).reshape(16, 16)  # bottom-right pixels most important
    deletion, insertion = deletion_insertion_images(x, saliency, steps=4, blur_sigma=2.0)
    assert deletion.shape == insertion.shape == (5, 16, 16, 3)
    assert np.array_equal(deletion[0], x) and np.array_equal(insertion[-1], x)
    assert np.array_equal(deletion[-1], insertion[0])  # both ends are the fully blurred photo
    changed = np.any(deletion[1] != x, axis=-1)
    assert changed[12:].all() and not changed[:12].any()  # the top quarter by saliency = last 4 rows
    assert np.array_equal(np.any(insertion[1] != insertion[0], axis=-1), changed)


def test_curve_auc_of_a_constant_and_a_linear_curve():
    assert curve_auc(np.full(11, 0.3)) == pytest.approx(0.3)
    assert curve_auc(np.linspace(0, 1, 11)) == pytest.approx(0.5)


def test_binned_counts_every_value_once_and_reports_its_median():
    x = np.array([0.1, 0.2, 0.6, 0.7, 1.0])
    y = np.array([1.0, 3.0, 5.0, 7.0, 9.0])
    bins = binned(x, y, [0.0, 0.5, 1.0])
    assert [b["count"] for b in bins] == [2, 3]
    assert [b["median"] for b in bins] == [2.0, 7.0]


def test_bootstrap_interval_brackets_the_statistic():
    values = np.random.default_rng(1).normal(5.0, 1.0, 200)
    low, high = bootstrap_ci(values, np.median, n_boot=500)
    assert low < np.median(values) < high
    assert high - low < 1.0


def test_detection_auc_is_one_for_separable_features_and_near_half_for_identical_ones():
    rng = np.random.default_rng(2)
    clean = rng.normal(0, 1, (60, 2))
    separable = detection_auc(clean, clean + 10.0, n_boot=200)
    assert separable["auc"] == pytest.approx(1.0)
    same = detection_auc(clean, clean.copy(), n_boot=200)
    assert abs(same["auc"] - 0.5) < 0.2
    assert same["ci_low"] <= same["auc"] <= same["ci_high"]


def test_table_round_trip_keeps_header_numbers_and_missing_cells(tmp_path):
    path = tmp_path / "t.csv"
    rows = [{"class_index": 3, "name": "x", "value": 0.25}, {"class_index": 4, "name": "y"}]
    write_table(path, ["# photos: 2", "# settings_key: abc"], rows)
    meta, back = read_table(path)
    assert meta == {"photos": "2", "settings_key": "abc", "rows_sha256": meta["rows_sha256"]}
    assert len(meta["rows_sha256"]) == 64  # the checksum line that write_table adds
    assert back[0] == {"class_index": 3.0, "name": "x", "value": 0.25}
    assert np.isnan(back[1]["value"])


def test_table_header_records_provenance_and_extra_settings(tmp_path):
    settings = StudySettings()
    header = table_header(settings, 7, "sanity check", {"sanity_ig_steps": 16})
    path = tmp_path / "s.csv"
    write_table(path, header, [{"class_index": 1}])
    meta, _ = read_table(path)
    assert meta["photos"] == "7" and meta["settings_key"] == settings.key()
    assert meta["weights_sha256"] == xh.weights_fingerprint()["sha256"]
    assert meta["sanity_ig_steps"] == "16"


def test_settings_key_changes_with_any_setting():
    assert StudySettings().key() == StudySettings().key()
    import dataclasses

    base = StudySettings()
    for field in dataclasses.fields(StudySettings):
        value = getattr(base, field.name)
        other = (value + 1 if isinstance(value, (int, float)) else value + ("x",) if isinstance(value, tuple)
                 else value + "x")
        assert dataclasses.replace(base, **{field.name: other}).key() != base.key(), field.name


def test_randomize_top_layers_changes_only_the_named_layers(cam_net):
    model = cam_net.model
    noisy = randomize_top_layers(model, [model.layers[-1].name], seed=0)
    for original, copy in zip(model.layers, noisy.layers):
        same = all(np.array_equal(a, b) for a, b in zip(original.get_weights(), copy.get_weights()))
        assert same == (original.name != model.layers[-1].name)


def test_region_mass_fractions_add_up_to_one():
    masks = regions.region_masks()
    saliency = np.random.default_rng(3).random((224, 224))
    mass = regions.region_mass(saliency, masks)
    assert sum(mass.values()) == pytest.approx(1.0)
    assert sum(regions.area_fractions(masks).values()) == pytest.approx(1.0)


def test_overlapping_region_boxes_raise_unless_exclusive():
    boxes = {"a": regions.Box(0, 10, 0, 10), "b": regions.Box(5, 15, 5, 15)}
    with pytest.raises(ValueError):
        regions.region_masks(boxes, shape=(20, 20))
    masks = regions.region_masks(boxes, shape=(20, 20), exclusive=True)
    assert not np.any(masks["a"] & masks["b"])


def test_intervention_masks_name_each_box_the_front_the_animal_and_its_outside():
    boxes = {"head": regions.Box(0, 4, 0, 4), "body": regions.Box(0, 4, 4, 8), "tail": regions.Box(4, 6, 0, 8)}
    masks = regions.intervention_masks(boxes, shape=(10, 10))
    assert list(masks) == ["head", "body", "head + body", "tail", "whole animal", "outside the animal"]
    np.testing.assert_array_equal(masks["head + body"], masks["head"] | masks["body"])
    assert masks["whole animal"].sum() == 16 + 16 + 16
    np.testing.assert_array_equal(masks["outside the animal"], ~masks["whole animal"])


def test_box_variants_cover_every_shift_and_margin_and_include_the_annotation():
    variants = regions.box_variants()
    assert len(variants) == 27
    assert dict(regions.WHIPTAIL_REGIONS) in [dict(v) for v in variants]


@pytest.mark.parametrize("target", ["logits", "softmax"])
def test_gradcam_steps_end_in_the_same_map_as_tf_keras_vis(mobilenet, whiptail, target):
    steps = gradcam_steps(mobilenet, whiptail, 41, target=target)
    raw = xh.gradcam(mobilenet, whiptail, 41, target=target, normalize=False)
    np.testing.assert_allclose(steps.upsampled, raw, rtol=1e-4, atol=1e-6 * raw.max())


def test_the_study_settings_load_without_tensorflow_and_keep_the_attacks_pgd_steps():
    import subprocess
    import sys

    from xai_helpers.methods import attacks
    from xai_helpers.study import settings as study_settings

    assert study_settings.STUDY_PGD_STEPS == attacks.PGD_STEPS == StudySettings().pgd_steps
    code = ("import sys, xai_helpers.study.runner, xai_helpers.cli.main, xai_helpers.study.table; "
            "print('tensorflow' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
