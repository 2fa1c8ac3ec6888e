"""Integrated Gradients (Sundararajan et al. 2017): quadrature rules, exactness on a linear model,
completeness, baselines."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import xai_helpers as xh
from xai_helpers.methods.integrated_gradients import (
    BLUR_SIGMA,
    METHODS,
    integrated_gradients_batch,
    make_baseline,
    quadrature,
)

LINEAR_SHAPE = (8, 8, 3)  # the input of conftest's ``linear`` model


# -------------------------------------------------------------------------------------------------
# Quadrature rules
# -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("steps", [2, 5, 50, 128])
def test_quadrature_weights_sum_to_one_and_nodes_lie_in_unit_interval(method, steps):
    nodes, weights = quadrature(method, steps)
    assert nodes.shape == weights.shape == (steps,)
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(weights > 0)
    assert nodes.min() >= 0.0 and nodes.max() <= 1.0
    assert np.all(np.diff(nodes) > 0)


def test_riemann_right_uses_the_assignments_nodes_k_over_m():
    nodes, weights = quadrature("riemann_right", 50)
    np.testing.assert_allclose(nodes, np.arange(1, 51) / 50)
    np.testing.assert_allclose(weights, np.full(50, 1 / 50))


def test_trapezoid_includes_both_ends_with_half_weights():
    nodes, weights = quadrature("trapezoid", 5)
    np.testing.assert_allclose(nodes, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(weights, [0.125, 0.25, 0.25, 0.25, 0.125])


@pytest.mark.parametrize("steps", [1, 2, 3, 5, 8])
def test_gauss_legendre_with_n_nodes_integrates_degree_2n_minus_1_exactly(steps):
    nodes, weights = quadrature("gauss_legendre", steps)
    degree = 2 * steps - 1
    for d in range(degree + 1):
        assert weights @ nodes ** d == pytest.approx(1.0 / (d + 1), rel=1e-12), d
    # ... and no further: degree 2n is not exact.
    assert weights @ nodes ** (degree + 1) != pytest.approx(1.0 / (degree + 2), rel=1e-12)


@pytest.mark.parametrize("steps", [2, 3, 17])
def test_trapezoid_integrates_linear_functions_exactly_but_not_quadratics(steps):
    nodes, weights = quadrature("trapezoid", steps)
    assert weights @ (3 * nodes - 0.5) == pytest.approx(1.0, rel=1e-12)
    assert weights @ nodes ** 2 > 1.0 / 3.0  # overestimates a convex integrand


def test_riemann_right_error_on_linear_function_is_half_a_step():
    nodes, weights = quadrature("riemann_right", 10)
    assert weights @ nodes == pytest.approx(0.5 + 0.5 / 10, rel=1e-12)


@pytest.mark.parametrize("steps", [0, -3, 2.0, True, "8"])
def test_quadrature_rejects_steps_that_are_not_positive_integers(steps, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        quadrature("riemann_right", steps)
    one_sentence(excinfo, "steps")


def test_trapezoid_rejects_a_single_step(one_sentence):
    with pytest.raises(ValueError) as excinfo:
        quadrature("trapezoid", 1)
    one_sentence(excinfo, "2 steps")


def test_quadrature_rejects_unknown_method(one_sentence):
    with pytest.raises(ValueError) as excinfo:
        quadrature("simpson", 10)
    one_sentence(excinfo, "method")


# -------------------------------------------------------------------------------------------------
# Baselines
# -------------------------------------------------------------------------------------------------

def test_black_baseline_is_minus_one_and_zeros_baseline_is_mid_grey(linear_x):
    assert np.all(make_baseline(linear_x, "black") == -1.0)
    assert np.all(make_baseline(linear_x, "zeros") == 0.0)


def test_blur_baseline_is_a_per_channel_gaussian_blur_of_the_input(linear_x):
    blurred = make_baseline(linear_x, "blur")
    assert blurred.shape == linear_x.shape
    expected = np.stack([ndimage.gaussian_filter(linear_x[..., c], BLUR_SIGMA, mode="nearest")
                         for c in range(3)], axis=-1)
    np.testing.assert_allclose(blurred, expected, atol=1e-6)
    assert blurred.std() < linear_x.std()


def test_unknown_baseline_name_is_rejected(linear_x, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        make_baseline(linear_x, "white")
    one_sentence(excinfo, "baseline")


def test_baseline_array_of_wrong_shape_is_rejected(linear, linear_x, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        xh.integrated_gradients(linear.model, linear_x, 0, baseline=np.zeros((4, 4, 3), np.float32))
    one_sentence(excinfo, "baseline", "shape")


# -------------------------------------------------------------------------------------------------
# Known answers on the linear model
# -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,steps", [("riemann_right", 1), ("riemann_right", 7), ("trapezoid", 2),
                                          ("gauss_legendre", 3)])
@pytest.mark.parametrize("baseline", ["black", "zeros", "array"])
def test_ig_on_logits_of_linear_model_is_input_difference_times_weights_for_any_rule(
        linear, linear_x, rng, method, steps, baseline):
    c = 2
    x0 = rng.uniform(-1, 1, LINEAR_SHAPE).astype(np.float32) if baseline == "array" else baseline
    result = xh.integrated_gradients(linear.model, linear_x, c, target="logits", baseline=x0,
                                     steps=steps, method=method)
    x_base = make_baseline(linear_x, x0)
    expected = (linear_x - x_base) * linear.W[:, c].reshape(LINEAR_SHAPE)
    np.testing.assert_allclose(result.attributions, expected, rtol=1e-4, atol=1e-6)
    assert result.f_x == pytest.approx(linear.logits(linear_x)[c], abs=1e-5)
    assert result.f_baseline == pytest.approx(linear.logits(x_base)[c], abs=1e-5)
    assert abs(result.delta) < 1e-5


def test_ig_on_linear_logits_is_complete(linear, linear_x):
    result = xh.integrated_gradients(linear.model, linear_x, 1, target="logits", steps=4)
    assert result.attributions.sum() == pytest.approx(result.f_x - result.f_baseline, abs=1e-5)
    assert result.relative_delta < 1e-5


def test_ig_on_softmax_of_linear_model_is_complete_with_128_trapezoid_steps(linear, linear_x):
    result = xh.integrated_gradients(linear.model, linear_x, 0, target="softmax", steps=128,
                                     method="trapezoid")
    probs = linear.probs(linear_x)
    assert result.f_x == pytest.approx(probs[0], abs=1e-6)
    assert result.f_baseline == pytest.approx(linear.probs(-np.ones(LINEAR_SHAPE))[0], abs=1e-6)
    assert abs(result.delta) < 1e-4
    assert result.relative_delta < 1e-3


def test_ig_rules_agree_on_a_smooth_path_function(linear, linear_x):
    # The softmax of a linear model is smooth along the path: all rules converge to one integral.
    reference = xh.integrated_gradients(linear.model, linear_x, 3, steps=24, method="gauss_legendre")
    for method in ("trapezoid", "riemann_right"):
        other = xh.integrated_gradients(linear.model, linear_x, 3, steps=512, method=method)
        tol = 2e-3 if method == "riemann_right" else 1e-4
        np.testing.assert_allclose(other.attributions, reference.attributions,
                                   atol=tol * np.abs(reference.attributions).max())


def test_ig_softmax_attributions_are_zero_where_input_equals_baseline(linear, linear_x):
    x = linear_x.copy()
    x[:4] = 0.0  # the zeros baseline
    result = xh.integrated_gradients(linear.model, x, 0, baseline="zeros", steps=16)
    assert np.all(result.attributions[:4] == 0.0)


def test_ig_result_records_its_settings(linear, linear_x):
    result = xh.integrated_gradients(linear.model, linear_x, np.int64(2), target="logits", steps=6,
                                     method="gauss_legendre")
    assert (result.class_index, result.target, result.method, result.steps) == (2, "logits",
                                                                                 "gauss_legendre", 6)
    assert isinstance(result.class_index, int)
    assert result.attributions.shape == LINEAR_SHAPE and result.attributions.dtype == np.float32
    assert result.delta == pytest.approx(
        float(result.attributions.sum(dtype=np.float64)) - (result.f_x - result.f_baseline), abs=1e-12)


def test_relative_delta_is_infinite_when_input_equals_baseline(linear):
    x = -np.ones(LINEAR_SHAPE, np.float32)
    result = xh.integrated_gradients(linear.model, x, 0, steps=4)
    assert np.all(result.attributions == 0.0)
    assert result.relative_delta == float("inf")


def test_ig_of_an_image_in_a_batch_of_8_is_its_ig_alone_bit_for_bit(linear, rng):
    xs = rng.uniform(-1, 1, (8, *LINEAR_SHAPE)).astype(np.float32)
    classes = [0, 3, 1, 2, 0, 1, 3, 2]
    batched = integrated_gradients_batch(linear.model, xs, classes, steps=21)   # 168 points: chunks mix images
    for x, c, res in zip(xs, classes, batched):
        single = xh.integrated_gradients(linear.model, x, c, steps=21)
        assert res.class_index == c
        np.testing.assert_array_equal(res.attributions, single.attributions)
        assert res.f_x == single.f_x and res.delta == single.delta


def test_ig_batch_rejects_class_count_that_does_not_match_images(linear, linear_x, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        integrated_gradients_batch(linear.model, np.stack([linear_x, linear_x]), [0])
    one_sentence(excinfo, "1 class indices", "2 images")


def test_ig_rejects_unknown_target(linear, linear_x, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        xh.integrated_gradients(linear.model, linear_x, 0, target="probability")
    one_sentence(excinfo, "target")
