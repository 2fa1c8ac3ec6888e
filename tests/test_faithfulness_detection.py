"""Faithfulness areas, ROAD scores, transfer detection and paired differences on tiny models with known
answers (the study's pure functions, issue: the study, rigorous)."""
from __future__ import annotations

import numpy as np
import pytest

from xai_helpers.methods import detection, faithfulness
from xai_helpers.study import summary


def contribution(linear, x, c):
    """Each pixel's contribution to the logit of class c: sum over channels of W_c * x (exact for this model)."""
    return (linear.W[:, c] * x.reshape(-1)).reshape(x.shape).sum(-1)


def test_deletion_of_positive_evidence_first_falls_faster_than_of_negative_evidence_first(linear, linear_x):
    c = int(np.argmax(linear.probs(linear_x)))
    good = contribution(linear, linear_x, c)
    p, aucs = faithfulness.deletion_insertion_aucs(linear.model, linear_x, {"good": good, "bad": -good}, c,
                                                   steps=8, blur_sigma=1.0)
    assert p == pytest.approx(linear.probs(linear_x)[c], rel=1e-5)
    assert aucs["good"]["deletion"] < aucs["bad"]["deletion"]
    assert aucs["good"]["insertion"] > aucs["bad"]["insertion"]


def test_areas_are_normalised_by_the_intact_score_and_the_half_area_uses_every_other_point(linear, linear_x):
    c = 0
    saliency = np.arange(64, dtype=float).reshape(8, 8)
    _, aucs = faithfulness.deletion_insertion_aucs(linear.model, linear_x, {"m": saliency}, c, steps=4,
                                                   blur_sigma=1.0)
    deletion, insertion = faithfulness.deletion_insertion_images(linear_x, saliency, 4, 1.0)
    p_del = np.array([linear.probs(im)[c] for im in deletion])
    p_ins = np.array([linear.probs(im)[c] for im in insertion])
    curve = p_del / p_del[0]
    assert aucs["m"]["deletion"] == pytest.approx(np.trapezoid(curve, dx=0.25), rel=1e-4)
    assert aucs["m"]["deletion_half"] == pytest.approx(np.trapezoid(curve[::2], dx=0.5), rel=1e-4)
    assert aucs["m"]["insertion"] == pytest.approx(np.trapezoid(p_ins / p_del[0], dx=0.25), rel=1e-4)


def test_logit_scored_areas_are_the_mean_logit_change_and_leave_the_probability_areas_unchanged(linear, linear_x):
    c = 1
    saliency = np.arange(64, dtype=float).reshape(8, 8)
    _, plain = faithfulness.deletion_insertion_aucs(linear.model, linear_x, {"m": saliency}, c, 4, 1.0)
    _, both = faithfulness.deletion_insertion_aucs(linear.model, linear_x, {"m": saliency}, c, 4, 1.0,
                                                   logits=True)
    deletion, insertion = faithfulness.deletion_insertion_images(linear_x, saliency, 4, 1.0)
    z_intact = linear.logits(linear_x)[c]
    for curve, images in (("deletion", deletion), ("insertion", insertion)):
        z = np.array([linear.logits(im)[c] for im in images])
        assert both["m"][f"{curve}_logit"] == pytest.approx(np.trapezoid(z - z_intact, dx=0.25), abs=1e-4)
        assert both["m"][curve] == pytest.approx(plain["m"][curve], rel=1e-5)
    assert "deletion_logit" not in plain["m"]


