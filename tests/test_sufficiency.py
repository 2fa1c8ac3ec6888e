"""Sufficient and necessary regions, the smallest sufficient region, shape-matched controls and corrections:
known answers on the linear model, one real-model reproduction (the whiptail's redundant perturbation)."""
from __future__ import annotations

import numpy as np
import pytest

import xai_helpers as xh
from xai_helpers.methods import controls, regions, sufficiency
from xai_helpers.methods.interventions import effect_shares, restrict
from xai_helpers.study.summary import adjust_pvalues

LINEAR_SHAPE = (8, 8, 3)


@pytest.fixture
def lowering(linear, rng):
    """A clean image of class c and the perturbation that lowers c's logit most per pixel (every pixel's
    contribution negative, of size eps * sum_ch |W|)."""
    x = rng.uniform(-0.5, 0.5, LINEAR_SHAPE).astype(np.float32)
    c = int(np.argmax(linear.logits(x)))
    w = linear.W[:, c].reshape(LINEAR_SHAPE)
    adv = (x - 0.05 * np.sign(w)).astype(np.float32)
    contribution = (w * (adv - x)).sum(axis=-1)  # (8, 8), all <= 0
    return x, adv, c, contribution


def test_remove_with_all_ones_returns_x_and_with_all_zeros_adv(lowering):
    x, adv, _, _ = lowering
    np.testing.assert_allclose(sufficiency.remove(x, adv, np.ones(x.shape[:2])), x, atol=1e-7)
    np.testing.assert_allclose(sufficiency.remove(x, adv, np.zeros(x.shape[:2])), adv, atol=1e-7)


def test_kept_and_removed_shares_of_a_linear_score_add_up_to_one(linear, lowering):
    x, adv, c, contribution = lowering
    mask = np.zeros(x.shape[:2])
    mask[:3] = 1
    verdict = sufficiency.region_verdicts(linear.model, x, adv, {"top rows": mask}, c)["top rows"]
    assert verdict.kept_share + verdict.removed_share == pytest.approx(1.0, abs=1e-4)
    assert verdict.kept_share == pytest.approx(contribution[:3].sum() / contribution.sum(), abs=1e-4)
    assert verdict.area == pytest.approx(3 / 8)


def _scan(model, x, adv, ranking, c):
    """Brute force: the first count of ranking's top pixels that flips c (every count tried), and the flips."""
    order = np.argsort(-ranking.ravel(), kind="stable")
    masks = np.zeros((65, 64), np.float32)
    for n in range(65):
        masks[n, order[:n]] = 1
    flips = sufficiency.top1(model, restrict(x, adv, masks.reshape(65, 8, 8))) != c
    return (int(np.argmax(flips)) / 64 if flips[-1] and not flips[0] else float("nan")), flips


def test_the_smallest_flipping_fraction_by_bisection_equals_a_scan(linear, rng):
    x = rng.uniform(-0.5, 0.5, LINEAR_SHAPE).astype(np.float32)
    z = linear.logits(x)
    c, k = [int(i) for i in np.argsort(z)[::-1][:2]]
    w = (linear.W[:, c] - linear.W[:, k]).reshape(LINEAR_SHAPE)
    adv = np.clip(x - 0.3 * np.sign(w), -1, 1).astype(np.float32)
    ranking = -(w * (adv - x)).sum(axis=-1)
    scan, flips = _scan(linear.model, x, adv, ranking, c)
    assert not flips[0] and flips[-1] and np.all(np.diff(flips.astype(int)) >= 0)  # monotone here
    assert sufficiency.smallest_flipping_fraction(linear.model, x, adv, ranking, c) == scan


