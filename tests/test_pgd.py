"""Projected gradient descent (Madry et al. 2018): bounds, seeding, FGSM as a special case, strength."""
from __future__ import annotations

import numpy as np
import pytest

import xai_helpers as xh
from xai_helpers.classifier.forward import probabilities
from xai_helpers.methods.attacks import pgd, pgd_batch

EPS = 0.05


def test_pgd_stays_in_the_eps_ball_and_the_input_range(linear, linear_x):
    adv = pgd(linear.model, linear_x, 1, EPS, steps=7)
    assert np.abs(adv - linear_x).max() <= EPS + 1e-6
    assert adv.min() >= -1.0 and adv.max() <= 1.0
    edge = np.full_like(linear_x, 0.99)
    assert pgd(linear.model, edge, 1, EPS).max() <= 1.0


def test_pgd_is_seeded(linear, linear_x):
    first = pgd(linear.model, linear_x, 1, EPS, seed=3)
    np.testing.assert_array_equal(first, pgd(linear.model, linear_x, 1, EPS, seed=3))
    assert not np.array_equal(first, pgd(linear.model, linear_x, 1, EPS, seed=4, steps=1))


def test_one_pgd_step_of_size_eps_without_random_start_is_fgsm(linear, linear_x):
    adv = pgd(linear.model, linear_x, 2, EPS, steps=1, step_size=EPS, random_start=False)
    # (the same step; PGD holds its budget per image in float64, so the last bit of a sum may differ)
    np.testing.assert_allclose(adv, xh.fgsm(linear.model, linear_x, 2, EPS), rtol=0, atol=1e-7)


def test_a_photo_gets_the_same_pgd_image_alone_or_in_a_batch(linear, rng):
    xs = rng.uniform(-0.9, 0.9, (3, 8, 8, 3)).astype(np.float32)
    batch = pgd_batch(linear.model, xs, [0, 1, 2], EPS, seeds=[5, 6, 7])
    np.testing.assert_allclose(batch[1], pgd(linear.model, xs[1], 1, EPS, seed=6), atol=1e-7)


def test_pgd_raises_the_loss_more_than_fgsm_on_a_linear_model(linear, linear_x):
    def loss(x):
        return -np.log(linear.probs(x)[1])
    assert loss(pgd(linear.model, linear_x, 1, EPS)) >= loss(xh.fgsm(linear.model, linear_x, 1, EPS)) - 1e-6


def test_pgd_removes_the_whiptail_at_least_as_well_as_fgsm(mobilenet, whiptail):
    eps = xh.pixels_to_eps(0.5)
    p_fgsm = probabilities(mobilenet, xh.fgsm(mobilenet, whiptail, 41, eps))[41]
    p_pgd = probabilities(mobilenet, pgd(mobilenet, whiptail, 41, eps))[41]
    assert p_pgd <= p_fgsm


@pytest.mark.parametrize("kwargs, words", [(dict(steps=0), "steps"), (dict(eps=2.0), "eps"),
                                           (dict(step_size=-0.1), "step_size")])
def test_pgd_rejects_bad_settings(linear, linear_x, kwargs, words, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        pgd(linear.model, linear_x, 1, **{"eps": EPS, **kwargs})
    one_sentence(excinfo, words)


def test_pgd_batch_needs_one_seed_per_image(linear, rng, one_sentence):
    xs = rng.uniform(-0.9, 0.9, (2, 8, 8, 3)).astype(np.float32)
    with pytest.raises(ValueError) as excinfo:
        pgd_batch(linear.model, xs, [0, 1], EPS, seeds=[1])
    one_sentence(excinfo, "seeds")


def test_targeted_pgd_makes_its_target_the_top_class_and_stays_in_the_ball(linear, rng):
    xs = rng.uniform(-0.5, 0.5, (3, 8, 8, 3)).astype(np.float32)
    before = probabilities(linear.model, xs)
    targets = [int(np.argmin(p)) for p in before]  # the least likely class of each image
    adv = pgd_batch(linear.model, xs, targets, 0.1, steps=10, targeted=True)
    after = probabilities(linear.model, adv)
    assert np.abs(adv - xs).max() <= 0.1 + 1e-6
    for i, t in enumerate(targets):  # (4 classes: the least likely starts near 0.2)
        assert after[i, t] > max(0.5, 2 * before[i, t]) and int(np.argmax(after[i])) == t
    untargeted = pgd_batch(linear.model, xs, targets, 0.1, steps=10)
    assert all(probabilities(linear.model, untargeted)[i, t] < before[i, t] for i, t in enumerate(targets))


def test_the_targeted_attacks_class_is_seeded_per_photo_and_never_the_true_one():
    from xai_helpers.study.settings import random_target

    draws = [random_target(41, s) for s in range(300)]
    assert 41 not in draws and draws == [random_target(41, s) for s in range(300)]
    assert len(set(draws)) > 250 and min(draws) >= 0 and max(draws) <= 999
    assert random_target(999, 5, n_classes=1000) != 999 and random_target(0, 5) != 0
