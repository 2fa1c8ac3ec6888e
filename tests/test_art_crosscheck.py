"""Cross-checks against the Adversarial Robustness Toolbox (ART, Nicolae et al. 2018) on a tiny model.

ART's ``FastGradientMethod`` and ``ProjectedGradientDescent`` are independent implementations of the same
attacks; wrapped around the package's kind of model (softmax output, input in [-1, 1]) with
``TensorFlowV2Classifier`` and the categorical cross-entropy of the true label, they must agree with
``fgsm`` (pixel for pixel, except where the loss gradient is so small that its sign is float noise) and with
``pgd_batch`` (in distribution: the random starts come from different generators).

Skipped when ART (a test-only dependency, requirements.txt) is not installed.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("art")

import tensorflow as tf  # noqa: E402
from scipy import stats  # noqa: E402

import xai_helpers as xh  # noqa: E402
from xai_helpers.classifier.forward import logits_model
from xai_helpers.methods.attacks import PGD_STEPS, pgd_batch

with warnings.catch_warnings():
    # ART announces on import that the optional PyTorch-only certification modules are unavailable.
    warnings.simplefilter("ignore", UserWarning)
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
    from art.estimators.classification import TensorFlowV2Classifier

SHAPE = (16, 16, 3)
CLASSES = 10
#: Below this |dJ/dx| the sign of a gradient component is float32 noise: the package differentiates the
#: cross-entropy from the logits, ART through Keras's cross-entropy of the softmax output.
TINY_GRADIENT = 1e-5


def _tiny_model():
    """Conv(8, 3x3, ReLU) -> 4x4 average pool -> Dense(10, softmax), weights from a fixed NumPy seed."""
    import keras

    rng = np.random.default_rng(20240611)
    inputs = keras.Input(SHAPE)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inputs)
    h = keras.layers.AveragePooling2D(4)(h)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(CLASSES, activation="softmax", name="head")(h)
    model = keras.Model(inputs, outputs, name="tiny_art")
    model.get_layer("conv").set_weights([rng.normal(0.0, 0.3, (3, 3, 3, 8)).astype(np.float32),
                                         rng.normal(0.0, 0.1, 8).astype(np.float32)])
    model.get_layer("head").set_weights([rng.normal(0.0, 1.0, (128, CLASSES)).astype(np.float32),
                                         np.zeros(CLASSES, np.float32)])
    return model


@pytest.fixture(scope="module")
def tiny():
    return _tiny_model()


@pytest.fixture(scope="module")
def art_classifier(tiny):
    """ART's wrapper of the Keras 3 model itself: the loss of the softmax output, clipped to [-1, 1]."""
    return TensorFlowV2Classifier(model=tiny, nb_classes=CLASSES, input_shape=SHAPE,
                                  loss_object=tf.keras.losses.CategoricalCrossentropy(),
                                  clip_values=(-1.0, 1.0))


def _images(seed: int, n: int) -> np.ndarray:
    """``n`` images in [-1, 1], ~10% of the values exactly on -1 or 1 (so that clipping is exercised)."""
    rng = np.random.default_rng(seed)
    xs = rng.uniform(-1.0, 1.0, (n, *SHAPE))
    edge = rng.random(xs.shape) < 0.1
    xs[edge] = np.sign(xs[edge])
    return xs.astype(np.float32)


def _one_hot(labels) -> np.ndarray:
    return np.eye(CLASSES, dtype=np.float32)[np.asarray(labels)]


def _loss_gradient(model, xs, labels) -> np.ndarray:
    """d/dx of the cross-entropy of the softmax output against ``labels`` (the loss ART differentiates)."""
    x = tf.constant(xs)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.keras.losses.categorical_crossentropy(_one_hot(labels), model(x, training=False))
    return tape.gradient(loss, x).numpy()


def _fgsm_mismatches(ours, theirs, gradient) -> tuple[int, int]:
    """Return (differing pixels where |gradient| >= TINY_GRADIENT, differing pixels where it is smaller)."""
    differ = np.abs(ours - theirs) > 1e-6
    tiny = np.abs(gradient) < TINY_GRADIENT
    return int((differ & ~tiny).sum()), int((differ & tiny).sum())


def _margins(model, xs, labels) -> np.ndarray:
    """``z_true - max_{c != true} z_c`` of the logits: negative where the attack succeeded."""
    z = logits_model(model)(tf.constant(xs), training=False).numpy().astype(np.float64)
    rows = np.arange(len(z))
    true = z[rows, labels].copy()
    z[rows, labels] = -np.inf
    return true - z.max(axis=1)


# --------------------------------------------------------------------------------------------------
# FGSM: the same image, pixel for pixel
# --------------------------------------------------------------------------------------------------

FGSM_EPS = 0.03
FGSM_IMAGES = 16


@pytest.fixture(scope="module")
def fgsm_case(tiny, art_classifier):
    xs = _images(1, FGSM_IMAGES)
    # Half the images attacked against their top-1 class, half against another class (larger gradients).
    top1 = tiny(xs, training=False).numpy().argmax(axis=1)
    labels = np.where(np.arange(FGSM_IMAGES) % 2 == 0, top1, (top1 + 3) % CLASSES)
    art_adv = FastGradientMethod(art_classifier, norm=np.inf, eps=FGSM_EPS, targeted=False,
                                 batch_size=FGSM_IMAGES).generate(xs, y=_one_hot(labels))
    return xs, labels, art_adv, _loss_gradient(tiny, xs, labels)


