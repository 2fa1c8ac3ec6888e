"""Where the attack acts: the just-flipping budget, the first-order maps, the location measures, the object
masks of the segmentation network and its ImageNet -> PASCAL mapping (known answers and real photos)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import xai_helpers as xh
from xai_helpers.classifier.checks import check_images
from xai_helpers.classifier.data import keras_home, load_image, sample_image
from xai_helpers.classifier.pascal import IMAGENET_TO_PASCAL, PASCAL_CATEGORIES, pascal_category
from xai_helpers.methods.attacks import fgsm, pgd_batch, pixels_to_eps
from xai_helpers.methods.compare import top_mask
from xai_helpers.methods.gradients import SMOOTHGRAD_SIGMA, first_order_maps, margin_gradients
from xai_helpers.methods.interventions import attack_attribution, signed_map
from xai_helpers.methods.just_flipping import just_flipping, smallest_budget
from xai_helpers.methods.location import coarsen, edge_mask, share_inside


@pytest.fixture(scope="module")
def two_class_linear():
    """A linear softmax model of two classes on 8 x 8 x 3 inputs (fixed seeded weights)."""
    import keras

    rng = np.random.default_rng(3)
    inputs = keras.Input((8, 8, 3))
    head = keras.layers.Dense(2, activation="softmax", name="head")
    model = keras.Model(inputs, head(keras.layers.Flatten()(inputs)), name="two_class")
    head.set_weights([rng.normal(0, 0.2, (192, 2)).astype(np.float32), np.array([0.4, 0.0], np.float32)])
    return model


def test_on_a_linear_model_the_vanilla_gradient_ranks_pixels_as_the_fgsm_attack_attribution(two_class_linear):
    # FGSM moves every input by eps against the margin's gradient, so its attribution (IG along the path,
    # exact for a linear model) is eps |dm/dx| per input: the vanilla gradient, to first order and here exactly.
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (8, 8, 3)).astype(np.float32)
    adv = fgsm(two_class_linear, x, 0, pixels_to_eps(20))
    toward = -signed_map(attack_attribution(two_class_linear, x, adv, 0, contrast_class=1, steps=4).attributions)
    grad = first_order_maps(two_class_linear, x[None], [0], [1], seeds=[0], samples=2)["grad"][0]
    np.testing.assert_allclose(toward, pixels_to_eps(20) * grad, rtol=1e-4, atol=1e-7)
    assert np.array_equal(top_mask(toward, 0.1), top_mask(grad, 0.1))


def test_margin_gradients_are_the_difference_of_the_two_classes_weights(two_class_linear):
    w, _ = two_class_linear.get_layer("head").get_weights()
    x = np.zeros((1, 8, 8, 3), np.float32)
    g = margin_gradients(two_class_linear, x, [0], [1])[0]
    np.testing.assert_allclose(g.ravel(), w[:, 0] - w[:, 1], rtol=1e-5, atol=1e-7)


def test_smoothgrad_s_noisy_copies_are_each_photo_s_own_seeded_draw_whatever_the_batch(two_class_linear):
    xs = np.random.default_rng(1).uniform(-0.9, 0.9, (3, 8, 8, 3)).astype(np.float32)
    seeds = [[0, i, 2] for i in range(3)]
    together = first_order_maps(two_class_linear, xs, [0] * 3, [1] * 3, seeds=seeds, samples=4)["smoothgrad"]
    for i in range(3):
        alone = first_order_maps(two_class_linear, xs[i:i + 1], [0], [1], seeds=seeds[i:i + 1], samples=4)
        assert np.array_equal(alone["smoothgrad"][0], together[i])
    # the documented draw: x + sigma * N(0, 1) from the photo's seed and 13, clipped to the input range
    noise = np.random.default_rng([0, 1, 2, 13]).standard_normal((4, 8, 8, 3), dtype=np.float32)
    copies = np.clip(xs[1][None] + np.float32(SMOOTHGRAD_SIGMA) * noise, -1.0, 1.0)
    expected = np.abs(margin_gradients(two_class_linear, copies, [0] * 4, [1] * 4)).sum(axis=-1).mean(axis=0)
    np.testing.assert_array_equal(together[1], expected)


def test_a_batch_of_images_is_checked_as_each_image_alone():
    good = np.zeros((2, 8, 8, 3), np.float32)
    assert check_images(good, (8, 8, 3)) is good   # read, not copied
    assert check_images(good.astype(np.float64), (8, 8, 3)).dtype == np.float32
    bad = good.copy()
    bad[1, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="^x contains NaN or infinite values.$"):
        check_images(bad, (8, 8, 3))
    bad[1, 0, 0, 0] = 2.0
    with pytest.raises(ValueError, match="must lie in the model input range"):
        check_images(bad, (8, 8, 3))
    with pytest.raises(ValueError, match=r"must have shape \(8, 8, 3\)"):
        check_images(np.zeros((2, 8, 9, 3), np.float32), (8, 8, 3))
    with pytest.raises(TypeError, match="real-valued"):
        check_images(np.zeros((2, 8, 8, 3), bool), (8, 8, 3))


def test_the_just_flipping_budget_is_the_smallest_on_the_grid_that_flips(two_class_linear):
    rng = np.random.default_rng(1)
    xs = rng.uniform(-0.5, 0.5, (6, 8, 8, 3)).astype(np.float32)
    labels = two_class_linear.predict(xs, verbose=0).argmax(axis=1)
    seeds = [[0, i] for i in range(len(xs))]
    levels, images = just_flipping(two_class_linear, xs, labels, seeds, steps=3, step_levels=0.5, max_levels=16)
    for i in range(len(xs)):   # a scan of the whole grid, photo by photo

        def flips(levels_, i=i):
            adv = pgd_batch(two_class_linear, xs[i:i + 1], labels[i:i + 1], pixels_to_eps(levels_), 3, seeds=[seeds[i]])
            return two_class_linear.predict(adv, verbose=0).argmax() != labels[i]

        scan = [k * 0.5 for k in range(1, 33) if flips(k * 0.5)]
        expected = scan[0] if scan else np.nan
        assert (np.isnan(levels[i]) and np.isnan(expected)) or levels[i] == expected, (i, levels[i], expected)
        if np.isfinite(levels[i]):
            assert two_class_linear.predict(images[i:i + 1], verbose=0).argmax() != labels[i]
            assert np.abs(images[i] - xs[i]).max() <= pixels_to_eps(levels[i]) + 1e-6


def test_the_budget_search_runs_every_photo_in_lock_step_and_reports_misses():
    threshold = np.array([3.0, 0.25, 99.0, 7.5])
    calls = []

    def attack(which, levels):
        calls.append(len(which))
        return [float(v) for v in levels]

    def succeeded(which, images):
        return np.array(images) >= threshold[which]

    levels, images = smallest_budget(attack, succeeded, 4, step_levels=0.25, max_levels=8.0)
    assert list(levels[[0, 1, 3]]) == [3.0, 0.25, 7.5] and np.isnan(levels[2]) and images[2] is None
    assert len(calls) <= 1 + 5 and calls[0] == 4   # the top of the grid, then log2(32) rounds


def test_share_inside_of_a_mask_with_itself_and_its_complement():
    rng = np.random.default_rng(0)
    mask = rng.random((20, 20)) < 0.3
    assert share_inside(mask, mask) == 1.0 and share_inside(mask, ~mask) == 0.0
    assert np.isnan(share_inside(np.zeros((20, 20), bool), mask))
    scattered = rng.random((20, 20)) < 0.5   # random pixels lie on the region as often as its area, roughly
    assert abs(share_inside(scattered, mask) - mask.mean()) < 0.15


def test_edges_are_the_top_decile_of_the_local_gradient_and_coarsening_keeps_cell_means():
    x = -np.ones((32, 32, 3), np.float32)
    x[:, 16:] = 1.0   # one vertical edge
    edges = edge_mask(x)
    assert edges.mean() == pytest.approx(0.1, abs=0.01) and edges[:, 15:17].all()   # (the edge, and ties after)
    saliency = np.arange(49.0).reshape(7, 7).repeat(4, 0).repeat(4, 1)
    np.testing.assert_allclose(coarsen(saliency, 7), saliency)
    assert coarsen(np.random.default_rng(0).random((28, 28)), 7).shape == (28, 28)


def test_the_imagenet_to_pascal_mapping_names_existing_classes_and_categories():
    names = {int(k): v[1] for k, v in json.loads((keras_home() / "models" / "imagenet_class_index.json")
                                                  .read_text()).items()}
    assert len(IMAGENET_TO_PASCAL) > 200 and set(IMAGENET_TO_PASCAL.values()) <= set(range(1, 21))
    expected = {207: "dog", 281: "cat", 817: "car", 404: "aeroplane", 440: "bottle", 339: "horse",
                12: "bird", 779: "bus", 831: "sofa", 851: "tv/monitor", 41: None, 0: None}
    for index, category in expected.items():
        got = pascal_category(index)
        assert (None if got is None else PASCAL_CATEGORIES[got]) == category, names[index]
    assert names[151] == "Chihuahua" and names[268] == "Mexican_hairless" and names[281] == "tabby"


@pytest.mark.parametrize("name, category", [("golden_retriever", "dog"), ("tabby", "cat"),
                                            ("sports_car", "car")])
def test_the_segmenter_finds_the_photo_s_own_category(name, category):
    from xai_helpers.classifier.segmentation import object_mask, segment

    x = load_image(sample_image(name))
    labels = segment(x)
    assert labels.shape == (224, 224)
    index = xh.sample_photos()[[p.name for p in xh.sample_photos()].index(name)].class_index
    mask = object_mask(x, index, labels)
    assert mask is not None and mask.mean() > 0.1
    assert PASCAL_CATEGORIES[int(np.bincount(labels[mask]).argmax())] == category


def test_ctrl_c_during_the_segmenter_s_native_start_up_is_a_ctrl_c(monkeypatch):
    """A signal that lands inside LiteRT's native start-up comes out of pybind11 as ``ImportError``
    ("initialization failed") caused by the ``KeyboardInterrupt``; the study must see the interrupt (exit
    130, rows kept), not a crash. Here the import fails as it does then."""
    import importlib.abc
    import sys

    from xai_helpers.classifier import segmentation

    class Interrupted(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "ai_edge_litert.interpreter":
                raise ImportError("initialization failed") from KeyboardInterrupt()

    monkeypatch.setattr(segmentation, "_INTERPRETER", {})
    monkeypatch.delitem(sys.modules, "ai_edge_litert.interpreter", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Interrupted(), *sys.meta_path])
    with pytest.raises(KeyboardInterrupt):
        segmentation.segmenter()
    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path if not isinstance(f, Interrupted)])
    assert segmentation.segmenter() is not None   # the next call loads it


def test_the_preprocessing_check_of_a_table_with_itself_finds_no_difference_on_the_shared_photos():
    import dataclasses

    from xai_helpers.chapters.study_tables import load_study
    from xai_helpers.chapters.where import common_photos, preprocessing_check

    book = load_study("study.csv", sanity=None)
    book = dataclasses.replace(book, rows=book.rows[:16])   # (the bootstrap intervals take time per photo)
    half = dataclasses.replace(book, rows=book.rows[:8])
    assert [len(b.rows) for b in common_photos(book, half)] == [len(half.rows)] * 2
    frame, differ = preprocessing_check({"a": book, "b": half})
    assert differ == [] and frame.iloc[0, 1] == frame.iloc[0, 2] == str(len(half.rows))
    assert list(frame["a"]) == list(frame["b"])


def test_the_network_check_keeps_only_the_photos_every_table_classifies_correctly():
    import dataclasses

    from xai_helpers.chapters.study_tables import load_study
    from xai_helpers.chapters.where import network_check

    book = load_study("study.csv", sanity=None)
    book = dataclasses.replace(book, rows=book.rows[:16])
    wrong = [r["class_index"] for r in book.rows if r["clean_correct"] != 1]
    assert wrong   # the first 16 photos hold misclassified ones, so the check has something to drop
    # A second table that misclassifies one more photo: that photo leaves both columns.
    flipped = [dict(r, clean_correct=0.0) if r["class_index"] == book.correct.class_index.iloc[0] else r
               for r in book.rows]
    frame, differ = network_check({"a": book, "b": dataclasses.replace(book, rows=flipped)})
    assert frame.iloc[0, 1] == frame.iloc[0, 2] == str(16 - len(wrong) - 1)
    assert not any(f.startswith("top-1") for f in frame.finding) and differ == []


def test_the_answer_gives_one_sentence_per_attack_worded_by_each_region_s_verdict():
    import dataclasses

    from xai_helpers.chapters.study_tables import load_study
    from xai_helpers.chapters.where import PIXEL_SETS, REGION_WORDS, location, where_answer

    book = load_study("study.csv", sanity=None)
    book = dataclasses.replace(book, rows=book.rows[:24])
    answer, places = where_answer(book), location(book)
    assert list(answer.attack) == list(book.attacks.values())
    for title, sentence in zip(answer.attack, answer["where"]):
        assert sentence.endswith(".") and sentence[0].isupper()
        for region, words in REGION_WORDS.items():
            r = places[(places.attack == title) & (places.pixels == PIXEL_SETS["attack"]) & (places.region == region)]
            if r.photos.iloc[0]:
                assert words[r.verdict.iloc[0]].lower() in sentence.lower()
