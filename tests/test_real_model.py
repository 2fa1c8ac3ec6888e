"""The report's claims are about the real model: MobileNetV2 (ImageNet weights) on the whiptail sample photo.

The model and the photo are loaded once per session (conftest.py); the slowest test here is the IG
completeness check (two 128-step integrations, a few seconds).
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import xai_helpers as xh
from xai_helpers.classifier.forward import logits_model, probabilities

WHIPTAIL = 41
KOMODO_DRAGON = 48


def test_model_is_mobilenetv2_with_softmax_over_1000_classes(mobilenet, whiptail):
    assert mobilenet.input_shape == (None, 224, 224, 3)
    assert mobilenet.output_shape == (None, 1000)
    probs = probabilities(mobilenet, whiptail)
    assert probs.shape == (1000,) and probs.sum() == pytest.approx(1.0, abs=1e-4)
    assert xh.load_model() is mobilenet  # cached per process


def test_whiptail_photo_is_classified_as_whiptail(mobilenet, whiptail):
    rows = xh.predict(mobilenet, whiptail, top=5)
    assert rows[0].class_index == WHIPTAIL
    assert (rows[0].wnid, rows[0].name) == ("n01685808", "whiptail")
    assert 0.3 < rows[0].probability <= 1.0
    assert [r.probability for r in rows] == sorted((r.probability for r in rows), reverse=True)


def test_logits_model_of_mobilenet_reproduces_its_softmax(mobilenet, whiptail):
    z = np.asarray(logits_model(mobilenet)(whiptail[None]), np.float64)[0]
    p = np.exp(z - z.max())
    np.testing.assert_allclose(p / p.sum(), probabilities(mobilenet, whiptail), rtol=1e-3, atol=1e-6)


def test_load_image_gives_the_whole_whiptail_photo_in_model_range(whiptail_path, whiptail):
    assert whiptail.shape == (224, 224, 3) and whiptail.dtype == np.float32
    assert -1.0 <= whiptail.min() < -0.5 and 0.5 < whiptail.max() <= 1.0
    with Image.open(whiptail_path) as photo:
        assert photo.size == (500, 332)
        whole = photo.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR, reducing_gap=None)
    np.testing.assert_allclose(whiptail, np.asarray(whole, np.float32) / 127.5 - 1, atol=1e-6)


def test_weights_fingerprint_is_the_sha256_of_the_loaded_weights_file(mobilenet):
    fingerprint = xh.weights_fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", fingerprint["sha256"])
    path = Path(fingerprint["path"])
    assert path.is_file() and path.name == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == fingerprint["sha256"]
    assert isinstance(fingerprint["source"], str) and fingerprint["source"]


def test_fgsm_at_default_eps_changes_the_top1(mobilenet, whiptail):
    adv = xh.fgsm(mobilenet, whiptail)
    assert np.abs(adv - whiptail).max() <= xh.DEFAULT_EPS + 1e-6
    assert adv.min() >= -1.0 and adv.max() <= 1.0
    assert xh.predict(mobilenet, adv, top=1)[0].class_index != WHIPTAIL


def test_iterative_targeted_fgsm_at_one_level_makes_it_a_komodo_dragon(mobilenet, whiptail):
    adv = xh.iterative_fgsm_targeted(mobilenet, whiptail, KOMODO_DRAGON, eps=xh.pixels_to_eps(1))
    assert np.abs(adv - whiptail).max() <= xh.pixels_to_eps(1) + 1e-6
    assert xh.predict(mobilenet, adv, top=1)[0].class_index == KOMODO_DRAGON


@pytest.mark.parametrize("target", ["softmax", "logits"])
def test_ig_defaults_are_complete_within_one_percent_on_the_whiptail(mobilenet, whiptail, target):
    result = xh.integrated_gradients(mobilenet, whiptail, WHIPTAIL, target=target)
    assert result.attributions.shape == (224, 224, 3)
    assert result.relative_delta <= 0.01, f"{target}: |delta| = {100 * result.relative_delta:.2f}%"
    assert result.f_x > result.f_baseline


@pytest.mark.parametrize("target", ["logits", "softmax"])
def test_gradcam_on_whiptail_is_a_224_map_in_unit_interval_with_positive_peak(mobilenet, whiptail, target):
    cam = xh.gradcam(mobilenet, whiptail, WHIPTAIL, target=target)
    assert cam.shape == (224, 224) and cam.dtype == np.float32
    assert cam.min() >= 0.0 and cam.max() == pytest.approx(1.0)
    assert 0.0 < cam.mean() < 1.0  # not an empty or saturated map