@pytest.mark.parametrize("steps", [0, 3, 7])
def test_deletion_areas_need_an_even_step_count(linear, linear_x, steps, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        faithfulness.deletion_insertion_aucs(linear.model, linear_x, {"m": np.ones((8, 8))}, 0, steps, 1.0)
    one_sentence(excinfo, "steps", "even")


def test_road_removing_positive_evidence_first_lowers_the_score_more(linear, linear_x):
    c = int(np.argmax(linear.probs(linear_x)))
    good = contribution(linear, linear_x, c)
    road = faithfulness.road_scores(linear.model, linear_x, {"good": good, "bad": -good}, c, noise=0.0)
    assert road["good"]["morf"] < road["bad"]["morf"]
    assert road["good"]["lerf"] > road["bad"]["lerf"]
    # with the order reversed, most-relevant-first of one map is least-relevant-first of the other
    assert road["good"]["morf"] == pytest.approx(road["bad"]["lerf"], rel=1e-5)


def test_road_scores_are_seeded(linear, linear_x):
    maps = {"m": np.arange(64, dtype=float).reshape(8, 8)}
    first = faithfulness.road_scores(linear.model, linear_x, maps, 1, seed=[0, 3])
    assert first == faithfulness.road_scores(linear.model, linear_x, maps, 1, seed=[0, 3])
    assert first != faithfulness.road_scores(linear.model, linear_x, maps, 1, seed=[0, 4])


def test_transfer_detection_finds_a_shift_that_generalises_and_not_one_that_does_not():
    rng = np.random.default_rng(0)
    clean = rng.normal(size=(200, 2))
    shifted = clean + [3.0, 0.0]
    other = clean + [0.0, 3.0]  # an "attack" that moves another feature
    same = detection.transfer_detection_auc(clean, shifted, clean, shifted + [1.0, 0.0], n_boot=200)
    assert same["auc"] > 0.95 and same["tpr"] > 0.8 and same["ci_low"] <= same["auc"] <= same["ci_high"]
    moved = detection.transfer_detection_auc(clean, shifted, clean, other, n_boot=200)
    assert moved["auc"] < 0.7


def test_transfer_detection_refuses_unpaired_or_missing_features(one_sentence):
    a = np.zeros((10, 2))
    with pytest.raises(ValueError) as excinfo:
        detection.transfer_detection_auc(a, a, a, a[:9])
    one_sentence(excinfo, "same number of photos")
    b = a.copy()
    b[3, 1] = np.nan
    with pytest.raises(ValueError) as excinfo:
        detection.transfer_detection_auc(a, b, a, a)
    one_sentence(excinfo, "finite")


def test_detection_auc_reports_the_true_positive_rate_at_five_percent_false_alarms():
    rng = np.random.default_rng(1)
    clean = rng.normal(size=(100, 1))
    result = detection.detection_auc(clean, clean + 10.0, n_boot=100)
    assert result["tpr_at_5pct"] == pytest.approx(1.0)


def test_paired_difference_is_the_mean_difference_with_an_interval_around_it():
    rng = np.random.default_rng(2)
    b = rng.normal(size=300)
    a = b + 0.5 + rng.normal(scale=0.1, size=300)
    a[7] = np.nan  # a missing pair is dropped, not counted
    d = summary.paired_difference(a, b, n_boot=500)
    assert d["n"] == 299 and d["ci_low"] < 0.5 < d["ci_high"] and d["ci_high"] - d["ci_low"] < 0.05
    assert d["mean"] == pytest.approx(np.nanmean(a - b)) and d["share_positive"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        summary.paired_difference(a, b[:-1])


def test_auc_difference_is_positive_when_one_detector_sees_the_attack_and_the_other_does_not():
    rng = np.random.default_rng(3)
    clean = rng.normal(size=(150, 2))
    adversarial = clean + [4.0, 0.0]
    sees = detection.detection_auc(clean[:, :1], adversarial[:, :1], n_boot=100)
    blind = detection.detection_auc(clean[:, 1:], adversarial[:, 1:], n_boot=100)
    d = detection.auc_difference(sees, blind, n_boot=200)
    assert d["difference"] == pytest.approx(sees["auc"] - blind["auc"]) and d["ci_low"] > 0.2
    with pytest.raises(ValueError):
        detection.auc_difference(sees, {"auc": 0.5, "scores": np.zeros(4)})


@pytest.mark.parametrize("low, high, expected", [(0.1, 0.3, "up"), (-0.3, -0.1, "down"), (-0.1, 0.2, "none"),
                                                 (float("nan"), float("nan"), "none")])
def test_verdict_follows_the_interval(low, high, expected):
    assert summary.verdict(low, high, "up", "down", "none") == expected


def test_wilson_interval_does_not_collapse_at_one_hundred_percent():
    low, high = summary.proportion_ci(40, 40)
    assert 0.85 < low < 0.95 and high == pytest.approx(1.0)
    low, high = summary.proportion_ci(5, 10)
    assert low < 0.5 < high
    with pytest.raises(ValueError):
        summary.proportion_ci(3, 2)


def test_partial_spearman_removes_a_shared_cause():
    rng = np.random.default_rng(4)
    z = rng.normal(size=2000)
    x = z + 0.3 * rng.normal(size=2000)  # x and y both follow z, not each other
    y = z + 0.3 * rng.normal(size=2000)
    assert summary.partial_spearman(x, y, z) == pytest.approx(0.0, abs=0.08)
    y_direct = x + 0.3 * rng.normal(size=2000)  # y follows x itself
    assert summary.partial_spearman(x, y_direct, z) > 0.5


def test_the_detection_interval_contains_the_estimate_for_a_weak_paired_shift():
    # A tiny shift, the same in every photo, under a large spread between photos: the interval of the
    # pooled AUC must contain the AUC (same-photo pairs are not over-counted).
    rng = np.random.default_rng(5)
    clean = rng.normal(size=(300, 1))
    result = detection.detection_auc(clean, clean + 0.05, n_boot=500)
    assert result["ci_low"] <= result["auc"] <= result["ci_high"]


def test_family_verdicts_follow_the_holm_corrected_tests_not_the_raw_ones():
    rng = np.random.default_rng(3)
    clear = summary.paired_difference(rng.normal(0.5, 1, 400), np.zeros(400), n_boot=200)
    none = summary.paired_difference(rng.normal(0.0, 1, 400), np.zeros(400), n_boot=200)
    below = summary.paired_difference(np.zeros(400), rng.normal(0.5, 1, 400), n_boot=200)
    assert clear["p"] < 1e-10 and none["p"] > 0.05
    # a raw p of 0.03 passes alone but not among 20 tests (Holm multiplies the smallest by 20)
    marginal = {"mean": 0.1, "p": 0.03}
    alone = summary.family_verdicts({"m": marginal})
    many = summary.family_verdicts({"m": marginal, **{f"n{i}": none for i in range(19)}})
    assert alone["m"]["direction"] == 1 and many["m"]["direction"] == 0
    assert many["m"]["p_adjusted"] == pytest.approx(min(1.0, 0.03 * 20))
    out = summary.family_verdicts({"clear": clear, "none": none, "below": below})
    assert [out[k]["direction"] for k in ("clear", "none", "below")] == [1, 0, -1]
    assert summary.corrected_verdict(out["below"], "up", "down", "flat") == "down"
    assert summary.family_verdicts({"m": {"mean": 1.0, "p": float("nan")}})["m"]["direction"] == 0
    with pytest.raises(ValueError):
        summary.family_verdicts({})
