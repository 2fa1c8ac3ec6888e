"""Every bad input of the issue's list raises a ValueError/FileNotFoundError/TypeError whose message is one
sentence naming the problem, before any TensorFlow work."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import xai_helpers as xh
from xai_helpers.methods.integrated_gradients import integrated_gradients_batch

LINEAR_SHAPE = (8, 8, 3)  # the input of conftest's ``linear`` model


# -------------------------------------------------------------------------------------------------
# Files that are not (usable) images
# -------------------------------------------------------------------------------------------------

def test_missing_file_raises_file_not_found(tmp_path, one_sentence):
    with pytest.raises(FileNotFoundError) as excinfo:
        xh.load_image(tmp_path / "nowhere.jpg")
    one_sentence(excinfo, "nowhere.jpg")


def test_directory_is_not_an_image_file(tmp_path, one_sentence):
    with pytest.raises(FileNotFoundError) as excinfo:
        xh.load_image(tmp_path)
    one_sentence(excinfo, "No image file")


def test_text_file_named_jpg_raises_value_error(tmp_path, one_sentence):
    path = tmp_path / "notes.jpg"
    path.write_text("This is not a photo of a lizard.\n")
    with pytest.raises(ValueError) as excinfo:
        xh.load_image(path)
    one_sentence(excinfo, "notes.jpg", "not a readable image")


def test_truncated_jpeg_raises_value_error(tmp_path, rng, one_sentence):
    path = tmp_path / "cut.jpg"
    Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as excinfo:
        xh.load_image(path)
    one_sentence(excinfo, "cut.jpg", "not a readable image")


def test_zero_byte_file_raises_value_error(tmp_path, one_sentence):
    path = tmp_path / "empty.png"
    path.touch()
    with pytest.raises(ValueError) as excinfo:
        xh.load_image(path)
    one_sentence(excinfo, "empty")


@pytest.mark.parametrize("size", [(1, 1), (31, 400), (400, 31)])
def test_tiny_image_raises_value_error(save_image, size, one_sentence):
    path = save_image(Image.new("RGB", size, (10, 20, 30)), "tiny.png")
    with pytest.raises(ValueError) as excinfo:
        xh.load_image(path)
    one_sentence(excinfo, f"{size[0]} x {size[1]}", "32 px")


def test_image_of_minimum_side_is_accepted(save_image):
    assert xh.load_image(save_image(Image.new("RGB", (32, 32)), "min.png")).shape == (224, 224, 3)


def _png_header(path: Path, width: int, height: int) -> Path:
    """Write a PNG that declares width x height pixels but holds almost no data (no memory needed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))
                     + chunk(b"IEND", b""))
    return path


def test_image_over_the_pixel_limit_is_rejected_before_decoding(tmp_path, one_sentence):
    path = _png_header(tmp_path / "bomb.png", 20_000, 10_000)  # 200 megapixels
    with pytest.raises(ValueError) as excinfo:
        xh.load_image(path)
    one_sentence(excinfo, "bomb.png", "pixel limit")


def _memory_mb() -> tuple[float, float] | None:
    """Return (current RSS, peak RSS since the last reset) in MB, or None off Linux."""
    try:
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
        return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError):
        return None


def _reset_peak_memory() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM to the current RSS
        return True
    except OSError:
        return False


def _load_with_peak_memory(path: Path) -> tuple[np.ndarray, float | None, float]:
    """Return load_image(path), its extra peak memory in MB (None if unmeasurable) and the seconds taken."""
    measurable = _reset_peak_memory() and _memory_mb() is not None
    before = _memory_mb()[0] if measurable else 0.0
    start = time.perf_counter()
    x = xh.load_image(path)
    seconds = time.perf_counter() - start
    extra = _memory_mb()[1] - before if measurable else None
    return x, extra, seconds


@pytest.fixture(scope="module")
def huge_images(tmp_path_factory) -> dict[str, Path]:
    """10000 x 10000 grayscale images, left quarter black (100 MB in memory, briefly, to write them)."""
    folder = tmp_path_factory.mktemp("huge")
    image = Image.new("L", (10_000, 10_000), 255)
    image.paste(0, (0, 0, 2_500, 10_000))
    paths = {"jpeg": folder / "huge.jpg", "png": folder / "huge.png"}
    image.save(paths["jpeg"], quality=90)
    image.save(paths["png"])
    del image
    return paths