def test_fgsm_equals_art_fast_gradient_method(tiny, fgsm_case):
    xs, labels, art_adv, gradient = fgsm_case
    ours = np.stack([xh.fgsm(tiny, x, int(c), FGSM_EPS) for x, c in zip(xs, labels)])
    assert ours.shape == art_adv.shape
    outside, inside = _fgsm_mismatches(ours, art_adv, gradient)
    assert outside == 0, f"{outside} pixels with |dJ/dx| >= {TINY_GRADIENT} differ from ART's FGSM"
    assert inside <= 0.01 * ours.size, f"{inside} of {ours.size} pixels differ (tiny gradients)"
    # Not vacuous: the attack moved almost every pixel that was not clipped, by eps.
    moved = np.isclose(np.abs(ours - xs), FGSM_EPS, atol=1e-6)
    assert moved.mean() > 0.8


def test_the_fgsm_check_catches_a_flipped_sign(tiny, fgsm_case):
    """The comparison above can fail: stepping *down* the loss differs from ART almost everywhere."""
    xs, labels, art_adv, gradient = fgsm_case
    wrong = np.stack([xh.fgsm_targeted(tiny, x, int(c), FGSM_EPS) for x, c in zip(xs, labels)])
    outside, _ = _fgsm_mismatches(wrong, art_adv, gradient)
    assert outside > 0.5 * wrong.size


# --------------------------------------------------------------------------------------------------
# PGD: the same success rate and margins, in distribution
# --------------------------------------------------------------------------------------------------

PGD_EPS = 0.04  # ~5 pixel levels: 44-70% of the 64 images flip on this model (40 seeds tried)
PGD_IMAGES = 64


def _art_pgd(art_classifier, xs, labels, seed: int, eps: float = PGD_EPS) -> np.ndarray:
    attack = ProjectedGradientDescent(art_classifier, norm=np.inf, eps=eps, eps_step=eps / 4,
                                      max_iter=PGD_STEPS, num_random_init=1, targeted=False,
                                      batch_size=len(xs), verbose=False)
    state = np.random.get_state()  # ART draws its random start from NumPy's global generator
    np.random.seed(seed)
    try:
        return attack.generate(xs, y=_one_hot(labels))
    finally:
        np.random.set_state(state)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pgd_matches_art_projected_gradient_descent(tiny, art_classifier, seed):
    xs = _images(100 + seed, PGD_IMAGES)
    labels = tiny(xs, training=False).numpy().argmax(axis=1)
    ours = pgd_batch(tiny, xs, labels, PGD_EPS, seeds=[[seed, i] for i in range(PGD_IMAGES)])
    theirs = _art_pgd(art_classifier, xs, labels, seed)

    for adv in (ours, theirs):
        assert np.abs(adv - xs).max() <= PGD_EPS + 1e-6
        assert adv.min() >= -1.0 and adv.max() <= 1.0

    clean = _margins(tiny, xs, labels)
    m_ours, m_theirs = _margins(tiny, ours, labels), _margins(tiny, theirs, labels)
    assert (clean > 0).all()
    # Success rates: within 3 standard errors of the difference of two independent binomial proportions
    # (n = 64 each; ~0.26 at p = 1/2). Pairing makes the real difference far smaller (0-2 of 64 images).
    s_ours, s_theirs = np.mean(m_ours < 0), np.mean(m_theirs < 0)
    pooled = (s_ours + s_theirs) / 2
    assert 0.1 < pooled < 0.9, "the attack strength leaves nothing to compare"
    assert abs(s_ours - s_theirs) <= 3 * np.sqrt(2 * pooled * (1 - pooled) / PGD_IMAGES) + 1 / PGD_IMAGES
    # Margins, in units of the median margin drop the attack causes: the same distribution (two-sample KS,
    # medians within 6%) and, image by image, the same end point (median paired difference under 2%). Over
    # 40 seeds the medians differed by at most 2.7% and the paired difference by at most 0.2%, while a step
    # of eps/8, 5 steps or 0.9 eps (with ART unchanged) give 8-16% and 10-14%.
    assert stats.ks_2samp(m_ours, m_theirs).pvalue > 0.01
    drop = np.median(clean - m_theirs)
    assert drop > 0
    assert abs(np.median(m_ours) - np.median(m_theirs)) < 0.06 * drop
    assert abs(np.median(m_ours - m_theirs)) < 0.02 * drop


def test_the_pgd_check_catches_a_smaller_step(tiny, art_classifier):
    """The paired-margin criterion above can fail: PGD with step eps/8 instead of eps/4 is rejected."""
    xs = _images(100, PGD_IMAGES)
    labels = tiny(xs, training=False).numpy().argmax(axis=1)
    short = pgd_batch(tiny, xs, labels, PGD_EPS, step_size=PGD_EPS / 8)
    theirs = _art_pgd(art_classifier, xs, labels, 0)
    drop = np.median(_margins(tiny, xs, labels) - _margins(tiny, theirs, labels))
    paired = np.median(_margins(tiny, short, labels) - _margins(tiny, theirs, labels))
    assert abs(paired) >= 0.02 * drop