def test_batched_bisections_equal_each_photos_own_and_cost_one_pass_per_open_search_a_round(linear, rng):
    from xai_helpers.classifier import passes

    xs, advs, rankings, classes = [], [], [], []
    for _ in range(5):
        x = rng.uniform(-0.5, 0.5, LINEAR_SHAPE).astype(np.float32)
        z = linear.logits(x)
        c, k = [int(i) for i in np.argsort(z)[::-1][:2]]
        w = (linear.W[:, c] - linear.W[:, k]).reshape(LINEAR_SHAPE)
        adv = np.clip(x - rng.uniform(0.2, 0.4) * np.sign(w), -1, 1).astype(np.float32)
        xs.append(x), advs.append(adv), classes.append(c)
        rankings.append(-(w * (adv - x)).sum(axis=-1) + rng.normal(0, 1e-3, (8, 8)))  # orders differ per photo
    advs[2] = xs[2].copy()  # an attack that did not flip: nothing to bisect
    with passes.counting() as tally:
        batched = sufficiency.smallest_flipping_fractions(linear.model, np.stack(xs), np.stack(advs),
                                                          np.stack(rankings), classes)
    expected = [_scan(linear.model, x, a, r, c)[0] for x, a, r, c in zip(xs, advs, rankings, classes)]
    np.testing.assert_array_equal(batched, expected)
    assert np.isnan(batched[2]) and np.isfinite(np.delete(batched, 2)).all()
    for i in (0, 1, 3, 4):
        assert sufficiency.smallest_flipping_fraction(linear.model, xs[i], advs[i], rankings[i], classes[i]) == batched[i]
    # two end images per photo, then one image per open search in each of log2(64) = 6 rounds
    forward = sum(kinds["forward"] for kinds in tally.totals().values())
    assert forward == 2 * 5 + 4 * 6


def test_batched_bisections_refuse_mismatched_inputs(linear, lowering, one_sentence):
    x, adv, c, _ = lowering
    with pytest.raises(ValueError) as excinfo:
        sufficiency.smallest_flipping_fractions(linear.model, np.stack([x, x]), np.stack([adv]),
                                                np.ones((2, 8, 8)), [c, c])
    one_sentence(excinfo, "as many adversarial images")
    with pytest.raises(ValueError):
        sufficiency.smallest_flipping_fractions(linear.model, x[None], adv[None], np.ones((1, 4, 4)), [c])


def test_smallest_flipping_fraction_refuses_an_attack_that_did_not_flip(linear, lowering, one_sentence):
    x, _, c, _ = lowering
    with pytest.raises(ValueError) as excinfo:
        sufficiency.smallest_flipping_fraction(linear.model, x, x.copy(), np.ones((8, 8)), c)
    one_sentence(excinfo, "adversarial image of another class")


def test_moved_copies_keep_the_masks_pixel_count_and_shape_and_respect_where_they_may_lie():
    mask = np.zeros((40, 40), bool)
    mask[5:9, 5:15] = True  # a 4 x 10 bar
    mask[9, 5] = True       # with a foot: rotations and mirror images differ
    animal = np.zeros((40, 40), bool)
    animal[:, :20] = True
    on_animal = controls.moved_copies(mask, 200, seed=1, within=animal)
    off_animal = controls.moved_copies(mask, 200, seed=1, avoid=animal)
    for copies in (on_animal, off_animal):
        assert copies.shape == (200, 40, 40) and set(copies.sum(axis=(1, 2))) == {mask.sum()}
    assert not np.any(on_animal & ~animal) and not np.any(off_animal & animal)
    bounding = {tuple(np.ptp(np.nonzero(m), axis=1) + 1) for m in on_animal}
    assert bounding == {(5, 10), (10, 5)}  # the shape, turned
    with pytest.raises(ValueError, match="fit where they must lie"):
        big = np.zeros((40, 40), bool)
        big[:30, :30] = True
        controls.moved_copies(big, 2, within=animal, max_tries=50)


def test_distinct_copies_are_every_valid_placement_once_or_a_sample_without_repeats():
    mask = np.zeros((8, 8), bool)
    mask[0:2, 0:3] = True   # a 2 x 3 box: two different orientations (2 x 3 and 3 x 2)
    band = np.zeros((8, 8), bool)
    band[:4, :] = True
    # brute force: every 2 x 3 or 3 x 2 box inside the band that does not touch the mask itself
    expected = {(h, w, r, c) for h, w in ((2, 3), (3, 2)) for r in range(0, 5 - h) for c in range(0, 9 - w)
                if not (r < 2 and c < 3)}
    copies = controls.distinct_copies(mask, 1000, within=band, avoid=mask)
    found = set()
    for m in copies:
        rows, cols = np.nonzero(m)
        found.add((int(np.ptp(rows)) + 1, int(np.ptp(cols)) + 1, int(rows.min()), int(cols.min())))
    assert found == expected and len(copies) == len(expected)  # all of them, each once
    assert not np.any(copies & mask) and not np.any(copies & ~band)
    sample = controls.distinct_copies(mask, 5, seed=2, within=band, avoid=mask)
    assert len(sample) == 5 and len(np.unique(sample.reshape(5, -1), axis=0)) == 5
    with pytest.raises(ValueError, match="No copy of the mask fits"):
        controls.distinct_copies(np.ones((8, 8), bool), 3, within=band)