def test_10000_pixel_jpeg_loads_quickly_in_bounded_memory(huge_images):
    x, extra_mb, seconds = _load_with_peak_memory(huge_images["jpeg"])
    assert x.shape == (224, 224, 3)
    assert np.all(x[:, :50] < -0.9) and np.all(x[:, 62:] > 0.9)
    assert seconds < 10
    if extra_mb is not None:  # JPEG decodes at 1/8 scale: a full decode alone would take 100 MB
        assert extra_mb < 60, f"loading took {extra_mb:.0f} MB"


def test_10000_pixel_png_loads_without_blowing_memory(huge_images):
    x, extra_mb, seconds = _load_with_peak_memory(huge_images["png"])
    assert x.shape == (224, 224, 3)
    assert np.all(x[:, :50] < -0.9) and np.all(x[:, 62:] > 0.9)
    assert seconds < 20
    if extra_mb is not None:
        # PNG has no draft mode: decoding the 100 MB of samples is unavoidable; full-size RGB copies
        # (300-400 MB each) before the resize are not.
        assert extra_mb < 160, f"loading took {extra_mb:.0f} MB"


# -------------------------------------------------------------------------------------------------
# Sample photos and the offline cache
# -------------------------------------------------------------------------------------------------

def test_unknown_class_name_raises_value_error(one_sentence):
    with pytest.raises(ValueError) as excinfo:
        xh.sample_image("not a class")
    one_sentence(excinfo, "not a class")


def test_ambiguous_class_name_lists_the_wnids(one_sentence):
    with pytest.raises(ValueError) as excinfo:
        xh.sample_image("crane")
    one_sentence(excinfo, "ambiguous", "n02012849", "n03126707")


def test_unknown_wnid_raises_value_error(one_sentence):
    with pytest.raises(ValueError) as excinfo:
        xh.sample_image("n99999999")
    one_sentence(excinfo, "n99999999")


