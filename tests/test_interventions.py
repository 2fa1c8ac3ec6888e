"""Interventions on the perturbation (restriction, attack attribution, perturbation curves) and the
margin target of both explainers: known answers on tiny models, one real-model reproduction."""
from __future__ import annotations

import numpy as np
import pytest

import xai_helpers as xh
from xai_helpers.classifier.forward import probabilities
from xai_helpers.methods import interventions as iv
from xai_helpers.methods import regions
from xai_helpers.methods.integrated_gradients import (
    adaptive_integrated_gradients_batch,
    integrated_gradients,
    integrated_gradients_batch,
)

LINEAR_SHAPE = (8, 8, 3)
CAM_SHAPE = (4, 4, 3)


@pytest.fixture
def pair(rng):
    """A clean image and a perturbed one (signs of size 0.05) for the linear model."""
    x = rng.uniform(-0.9, 0.9, LINEAR_SHAPE).astype(np.float32)
    adv = (x + 0.05 * rng.choice([-1.0, 1.0], size=LINEAR_SHAPE)).astype(np.float32)
    return x, adv


# -------------------------------------------------------------------------------------------------
# restrict
# -------------------------------------------------------------------------------------------------

def test_restrict_with_all_ones_returns_adv_and_all_zeros_returns_x(pair):
    x, adv = pair
    np.testing.assert_array_equal(iv.restrict(x, adv, np.ones(x.shape[:2])), adv)
    np.testing.assert_array_equal(iv.restrict(x, adv, np.zeros(x.shape[:2])), x)


def test_restrict_keeps_the_perturbation_only_inside_the_mask_and_scales_fractional_values(pair):
    x, adv = pair
    mask = np.zeros(x.shape[:2])
    mask[2:5, 1:3] = 1.0
    mask[0, 0] = 0.25
    out = iv.restrict(x, adv, mask)
    np.testing.assert_allclose(out[2:5, 1:3], adv[2:5, 1:3], atol=1e-7)
    np.testing.assert_allclose(out[0, 0], x[0, 0] + 0.25 * (adv[0, 0] - x[0, 0]), atol=1e-7)
    outside = mask == 0
    np.testing.assert_array_equal(out[outside], x[outside])


def test_restrict_takes_a_batch_of_masks(pair):
    x, adv = pair
    masks = np.stack([np.zeros(x.shape[:2]), np.ones(x.shape[:2])])
    out = iv.restrict(x, adv, masks)
    assert out.shape == (2, *x.shape)
    np.testing.assert_array_equal(out[0], x)
    np.testing.assert_array_equal(out[1], adv)


@pytest.mark.parametrize("mask, words", [(np.ones((7, 8)), "shape"), (np.full((8, 8), 1.5), "[0, 1]"),
                                         (np.full((8, 8), np.nan), "finite"), (np.ones((1, 1, 8, 8)), "shape")])
def test_restrict_rejects_bad_masks(pair, mask, words, one_sentence):
    x, adv = pair
    with pytest.raises(ValueError) as excinfo:
        iv.restrict(x, adv, mask)
    one_sentence(excinfo, words)


# -------------------------------------------------------------------------------------------------
# Attack attribution and the margin target of IG
# -------------------------------------------------------------------------------------------------

def test_attack_attribution_of_a_linear_logit_is_w_times_the_perturbation(linear, pair):
    x, adv = pair
    result = iv.attack_attribution(linear.model, x, adv, 2)
    expected = linear.W[:, 2].reshape(LINEAR_SHAPE) * (adv - x)
    np.testing.assert_allclose(result.attributions, expected, atol=1e-5)
    assert result.f_x == pytest.approx(linear.logits(adv)[2], abs=1e-4)
    assert result.f_baseline == pytest.approx(linear.logits(x)[2], abs=1e-4)


def test_attack_attribution_of_a_linear_margin_is_the_weight_difference_times_the_perturbation(linear, pair):
    x, adv = pair
    result = iv.attack_attribution(linear.model, x, adv, 1, contrast_class=3)
    expected = (linear.W[:, 1] - linear.W[:, 3]).reshape(LINEAR_SHAPE) * (adv - x)
    np.testing.assert_allclose(result.attributions, expected, atol=1e-5)
    assert result.contrast_class == 3 and result.target == "margin"


