"""load_image's documented colour, orientation and resize policy, and the ImageNet sample photos."""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import xai_helpers as xh
from xai_helpers.classifier.data import IMAGE_SIZE, deprocess, preprocess

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def _rgb(color) -> np.ndarray:
    """The model-range value of an 8-bit RGB colour."""
    return np.asarray(color, np.float32) / 127.5 - 1.0


def _is_color(region: np.ndarray, color, tol: float = 0.08) -> bool:
    return bool(np.all(np.abs(region - _rgb(color)) <= tol))


def _no_warnings(path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return xh.load_image(path)


# -------------------------------------------------------------------------------------------------
# Output contract
# -------------------------------------------------------------------------------------------------

def test_load_image_returns_float32_224_square_rgb_in_model_range(save_image, rng):
    pixels = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    x = xh.load_image(save_image(Image.fromarray(pixels), "noise.png"))
    assert x.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0


def test_load_image_maps_pixel_values_linearly_to_minus_one_plus_one(save_image):
    x = xh.load_image(save_image(Image.new("RGB", (64, 64), (255, 0, 51)), "flat.png"))
    np.testing.assert_allclose(x, np.broadcast_to([1.0, -1.0, 51 / 127.5 - 1], x.shape), atol=1e-6)


def test_load_image_accepts_str_and_path(save_image):
    path = save_image(Image.new("RGB", (40, 40), RED), "red.png")
    np.testing.assert_array_equal(xh.load_image(str(path)), xh.load_image(Path(path)))


@pytest.mark.parametrize("suffix, options", [(".webp", {"lossless": True}), (".bmp", {}), (".tiff", {}),
                                             (".ppm", {})])
def test_lossless_formats_load_exactly_like_png(save_image, rng, suffix, options):
    # A user's photo may come in any format Pillow reads; a lossless one must give the PNG's array bit
    # for bit (same decoder output, same colour and resize policy).
    image = Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))
    reference = xh.load_image(save_image(image, "reference.png"))
    np.testing.assert_array_equal(xh.load_image(save_image(image, f"photo{suffix}", **options)), reference)


def test_preprocess_and_deprocess_are_inverse_on_the_pixel_grid():
    pixels = np.arange(256, dtype=np.float32)
    x = preprocess(pixels)
    assert x[0] == -1.0 and x[-1] == 1.0
    np.testing.assert_allclose(deprocess(x) * 255, pixels, atol=1e-4)


def test_deprocess_clips_to_displayable_range():
    np.testing.assert_array_equal(deprocess(np.array([-1.5, 0.0, 1.5])), [0.0, 0.5, 1.0])


# -------------------------------------------------------------------------------------------------
# Resize policy: the whole photo, squeezed to 224 x 224, never cropped
# -------------------------------------------------------------------------------------------------

