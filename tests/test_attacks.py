"""FGSM (Goodfellow et al. 2015) and its targeted variants on a linear model whose loss gradient is known
in closed form: grad_x -log softmax(z)_y = sum_i p_i W_i - W_y."""
from __future__ import annotations

import numpy as np
import pytest

import xai_helpers as xh
from xai_helpers.methods.attacks import apply_perturbation, loss_gradient_signs

EPSILONS = [0.0, 1e-3, xh.DEFAULT_EPS, 0.05, 0.3, 1.0]


def _sign_where_defined(gradient: np.ndarray, tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Return sign(gradient) and the mask where |gradient| is large enough for float32 to agree on it."""
    return np.sign(gradient), np.abs(gradient) > tol


# -------------------------------------------------------------------------------------------------
# Pixel units
# -------------------------------------------------------------------------------------------------

def test_one_pixel_level_is_two_over_255_model_units():
    assert xh.pixels_to_eps(1) == pytest.approx(2 / 255)
    assert xh.pixels_to_eps(255) == pytest.approx(2.0)
    assert xh.eps_to_pixels(2 / 255) == pytest.approx(1.0)


@pytest.mark.parametrize("levels", [0, 0.5, 1, 4, 8, 127.5])
def test_pixel_and_eps_conversions_are_inverse(levels):
    assert xh.eps_to_pixels(xh.pixels_to_eps(levels)) == pytest.approx(levels)


def test_default_eps_is_one_pixel_level():
    assert xh.DEFAULT_EPS == pytest.approx(xh.pixels_to_eps(xh.DEFAULT_EPS_PIXELS))
    assert xh.DEFAULT_EPS_PIXELS == 1.0


# -------------------------------------------------------------------------------------------------
# Gradient sign
# -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("label", [0, 1, 2, 3])
def test_loss_gradient_sign_matches_analytic_cross_entropy_gradient(linear, linear_x, label):
    sign = xh.loss_gradient_sign(linear.model, linear_x, label)
    expected, defined = _sign_where_defined(linear.loss_gradient(linear_x, label))
    assert sign.shape == linear_x.shape and sign.dtype == np.float32
    assert defined.mean() > 0.95
    np.testing.assert_array_equal(sign[defined], expected[defined])
    assert set(np.unique(sign)) <= {-1.0, 0.0, 1.0}


def test_loss_gradient_sign_defaults_to_the_models_top1(linear, linear_x):
    top1 = int(np.argmax(linear.probs(linear_x)))
    np.testing.assert_array_equal(xh.loss_gradient_sign(linear.model, linear_x),
                                  xh.loss_gradient_sign(linear.model, linear_x, top1))


def test_batched_gradient_signs_equal_single_image_signs(linear, rng):
    xs = rng.uniform(-1, 1, (3, 8, 8, 3)).astype(np.float32)
    labels = [2, 0, 3]
    batch = loss_gradient_signs(linear.model, xs, labels)
    for x, label, sign in zip(xs, labels, batch):
        np.testing.assert_array_equal(sign, xh.loss_gradient_sign(linear.model, x, label))


def test_loss_gradient_sign_is_stable_when_the_model_is_certain(linear):
    # p_y -> 1: a naive log(softmax) would give log(0) = -inf gradients for other labels; the logits-based
    # loss stays finite and its sign is still the analytic one.
    x = np.clip(linear.W[:, 0].reshape(8, 8, 3) * 100, -1, 1).astype(np.float32)
    for label in range(4):
        sign = xh.loss_gradient_sign(linear.model, x, label)
        assert np.all(np.isfinite(sign))
        expected, defined = _sign_where_defined(linear.loss_gradient(x, label), tol=1e-5)
        np.testing.assert_array_equal(sign[defined], expected[defined])


# -------------------------------------------------------------------------------------------------
# Untargeted FGSM
# -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("eps", EPSILONS)
def test_fgsm_perturbation_is_bounded_by_eps(linear, linear_x, eps):
    adv = xh.fgsm(linear.model, linear_x, eps=eps)
    assert adv.shape == linear_x.shape and adv.dtype == np.float32
    assert np.abs(adv - linear_x).max() <= eps + 1e-6


@pytest.mark.parametrize("eps", EPSILONS)
def test_fgsm_output_stays_in_model_input_range(linear, rng, eps):
    x = rng.choice([-1.0, -0.999, 0.0, 0.999, 1.0], size=(8, 8, 3)).astype(np.float32)
    adv = xh.fgsm(linear.model, x, eps=eps)
    assert adv.min() >= -1.0 and adv.max() <= 1.0


def test_fgsm_is_x_plus_eps_times_analytic_gradient_sign(linear, linear_x):
    eps = 0.05
    label = 1
    adv = xh.fgsm(linear.model, linear_x, label=label, eps=eps)
    sign, defined = _sign_where_defined(linear.loss_gradient(linear_x, label))
    expected = np.clip(linear_x + eps * sign, -1, 1)
    np.testing.assert_allclose(adv[defined], expected[defined], atol=1e-6)


def test_fgsm_with_zero_eps_returns_the_input(linear, linear_x):
    np.testing.assert_array_equal(xh.fgsm(linear.model, linear_x, eps=0.0), linear_x)


def test_fgsm_is_deterministic(linear, linear_x):
    np.testing.assert_array_equal(xh.fgsm(linear.model, linear_x, eps=0.1),
                                  xh.fgsm(linear.model, linear_x, eps=0.1))


def test_fgsm_leaves_the_input_unchanged(linear, linear_x):
    before = linear_x.copy()
    xh.fgsm(linear.model, linear_x, eps=0.1)
    np.testing.assert_array_equal(linear_x, before)


def test_fgsm_lowers_the_probability_of_the_attacked_label(linear, linear_x):
    label = int(np.argmax(linear.probs(linear_x)))
    adv = xh.fgsm(linear.model, linear_x, eps=0.02)
    assert linear.probs(adv)[label] < linear.probs(linear_x)[label]


def test_fgsm_default_label_is_the_models_top1(linear, linear_x):
    top1 = int(np.argmax(linear.probs(linear_x)))
    np.testing.assert_array_equal(xh.fgsm(linear.model, linear_x, eps=0.1),
                                  xh.fgsm(linear.model, linear_x, label=top1, eps=0.1))


def test_apply_perturbation_clips_to_model_range():
    x = np.array([[[-0.99, 0.0, 0.99]]], np.float32)
    out = apply_perturbation(x, np.array([[[-1.0, 1.0, 1.0]]], np.float32), 0.5)
    np.testing.assert_allclose(out, [[[-1.0, 0.5, 1.0]]])


# -------------------------------------------------------------------------------------------------
# Targeted FGSM
# -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", [0, 1, 2, 3])
def test_targeted_fgsm_raises_the_target_probability(linear, linear_x, target):
    adv = xh.fgsm_targeted(linear.model, linear_x, target, eps=0.01)
    assert linear.probs(adv)[target] > linear.probs(linear_x)[target]
    assert np.abs(adv - linear_x).max() <= 0.01 + 1e-6


def test_targeted_fgsm_steps_down_the_target_loss(linear, linear_x):
    target, eps = 3, 0.05
    adv = xh.fgsm_targeted(linear.model, linear_x, target, eps=eps)
    sign, defined = _sign_where_defined(linear.loss_gradient(linear_x, target))
    np.testing.assert_allclose(adv[defined], np.clip(linear_x - eps * sign, -1, 1)[defined], atol=1e-6)


@pytest.mark.parametrize("eps", [0.02, 0.1])
def test_iterative_targeted_fgsm_stays_in_eps_ball_and_range(linear, rng, eps):
    x = rng.choice([-1.0, -0.99, 0.0, 0.99, 1.0], size=(8, 8, 3)).astype(np.float32)
    adv = xh.iterative_fgsm_targeted(linear.model, x, 1, eps=eps, iterations=5)
    assert np.abs(adv - x).max() <= eps + 1e-6
    assert adv.min() >= -1.0 and adv.max() <= 1.0


def test_iterative_targeted_fgsm_beats_one_step_on_target_probability(linear, linear_x):
    target = int(np.argmin(linear.probs(linear_x)))
    one_step = xh.fgsm_targeted(linear.model, linear_x, target, eps=0.05)
    iterative = xh.iterative_fgsm_targeted(linear.model, linear_x, target, eps=0.05, iterations=10)
    assert linear.probs(iterative)[target] >= linear.probs(one_step)[target] - 1e-6
    assert linear.probs(iterative)[target] > linear.probs(linear_x)[target]


def test_iterative_targeted_fgsm_with_one_iteration_is_clipped_single_step(linear, linear_x):
    # One iteration: step 2.5 eps, then clipped back into the eps-ball = the single-step attack.
    target, eps = 2, 0.04
    np.testing.assert_allclose(xh.iterative_fgsm_targeted(linear.model, linear_x, target, eps, 1),
                               xh.fgsm_targeted(linear.model, linear_x, target, eps), atol=1e-6)


@pytest.mark.parametrize("iterations", [0, -1, 2.0, True])
def test_iterative_targeted_fgsm_rejects_bad_iteration_counts(linear, linear_x, iterations,
                                                               one_sentence):
    with pytest.raises(ValueError) as excinfo:
        xh.iterative_fgsm_targeted(linear.model, linear_x, 0, 0.1, iterations=iterations)
    one_sentence(excinfo, "iterations")
