"""Shared fixtures: tiny Keras models with hand-set weights (known answers), the real MobileNetV2 and the
whiptail photo (loaded once per session), and small helpers for writing test images.

The tests use whatever ``KERAS_HOME`` the environment gives (CI seeds an offline cache there).
"""
from __future__ import annotations

import signal
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

import xai_helpers as xh
from xai_helpers.study.settings import photo_order

# --------------------------------------------------------------------------------------------------
# Ctrl-C as at a terminal
# --------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="session")
def _sigint_as_at_a_terminal():
    """Give this test run, and so every command it starts, SIGINT as an interactive shell gives it.

    A test run started in the background by a non-interactive shell (``make ... &``, ``cmd &`` in a CI
    script) inherits SIGINT *ignored*, and ``exec`` passes an ignored signal on: the command-line runs
    that the Ctrl-C tests start would then rightly ignore their Ctrl-C and finish with status 0 (seen on
    2026-12-04: a Ray study's Ctrl-C test failed this way whenever the unit tests ran in the background).
    A Python handler, unlike an ignored signal, is reset to the default at ``exec``, so the commands
    start as they would from a terminal.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    yield
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    signal.signal(signal.SIGINT, previous)


# --------------------------------------------------------------------------------------------------
# Tiny models with known answers
# --------------------------------------------------------------------------------------------------

#: Input of the linear model: 8 x 8 RGB, flattened to 192 features.
LINEAR_SHAPE = (8, 8, 3)
LINEAR_CLASSES = 4

#: Input of the Grad-CAM model: feature maps as large as the input, so tf-keras-vis's upsampling is 1:1.
CAM_SHAPE = (4, 4, 3)


class LinearNet(NamedTuple):
    """``softmax(flatten(x) @ W + b)``: logits are linear in x, so IG on the logits is exact."""

    model: object
    W: np.ndarray  # (192, LINEAR_CLASSES)
    b: np.ndarray  # (LINEAR_CLASSES,)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64).reshape(-1) @ self.W + self.b

    def probs(self, x: np.ndarray) -> np.ndarray:
        z = self.logits(x)
        e = np.exp(z - z.max())
        return e / e.sum()

    def loss_gradient(self, x: np.ndarray, label: int) -> np.ndarray:
        """grad_x of -log softmax(z)_label = sum_i p_i W_i - W_label, as an image."""
        return (self.W @ self.probs(x) - self.W[:, label]).reshape(LINEAR_SHAPE)


class CamNet(NamedTuple):
    """x -> 1x1 Conv (A^0 = ReLU(mean_c x), A^1 = ReLU(-mean_c x)) -> GAP -> Dense(softmax).

    The conv layer is named ``feat_conv`` and its ReLU ``feat`` (the layer Grad-CAM explains).
    """

    model: object
    W: np.ndarray  # (2, 3): feature k -> class c
    b: np.ndarray  # (3,)

    def features(self, x: np.ndarray) -> np.ndarray:
        m = np.asarray(x, np.float64).mean(axis=-1)
        return np.stack([np.maximum(m, 0.0), np.maximum(-m, 0.0)], axis=-1)  # (H, W, 2)

    def probs(self, x: np.ndarray) -> np.ndarray:
        z = self.features(x).mean(axis=(0, 1)) @ self.W + self.b
        e = np.exp(z - z.max())
        return e / e.sum()

    def expected_cam(self, x: np.ndarray, c: int, target: str) -> np.ndarray:
        """Grad-CAM by hand: alpha_k = mean_ij dy^c/dA^k_ij; L = ReLU(sum_k alpha_k A^k) (not normalised)."""
        A = self.features(x)
        Z = A.shape[0] * A.shape[1]
        if target == "logits":
            alpha = self.W[:, c] / Z  # y^c = sum_k W[k, c] mean_ij A^k_ij + b_c
        else:
            p = self.probs(x)  # dp_c/dA^k_ij = p_c (W[k, c] - sum_j p_j W[k, j]) / Z
            alpha = p[c] * (self.W[:, c] - self.W @ p) / Z
        return np.maximum(A @ alpha, 0.0)


def _build_linear() -> LinearNet:
    import keras

    rng = np.random.default_rng(20240501)
    n_features = int(np.prod(LINEAR_SHAPE))
    W = rng.normal(0.0, 0.15, (n_features, LINEAR_CLASSES)).astype(np.float32)
    b = np.array([0.3, -0.1, 0.0, 0.2], np.float32)
    inputs = keras.Input(LINEAR_SHAPE)
    outputs = keras.layers.Dense(LINEAR_CLASSES, activation="softmax", name="head")(
        keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs, name="linear")
    model.get_layer("head").set_weights([W, b])
    return LinearNet(model, W.astype(np.float64), b.astype(np.float64))


def _build_cam() -> CamNet:
    import keras

    kernel = np.array([[1.0, -1.0]] * 3, np.float32).reshape(1, 1, 3, 2) / 3.0
    # Class 0 likes bright pixels, class 1 dark ones, class 2 has no positive evidence anywhere.
    W = np.array([[2.0, -1.0, -1.0],
                  [-0.5, 1.5, -1.0]], np.float32)
    b = np.array([0.1, 0.0, -0.2], np.float32)
    inputs = keras.Input(CAM_SHAPE)
    h = keras.layers.Conv2D(2, 1, use_bias=False, name="feat_conv")(inputs)
    h = keras.layers.ReLU(name="feat")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(h)
    model = keras.Model(inputs, outputs, name="cam")
    model.get_layer("feat_conv").set_weights([kernel])
    model.get_layer("head").set_weights([W, b])
    return CamNet(model, W.astype(np.float64), b.astype(np.float64))


@pytest.fixture(scope="session")
def linear() -> LinearNet:
    """The linear softmax model on 8 x 8 x 3 inputs, with fixed random weights."""
    return _build_linear()


@pytest.fixture(scope="session")
def cam_net() -> CamNet:
    """The 4 x 4 x 3 conv model whose Grad-CAM is known in closed form."""
    return _build_cam()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def linear_x(rng) -> np.ndarray:
    """One image for the linear model, in [-0.9, 0.9] (so eps steps are not clipped)."""
    return rng.uniform(-0.9, 0.9, LINEAR_SHAPE).astype(np.float32)


@pytest.fixture
def cam_x() -> np.ndarray:
    """One image for the Grad-CAM model: a bright/dark checker with graded intensities."""
    m = np.array([[0.9, -0.2, 0.4, -0.8],
                  [-0.6, 0.7, -0.1, 0.3],
                  [0.2, -0.9, 0.8, -0.4],
                  [-0.3, 0.5, -0.7, 1.0]], np.float32)
    return np.repeat(m[:, :, None], 3, axis=-1)


# --------------------------------------------------------------------------------------------------
# The real model and the whiptail photo (loaded once per session)
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def mobilenet():
    """Keras MobileNetV2 with ImageNet weights, from ``$KERAS_HOME`` (cached by load_model)."""
    return xh.load_model()


@pytest.fixture(scope="session")
def whiptail_path() -> str:
    return xh.sample_image("whiptail")


@pytest.fixture(scope="session")
def whiptail(whiptail_path) -> np.ndarray:
    """The whiptail sample photo as a (224, 224, 3) model input. Tests must not modify it."""
    x = xh.load_image(whiptail_path)
    x.setflags(write=False)
    return x


#: Photos the tiny study model knows: the first of the study's seeded order (``study.photo_order``).
TINY_STUDY_PHOTOS = 6


@pytest.fixture(scope="session")
def tiny_study_model(tmp_path_factory):
    """A ``ModelSpec`` of a 32 x 32, 1000-class model file that classifies the study's first photos right.

    Two seeded random convolutions, global pooling, and a softmax layer set in closed form: with F the pooled
    features of the first ``TINY_STUDY_PHOTOS`` photos, the logits are ``20 F pinv(F)`` on their classes, so
    photo i's own class leads by 20 (and FGSM at 2 levels fools it). The study's real analysis runs on it in
    under a second per photo where MobileNetV2 needs a minute of tracing: for the runner's tests (Ray,
    signals, resuming), whose point is the bookkeeping around the real analysis, not MobileNetV2's numbers.
    """
    import keras

    from xai_helpers.study.settings import ModelSpec

    side = 32
    keras.utils.set_random_seed(7)
    classes = [int(c) for c in photo_order(0)[:TINY_STUDY_PHOTOS]]
    photos = np.stack([xh.load_image(xh.sample_image(c), size=side) for c in classes])
    inputs = keras.Input((side, side, 3))
    hidden = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv")(inputs)
    hidden = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="last_conv")(hidden)
    features = keras.layers.GlobalAveragePooling2D(name="pool")(hidden)
    head = keras.layers.Dense(1000, activation="softmax", name="head")
    model = keras.Model(inputs, head(features), name="tiny_study")
    pooled = np.asarray(keras.Model(inputs, features)(keras.ops.convert_to_tensor(photos)), np.float64)
    kernel = np.zeros((pooled.shape[1], 1000))
    kernel[:, classes] = 20.0 * np.linalg.pinv(pooled)
    head.set_weights([kernel.astype(np.float32), np.zeros(1000, np.float32)])
    assert list(np.asarray(model(keras.ops.convert_to_tensor(photos))).argmax(axis=1)) == classes
    path = tmp_path_factory.mktemp("tiny_study") / "tiny_study.keras"
    model.save(path)
    return ModelSpec(name=str(path))


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------

def _assert_one_sentence(excinfo, *words: str) -> str:
    """Assert the exception message is one line, ends like a sentence and mentions every word."""
    message = str(excinfo.value)
    assert message, "empty error message"
    assert "\n" not in message, f"message spans several lines: {message!r}"
    assert message.rstrip().endswith("."), f"message is not a sentence: {message!r}"
    assert len(message) < 400, f"message too long: {message!r}"
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in {message!r}"
    return message


@pytest.fixture
def one_sentence():
    """``one_sentence(excinfo, *words)``: check an error message is a single sentence naming ``words``."""
    return _assert_one_sentence


@pytest.fixture
def save_image(tmp_path):
    """``save_image(pil_image, name, **save_kwargs) -> Path`` inside the test's tmp_path."""
    def save(image, name: str, **kwargs) -> Path:
        path = tmp_path / name
        image.save(path, **kwargs)
        return path
    return save