@pytest.mark.parametrize("index", [-1, 1000])
def test_sample_image_index_out_of_range_raises_value_error(index, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        xh.sample_image(index)
    one_sentence(excinfo, "[0, 999]")


@pytest.mark.parametrize("name", [41.0, True, None, ["whiptail"]])
def test_sample_image_rejects_other_types(name, one_sentence):
    with pytest.raises(TypeError) as excinfo:
        xh.sample_image(name)
    one_sentence(excinfo)


def test_missing_cache_offline_names_the_file_and_keras_home(tmp_path):
    """In an empty KERAS_HOME with no network, each cached file is reported in one sentence."""
    script = (
        "import xai_helpers as x\n"
        "for f, args in ((x.sample_image, ('whiptail',)), (x.load_model, ()), "
        "(x.weights_fingerprint, ()), (x.class_labels, ())):\n"
        "    try:\n"
        "        f(*args)\n"
        "    except Exception as err:\n"
        "        print('ERROR', type(err).__name__, str(err).replace(chr(10), '<NEWLINE>'))\n"
        "    else:\n"
        "        print('ERROR none')\n"
    )
    # A closed local port as proxy: the downloads fail at once, online or offline.
    unreachable = "http://127.0.0.1:9"
    env = {**os.environ, "KERAS_HOME": str(tmp_path), "https_proxy": unreachable,
           "HTTPS_PROXY": unreachable, "http_proxy": unreachable, "HTTP_PROXY": unreachable,
           "no_proxy": "", "NO_PROXY": ""}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    errors = [line.split(" ", 2) for line in done.stdout.splitlines() if line.startswith("ERROR ")]
    assert len(errors) == 4, done.stdout
    expected = ["n01685808_whiptail.JPEG", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
                "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5", "imagenet_class_index.json"]
    for (_, kind, message), fname in zip(errors, expected):
        assert kind == "FileNotFoundError", message
        assert fname in message and "KERAS_HOME" in message and str(tmp_path) in message
        assert "<NEWLINE>" not in message and message.endswith(".")


# -------------------------------------------------------------------------------------------------
# eps
# -------------------------------------------------------------------------------------------------

ATTACKS = {
    "fgsm": lambda model, x, eps: xh.fgsm(model, x, eps=eps),
    "fgsm_targeted": lambda model, x, eps: xh.fgsm_targeted(model, x, 1, eps=eps),
    "iterative_fgsm_targeted": lambda model, x, eps: xh.iterative_fgsm_targeted(model, x, 1, eps=eps),
}


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("eps", [-0.01, -1e-9, 1.0001, 2.0, float("nan"), float("inf"), -float("inf")])
def test_eps_outside_unit_interval_or_nan_raises_value_error(linear, linear_x, attack, eps, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        ATTACKS[attack](linear.model, linear_x, eps)
    one_sentence(excinfo, "eps", "[0, 1]")


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("eps", ["0.1", None, True, [0.1], np.array([0.1, 0.2])])
def test_eps_that_is_not_a_number_raises_type_error(linear, linear_x, attack, eps, one_sentence):
    with pytest.raises(TypeError) as excinfo:
        ATTACKS[attack](linear.model, linear_x, eps)
    one_sentence(excinfo, "eps")


@pytest.mark.parametrize("eps", [0, 1, np.float32(0.5), np.float64(0.25)])
def test_eps_accepts_ints_and_numpy_scalars_in_range(linear, linear_x, eps):
    adv = xh.fgsm(linear.model, linear_x, eps=eps)
    assert np.abs(adv - linear_x).max() <= float(eps) + 1e-6


# -------------------------------------------------------------------------------------------------
# Class indices
# -------------------------------------------------------------------------------------------------

def _class_users(model, x):
    """Every public function that takes a class index, as c -> call."""
    return {
        "fgsm(label)": lambda c: xh.fgsm(model, x, label=c),
        "fgsm_targeted": lambda c: xh.fgsm_targeted(model, x, c),
        "iterative_fgsm_targeted": lambda c: xh.iterative_fgsm_targeted(model, x, c, iterations=2),
        "loss_gradient_sign": lambda c: xh.loss_gradient_sign(model, x, c),
        "integrated_gradients": lambda c: xh.integrated_gradients(model, x, c, steps=4),
        "integrated_gradients_batch": lambda c: integrated_gradients_batch(model, x[None], [c], steps=4),
    }


CLASS_USERS = ["fgsm(label)", "fgsm_targeted", "iterative_fgsm_targeted", "loss_gradient_sign",
               "integrated_gradients", "integrated_gradients_batch"]


@pytest.mark.parametrize("user", CLASS_USERS)
@pytest.mark.parametrize("class_index", [-1, 4, 1000, np.int64(7)])
def test_class_index_outside_range_raises_value_error(linear, linear_x, user, class_index, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        _class_users(linear.model, linear_x)[user](class_index)
    one_sentence(excinfo, "[0, 3]")


@pytest.mark.parametrize("user", CLASS_USERS)
@pytest.mark.parametrize("class_index", [1.5, 2.0, "3", True, np.float64(1.0), [1]])
def test_class_index_that_is_not_an_int_raises_type_error(linear, linear_x, user, class_index,
                                                          one_sentence):
    with pytest.raises(TypeError) as excinfo:
        _class_users(linear.model, linear_x)[user](class_index)
    one_sentence(excinfo, "integer")


@pytest.mark.parametrize("class_index", [-1, 3, 1000])
def test_gradcam_class_index_outside_range_raises_value_error(cam_net, cam_x, class_index, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        xh.gradcam(cam_net.model, cam_x, class_index, layer="feat")
    one_sentence(excinfo, "[0, 2]")


@pytest.mark.parametrize("class_index", [1.5, "3", True, None, np.float32(1)])
def test_gradcam_class_index_that_is_not_an_int_raises_type_error(cam_net, cam_x, class_index,
                                                                  one_sentence):
    with pytest.raises(TypeError) as excinfo:
        xh.gradcam(cam_net.model, cam_x, class_index, layer="feat")
    one_sentence(excinfo, "integer")


@pytest.mark.parametrize("user", ["fgsm_targeted", "integrated_gradients"])
def test_real_model_class_range_is_0_to_999(mobilenet, whiptail, user, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        _class_users(mobilenet, whiptail)[user](1000)
    one_sentence(excinfo, "[0, 999]")


def test_real_model_gradcam_class_range_is_0_to_999(mobilenet, whiptail, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        xh.gradcam(mobilenet, whiptail, 1000)
    one_sentence(excinfo, "[0, 999]")


# -------------------------------------------------------------------------------------------------
# Arrays
# -------------------------------------------------------------------------------------------------

def _image_users(model):
    """Every public function that takes a model input image, as x -> call."""
    return {
        "fgsm": lambda x: xh.fgsm(model, x),
        "fgsm_targeted": lambda x: xh.fgsm_targeted(model, x, 0),
        "iterative_fgsm_targeted": lambda x: xh.iterative_fgsm_targeted(model, x, 0, iterations=2),
        "loss_gradient_sign": lambda x: xh.loss_gradient_sign(model, x),
        "predict": lambda x: xh.predict(model, x),
        "gradcam": lambda x: xh.gradcam(model, x, 0, layer="flatten"),
        "integrated_gradients": lambda x: xh.integrated_gradients(model, x, 0, steps=4),
    }


IMAGE_USERS = ["fgsm", "fgsm_targeted", "iterative_fgsm_targeted", "loss_gradient_sign", "predict",
               "gradcam", "integrated_gradients"]

WRONG_SHAPES = {
    "2-D": (8, 8),
    "4 channels": (8, 8, 4),
    "1 channel": (8, 8, 1),
    "other size": (16, 16, 3),
    "transposed": (3, 8, 8),
    "flat": (192,),
}


@pytest.mark.parametrize("user", IMAGE_USERS)
@pytest.mark.parametrize("shape", WRONG_SHAPES.values(), ids=WRONG_SHAPES.keys())
def test_array_of_wrong_shape_raises_value_error(linear, user, shape, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        _image_users(linear.model)[user](np.zeros(shape, np.float32))
    one_sentence(excinfo, "shape")


@pytest.mark.parametrize("user", [u for u in IMAGE_USERS if u != "gradcam"])
def test_batch_passed_where_one_image_is_expected_raises_value_error(linear, linear_x, user,
                                                                     one_sentence):
    with pytest.raises(ValueError) as excinfo:
        _image_users(linear.model)[user](linear_x[None])
    one_sentence(excinfo, "shape")


WRONG_DTYPES = {
    "bool": lambda x: x > 0,
    "object": lambda x: x.astype(object),
    "complex": lambda x: x.astype(np.complex64),
    "str": lambda x: x.astype(str),
}


@pytest.mark.parametrize("user", IMAGE_USERS)
@pytest.mark.parametrize("dtype", WRONG_DTYPES)
def test_array_of_wrong_dtype_raises_type_error(linear, linear_x, user, dtype, one_sentence):
    with pytest.raises(TypeError) as excinfo:
        _image_users(linear.model)[user](WRONG_DTYPES[dtype](linear_x))
    one_sentence(excinfo, "dtype")


@pytest.mark.parametrize("user", ["fgsm", "predict", "integrated_gradients"])
def test_non_array_input_raises_type_error(linear, linear_x, user, one_sentence):
    with pytest.raises(TypeError) as excinfo:
        _image_users(linear.model)[user]("whiptail.jpg")
    one_sentence(excinfo, "array")


@pytest.mark.parametrize("user", IMAGE_USERS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_array_containing_nan_or_inf_raises_value_error(linear, linear_x, user, bad, one_sentence):
    x = linear_x.copy()
    x[3, 4, 1] = bad
    with pytest.raises(ValueError) as excinfo:
        _image_users(linear.model)[user](x)
    one_sentence(excinfo, "NaN or infinite")


@pytest.mark.parametrize("user", IMAGE_USERS)
@pytest.mark.parametrize("transform", ["pixels 0-255", "slightly above", "slightly below"])
def test_image_outside_model_range_raises_value_error(linear, linear_x, user, transform, one_sentence):
    x = {"pixels 0-255": (linear_x + 1) * 127.5,
         "slightly above": linear_x + (1.01 - linear_x.max()),
         "slightly below": linear_x - (1.01 + linear_x.min())}[transform]
    with pytest.raises(ValueError) as excinfo:
        _image_users(linear.model)[user](x.astype(np.float32))
    one_sentence(excinfo, "[-1, 1]")


def test_ig_baseline_outside_model_range_raises_value_error(linear, linear_x, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        xh.integrated_gradients(linear.model, linear_x, 0, baseline=np.full(LINEAR_SHAPE, 2.0, np.float32))
    one_sentence(excinfo, "baseline", "[-1, 1]")


def test_float64_and_integer_arrays_in_range_are_accepted(linear, linear_x):
    a = xh.fgsm(linear.model, linear_x.astype(np.float64), eps=0.1)
    b = xh.fgsm(linear.model, linear_x, eps=0.1)
    np.testing.assert_array_equal(a, b)
    assert xh.predict(linear.model, np.zeros(LINEAR_SHAPE, np.int64), top=1)