def test_distinct_masks_keep_each_placement_once_and_refuse_an_empty_stack():
    a, b = np.zeros((2, 4, 4), bool)
    a[0, 0], b[3, 3] = True, True
    kept = controls.distinct_masks(np.stack([b, a, b, b, a]))
    assert kept.shape == (2, 4, 4) and {m.tobytes() for m in kept} == {a.tobytes(), b.tobytes()}
    assert np.array_equal(controls.distinct_masks(np.stack([a, b])), controls.distinct_masks(np.stack([b, a])))
    with pytest.raises(ValueError, match=r"non-empty \(n, H, W\)"):
        controls.distinct_masks(np.zeros((0, 4, 4), bool))
    with pytest.raises(ValueError, match=r"non-empty \(n, H, W\)"):
        controls.distinct_masks(a)


def test_smooth_noise_masks_have_the_area_and_the_matched_blur_the_boundary_of_a_blob():
    blob = np.zeros((64, 64), bool)
    yy, xx = np.mgrid[:64, :64]
    blob[(yy - 20) ** 2 + (xx - 30) ** 2 < 100] = True
    masks = controls.smooth_noise_masks((64, 64), blob.mean(), 20, sigma=4, seed=3)
    assert set(masks.sum(axis=(1, 2))) == {blob.sum()}
    sigma = controls.matched_sigma(blob)
    matched = np.median([controls.boundary_length(m) for m in controls.smooth_noise_masks((64, 64), blob.mean(),
                                                                                           20, sigma)])
    scattered = np.median([controls.boundary_length(m) for m in controls.smooth_noise_masks((64, 64), blob.mean(),
                                                                                             20, 0)])
    assert abs(matched - controls.boundary_length(blob)) < abs(scattered - controls.boundary_length(blob)) / 3


def test_permutation_pvalue_never_reaches_zero():
    assert controls.permutation_pvalue(1.0, np.zeros(199)) == pytest.approx(1 / 200)
    assert controls.permutation_pvalue(0.0, np.ones(9)) == 1.0
    assert controls.permutation_pvalue(0.0, np.ones(9), larger=False) == pytest.approx(0.1)


def test_holm_and_benjamini_hochberg_on_known_pvalues():
    adjusted, reject = adjust_pvalues([0.01, 0.04, 0.03, 0.005], "holm")
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    assert list(reject) == [True, False, False, True]
    adjusted, reject = adjust_pvalues([0.01, 0.04, 0.03, 0.005], "bh")
    np.testing.assert_allclose(adjusted, [0.02, 0.04, 0.04, 0.02])
    assert reject.all()
    with pytest.raises(ValueError, match="method"):
        adjust_pvalues([0.1], "bonferroni-ish")
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        adjust_pvalues([1.5])


def test_the_whiptail_fgsm_perturbation_is_redundant(mobilenet, whiptail):
    """Removing the perturbation from head and body leaves the label changed: the front is sufficient
    (keeping it alone changes the label too) but not necessary."""
    x = whiptail
    adv = xh.fgsm(mobilenet, x, 41, xh.DEFAULT_EPS)
    masks = regions.region_masks()
    front = np.maximum(masks["head"], masks["body"])
    verdicts = sufficiency.region_verdicts(mobilenet, x, adv, {"front": front}, 41)
    front_verdict = verdicts["front"]
    assert front_verdict.sufficient and not front_verdict.necessary and front_verdict.redundant
    assert front_verdict.removed_share > 0.3
    shares = effect_shares(mobilenet, x, adv, np.stack([front]), 41)
    assert shares[0] == pytest.approx(front_verdict.kept_share)