def _quarters(width: int, height: int, horizontal: bool = True) -> Image.Image:
    """First quarter red, last quarter green, middle blue (along the width or the height)."""
    image = Image.new("RGB", (width, height), BLUE)
    if horizontal:
        image.paste(RED, (0, 0, width // 4, height))
        image.paste(GREEN, (3 * width // 4, 0, width, height))
    else:
        image.paste(RED, (0, 0, width, height // 4))
        image.paste(GREEN, (0, 3 * height // 4, width, height))
    return image


def test_wide_image_is_resized_whole_not_cropped(save_image):
    x = xh.load_image(save_image(_quarters(448, 224), "wide.png"))
    assert _is_color(x[:, :54], RED)  # the left quarter of 448 px -> the left 56 of 224 columns
    assert _is_color(x[:, 58:166], BLUE)
    assert _is_color(x[:, 170:], GREEN)  # the right edge survives: no centre crop


def test_tall_image_is_resized_whole_not_cropped(save_image):
    x = xh.load_image(save_image(_quarters(224, 448, horizontal=False), "tall.png"))
    assert _is_color(x[:54], RED)
    assert _is_color(x[58:166], BLUE)
    assert _is_color(x[170:], GREEN)


def test_small_image_is_upscaled_to_224(save_image):
    x = xh.load_image(save_image(_quarters(64, 32), "small.png"))
    assert x.shape == (224, 224, 3)
    assert _is_color(x[:, :50], RED) and _is_color(x[:, 174:], GREEN)


def test_large_jpeg_decoded_in_draft_mode_matches_full_resolution_resize(save_image, rng):
    # A smooth 2000 x 1000 photo-like image: JPEG draft decoding (1/2 scale here) must not change what
    # the model sees beyond JPEG noise.
    rows, cols = np.mgrid[:1000, :2000]
    pixels = np.stack([cols * 255 / 1999, rows * 255 / 999, 128 + 100 * np.sin(cols / 150.0)], -1)
    image = Image.fromarray(pixels.astype(np.uint8))
    from_jpeg = xh.load_image(save_image(image, "big.jpg", quality=95))
    from_png = xh.load_image(save_image(image, "big.png"))
    assert np.abs(from_jpeg - from_png).mean() < 0.02


# -------------------------------------------------------------------------------------------------
# Colour modes
# -------------------------------------------------------------------------------------------------

def test_grayscale_image_becomes_three_equal_channels(save_image):
    gray = Image.fromarray(np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1)), mode="L")
    x = _no_warnings(save_image(gray, "gray.png"))
    np.testing.assert_array_equal(x[..., 0], x[..., 1])
    np.testing.assert_array_equal(x[..., 0], x[..., 2])
    assert x[:, 0].mean() < -0.95 and x[:, -1].mean() > 0.95


def test_palette_image_uses_its_palette_colours(save_image):
    image = Image.new("P", (64, 64), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0, 0, 0] * 254)
    image.paste(1, (32, 0, 64, 64))
    x = _no_warnings(save_image(image, "palette.png"))
    assert _is_color(x[:, :100], RED, tol=1e-6)
    assert _is_color(x[:, 124:], GREEN, tol=1e-6)


@pytest.mark.parametrize("side", [64, 1000])  # 1000: large enough to be shrunk strip by strip first
def test_palette_transparency_is_composited_over_white_with_warning(save_image, side):
    image = Image.new("P", (side, side), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0, 0, 0] * 254)
    image.paste(1, (side // 2, 0, side, side))
    path = save_image(image, "palette_transparent.png", transparency=1)
    with pytest.warns(UserWarning, match="transparent"):
        x = xh.load_image(path)
    assert _is_color(x[:, :100], RED, tol=1e-6)
    assert _is_color(x[:, 124:], WHITE, tol=1e-6)


def test_opaque_rgba_loads_without_warning_like_rgb(save_image):
    rgb = _quarters(64, 64)
    rgba = rgb.copy()
    rgba.putalpha(255)
    np.testing.assert_array_equal(_no_warnings(save_image(rgba, "opaque.png")),
                                  xh.load_image(save_image(rgb, "rgb.png")))


def test_transparent_rgba_is_composited_over_white_with_warning(save_image):
    rgba = Image.new("RGBA", (64, 64), (255, 0, 0, 255))
    rgba.paste((0, 0, 255, 0), (0, 32, 64, 64))  # bottom half: fully transparent blue
    with pytest.warns(UserWarning, match="transparent"):
        x = xh.load_image(save_image(rgba, "transparent.png"))
    assert _is_color(x[:100], RED, tol=1e-6)
    assert _is_color(x[124:], WHITE, tol=1e-6)


def test_half_transparent_pixels_are_blended_with_white(save_image):
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 128))
    with pytest.warns(UserWarning):
        x = xh.load_image(save_image(rgba, "half.png"))
    np.testing.assert_allclose(x, 127 / 127.5 - 1, atol=1 / 127.5)


def test_grayscale_with_alpha_loads_as_gray(save_image):
    la = Image.new("LA", (64, 64), (200, 255))
    x = _no_warnings(save_image(la, "la.png"))
    np.testing.assert_allclose(x, 200 / 127.5 - 1, atol=1e-6)


def test_16_bit_grayscale_is_scaled_to_full_range_not_clipped(save_image):
    samples = np.zeros((64, 96), np.uint16)
    samples[:, 32:64] = 32896  # 128.5 / 255 of full scale -> 8-bit 128 -> ~0.0 (clipping would give +1)
    samples[:, 64:] = 65535
    image = Image.fromarray(samples)
    assert image.mode == "I;16"
    path = save_image(image, "deep.png")
    with Image.open(path) as reopened:
        assert reopened.mode.startswith("I")
    x = _no_warnings(path)
    np.testing.assert_allclose(x[:, :60], -1.0, atol=1e-6)
    np.testing.assert_allclose(x[:, 88:136], 128 / 127.5 - 1, atol=1e-6)
    np.testing.assert_allclose(x[:, 164:], 1.0, atol=1e-6)


def test_cmyk_jpeg_is_converted_to_rgb(save_image):
    cmyk = Image.new("CMYK", (64, 64), (255, 0, 0, 0))  # pure cyan
    cmyk.paste((0, 0, 255, 0), (32, 0, 64, 64))  # pure yellow
    path = save_image(cmyk, "cmyk.jpg", quality=95)
    with Image.open(path) as reopened:
        assert reopened.mode == "CMYK"
    x = _no_warnings(path)
    assert _is_color(x[:, :100], (0, 255, 255))
    assert _is_color(x[:, 124:], (255, 255, 0))


def test_float_image_is_rejected_with_a_sentence(save_image, one_sentence):
    image = Image.fromarray(np.ones((64, 64), np.float32))
    assert image.mode == "F"
    with pytest.raises(ValueError) as excinfo:
        xh.load_image(save_image(image, "float.tif"))
    one_sentence(excinfo, "Floating-point")


# -------------------------------------------------------------------------------------------------
# EXIF orientation: the photo is analysed the way it is displayed
# -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("orientation,red_side", [(1, "left"), (3, "right"), (6, "top"), (8, "bottom")])
def test_exif_orientation_is_applied(save_image, orientation, red_side):
    image = Image.new("RGB", (128, 64), BLUE)
    image.paste(RED, (0, 0, 64, 64))  # stored: left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = orientation
    x = xh.load_image(save_image(image, f"exif{orientation}.jpg", exif=exif, quality=95))
    halves = {"left": (x[:, :100], x[:, 124:]), "right": (x[:, 124:], x[:, :100]),
              "top": (x[:100], x[124:]), "bottom": (x[124:], x[:100])}
    red, blue = halves[red_side]
    assert _is_color(red, RED, tol=0.1), red_side
    assert _is_color(blue, BLUE, tol=0.1), red_side


# -------------------------------------------------------------------------------------------------
# The ImageNet sample photos
# -------------------------------------------------------------------------------------------------

def test_sample_photos_cover_the_1000_classes_in_wnid_order():
    photos = xh.sample_photos()
    assert len(photos) == 1000
    assert [p.class_index for p in photos] == list(range(1000))
    wnids = [p.wnid for p in photos]
    assert wnids == sorted(wnids) and len(set(wnids)) == 1000
    assert all(len(p.sha256) == 64 for p in photos)


def test_sample_photo_indices_agree_with_keras_class_labels():
    labels = xh.class_labels()
    assert len(labels) == 1000
    assert [p.wnid for p in xh.sample_photos()] == [wnid for wnid, _ in labels]
    assert labels[41] == ("n01685808", "whiptail")


def test_sample_image_finds_the_same_photo_by_name_wnid_and_index():
    by_name = xh.sample_image("whiptail")
    assert xh.sample_image("n01685808") == by_name
    assert xh.sample_image(41) == by_name
    assert xh.sample_image(np.int64(41)) == by_name
    assert Path(by_name).name == "n01685808_whiptail.JPEG"


def test_sample_image_name_matching_ignores_case_spaces_and_underscores():
    path = xh.sample_image("great_white_shark")
    assert xh.sample_image("Great White Shark") == path
    assert xh.sample_image("  great-white shark ") == path


def test_sample_image_returns_the_hash_checked_file():
    path = Path(xh.sample_image("whiptail"))
    photo = xh.sample_photos()[41]
    assert path.is_file()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == photo.sha256


# -------------------------------------------------------------------------------------------------
# Memory policy: shrink before converting, and change nothing for ordinary photos
# -------------------------------------------------------------------------------------------------

#: sha256 of ``load_image(sample photo).tobytes()`` as computed before the memory policy existed (all 1000
#: sample photos were checked bit for bit; these five stay as the record). The study table and every
#: number of the book depend on these arrays.
SAMPLE_ARRAY_SHA256 = {
    41: "9f8759b48f64ba2413e84f9dbd43c276880525ceedd1dd38705f44f573622085",
    281: "1d43b55e8c5f13f143f70c2463d413c672e27faa621914ab5c49eb3f5b926c6d",
    0: "af3043f91ca33e259181f0d5098a24fd73e9acbd8e078448172651bcd9e677d9",
    999: "38fed6c29c2d0f1254a0f6c2275244eceda30801dd943dd69b569cfa20b495f5",
    150: "04ed9dcc7cf1310cb2df38006a233aadb0f15a47f8bf36ca2b158ad04d443321",
}


@pytest.mark.parametrize("class_index", sorted(SAMPLE_ARRAY_SHA256))
def test_sample_photos_load_bit_for_bit_as_before(class_index):
    x = xh.load_image(xh.sample_image(class_index))
    assert hashlib.sha256(x.tobytes()).hexdigest() == SAMPLE_ARRAY_SHA256[class_index]


@pytest.fixture
def small_strips(monkeypatch):
    """Strips of a few rows, so that a test image is converted in many strips."""
    from xai_helpers.classifier import data

    monkeypatch.setattr(data, "STRIP_BYTES", 40_000)
    return data


@pytest.mark.parametrize("transparent", [False, True])
def test_a_palette_image_is_reduced_strip_by_strip_like_whole(small_strips, rng, transparent):
    image = Image.fromarray(rng.integers(0, 4, (1900, 1000), dtype=np.uint8), mode="P")
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255] + [0, 0, 0] * 252)
    if transparent:
        image.info["transparency"] = 2
    mode = "RGBA" if transparent else "RGB"
    factors = (2, 4)  # (1000 // 448, 1900 // 448)
    whole = image.convert(mode).reduce(factors)
    strips = small_strips._reduce_in_strips(image, factors, mode)
    assert strips.mode == mode and strips.size == whole.size
    np.testing.assert_array_equal(np.asarray(strips), np.asarray(whole))


def test_an_opaque_palette_converted_as_rgba_comes_back_as_rgb(small_strips):
    image = Image.new("PA", (1000, 1000), (1, 255))
    image.putpalette([0, 0, 0, 200, 100, 50] + [0, 0, 0] * 254)
    reduced = small_strips._reduce_in_strips(image, (2, 2), "RGBA")
    assert reduced.mode == "RGB" and reduced.getpixel((3, 3)) == (200, 100, 50)


def test_16_bit_grey_is_averaged_at_full_precision_before_it_becomes_8_bit(small_strips, rng):
    samples = rng.integers(0, 65536, (1000, 1350), dtype=np.uint16)  # neither side a multiple of 4 or 3
    image = Image.fromarray(samples)
    assert image.mode == "I;16"
    reduced = np.asarray(small_strips._reduce_16bit(image, (3, 2)))
    rows, cols = np.arange(0, 1000, 2), np.arange(0, 1350, 3)
    sums = np.add.reduceat(np.add.reduceat(samples.astype(np.float64), rows, axis=0), cols, axis=1)
    counts = np.outer(np.diff(np.append(rows, 1000)), np.diff(np.append(cols, 1350)))
    expected = np.clip(np.rint(sums / counts * 255 / 65535), 0, 255).astype(np.uint8)
    assert reduced.shape == (500, 450)
    np.testing.assert_array_equal(reduced, expected)




def test_a_floating_point_image_is_refused_before_it_is_decoded(save_image, monkeypatch, one_sentence):
    path = save_image(Image.fromarray(np.ones((64, 64), np.float32)), "float.tif")
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("the image was decoded"))
    with pytest.raises(ValueError) as excinfo:
        xh.load_image(path)
    one_sentence(excinfo, "Floating-point")


def test_centre_crop_keeps_the_central_square_and_whole_keeps_everything(tmp_path):
    """A 400 x 200 photo, black in its outer quarters and white in the middle: the whole photo resized
    keeps the black quarters; ImageNet's centre crop (shorter side to 256, central 224) sees only white."""
    from PIL import Image

    from xai_helpers.classifier.data import load_image

    pixels = np.full((200, 400, 3), 255, np.uint8)
    pixels[:, :100] = pixels[:, 300:] = 0
    Image.fromarray(pixels).save(tmp_path / "bands.png")
    whole = load_image(tmp_path / "bands.png")
    crop = load_image(tmp_path / "bands.png", resize="centre_crop")
    assert np.all(whole[:, :50] < -0.99) and np.all(whole[:, -50:] < -0.99)
    assert crop.shape == (224, 224, 3) and np.all(crop > 0.99)
    with pytest.raises(ValueError, match="resize must be one of"):
        load_image(tmp_path / "bands.png", resize="crop")


def test_the_resize_setting_leaves_the_key_of_tables_written_before_it():
    import dataclasses

    from xai_helpers.study.settings import StudySettings

    assert StudySettings().key() == "675cbad9de06"   # results/study.csv's settings_key
    assert dataclasses.replace(StudySettings(), resize="centre_crop").key() != StudySettings().key()


def test_a_table_written_before_the_resize_setting_reads_as_whole_photo():
    import ast
    import dataclasses

    from xai_helpers.study.settings import StudySettings, settings_from_header

    before = {k: v for k, v in dataclasses.asdict(StudySettings()).items() if k != "resize"}
    meta = {"settings": repr(before), "settings_key": "675cbad9de06"}   # as results/study.csv was written
    assert settings_from_header(meta).resize == "whole"
    crop = dataclasses.replace(StudySettings(), resize="centre_crop")
    meta = {"settings": repr(dataclasses.asdict(crop)), "settings_key": crop.key()}
    assert settings_from_header(meta) == crop
    assert ast.literal_eval(meta["settings"])["resize"] == "centre_crop"
