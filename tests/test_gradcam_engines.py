"""Grad-CAM's two engines (tf-keras-vis, compiled) and its placement: known answers on tiny models, and
equality on the real MobileNetV2 for every target."""
from __future__ import annotations

import importlib

import numpy as np
import pytest

import xai_helpers as xh

gradcam_module = importlib.import_module("xai_helpers.methods.gradcam")
TARGETS = ("logits", "softmax", "margin")
POOL = 4  # the pooled model's feature maps are 4 x 4 for a 16 x 16 input


def half_pixel_bilinear(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Reference: output pixel i samples the input at (i + 0.5) h / H - 0.5, clamped at the edges."""
    def axis(n_out, n_in):
        s = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(s).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), s - lo

    (r0, r1, wr), (c0, c1, wc) = axis(size[0], cam.shape[0]), axis(size[1], cam.shape[1])
    top = cam[r0][:, c0] * (1 - wc) + cam[r0][:, c1] * wc
    bottom = cam[r1][:, c0] * (1 - wc) + cam[r1][:, c1] * wc
    return top * (1 - wr[:, None]) + bottom * wr[:, None]


@pytest.fixture(scope="module")
def pooled():
    """A conv net whose 4 x 4 feature maps (``feat``) are 4 x 4 averages of two ReLU channels, so its raw
    CAM is known by hand and must be upsampled to the 16 x 16 input."""
    import keras

    rng = np.random.default_rng(7)
    inputs = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(2, 1, use_bias=False, name="conv")(inputs)
    h = keras.layers.ReLU()(h)
    h = keras.layers.AveragePooling2D(POOL, name="feat")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(h)
    model = keras.Model(inputs, outputs)
    kernel = np.array([[1.0, -1.0]] * 3, np.float32).reshape(1, 1, 3, 2) / 3.0
    W = np.array([[2.0, -1.0, 0.5], [-0.5, 1.5, 1.0]], np.float32)
    model.get_layer("conv").set_weights([kernel])
    model.get_layer("head").set_weights([W, np.zeros(3, np.float32)])
    x = rng.uniform(-1, 1, (3, 16, 16, 3)).astype(np.float32)
    return model, W.astype(np.float64), x


def hand_cam(W: np.ndarray, x: np.ndarray, c: int) -> np.ndarray:
    """The logit CAM by hand: A = 4 x 4 means of ReLU(+-mean colour); alpha_k = W[k, c] / 16."""
    m = x.astype(np.float64).mean(axis=-1)
    A = np.stack([np.maximum(m, 0), np.maximum(-m, 0)], -1).reshape(4, POOL, 4, POOL, 2).mean(axis=(1, 3))
    return np.maximum(A @ (W[:, c] / A[..., 0].size), 0.0)


@pytest.mark.parametrize("engine", gradcam_module.ENGINES)
def test_gradcam_equals_hand_cam_upsampled_with_half_pixel_centres(pooled, engine):
    model, W, xs = pooled
    cams = xh.gradcam(model, xs, [0, 1, 2], layer="feat", normalize=False, engine=engine)
    for cam, x, c in zip(cams, xs, (0, 1, 2)):
        np.testing.assert_allclose(cam, half_pixel_bilinear(hand_cam(W, x, c), (16, 16)), atol=1e-6)


@pytest.mark.parametrize("target", TARGETS)
def test_the_two_engines_agree_on_a_tiny_model(pooled, target):
    model, _, xs = pooled
    contrast = {"contrast_class": [1, 2, 0]} if target == "margin" else {}
    maps = [xh.gradcam(model, xs, [0, 1, 2], target=target, layer="feat", normalize=False, engine=engine,
                       **contrast) for engine in gradcam_module.ENGINES]
    np.testing.assert_allclose(maps[0], maps[1], atol=1e-6)


@pytest.mark.parametrize("row, col", [(1, 2), (3, 5), (5, 1)])
def test_a_one_hot_cell_peaks_at_its_centre_pixels(row, col):
    """An inner cell (edge cells are flat out to the border: bilinear clamps there)."""
    cam = np.zeros((1, 7, 7), np.float32)
    cam[0, row, col] = 1.0
    up = gradcam_module.upsample_cams(cam, (224, 224))[0]
    centre_rows = {32 * row + 15, 32 * row + 16}  # the cell covers pixels 32 r ... 32 r + 31
    peak_rows, peak_cols = np.nonzero(up == up.max())
    assert set(peak_rows) == centre_rows and set(peak_cols) == {32 * col + 15, 32 * col + 16}
    np.testing.assert_allclose(up, half_pixel_bilinear(cam[0], (224, 224)), atol=1e-6)
    # tf-keras-vis's corner-aligned zoom puts the centre elsewhere (the bug this placement fixes):
    corner = gradcam_module.upsample_cams(cam, (224, 224), "corner")[0]
    peak = np.unravel_index(corner.argmax(), corner.shape)
    assert abs(peak[0] - row * 223 / 6) <= 1 and abs(peak[1] - col * 223 / 6) <= 1


def test_unknown_engine_and_upsampling_are_refused(pooled, one_sentence):
    model, _, xs = pooled
    with pytest.raises(ValueError) as excinfo:
        xh.gradcam(model, xs[0], 0, layer="feat", engine="fast")
    one_sentence(excinfo, "engine")
    with pytest.raises(ValueError) as excinfo:
        xh.gradcam(model, xs[0], 0, layer="feat", upsampling="nearest")
    one_sentence(excinfo, "upsampling")


@pytest.mark.parametrize("target", TARGETS)
def test_the_two_engines_agree_on_mobilenetv2(mobilenet, whiptail, target):
    batch = np.stack([whiptail, whiptail[:, ::-1]])
    contrast = {"contrast_class": [38, 38]} if target == "margin" else {}
    maps = [xh.gradcam(mobilenet, batch, [41, 41], target=target, engine=engine, **contrast)
            for engine in gradcam_module.ENGINES]
    np.testing.assert_allclose(maps[0], maps[1], atol=1e-5)
