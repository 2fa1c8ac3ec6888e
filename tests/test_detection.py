"""Detection helpers: an image statistic with a known answer, TPR at a fixed false-positive rate."""
from __future__ import annotations

import numpy as np
import pytest

from xai_helpers.methods import detection


def test_high_frequency_energy_is_zero_on_a_linear_ramp_and_grows_with_sign_noise():
    rows, cols = np.mgrid[0:32, 0:32]
    ramp = np.repeat((0.01 * rows - 0.02 * cols)[..., None], 3, axis=-1)
    assert detection.high_frequency_energy(ramp) == pytest.approx(0.0, abs=1e-20)
    eps = 0.01
    noise = np.random.default_rng(0).choice([-1.0, 1.0], size=ramp.shape)
    # E[(4 s0 - s1 - s2 - s3 - s4)^2] = 16 + 4 = 20 for independent signs.
    assert detection.high_frequency_energy(ramp + eps * noise) == pytest.approx(20 * eps ** 2, rel=0.05)


def test_tpr_at_fpr_takes_the_best_point_within_the_allowed_false_alarms():
    fpr = np.array([0.0, 0.02, 0.05, 0.2, 1.0])
    tpr = np.array([0.0, 0.4, 0.6, 0.9, 1.0])
    assert detection.tpr_at_fpr(fpr, tpr, 0.05) == 0.6
    assert detection.tpr_at_fpr(fpr, tpr, 0.01) == 0.0
    with pytest.raises(ValueError):
        detection.tpr_at_fpr(fpr, tpr, 1.5)


def test_high_frequency_energy_wants_one_image():
    with pytest.raises(ValueError):
        detection.high_frequency_energy(np.zeros((2, 8, 8, 3)))


def test_boosted_trees_detect_a_shift_that_points_both_ways_and_logistic_regression_cannot():
    # Attacked images move the feature away from the photo's value in either direction (|shift| = 2): the
    # classes differ in spread, not in mean, so no linear score separates them; trees do.
    rng = np.random.default_rng(0)
    clean = rng.normal(0, 0.3, (300, 1))
    adversarial = clean + rng.choice([-2.0, 2.0], size=(300, 1))
    linear = detection.detection_auc(clean, adversarial, n_boot=200)
    trees = detection.detection_auc(clean, adversarial, n_boot=200, classifier="boosting")
    assert linear["ci_high"] < 0.7 and trees["auc"] > 0.95 and trees["ci_low"] > 0.9
    transfer = detection.transfer_detection_auc(clean, adversarial, clean, adversarial, n_boot=200,
                                                classifier="boosting")
    assert transfer["auc"] > 0.9
    with pytest.raises(ValueError, match="classifier must be one of"):
        detection.detection_auc(clean, adversarial, classifier="svm")


def test_logit_confidence_spreads_what_raw_probability_saturates():
    p = np.array([0.5, 0.999, 0.99999, 1.0, 0.0])
    z = detection.logit_confidence(p)
    assert z[0] == pytest.approx(0.0) and z[1] == pytest.approx(np.log(999), rel=1e-9)
    assert z[2] - z[1] > 4.5  # 0.001 apart in p, about 4.6 apart in logit(p)
    assert np.all(np.isfinite(z)) and z[3] == pytest.approx(-z[4]) and z[3] > z[2]


def test_fast_auc_equals_sklearns_roc_auc_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    for _ in range(5):
        labels = rng.integers(0, 2, 300)
        scores = np.round(rng.normal(size=300) + 0.5 * labels, 1)  # rounded: many ties
        assert detection.fast_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    with pytest.raises(ValueError, match="both classes"):
        detection.fast_auc(np.ones(4), np.arange(4.0))
