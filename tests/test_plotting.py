"""Plotting only draws what it is given: check what lands on the axes, on small arrays."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from xai_helpers.methods import plotting


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_show_image_draws_the_deprocessed_image(ax):
    x = np.full((6, 6, 3), -1.0, np.float32)
    x[:, 3:] = 1.0
    plotting.show_image(ax, x, "title")
    drawn = np.asarray(ax.images[0].get_array())
    np.testing.assert_allclose(drawn[:, :3], 0.0)
    np.testing.assert_allclose(drawn[:, 3:], 1.0)
    assert ax.get_title() == "title"


def test_show_perturbation_maps_minus_eps_to_black_zero_to_grey_and_eps_to_white(ax):
    eps = 0.01
    delta = np.zeros((2, 3, 3), np.float32)
    delta[:, 0] = -eps
    delta[:, 2] = eps
    plotting.show_perturbation(ax, delta, eps)
    drawn = np.asarray(ax.images[0].get_array())
    np.testing.assert_allclose(drawn[:, :, 0], [[0.0, 0.5, 1.0]] * 2, atol=1e-6)


def test_heatmap_and_overlay_use_a_fixed_unit_scale(ax):
    saliency = np.linspace(0, 0.5, 16).reshape(4, 4)
    image = plotting.show_heatmap(ax, saliency)
    assert image.get_clim() == (0.0, 1.0)
    layer = plotting.overlay(ax, np.zeros((4, 4, 3), np.float32), saliency)
    assert layer.get_clim() == (0.0, 1.0)
    assert layer.get_alpha() == pytest.approx(plotting.OVERLAY_ALPHA)


def test_normalize_for_display_divides_by_a_high_percentile_and_clips():
    saliency = np.arange(100, dtype=float).reshape(10, 10)
    shown = plotting.normalize_for_display(saliency, percentile=50)
    assert shown.max() == 1.0 and shown.min() == 0.0
    assert shown[0, 1] == pytest.approx(1 / np.percentile(saliency, 50))
    assert np.all(plotting.normalize_for_display(np.zeros((3, 3))) == 0.0)
    assert np.all(plotting.normalize_for_display(-np.ones((3, 3))) == 0.0)


def test_attack_figure_has_original_perturbation_and_adversarial_panels():
    x = np.zeros((8, 8, 3), np.float32)
    fig = plotting.attack_figure(x, x + 0.01, "whiptail 54%", "centipede 31%", 0.01, 1.275)
    titles = [a.get_title() for a in fig.axes]
    assert len(titles) == 3
    assert "whiptail 54%" in titles[0] and "1.275/255" in titles[1] and "centipede 31%" in titles[2]


def test_explanation_grid_has_one_row_per_image_and_one_overlay_per_map():
    x = np.zeros((8, 8, 3), np.float32)
    maps = [[np.ones((8, 8)), np.zeros((8, 8))], [np.ones((8, 8)), np.ones((8, 8))]]
    fig = plotting.explanation_grid([x, x], maps, ["clean", "adversarial"], ["Grad-CAM", "IG"])
    image_axes = [a for a in fig.axes if a.images]
    assert len(image_axes) == 6
    assert len(fig.axes) == 7  # plus one shared colour bar
