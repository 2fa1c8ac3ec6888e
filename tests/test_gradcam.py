"""Grad-CAM known answers on a conv model whose maps are computable by hand (Selvaraju et al. 2017)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import xai_helpers as xh

LAYER = "feat"


@pytest.mark.parametrize("target", ["logits", "softmax"])
@pytest.mark.parametrize("class_index", [0, 1])
def test_gradcam_raw_map_equals_hand_computed_relu_of_weighted_features(cam_net, cam_x, target,
                                                                         class_index):
    cam = xh.gradcam(cam_net.model, cam_x, class_index, target=target, layer=LAYER, normalize=False)
    expected = cam_net.expected_cam(cam_x, class_index, target)
    assert cam.shape == cam_x.shape[:2]
    np.testing.assert_allclose(cam, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("target", ["logits", "softmax"])
def test_gradcam_normalized_map_is_raw_map_divided_by_its_max(cam_net, cam_x, target):
    cam = xh.gradcam(cam_net.model, cam_x, 0, target=target, layer=LAYER)
    expected = cam_net.expected_cam(cam_x, 0, target)
    np.testing.assert_allclose(cam, expected / expected.max(), rtol=1e-5, atol=1e-6)
    assert cam.min() >= 0.0 and cam.max() == pytest.approx(1.0)


def test_gradcam_highlights_bright_pixels_for_bright_class_and_dark_for_dark_class(cam_net, cam_x):
    bright = xh.gradcam(cam_net.model, cam_x, 0, layer=LAYER)
    dark = xh.gradcam(cam_net.model, cam_x, 1, layer=LAYER)
    assert np.unravel_index(bright.argmax(), bright.shape) == np.unravel_index(
        cam_x[..., 0].argmax(), bright.shape)
    assert np.unravel_index(dark.argmax(), dark.shape) == np.unravel_index(
        cam_x[..., 0].argmin(), dark.shape)


def test_gradcam_without_positive_evidence_returns_zeros_with_warning_not_nan(cam_net, cam_x):
    with pytest.warns(RuntimeWarning, match="zero everywhere"):
        cam = xh.gradcam(cam_net.model, cam_x, 2, layer=LAYER)
    assert not np.any(np.isnan(cam))
    np.testing.assert_array_equal(cam, np.zeros(cam_x.shape[:2], np.float32))


def test_gradcam_of_zero_image_is_zero_with_warning(cam_net):
    with pytest.warns(RuntimeWarning):
        cam = xh.gradcam(cam_net.model, np.zeros(cam_net.model.input_shape[1:], np.float32), 0,
                         layer=LAYER)
    assert np.all(cam == 0.0)


def test_gradcam_batch_gives_one_map_per_image_and_class(cam_net, cam_x):
    batch = np.stack([cam_x, -cam_x])
    with pytest.warns(RuntimeWarning, match="1 Grad-CAM map"):
        cams = xh.gradcam(cam_net.model, batch, [0, 2], layer=LAYER)
    assert cams.shape == (2, *cam_x.shape[:2])
    np.testing.assert_allclose(cams[0], xh.gradcam(cam_net.model, cam_x, 0, layer=LAYER), atol=1e-6)
    assert np.all(cams[1] == 0.0)


def test_gradcam_batch_with_one_class_applies_it_to_every_image(cam_net, cam_x):
    batch = np.stack([cam_x, cam_x[::-1]])
    cams = xh.gradcam(cam_net.model, batch, 1, layer=LAYER)
    np.testing.assert_allclose(cams[1], xh.gradcam(cam_net.model, cam_x[::-1], 1, layer=LAYER),
                               atol=1e-6)


def test_gradcam_does_not_warn_for_maps_with_positive_evidence(cam_net, cam_x):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xh.gradcam(cam_net.model, cam_x, 0, layer=LAYER)


def test_gradcam_leaves_the_input_unchanged(cam_net, cam_x):
    before = cam_x.copy()
    xh.gradcam(cam_net.model, cam_x, 0, layer=LAYER)
    np.testing.assert_array_equal(cam_x, before)


def test_gradcam_rejects_unknown_target(cam_net, cam_x, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        xh.gradcam(cam_net.model, cam_x, 0, target="probability", layer=LAYER)
    one_sentence(excinfo, "target")


def test_gradcam_rejects_class_count_that_does_not_match_batch(cam_net, cam_x, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        xh.gradcam(cam_net.model, np.stack([cam_x, cam_x]), [0, 1, 0], layer=LAYER)
    one_sentence(excinfo, "3 class indices", "2 images")
