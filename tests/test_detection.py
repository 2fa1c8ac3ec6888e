"""Detection helpers: an image statistic with a known answer, TPR at a fixed false-positive rate."""
from __future__ import annotations

import numpy as np
import pytest

from xai_helpers import detection


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
