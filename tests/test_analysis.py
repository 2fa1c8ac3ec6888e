"""The shared per-photo steps (attack, explain, intervene) used by the command line and the study."""
from __future__ import annotations

import numpy as np
import pytest

import xai_helpers as xh
from xai_helpers.methods.integrated_gradients import integrated_gradients
from xai_helpers.study import analysis


def test_attack_kinds_stay_within_eps(linear, rng):
    xs = rng.uniform(-0.9, 0.9, (2, 8, 8, 3)).astype(np.float32)
    for kind in ("fgsm", "pgd"):
        adv = analysis.attack(linear.model, xs, [0, 1], 0.05, kind=kind, seeds=[1, 2])
        assert adv.shape == xs.shape and np.abs(adv - xs).max() <= 0.05 + 1e-6
    adv = analysis.attack(linear.model, xs, [0, 1], 0.05, kind="targeted", target=3, iterations=3)
    assert np.abs(adv - xs).max() <= 0.05 + 1e-6
    np.testing.assert_array_equal(analysis.attack(linear.model, xs, [0, 1], 0.05)[1],
                                  xh.fgsm(linear.model, xs[1], 1, 0.05))


@pytest.mark.parametrize("kwargs, words", [(dict(kind="cw"), "kind"), (dict(kind="targeted"), "target")])
def test_attack_rejects_unknown_kinds_and_targetless_targeted_attacks(linear, linear_x, kwargs, words,
                                                                      one_sentence):
    with pytest.raises(ValueError) as excinfo:
        analysis.attack(linear.model, linear_x[None], [0], 0.05, **kwargs)
    one_sentence(excinfo, words)


def test_explain_ig_returns_the_reduced_map_and_the_result(linear, linear_x):
    maps, results = analysis.explain(linear.model, linear_x[None], [2], "ig", "logits",
                                     analysis.IGSettings(steps=8))
    direct = integrated_gradients(linear.model, linear_x, 2, target="logits", steps=8)
    np.testing.assert_allclose(results[0].attributions, direct.attributions)
    np.testing.assert_allclose(maps[0], np.abs(direct.attributions).sum(axis=-1), rtol=1e-6)


def test_explain_gradcam_matches_the_explainer(cam_net, cam_x):
    maps, results = analysis.explain(cam_net.model, cam_x[None], [0], "gradcam", "logits")
    assert results is None
    np.testing.assert_allclose(maps[0], xh.gradcam(cam_net.model, cam_x, 0))


def test_intervene_splits_the_attack_and_ranks_every_map_against_random(linear, rng):
    x = rng.uniform(-0.5, 0.5, (8, 8, 3)).astype(np.float32)
    true = int(np.argmax(linear.probs(x)))
    adv = xh.fgsm(linear.model, x, true, 0.4)
    adv_class = int(np.argmax(linear.probs(adv)))
    assert adv_class != true
    maps = {"random map": rng.random((8, 8))}
    result = analysis.intervene(linear.model, x, adv, true, adv_class, maps, fractions=np.linspace(0, 1, 5),
                                n_random=4)
    assert set(result.curves) == {"random map", "attack"}
    summary = result.summary()
    assert summary["attribution"]["relative_delta"] <= 0.01
    # A linear margin is additive over pixels: ranking by its exact split beats every random order.
    assert summary["maps"]["attack"]["auc"] >= summary["random"]["auc_high"]
    expected = linear.W[:, true].reshape(8, 8, 3) * (adv - x)
    np.testing.assert_allclose(result.attribution.attributions, expected, atol=1e-5)


def test_intervene_refuses_an_attack_that_kept_the_label(linear, linear_x, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        analysis.intervene(linear.model, linear_x, linear_x, 1, 1, {})
    one_sentence(excinfo, "label")
