"""Any Keras classifier on the package's [-1, 1] input: ``load_model(NAME|PATH, weights, ...)``.

Offline and fast: two real ``keras.applications`` architectures with random weights (``weights=None``),
chosen to cover the other code paths than MobileNetV2's --

* MobileNetV3Small: its own rescaling inside ("raw255"), a softmax ``Activation`` head after 1 x 1
  convolutions on a ``GlobalAveragePooling2D(keepdims=True)`` (logits, Grad-CAM layer rule);
* EfficientNetV2B0: "raw255" with a ``Dense`` softmax head, and random-init logits that differ between
  images (MobileNetV3's and EfficientNetB0's collapse to ~1e-10 at random init), so IG's completeness is
  checked on real numbers;

plus tiny saved models for the model-file path ("caffe"/"torch"/callable preprocessing, labels, a bare
``+`` before the pooling), the preprocessing layer against Keras's own ``preprocess_input``, and
MobileNetV2 unchanged. The whole file takes well under a minute on two cores.
"""
from __future__ import annotations

import keras
import numpy as np
import pytest
from keras.applications import imagenet_utils

import xai_helpers as xh
from xai_helpers.classifier.architectures import ARCHITECTURES, InputPreprocessing, architecture
from xai_helpers.classifier.data import keras_home
from xai_helpers.classifier.forward import logits_model, probabilities
from xai_helpers.classifier.loading import _load_application
from xai_helpers.classifier.provenance import weights_fingerprint
from xai_helpers.cli import main as cli
from xai_helpers.methods.gradcam import default_gradcam_layer
from xai_helpers.methods.gradcam_steps import gradcam_steps

# Keras's saving calls np.array on TensorFlow tensors, whose __array__ predates NumPy 2's copy keyword.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SMALL = "MobileNetV3Small"
DENSE_HEAD = "EfficientNetV2B0"


@pytest.fixture(scope="module")
def small():
    return xh.load_model(SMALL, weights=None)


@pytest.fixture(scope="module")
def dense_head():
    return xh.load_model(DENSE_HEAD, weights="none")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return xh.load_image(xh.sample_image("whiptail"))


def _pixels(rng, shape) -> tuple[np.ndarray, np.ndarray]:
    """Return random 0-255 pixels and the package's input x = p / 127.5 - 1."""
    p = rng.uniform(0.0, 255.0, shape).astype(np.float32)
    return p, (p / 127.5 - 1.0).astype(np.float32)


def _input_of_global_pooling(model) -> str:
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)]
    return pools[-1].input._keras_history.operation.name


# ----------------------------------------------------------------------------------------------------
# Names, preprocessing, MobileNetV2 unchanged


def test_unknown_model_name_is_one_sentence_with_close_names(one_sentence):
    with pytest.raises(ValueError) as excinfo:
        xh.load_model("ResNet5O", weights=None)
    one_sentence(excinfo, "ResNet5O", "ResNet50")


def test_model_names_ignore_case():
    assert architecture("efficientnetv2b0").name == "EfficientNetV2B0"
    assert xh.load_model("mobilenetv3small", None) is xh.load_model(SMALL, "none")


def test_every_table_entry_is_a_keras_application():
    assert len(ARCHITECTURES) >= 40
    assert ARCHITECTURES["EfficientNetB1"].size == 240 and ARCHITECTURES["InceptionV3"].size == 299
    for arch in ARCHITECTURES.values():
        assert callable(arch.constructor())


@pytest.mark.parametrize("mode", ["caffe", "torch", "tf", "raw255"])
def test_preprocessing_layer_maps_unit_range_to_what_keras_preprocess_input_gives(rng, mode):
    p, x = _pixels(rng, (2, 5, 7, 3))
    got = np.asarray(InputPreprocessing(mode)(x))
    expected = p if mode == "raw255" else imagenet_utils.preprocess_input(p.copy(), mode=mode)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_mobilenet_v2_by_name_is_todays_model_without_wrapper(mobilenet, whiptail):
    assert xh.load_model("MobileNetV2") is mobilenet
    assert xh.load_model("MobileNetV2", "imagenet") is mobilenet
    assert mobilenet.name == "mobilenetv2_1.00_224" and len(mobilenet.layers) == 156
    assert not any(isinstance(layer, InputPreprocessing) for layer in mobilenet.layers)
    assert default_gradcam_layer(mobilenet) == "out_relu"
    plain = keras.applications.MobileNetV2(weights="imagenet")  # what load_model() always returned
    np.testing.assert_allclose(probabilities(mobilenet, whiptail), probabilities(plain, whiptail),
                               rtol=0, atol=1e-5)
    assert weights_fingerprint(mobilenet) == weights_fingerprint()


# ----------------------------------------------------------------------------------------------------
# Real architectures, random weights


def test_application_is_one_flat_graph_with_its_preprocessing_first(small, dense_head):
    for model in (small, dense_head):
        assert model.input_shape == (None, 224, 224, 3)
        assert isinstance(model.layers[1], InputPreprocessing) and model.layers[1].mode == "raw255"
        assert not any(isinstance(layer, keras.Model) for layer in model.layers)


