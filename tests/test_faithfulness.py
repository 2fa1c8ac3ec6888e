"""Faithfulness helpers: ROAD's noisy linear imputation (known answers) and normalised curves."""
from __future__ import annotations

import numpy as np
import pytest

from xai_helpers.methods import faithfulness as ff


def _ramp(height=20, width=24):
    rows, cols = np.mgrid[0:height, 0:width]
    r = 0.02 * rows - 0.03 * cols + 0.1
    return np.stack([r, -r, 0.5 * r], axis=-1).astype(np.float64)


def test_imputation_without_noise_reproduces_a_linear_image_inside():
    # A linear function equals the symmetric weighted mean of its neighbours, so an interior hole of a
    # linear image is filled exactly.
    x = _ramp()
    removed = np.zeros(x.shape[:2], bool)
    removed[5:12, 6:15] = True
    out = ff.noisy_linear_imputation(x, removed, noise=0.0)
    np.testing.assert_allclose(out, x, atol=1e-5)


def test_imputation_solves_the_weighted_mean_equations_of_a_dense_solve():
    # Every removed pixel equals the weighted mean of its neighbours (removed ones at their imputed value);
    # the LDL^T solve gives what a dense solve of the same equations gives, on scattered and blob holes.
    rng = np.random.default_rng(3)
    x = rng.uniform(-0.5, 0.5, (18, 21, 3))
    for removed in (rng.random(x.shape[:2]) < 0.6, np.pad(np.ones((10, 12), bool), ((4, 4), (0, 9)))):
        out = ff.noisy_linear_imputation(x, removed, noise=0.0).astype(np.float64)
        points = np.argwhere(removed)
        index = {tuple(p): k for k, p in enumerate(points)}
        a, b = np.zeros((len(points), len(points))), np.zeros((len(points), 3))
        for k, (r, c) in enumerate(points):
            for dy, dx, w in ff._NEIGHBOURS:
                q = (r + dy, c + dx)
                if 0 <= q[0] < x.shape[0] and 0 <= q[1] < x.shape[1]:
                    a[k, k] += w
                    if q in index:
                        a[k, index[q]] -= w
                    else:
                        b[k] += w * x[q]
        np.testing.assert_allclose(out[removed], np.clip(np.linalg.solve(a, b), -1, 1), atol=1e-6)


def test_imputation_keeps_the_other_pixels_and_its_noise_is_seeded():
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.5, 0.5, (16, 16, 3))
    removed = rng.random((16, 16)) < 0.3
    first = ff.noisy_linear_imputation(x, removed, seed=4)
    np.testing.assert_allclose(first[~removed], x[~removed], atol=1e-6)
    np.testing.assert_array_equal(first, ff.noisy_linear_imputation(x, removed, seed=4))
    assert not np.array_equal(first, ff.noisy_linear_imputation(x, removed, seed=5))


def test_road_removes_the_asked_share_most_or_least_relevant_first():
    x = np.random.default_rng(1).uniform(-0.5, 0.5, (20, 24, 3))  # not linear: imputation changes pixels
    saliency = np.arange(x.shape[0] * x.shape[1], dtype=float).reshape(x.shape[:2])
    morf = ff.road_images(x, saliency, [0.0, 0.25], noise=0.0)
    lerf = ff.road_images(x, saliency, [0.25], most_relevant_first=False, noise=0.0)
    np.testing.assert_allclose(morf[0], x, atol=1e-6)
    changed_morf = np.any(np.abs(morf[1] - x) > 1e-6, axis=-1)
    changed_lerf = np.any(np.abs(lerf[0] - x) > 1e-6, axis=-1)
    assert changed_morf[-5:].any() and not changed_morf[:5].any()   # the highest saliency is at the bottom
    assert changed_lerf[:5].any() and not changed_lerf[-5:].any()


@pytest.mark.parametrize("cores", [1, 3])
def test_road_images_on_several_cores_equal_one_imputation_after_another(monkeypatch, cores):
    rng = np.random.default_rng(2)
    x = rng.uniform(-0.5, 0.5, (20, 24, 3))
    saliency = rng.normal(size=x.shape[:2])
    monkeypatch.setattr(ff.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    images = ff.road_images(x, saliency, [0.1, 0.3, 0.5, 0.7], most_relevant_first=False, seed=[0, 7])
    order = np.argsort(-saliency.ravel(), kind="stable")[::-1]
    for image, f in zip(images, [0.1, 0.3, 0.5, 0.7]):
        removed = np.zeros(order.size, bool)
        removed[order[:int(round(f * order.size))]] = True
        np.testing.assert_array_equal(image, ff.noisy_linear_imputation(x, removed.reshape(x.shape[:2]), seed=[0, 7]))


def test_normalised_curve_divides_by_the_intact_score_and_rejects_a_zero_one():
    np.testing.assert_allclose(ff.normalised_curve([0.6, 0.3], 0.6), [1.0, 0.5])
    with pytest.raises(ValueError):
        ff.normalised_curve([0.1], 0.0)
