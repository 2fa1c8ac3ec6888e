"""predict, probabilities and the logits model on the tiny models (no ImageNet weights needed)."""
from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

import xai_helpers as xh
from xai_helpers.classifier.forward import Prediction, logits_model, probabilities, scores_model


def test_predict_returns_classes_sorted_by_probability(linear, linear_x):
    rows = xh.predict(linear.model, linear_x, top=4)
    probs = linear.probs(linear_x)
    assert [r.class_index for r in rows] == list(np.argsort(-probs))
    np.testing.assert_allclose([r.probability for r in rows], np.sort(probs)[::-1], rtol=1e-5)
    assert sum(r.probability for r in rows) == pytest.approx(1.0, abs=1e-5)


def test_predict_top_limits_the_number_of_rows(linear, linear_x):
    rows = xh.predict(linear.model, linear_x, top=2)
    assert len(rows) == 2
    assert rows[0].probability >= rows[1].probability


def test_predict_rows_are_plain_python_values(linear, linear_x):
    row = xh.predict(linear.model, linear_x, top=1)[0]
    assert isinstance(row, Prediction)
    assert type(row.class_index) is int and type(row.probability) is float
    assert row.name == f"class_{row.class_index}"


def test_probabilities_of_one_image_and_a_batch_agree(linear, rng):
    xs = rng.uniform(-1, 1, (3, 8, 8, 3)).astype(np.float32)
    batch = probabilities(linear.model, xs)
    assert batch.shape == (3, 4)
    for x, p in zip(xs, batch):
        np.testing.assert_allclose(probabilities(linear.model, x), p, rtol=1e-6)
        np.testing.assert_allclose(p, linear.probs(x), rtol=1e-5)


def test_probabilities_of_a_large_batch_are_computed_in_chunks(linear, rng):
    xs = rng.uniform(-1, 1, (150, 8, 8, 3)).astype(np.float32)
    batch = probabilities(linear.model, xs)
    assert batch.shape == (150, 4)
    np.testing.assert_allclose(batch[149], linear.probs(xs[149]), rtol=1e-5)


def test_logits_model_softmax_equals_model_output(linear, linear_x):
    z = np.asarray(logits_model(linear.model)(linear_x[None]))[0]
    np.testing.assert_allclose(z, linear.logits(linear_x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.exp(z) / np.exp(z).sum(), linear.probs(linear_x), rtol=1e-5)


def test_logits_model_called_on_one_array_does_not_warn(linear, linear_x):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logits_model(linear.model)(linear_x[None])


def test_logits_model_is_cached_per_model(linear, cam_net):
    assert logits_model(linear.model) is logits_model(linear.model)
    assert logits_model(cam_net.model) is not logits_model(linear.model)


def test_logits_model_shares_weights_with_the_classifier(cam_net, cam_x):
    z = np.asarray(logits_model(cam_net.model)(cam_x[None]))[0]
    expected = cam_net.features(cam_x).mean(axis=(0, 1)) @ cam_net.W + cam_net.b
    np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-6)


def test_logits_model_requires_a_dense_softmax_head(one_sentence):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="sigmoid")(inputs))
    with pytest.raises(ValueError) as excinfo:
        logits_model(model)
    one_sentence(excinfo, "softmax")


def test_scores_model_picks_softmax_or_logits(linear):
    assert scores_model(linear.model, "softmax") is linear.model
    assert scores_model(linear.model, "logits") is logits_model(linear.model)


def test_scores_model_rejects_unknown_target(linear, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        scores_model(linear.model, "probs")
    one_sentence(excinfo, "target")


def test_inference_fn_is_traced_once_and_gives_the_model_s_outputs_and_gradients(linear, rng):
    import tensorflow as tf

    from xai_helpers.classifier.forward import inference_fn

    x = tf.constant(rng.uniform(-1, 1, size=(3, 8, 8, 3)).astype(np.float32))
    logits = logits_model(linear.model)
    model_pass = inference_fn(logits)
    assert inference_fn(logits) is model_pass  # one trace per Keras model
    np.testing.assert_allclose(model_pass(x).numpy(), logits(x, training=False).numpy(), rtol=1e-6, atol=1e-6)

    @tf.function
    def gradient_of_class_1(images):  # as the methods call it: inside their own compiled function
        with tf.GradientTape() as tape:
            tape.watch(images)
            score = tf.reduce_sum(model_pass(images)[:, 1])
        return tape.gradient(score, images)

    # The logits are linear in x: the gradient of z_1 is W's column 1 for every image.
    expected = np.broadcast_to(linear.W[:, 1].reshape(8, 8, 3), (3, 8, 8, 3))
    np.testing.assert_allclose(gradient_of_class_1(x).numpy(), expected, rtol=1e-5, atol=1e-6)