def test_wrapped_application_equals_keras_application_on_its_own_input(dense_head, photo):
    plain = keras.applications.EfficientNetV2B0(weights=None)
    plain.set_weights(dense_head.get_weights())  # the preprocessing layer has no weights
    pixels = (photo + 1.0) * 127.5  # what Keras's EfficientNetV2 expects: 0-255
    np.testing.assert_allclose(np.asarray(dense_head(photo[None])), np.asarray(plain(pixels[None])),
                               rtol=1e-4, atol=1e-7)


def test_random_init_is_seeded_and_leaves_global_random_state_alone(small):
    state = np.random.get_state()[1].copy()
    again = _load_application.__wrapped__(SMALL, None, None, 0)  # a second build, not the cached one
    assert np.array_equal(np.random.get_state()[1], state)
    assert weights_fingerprint(again)["sha256"] == weights_fingerprint(small)["sha256"]
    fingerprint = weights_fingerprint(small)
    assert fingerprint["source"] == "random init (weights=None), seed 0" and fingerprint["path"] == ""


def test_alpha_and_size_build_another_network_behind_the_same_preprocessing(small):
    narrow = xh.load_model(SMALL, None, alpha=0.75, size=160)
    assert narrow is not small and xh.load_model("mobilenetv3small", "none", size=160, alpha=0.75) is narrow
    assert narrow.input_shape == (None, 160, 160, 3) and isinstance(narrow.layers[1], InputPreprocessing)
    assert narrow.count_params() < small.count_params()
    fingerprint = weights_fingerprint(narrow)
    assert (fingerprint["model"], fingerprint["alpha"], fingerprint["size"]) == (SMALL, 0.75, 160)
    assert (weights_fingerprint(small)["alpha"], weights_fingerprint(small)["size"]) == (1.0, 224)
    layer = default_gradcam_layer(narrow)
    assert tuple(narrow.get_layer(layer).output.shape[1:3]) == (5, 5)


def test_size_keras_refuses_for_a_wrapped_application_is_one_sentence(one_sentence):
    with pytest.raises(ValueError) as excinfo:
        xh.load_model("ResNet50", weights=None, size=16)  # passed as input_shape too: Keras checks it
    one_sentence(excinfo, "ResNet50", "32")


def test_weights_file_loads_into_the_same_architecture(small, tmp_path, photo):
    path = tmp_path / "small.weights.h5"
    small.save_weights(path)
    again = xh.load_model(SMALL, weights=path)
    assert again is not small
    np.testing.assert_allclose(probabilities(again, photo), probabilities(small, photo), rtol=1e-6)
    assert weights_fingerprint(again)["path"] == str(path.resolve())


def test_missing_imagenet_weights_offline_is_one_sentence_naming_the_file(monkeypatch, one_sentence):
    from urllib.error import URLError

    from keras.src.utils import file_utils

    fname = "weights_mobilenet_v3_small_224_1.0_float.h5"  # Keras's name for these weights
    if (keras_home() / "models" / fname).exists():
        pytest.skip("these ImageNet weights are cached here")

    def offline(*args, **kwargs):
        raise URLError("offline")

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    with pytest.raises(FileNotFoundError) as excinfo:
        xh.load_model(SMALL)
    one_sentence(excinfo, fname, "KERAS_HOME")


def test_missing_model_or_weights_file_is_one_sentence(tmp_path, one_sentence):
    with pytest.raises(FileNotFoundError) as excinfo:
        xh.load_model(tmp_path / "nothing.keras")
    one_sentence(excinfo, "nothing.keras")
    with pytest.raises(FileNotFoundError) as excinfo:
        xh.load_model(SMALL, weights=tmp_path / "nothing.weights.h5")
    one_sentence(excinfo, "nothing.weights.h5")


def test_predict_uses_imagenet_labels_for_1000_classes(small, photo):
    rows = xh.predict(small, photo, top=3)
    assert len(rows) == 3 and all(r.wnid.startswith("n") for r in rows)
    assert rows[0].probability >= rows[1].probability >= rows[2].probability


@pytest.mark.parametrize("name", [SMALL, DENSE_HEAD])
def test_logits_model_softmax_equals_the_classifier(name, photo):
    model = xh.load_model(name, None)
    z = np.asarray(logits_model(model)(photo[None]), np.float64)[0]
    softmax = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(softmax, probabilities(model, photo), rtol=1e-5, atol=1e-9)


def test_fgsm_stays_within_eps_of_the_photo_in_pixel_levels(small, photo):
    eps = xh.pixels_to_eps(2)
    adv = xh.fgsm(small, photo, eps=eps)
    assert np.abs(adv - photo).max() <= eps + 1e-6
    assert adv.min() >= -1.0 and adv.max() <= 1.0
    assert np.mean(adv != photo) > 0.5  # the gradient's sign moved most pixels


