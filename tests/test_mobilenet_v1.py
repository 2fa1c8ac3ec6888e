"""A second real network: MobileNet v1, width 0.75, 192 x 192 (``load_model("MobileNet", alpha=0.75,
size=192)``), with the real ImageNet weights of ``$KERAS_HOME/models/mobilenet_7_5_192_tf.h5``.

The offline cache's file is dequantised from Google's 8-bit release ``mobilenet_v1_0.75_192_quant.tflite``
(its README: whiptail 18%, banded gecko 16% on the whiptail photo resized to 192 x 192 with PIL's default,
bicubic, resampling). Through the package's own loader (``load_image``: bilinear, the TensorFlow FGSM
tutorial's resize) the same photo gives, measured on CPU: common newt 0.115, water snake 0.083,
whiptail 0.080 -- a borderline photo for this smaller network, so the tests assert both, loosely.
The tests that need the weights are skipped, with one line, where the file is absent; the argument checks
run everywhere. About 15 s on two cores.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import xai_helpers as xh
from xai_helpers.classifier.architectures import InputPreprocessing
from xai_helpers.classifier.data import keras_home
from xai_helpers.classifier.forward import input_shape, probabilities
from xai_helpers.classifier.loading import _load_application
from xai_helpers.classifier.provenance import (
    MOBILENET_V1_WEIGHTS_FILE,
    OFFLINE_MOBILENET_V1_SHA256,
    model_description,
    weights_fingerprint,
)
from xai_helpers.methods.gradcam import default_gradcam_layer

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

OPTIONS = {"alpha": 0.75, "size": 192}
WHIPTAIL, BANDED_GECKO = 41, 38


def _weights_file() -> Path:
    return keras_home() / "models" / MOBILENET_V1_WEIGHTS_FILE


@pytest.fixture(scope="module")
def v1():
    if not _weights_file().is_file():
        pytest.skip(f"{MOBILENET_V1_WEIGHTS_FILE} is not in {_weights_file().parent}")
    return xh.load_model("MobileNet", **OPTIONS)


@pytest.fixture(scope="module")
def photo192(whiptail_path) -> np.ndarray:
    return xh.load_image(whiptail_path, 192)


def test_mobilenet_v1_is_kerass_application_unwrapped_at_192_with_1000_classes(v1):
    assert v1.name == "mobilenet_0.75_192" and v1.input_shape == (None, 192, 192, 3)
    assert input_shape(v1) == (192, 192, 3) and v1.output_shape == (None, 1000)
    assert not any(isinstance(layer, InputPreprocessing) for layer in v1.layers)  # "tf": takes [-1, 1]


def test_same_options_give_the_cached_object_and_the_default_is_still_mobilenet_v2(v1, mobilenet):
    assert xh.load_model("mobilenet", alpha=0.75, size=192) is v1
    assert xh.load_model("MobileNet", "imagenet", size=192, alpha=0.75) is v1
    assert xh.load_model() is mobilenet and mobilenet is not v1
    assert mobilenet.name == "mobilenetv2_1.00_224" and input_shape(mobilenet) == (224, 224, 3)
    # Options equal to the constructor's defaults are the same network: the same cache entry.
    assert xh.load_model("MobileNetV2", alpha=1.0, size=224) is mobilenet
    assert model_description(mobilenet) == {"model": "MobileNetV2", "alpha": 1.0, "size": 224}


def test_whiptail_with_the_package_loader_and_as_the_cache_readme_measured_it(v1, photo192, whiptail_path):
    top = xh.predict(v1, photo192, top=3)
    assert WHIPTAIL in [r.class_index for r in top]
    assert 0.04 < next(r.probability for r in top if r.class_index == WHIPTAIL) < 0.15
    with Image.open(whiptail_path) as image:  # PIL's default resampling, as the README's numbers
        bicubic = np.asarray(image.convert("RGB").resize((192, 192)), np.float32) / 127.5 - 1.0
    p = probabilities(v1, bicubic)
    assert list(np.argsort(-p)[:2]) == [WHIPTAIL, BANDED_GECKO]
    assert p[WHIPTAIL] == pytest.approx(0.18, abs=0.02) and p[BANDED_GECKO] == pytest.approx(0.16, abs=0.02)


def test_weights_fingerprint_names_the_v1_file_its_source_and_the_options(v1):
    fingerprint = weights_fingerprint(v1)
    path = Path(fingerprint["path"])
    assert path.name == MOBILENET_V1_WEIGHTS_FILE
    assert fingerprint["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    if fingerprint["sha256"] == OFFLINE_MOBILENET_V1_SHA256:
        assert "mobilenet_v1_0.75_192_quant.tflite" in fingerprint["source"]
    else:
        assert "official MobileNet v1 0.75/192" in fingerprint["source"]
    assert {k: fingerprint[k] for k in ("model", "alpha", "size")} == model_description(v1) \
        == {"model": "MobileNet", "alpha": 0.75, "size": 192}
    assert weights_fingerprint(v1)["sha256"] != weights_fingerprint()["sha256"]


def test_explainers_and_attack_work_at_192(v1, photo192):
    layer = default_gradcam_layer(v1)
    assert layer == "conv_pw_13_relu" and tuple(v1.get_layer(layer).output.shape[1:]) == (6, 6, 768)
    cam = xh.gradcam(v1, photo192, WHIPTAIL)
    assert cam.shape == (192, 192) and cam.max() == pytest.approx(1.0)
    adv = xh.fgsm(v1, photo192)
    assert adv.shape == (192, 192, 3) and np.abs(adv - photo192).max() <= xh.DEFAULT_EPS + 1e-6
    result = xh.integrated_gradients(v1, photo192, WHIPTAIL, target="logits", steps=16)
    assert result.attributions.shape == (192, 192, 3) and result.f_x > result.f_baseline


def test_missing_v1_weights_offline_is_one_sentence_naming_the_file(tmp_path, monkeypatch, one_sentence):
    from urllib.error import URLError

    from keras.src.backend import config
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise URLError("offline")

    (tmp_path / "models").mkdir()  # a cache without the v1 file
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path))  # Keras read KERAS_HOME when imported
    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    with pytest.raises(FileNotFoundError) as excinfo:
        _load_application.__wrapped__("MobileNet", "imagenet", None, 0, 0.75, 192)  # not the cached one
    one_sentence(excinfo, MOBILENET_V1_WEIGHTS_FILE, "KERAS_HOME", str(tmp_path))


def test_alpha_on_an_architecture_without_one_is_one_sentence(one_sentence):
    with pytest.raises(ValueError) as excinfo:
        xh.load_model("ResNet50", alpha=0.5)
    one_sentence(excinfo, "ResNet50", "alpha", "MobileNetV2")


@pytest.mark.parametrize("options, words", [
    ({"alpha": 0.75, "size": 200}, ("MobileNet", "200", "224")),  # no ImageNet weights at 200 x 200
    ({"alpha": 0.6, "size": 192}, ("MobileNet", "alpha", "0.75")),  # nor for alpha 0.6
])
def test_options_keras_has_no_imagenet_weights_for_are_one_sentence(options, words, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        xh.load_model("MobileNet", **options)
    one_sentence(excinfo, *words)


@pytest.mark.parametrize("options, error", [
    ({"size": "192"}, TypeError), ({"size": 192.0}, TypeError), ({"size": 0}, ValueError),
    ({"alpha": "0.75"}, TypeError), ({"alpha": -1.0}, ValueError), ({"alpha": float("nan")}, ValueError),
])
def test_malformed_options_are_one_sentence(options, error, one_sentence):
    with pytest.raises(error) as excinfo:
        xh.load_model("MobileNet", **options)
    one_sentence(excinfo, next(iter(options)))


def test_options_are_not_for_a_model_file(tmp_path, one_sentence):
    path = tmp_path / "m.keras"
    path.write_bytes(b"")
    with pytest.raises(ValueError) as excinfo:
        xh.load_model(path, size=192)
    one_sentence(excinfo, "model file")