def test_attack_attributions_of_a_batch_are_each_pair_s_own_bit_for_bit(cam_net):
    # The ReLU makes the path nonlinear, so the pairs refine to different step counts (17 to 65 nodes)
    # while their path points share chunks.
    rng = np.random.default_rng(2)
    xs = rng.uniform(-1, 1, (5, *CAM_SHAPE)).astype(np.float32)
    advs = np.clip(xs + rng.choice([-1, 1], xs.shape) * rng.uniform(0.05, 1.5, (5, 1, 1, 1)), -1, 1)
    classes, contrasts = [0, 1, 0, 1, 0], [1, 0, 2, 2, 1]
    batched = iv.attack_attributions(cam_net.model, xs, advs.astype(np.float32), classes, contrasts)
    assert len({r.steps for r in batched}) == 3
    for x, adv, c, k, result in zip(xs, advs, classes, contrasts, batched):
        alone = iv.attack_attribution(cam_net.model, x, adv, c, contrast_class=k)
        np.testing.assert_array_equal(result.attributions, alone.attributions)
        assert (result.steps, result.f_x, result.f_baseline) == (alone.steps, alone.f_x, alone.f_baseline)


def test_a_batched_call_records_each_image_s_passes_against_its_own_photo(cam_net):
    # Pairs that refine to different step counts: each photo of the stage gets its own image's passes,
    # not the batch's average; a stage naming fewer photos than images splits the sums equally.
    from xai_helpers.classifier import passes

    rng = np.random.default_rng(2)
    xs = rng.uniform(-1, 1, (5, *CAM_SHAPE)).astype(np.float32)
    advs = np.clip(xs + rng.choice([-1, 1], xs.shape) * rng.uniform(0.05, 1.5, (5, 1, 1, 1)), -1, 1)
    args = (cam_net.model, xs, advs.astype(np.float32), [0, 1, 0, 1, 0], [1, 0, 2, 2, 1])
    with passes.counting() as tally, passes.stage("attack_attribution", list("abcde")):
        results = iv.attack_attributions(*args)
    assert len({r.steps for r in results}) == 3
    for photo, result in zip("abcde", results):
        assert tally.per_photo[photo]["attack_attribution"] == {"forward": 2, "gradient": result.steps}
    with passes.counting() as pooled, passes.stage("attack_attribution", ["ab", "cde"]):
        iv.attack_attributions(*args)
    share = sum(r.steps for r in results) / 2
    assert pooled.per_photo["ab"]["attack_attribution"] == {"forward": 5, "gradient": share}
    assert not tally.unassigned and not pooled.unassigned


def test_per_image_passes_need_one_forward_and_one_gradient_count_per_image(one_sentence):
    from xai_helpers.classifier import passes

    with pytest.raises(ValueError) as excinfo:
        passes.record_each(forward=[2, 2], gradient=[17])
    one_sentence(excinfo, "one count per image")


def test_attack_attributions_rejects_pairs_of_different_shapes(linear, pair, one_sentence):
    x, adv = pair
    with pytest.raises(ValueError) as excinfo:
        iv.attack_attributions(linear.model, x[None], np.stack([adv, adv]), [0])
    one_sentence(excinfo, "xs and advs")


def test_margin_ig_sums_to_the_margin_change_on_a_nonlinear_path(linear, linear_x):
    # Softmax of the linear model is nonlinear, but the margin of its logits is linear; use the black
    # baseline and check completeness against the margin computed by hand.
    result = integrated_gradients(linear.model, linear_x, 0, target="margin", contrast_class=2, steps=8)
    z_x, z_b = linear.logits(linear_x), linear.logits(np.full(LINEAR_SHAPE, -1.0))
    assert result.attributions.sum() == pytest.approx((z_x[0] - z_x[2]) - (z_b[0] - z_b[2]), rel=1e-4)
    assert abs(result.delta) < 1e-4


def test_attack_attribution_sums_to_the_score_change_on_the_real_model(mobilenet, whiptail):
    adv = xh.fgsm(mobilenet, whiptail, 41, xh.DEFAULT_EPS)
    result = iv.attack_attribution(mobilenet, whiptail, adv, 41)
    f_x, f_adv = iv.scores(mobilenet, np.stack([whiptail, adv]), 41)
    assert result.f_x == pytest.approx(f_adv, abs=1e-3) and result.f_baseline == pytest.approx(f_x, abs=1e-3)
    assert result.relative_delta <= 0.01
    assert result.attributions.sum() == pytest.approx(f_adv - f_x, rel=0.011)


@pytest.mark.parametrize("kwargs, words", [(dict(target="margin"), "contrast_class"),
                                           (dict(target="logits", contrast_classes=[1]), "contrast_class"),
                                           (dict(target="margin", contrast_classes=[0]), "differ"),
                                           (dict(target="margin", contrast_classes=[9]), "contrast_class"),
                                           (dict(target="probability"), "target")])