def test_gradcam_layer_rule_picks_the_maps_before_global_pooling(small, dense_head, photo):
    assert default_gradcam_layer(dense_head) == "top_activation" == _input_of_global_pooling(dense_head)
    # MobileNetV3 pools with keepdims=True and runs 1 x 1 convolutions after: those maps have one position.
    layer = default_gradcam_layer(small)
    assert layer == _input_of_global_pooling(small)
    assert tuple(small.get_layer(layer).output.shape[1:3]) == (7, 7)
    cam = xh.gradcam(small, photo, class_index=xh.predict(small, photo)[0].class_index, target="softmax")
    assert cam.shape == (224, 224) and 0.0 <= cam.min() and cam.max() == pytest.approx(1.0)


def test_gradcam_steps_uses_the_same_default_layer(dense_head, photo):
    steps = gradcam_steps(dense_head, photo, class_index=3, target="logits")
    assert steps.layer == "top_activation" and steps.feature_maps.shape == (7, 7, 1280)
    np.testing.assert_allclose(steps.upsampled, xh.gradcam(dense_head, photo, 3, normalize=False),
                               rtol=1e-4, atol=1e-6 * np.abs(steps.upsampled).max())


def test_integrated_gradients_are_complete_on_the_logits(dense_head, photo):
    c = xh.predict(dense_head, photo)[0].class_index
    result = xh.integrated_gradients(dense_head, photo, c, target="logits", steps=32)
    assert result.attributions.shape == (224, 224, 3)
    assert abs(result.f_x - result.f_baseline) > 1e-3  # a real difference to attribute
    assert result.relative_delta < 0.01


def test_explain_command_runs_on_another_model_offline(tmp_path, whiptail_path, capsys):
    out = tmp_path / "x.png"
    status = cli.main([whiptail_path, "--model", SMALL, "--weights", "none", "--out", str(out),
                       "--steps", "4", "--quiet"])
    assert status == 0 and out.stat().st_size > 10_000


def test_explain_command_unknown_model_exits_2_with_suggestion(tmp_path, whiptail_path, capsys):
    status = cli.main([whiptail_path, "--model", "EfficientNetB9", "--weights", "none",
                       "--out", str(tmp_path / "x.png"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in err and "EfficientNetB" in err


# ----------------------------------------------------------------------------------------------------
# Saved model files


def _tiny_model(residual: bool) -> keras.Model:
    keras.utils.set_random_seed(7)
    inputs = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    if residual:  # a bare operation (not a layer) computes the last maps, as in ConvNeXt
        h = h + keras.layers.Conv2D(4, 1, name="branch")(h)
    h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(h)
    return keras.Model(inputs, outputs, name="tiny")


@pytest.mark.parametrize("mode", ["caffe", "torch"])
def test_model_file_gets_its_preprocessing_as_first_layer(tmp_path, rng, mode):
    tiny = _tiny_model(residual=False)
    path = tmp_path / "tiny.keras"
    tiny.save(path)
    model = xh.load_model(path, preprocessing=mode)
    p, x = _pixels(rng, (2, 16, 16, 3))
    expected = np.asarray(tiny(imagenet_utils.preprocess_input(p.copy(), mode=mode)))
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=1e-5, atol=1e-7)
    assert [layer.name for layer in model.layers][1:3] == ["preprocessing", "conv"]
    assert default_gradcam_layer(model) == "conv"
    assert weights_fingerprint(model)["path"] == str(path.resolve())


def test_model_file_with_labels_and_a_callable_preprocessing(tmp_path, rng):
    tiny = _tiny_model(residual=False)
    path = tmp_path / "tiny.keras"
    tiny.save(path)
    labels = tmp_path / "labels.csv"
    labels.write_text("wnid,name\nx1,cat\nx2,dog\nx3,bird\n")
    model = xh.load_model(str(path), preprocessing=lambda t: 2.0 * t, labels=labels)
    _, x = _pixels(rng, (16, 16, 3))
    top = xh.predict(model, x, top=3)
    assert {r.name for r in top} == {"cat", "dog", "bird"} and {r.wnid for r in top} == {"x1", "x2", "x3"}
    np.testing.assert_allclose(probabilities(model, x), np.asarray(tiny((2.0 * x)[None]))[0], rtol=1e-5)


def test_model_file_labels_must_match_the_classes(tmp_path, one_sentence):
    path = tmp_path / "tiny.keras"
    _tiny_model(residual=False).save(path)
    with pytest.raises(ValueError) as excinfo:
        xh.load_model(path, labels=["cat", "dog"])
    one_sentence(excinfo, "labels", "3")


def test_last_maps_from_a_bare_operation_get_a_named_layer(tmp_path, rng):
    tiny = _tiny_model(residual=True)
    path = tmp_path / "residual.keras"
    tiny.save(path)
    model = xh.load_model(path)
    assert default_gradcam_layer(model) == "tiny_features"
    _, x = _pixels(rng, (16, 16, 3))
    np.testing.assert_allclose(probabilities(model, x), np.asarray(tiny(x[None]))[0], rtol=1e-5)
    cam = xh.gradcam(model, x, class_index=0, normalize=False)
    steps = gradcam_steps(model, x, class_index=0)
    np.testing.assert_allclose(cam, steps.upsampled, rtol=1e-4, atol=1e-7)
