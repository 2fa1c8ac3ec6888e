"""Map-similarity metrics (Ghorbani et al. 2019): top-k IoU, Spearman, centre-of-mass shift."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import xai_helpers as xh
from xai_helpers.methods.compare import average_ranks, center_of_mass, mass_fraction, spearman, top_mask


def _blob(center: tuple[float, float], shape=(64, 64), sigma: float = 3.0) -> np.ndarray:
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    return np.exp(-((rows - center[0]) ** 2 + (cols - center[1]) ** 2) / (2 * sigma ** 2))


def test_identical_maps_have_iou_one_spearman_one_and_no_shift(rng):
    a = rng.random((32, 32))
    result = xh.compare_maps(a, a.copy())
    assert result == {"top_iou": 1.0, "spearman": pytest.approx(1.0), "com_shift_px": 0.0}


def test_maps_with_disjoint_top_regions_have_iou_zero():
    a = np.zeros((20, 20))
    b = np.zeros((20, 20))
    a[:2, :] = 1.0  # top 10% = first two rows
    b[-2:, :] = 1.0  # top 10% = last two rows
    assert xh.compare_maps(a, b, top_fraction=0.1)["top_iou"] == 0.0


def test_half_overlapping_top_regions_have_iou_one_third():
    a = np.zeros((10, 10))
    b = np.zeros((10, 10))
    a[0, :] = 2.0
    a[1, :] = 1.0  # top 20: rows 0-1
    b[1, :] = 2.0
    b[2, :] = 1.0  # top 20: rows 1-2
    assert xh.compare_maps(a, b, top_fraction=0.2)["top_iou"] == pytest.approx(10 / 30)


@pytest.mark.parametrize("shift", [(0, 3), (5, 0), (3, 4)])
def test_map_shifted_by_d_pixels_has_com_shift_d(shift):
    a = _blob((30, 30))
    b = _blob((30 + shift[0], 30 + shift[1]))
    assert xh.compare_maps(a, b)["com_shift_px"] == pytest.approx(np.hypot(*shift), abs=1e-6)


def test_reversed_ranking_has_spearman_minus_one():
    a = np.arange(100, dtype=float).reshape(10, 10)
    assert xh.compare_maps(a, -a + 1000)["spearman"] == pytest.approx(-1.0)


def test_spearman_depends_only_on_ranks():
    a = np.arange(1, 65, dtype=float).reshape(8, 8)
    assert xh.compare_maps(a, np.exp(a / 5) + 3)["spearman"] == pytest.approx(1.0)


def test_spearman_of_a_constant_map_is_nan():
    a = np.arange(16, dtype=float).reshape(4, 4)
    with pytest.warns(RuntimeWarning, match="constant"):
        assert np.isnan(xh.compare_maps(a, np.ones((4, 4)))["spearman"])


@pytest.mark.parametrize("constant", [0.0, 3.0])
def test_two_constant_maps_are_undefined_not_a_perfect_match(constant):
    # Two all-zero maps (Grad-CAM with no positive evidence) used to score IoU 1 and shift 0.
    flat = np.full((8, 8), constant)
    with pytest.warns(RuntimeWarning, match="map a and b are constant"):
        result = xh.compare_maps(flat, flat.copy())
    assert np.isnan(result["top_iou"]) and np.isnan(result["spearman"])
    if constant == 0.0:  # no mass: no centre of mass either
        assert np.isnan(result["com_shift_px"])
    else:  # a constant positive map's centre is the image centre, a defined number
        assert result["com_shift_px"] == 0.0


def test_a_map_without_mass_has_no_centre_of_mass_shift(rng):
    with pytest.warns(RuntimeWarning, match="map b is constant and map b has no positive mass"):
        result = xh.compare_maps(rng.random((8, 8)), np.zeros((8, 8)))
    assert np.isnan(result["com_shift_px"]) and np.isnan(result["top_iou"])


def test_ordinary_maps_give_no_warning(rng):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = xh.compare_maps(rng.random((8, 8)), rng.random((8, 8)))
    assert all(np.isfinite(v) for v in result.values())


def test_compare_maps_is_symmetric(rng):
    a, b = rng.random((16, 16)), rng.random((16, 16))
    ab, ba = xh.compare_maps(a, b), xh.compare_maps(b, a)
    assert ab == pytest.approx(ba)


def test_compare_maps_reduces_ig_attributions_with_to_2d(rng):
    attr = rng.normal(size=(12, 12, 3))
    cam = rng.random((12, 12))
    assert xh.compare_maps(attr, cam) == pytest.approx(xh.compare_maps(xh.to_2d(attr), cam))


def test_compare_maps_returns_plain_floats(rng):
    result = xh.compare_maps(rng.random((8, 8)), rng.random((8, 8)))
    assert set(result) == {"top_iou", "spearman", "com_shift_px"}
    assert all(type(v) is float for v in result.values())


def test_to_2d_sums_absolute_values_over_channels():
    attr = np.zeros((2, 2, 3))
    attr[0, 0] = [1.0, -2.0, 0.5]
    attr[1, 1] = [-1.0, -1.0, -1.0]
    np.testing.assert_allclose(xh.to_2d(attr), [[3.5, 0.0], [0.0, 3.0]])


def test_to_2d_of_a_2d_map_is_its_absolute_value():
    np.testing.assert_allclose(xh.to_2d(np.array([[-1.0, 2.0]])), [[1.0, 2.0]])


def test_to_2d_rejects_other_ranks(one_sentence):
    with pytest.raises(ValueError) as excinfo:
        xh.to_2d(np.zeros(5))
    one_sentence(excinfo, "shape")


@pytest.mark.parametrize("fraction,expected", [(0.1, 10), (0.25, 25), (1.0, 100), (0.001, 1)])
def test_top_mask_selects_the_requested_share_of_highest_pixels(rng, fraction, expected):
    m = rng.permutation(100).reshape(10, 10).astype(float)
    mask = top_mask(m, fraction)
    assert mask.sum() == expected
    if expected < 100:
        assert m[mask].min() > m[~mask].max()


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_top_mask_rejects_fractions_outside_unit_interval(fraction, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        top_mask(np.ones((4, 4)), fraction)
    one_sentence(excinfo, "top_fraction")


def test_center_of_mass_of_a_single_pixel_is_that_pixel():
    m = np.zeros((9, 7))
    m[2, 5] = 4.0
    assert center_of_mass(m) == (2.0, 5.0)


def test_center_of_mass_of_an_empty_map_is_the_map_centre():
    assert center_of_mass(np.zeros((9, 7))) == (4.0, 3.0)


def test_mass_fraction_is_the_share_of_mass_inside_the_region():
    m = np.array([[1.0, 3.0], [0.0, 4.0]])
    region = np.array([[False, True], [False, True]])
    assert mass_fraction(m, region) == pytest.approx(7 / 8)
    assert np.isnan(mass_fraction(np.zeros((2, 2)), region))


def test_compare_maps_rejects_maps_of_different_shape(one_sentence):
    with pytest.raises(ValueError) as excinfo:
        xh.compare_maps(np.ones((4, 4)), np.ones((4, 5)))
    one_sentence(excinfo, "same shape")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_compare_maps_rejects_non_finite_maps(bad, one_sentence):
    m = np.ones((4, 4))
    m[1, 1] = bad
    with pytest.raises(ValueError) as excinfo:
        xh.compare_maps(m, np.ones((4, 4)))
    one_sentence(excinfo, "NaN")


def test_compare_maps_rejects_one_dimensional_input(one_sentence):
    with pytest.raises(ValueError) as excinfo:
        xh.compare_maps(np.ones(16), np.ones(16))
    one_sentence(excinfo, "2-D")


@pytest.mark.parametrize("kind", ["continuous", "ties", "float32"])
def test_spearman_is_scipy_s_bit_for_bit(kind):
    rng = np.random.default_rng(7)
    for _ in range(20):
        a = rng.normal(size=224 * 224)
        b = a + rng.normal(size=a.size)
        if kind == "ties":   # a Grad-CAM-like map: many zeros, and coarse values
            a, b = np.maximum(a, 0.0), np.round(b, 1)
        if kind == "float32":
            a, b = a.astype(np.float32), b.astype(np.float32)
        assert np.array_equal(average_ranks(a), stats.rankdata(a))
        assert spearman(a, b) == float(stats.spearmanr(a, b).statistic)


def test_average_ranks_share_the_mean_position_among_ties():
    assert average_ranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0])).tolist() == [4.0, 1.0, 4.0, 2.0, 4.0]


def test_ranks_of_an_array_ranked_again_are_its_own_even_after_it_changed():
    from xai_helpers.methods import compare

    a = np.random.default_rng(4).random(500)
    first = average_ranks(a)
    first[:] = 0.0                                   # the caller's copy: the remembered ranks stay intact
    np.testing.assert_array_equal(average_ranks(a), stats.rankdata(a))
    a[[0, 1]] = a[[1, 0]]                            # the same values, now in another order
    np.testing.assert_array_equal(average_ranks(a), stats.rankdata(a))
    for k in range(compare._RANKED_MAX + 3):         # the memory holds the last few arrays only
        average_ranks(np.arange(k + 2.0))
    assert len(compare._RANKED) == compare._RANKED_MAX
    b = np.random.default_rng(5).random(500)
    assert spearman(a, b) == stats.spearmanr(a, b).statistic
    assert spearman(a, b) == stats.spearmanr(a, b).statistic   # the second time from remembered ranks


def test_mask_iou_is_compare_maps_top_iou():
    from xai_helpers.methods.compare import compare_maps, mask_iou

    rng = np.random.default_rng(6)
    a, b = rng.random((20, 20)), rng.random((20, 20))
    assert mask_iou(top_mask(a, 0.1), top_mask(b, 0.1)) == compare_maps(a, b, 0.1)["top_iou"]
    assert mask_iou(top_mask(a, 0.1), top_mask(a, 0.1)) == 1.0