def test_ig_rejects_inconsistent_margin_arguments(linear, linear_x, kwargs, words, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        integrated_gradients_batch(linear.model, linear_x[None], [0], steps=4, **kwargs)
    one_sentence(excinfo, words)


# -------------------------------------------------------------------------------------------------
# Adaptive (nested trapezoid) IG
# -------------------------------------------------------------------------------------------------

def test_adaptive_ig_after_two_doublings_equals_the_fixed_trapezoid_with_the_same_nodes(linear, linear_x):
    # Softmax target: the integrand is not constant, so each doubling changes the result; forcing two
    # doublings (tolerance below float error, 5 -> 9 -> 17 nodes) must reproduce the 17-node rule.
    adaptive = adaptive_integrated_gradients_batch(linear.model, linear_x[None], [1], target="softmax",
                                                   tolerance=1e-12, start_steps=5, max_steps=17)[0]
    fixed = integrated_gradients(linear.model, linear_x, 1, target="softmax", steps=17, method="trapezoid")
    np.testing.assert_allclose(adaptive.attributions, fixed.attributions, rtol=1e-4, atol=1e-7)
    assert adaptive.steps == 17


def test_adaptive_ig_stops_at_the_first_rule_when_it_is_already_exact(linear, linear_x):
    result = adaptive_integrated_gradients_batch(linear.model, linear_x[None], [1], target="logits",
                                                 start_steps=5)[0]
    assert result.steps == 5 and result.relative_delta <= 0.01


def test_adaptive_ig_refines_until_the_tolerance_holds(linear, linear_x):
    loose = adaptive_integrated_gradients_batch(linear.model, linear_x[None], [1], target="softmax",
                                                tolerance=0.05, start_steps=3)[0]
    tight = adaptive_integrated_gradients_batch(linear.model, linear_x[None], [1], target="softmax",
                                                tolerance=1e-4, start_steps=3)[0]
    assert tight.relative_delta <= 1e-4 and loose.relative_delta <= 0.05
    assert tight.steps >= loose.steps


@pytest.mark.parametrize("kwargs", [dict(start_steps=16), dict(max_steps=100), dict(tolerance=0.0),
                                    dict(start_steps=33, max_steps=17)])
def test_adaptive_ig_rejects_bad_settings(linear, linear_x, kwargs, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        adaptive_integrated_gradients_batch(linear.model, linear_x[None], [1], **kwargs)
    one_sentence(excinfo)


# -------------------------------------------------------------------------------------------------
# Margin Grad-CAM
# -------------------------------------------------------------------------------------------------

def test_margin_gradcam_equals_the_hand_computed_map_of_the_logit_difference(cam_net, cam_x):
    cam = xh.gradcam(cam_net.model, cam_x, 0, target="margin", contrast_class=1, normalize=False,
                     layer="feat")
    A = cam_net.features(cam_x)
    alpha = (cam_net.W[:, 0] - cam_net.W[:, 1]) / (A.shape[0] * A.shape[1])
    np.testing.assert_allclose(cam, np.maximum(A @ alpha, 0.0), atol=1e-5)


def test_margin_gradcam_takes_one_contrast_per_image(cam_net, cam_x):
    batch = np.stack([cam_x, -cam_x])
    cams = xh.gradcam(cam_net.model, batch, [0, 1], target="margin", contrast_class=[1, 0], normalize=False,
                      layer="feat")
    for image, (c, k), cam in zip(batch, [(0, 1), (1, 0)], cams):
        A = cam_net.features(image)
        np.testing.assert_allclose(cam, np.maximum(A @ ((cam_net.W[:, c] - cam_net.W[:, k]) / 16), 0), atol=1e-5)


def test_margin_gradcam_needs_a_contrast_class_that_differs(cam_net, cam_x, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        xh.gradcam(cam_net.model, cam_x, 0, target="margin", layer="feat")
    one_sentence(excinfo, "contrast_class")
    with pytest.raises(ValueError) as excinfo:
        xh.gradcam(cam_net.model, cam_x, 0, target="margin", contrast_class=0, layer="feat")
    one_sentence(excinfo, "differ")


# -------------------------------------------------------------------------------------------------
# Perturbation curves and random controls
# -------------------------------------------------------------------------------------------------

def test_perturbation_curve_is_zero_with_no_pixels_and_one_with_all(linear, pair, rng):
    from xai_helpers.classifier import passes

    x, adv = pair
    saliency = rng.random(x.shape[:2])
    with passes.counting() as tally:
        curve = iv.perturbation_curve(linear.model, x, adv, saliency, [0.0, 0.3, 1.0], 0, contrast_class=1,
                                      n_random=5)
    # The ends are x itself and adv itself: exactly 0 and 1, with no pass of their own; only f = 0.3 of the
    # map and of the 5 random orders is scored (and x and adv once).
    assert curve.kept[0] == 0.0 and curve.kept[-1] == 1.0
    assert np.all(curve.random[:, 0] == 0.0) and np.all(curve.random[:, -1] == 1.0)
    assert sum(kinds["forward"] for kinds in tally.totals().values()) == 2 + 6
    # The middle point is the share its mask keeps, and the random orders are random_masks' masks.
    top = np.zeros(x.shape[:2], bool)
    top.ravel()[np.argsort(-saliency.ravel(), kind="stable")[:round(0.3 * saliency.size)]] = True
    assert curve.kept[1] == pytest.approx(iv.effect_shares(linear.model, x, adv, top, 0, 1)[0], abs=1e-5)
    np.testing.assert_allclose(curve.random[:, 1], iv.effect_shares(
        linear.model, x, adv, iv.random_masks(x.shape[:2], 0.3, 5, seed=iv.SEED), 0, 1), atol=1e-5)


def test_perturbation_curve_of_the_attack_attribution_beats_random_on_a_linear_model(linear, pair):
    # For a linear score the share kept is additive over pixels, so ranking pixels by their exact
    # contribution (the attack attribution) maximises the share kept at every budget.
    x, adv = pair
    attribution = iv.attack_attribution(linear.model, x, adv, 0, contrast_class=1)
    sign = np.sign(attribution.attributions.sum())
    saliency = sign * iv.signed_map(attribution.attributions)
    fractions = np.linspace(0, 1, 11)
    curve = iv.perturbation_curve(linear.model, x, adv, saliency, fractions, 0, contrast_class=1, n_random=20)
    assert np.all(curve.kept[1:-1] >= curve.random[:, 1:-1].max(axis=0) - 1e-6)
    assert curve.auc > curve.random_auc_interval[2]
    # Additivity: the share at f is the sum of the kept pixels' attributions over the total.
    top = saliency.ravel().argsort()[::-1][:int(round(0.3 * saliency.size))]
    expected = iv.signed_map(attribution.attributions).ravel()[top].sum() / attribution.attributions.sum()
    assert curve.kept[3] == pytest.approx(expected, rel=1e-3)


def test_perturbation_curves_share_one_random_control_and_are_seeded(linear, pair, rng):
    x, adv = pair
    maps = {"a": rng.random(x.shape[:2]), "b": rng.random(x.shape[:2])}
    first = iv.perturbation_curves(linear.model, x, adv, maps, 0, contrast_class=1, n_random=6, seed=3)
    again = iv.perturbation_curves(linear.model, x, adv, maps, 0, contrast_class=1, n_random=6, seed=3)
    other = iv.perturbation_curves(linear.model, x, adv, maps, 0, contrast_class=1, n_random=6, seed=4)
    np.testing.assert_array_equal(first["a"].random, first["b"].random)
    np.testing.assert_array_equal(first["a"].random, again["a"].random)
    assert not np.array_equal(first["a"].random, other["a"].random)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.37, 1.0])
def test_random_masks_are_seeded_and_have_the_asked_area(fraction):
    masks = iv.random_masks((20, 30), fraction, 5, seed=1)
    assert masks.shape == (5, 20, 30) and masks.dtype == bool
    np.testing.assert_array_equal(masks.sum(axis=(1, 2)), round(fraction * 600))
    np.testing.assert_array_equal(masks, iv.random_masks((20, 30), fraction, 5, seed=1))
    if 0 < fraction < 1:
        assert not np.array_equal(masks, iv.random_masks((20, 30), fraction, 5, seed=2))


def test_random_placements_keep_shape_and_area_and_avoid_the_excluded_area():
    mask = np.zeros((50, 60), bool)
    mask[10:20, 5:25] = True
    avoid = np.zeros_like(mask)
    avoid[:, 30:] = True
    placed = iv.random_placements(mask, 12, seed=0, avoid=avoid)
    assert placed.shape == (12, 50, 60)
    np.testing.assert_array_equal(placed.sum(axis=(1, 2)), mask.sum())
    assert not np.any(placed & avoid)
    np.testing.assert_array_equal(placed, iv.random_placements(mask, 12, seed=0, avoid=avoid))


def test_random_placements_say_when_the_mask_cannot_avoid_the_area(one_sentence):
    mask = np.zeros((10, 10), bool)
    mask[:6, :6] = True
    avoid = np.zeros_like(mask)
    avoid[4:6, :] = True
    with pytest.raises(ValueError) as excinfo:
        iv.random_placements(mask, 3, avoid=avoid, max_tries=200)
    one_sentence(excinfo, "placements")


def test_analyses_sharing_one_pass_get_what_they_get_alone_bit_for_bit(linear, pair, rng):
    from xai_helpers.classifier import passes
    from xai_helpers.methods.sufficiency import region_verdicts, verdicts_analysis

    x, adv = pair
    maps = {"a": rng.random(x.shape[:2]), "b": rng.random(x.shape[:2])}
    regions_ = {"r": rng.random(x.shape[:2]) < 0.3, "s": rng.random(x.shape[:2]) < 0.6}
    copies = rng.random((11, *x.shape[:2])) < 0.5
    alone = (iv.perturbation_curves(linear.model, x, adv, maps, 0, 1, (0.1, 0.5), n_random=5, seed=2),
             region_verdicts(linear.model, x, adv, regions_, 0, 1, target=1),
             iv.effect_shares(linear.model, x, adv, copies, 0, 1))
    with passes.counting() as tally:
        shared = iv.shared_pass(linear.model, x, adv,
                                iv.curves_analysis(linear.model, x, adv, maps, 0, 1, (0.1, 0.5), 5, 2),
                                verdicts_analysis(linear.model, x, adv, regions_, 0, 1, target=1),
                                iv.shares_analysis(linear.model, x, adv, copies, 0, 1))
    for name in maps:
        np.testing.assert_array_equal(shared[0][name].kept, alone[0][name].kept)
        np.testing.assert_array_equal(shared[0][name].random, alone[0][name].random)
    assert shared[1] == alone[1]
    np.testing.assert_array_equal(shared[2], alone[2])
    # x and adv once, then (2 maps + 5 random) x 2 fractions, 2 x 2 kept and removed regions, 11 copies
    assert tally.totals()["classify"]["forward"] == 2 + 14 + 4 + 11


@pytest.mark.parametrize("call", ["effect_shares", "perturbation_curves", "region_verdicts"])
@pytest.mark.parametrize("classes", [(-1, None), (0, 10), (7, None)], ids=["negative", "contrast", "past_the_end"])
def test_the_interventions_reject_a_class_the_model_does_not_have(linear, pair, call, classes, one_sentence):
    from xai_helpers.methods.sufficiency import region_verdicts

    x, adv = pair
    mask = np.ones(x.shape[:2], bool)
    run = {"effect_shares": lambda c, k: iv.effect_shares(linear.model, x, adv, mask, c, k),
           "perturbation_curves": lambda c, k: iv.perturbation_curves(linear.model, x, adv, {"m": mask * 1.0}, c, k),
           "region_verdicts": lambda c, k: region_verdicts(linear.model, x, adv, {"m": mask}, c, k)}[call]
    with pytest.raises(ValueError) as excinfo:
        run(*classes)
    one_sentence(excinfo, "contrast_class" if classes[1] is not None else "class_index")


def test_effect_shares_refuse_an_attack_without_effect(linear, pair, one_sentence):
    x, _ = pair
    with pytest.raises(ValueError) as excinfo:
        iv.effect_shares(linear.model, x, x, np.ones(x.shape[:2]), 0)
    one_sentence(excinfo, "unchanged")


# -------------------------------------------------------------------------------------------------
# The real model: the whiptail's FGSM image acts through the front of the animal
# -------------------------------------------------------------------------------------------------

def test_fgsm_perturbation_on_head_and_body_alone_flips_the_whiptail_and_the_tail_alone_does_not(
        mobilenet, whiptail):
    adv = xh.fgsm(mobilenet, whiptail, 41, xh.DEFAULT_EPS)
    masks = regions.region_masks(regions.WHIPTAIL_REGIONS)
    front = iv.restrict(whiptail, adv, masks["head"] | masks["body"])
    tail = iv.restrict(whiptail, adv, masks["tail"])
    top_front, top_tail = xh.predict(mobilenet, front, 1)[0], xh.predict(mobilenet, tail, 1)[0]
    assert top_front.name == "centipede" and top_front.probability > 0.7
    assert probabilities(mobilenet, front)[41] < 0.01
    assert top_tail.name == "whiptail"
