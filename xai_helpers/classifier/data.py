"""Images in, MobileNetV2 input arrays out: photo loading and the 1000 ImageNet sample photos.

Resize policy
-------------
``load_image`` resizes the *whole* photo to 224 x 224 (anisotropic, antialiased bilinear), without cropping.
This is what the TensorFlow FGSM tutorial that the assignment follows does (``tf.image.resize(image,
(224, 224))``), and it keeps the whole animal in frame: a centre crop, Keras's ImageNet-evaluation
convention, would cut the whiptail's tail, which is exactly the region whose importance the report
tests. The price is a mild aspect distortion (the whiptail photo is 500 x 332, so objects are squeezed
horizontally by 0.66), which the model tolerates (top-1 is unchanged on the whiptail photo).

Colour policy: grayscale (L, I;16, I), palette, CMYK and LA/RGBA are converted to RGB; 16-bit
samples are scaled by 255/65535 (not clipped, as PIL's own ``convert("L")`` would); transparency is
composited over white with a warning, because it changes what the model sees. EXIF orientation is
applied, so a photo is analysed the way it is displayed. An animation (GIF, WebP, APNG) or a multi-page
file (TIFF) gives its first frame, with a warning that says so and how many frames there are.

Memory policy: a photo is shrunk *before* any colour conversion, so that loading costs about its decoded
size and never several full-size copies. JPEG decodes at 1/2, 1/4 or 1/8 scale (``draft``). Other formats
are decoded whole (at most ``MAX_PIXELS`` x 4 bytes, ~716 MB, for the widest mode Pillow decodes to) and
then box-reduced by an integer factor to at most ~2 x 224 px a side: in place for the modes
``Image.reduce`` averages (L, LA, RGB, RGBA, CMYK, I); in horizontal strips of a few MB, each converted
and reduced on its own, for the others (palette, 16-bit grey, ...). 16-bit samples are averaged at full
precision before they are scaled to 8 bits. Floating-point images are refused before they are decoded.
Photos whose sides are under ~900 px (the 1000 sample photos among them) are never reduced, so this
changes nothing for them.
"""
from __future__ import annotations

import functools
import os
import re
import warnings
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Side of MobileNetV2's square input.
IMAGE_SIZE = 224
#: Smallest accepted side: below this the photo carries too little detail to upscale honestly.
MIN_SIDE = 32
#: How a photo becomes a square input: ``whole`` resizes the whole photo (the report's policy, module
#: docstring); ``centre_crop`` resizes its shorter side to ``size / CENTRE_CROP_FRACTION`` and keeps the central
#: size x size square, the standard ImageNet evaluation (Szegedy et al. 2015's central 87.5%; Keras's
#: ``crop_to_aspect_ratio`` / ``CenterCrop`` after a 256-pixel resize), which keeps the aspect and loses the edges.
RESIZE_POLICIES = ("whole", "centre_crop")
CENTRE_CROP_FRACTION = 0.875
#: Largest accepted pixel count (PIL's own decompression-bomb limit, 2 x 89.5 megapixels).
MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else 178_956_970

SAMPLE_IMAGES_ORIGIN = "https://raw.githubusercontent.com/EliSchwartz/imagenet-sample-images/master/"
SAMPLE_IMAGES_SUBDIR = "imagenet-sample-images"


def keras_home() -> Path:
    """Return the folder Keras caches weights, labels and photos in (``$KERAS_HOME`` or ``~/.keras``)."""
    if "KERAS_HOME" in os.environ:
        return Path(os.environ["KERAS_HOME"])
    home = Path(os.path.expanduser("~"))
    return (home if os.access(home, os.W_OK) else Path("/tmp")) / ".keras"


def cached_get_file(fname: str, origin: str, cache_subdir: str, file_hash: str | None = None) -> str:
    """Return the local path of ``fname`` through ``keras.utils.get_file`` (cache hit or download).

    Offline with the file missing, Keras raises a long network error; this turns it into one sentence
    naming the file and ``KERAS_HOME``.
    """
    import keras

    try:
        return keras.utils.get_file(fname, origin, file_hash=file_hash, cache_subdir=cache_subdir)
    except Exception as err:  # Keras raises a bare Exception for network failures
        expected = keras_home() / cache_subdir / fname
        raise FileNotFoundError(
            f"{fname} is not in the Keras cache ({expected}) and could not be downloaded "
            f"({type(err).__name__}); copy the offline cache there or set KERAS_HOME to a folder "
            f"that has it.") from None


@dataclass(frozen=True)
class SamplePhoto:
    """One of the 1000 ImageNet sample photos: class index, WNID, class name, file name, sha256."""

    class_index: int
    wnid: str
    name: str
    fname: str
    sha256: str


@functools.lru_cache(maxsize=1)
def sample_photos() -> tuple[SamplePhoto, ...]:
    """Return the 1000 sample photos in class-index order (sorted WNIDs = Keras's class indices)."""
    text = resources.files("xai_helpers").joinpath("sample_images.sha256").read_text()
    rows = sorted((line.split(maxsplit=1)[1].strip(), line.split()[0]) for line in text.splitlines()
                  if line.strip())
    photos = []
    for index, (fname, sha) in enumerate(rows):
        wnid, name = Path(fname).stem.split("_", 1)
        photos.append(SamplePhoto(index, wnid, name, fname, sha))
    return tuple(photos)


def normalise_class_name(name: str) -> str:
    """Return a class name for matching: lower case, with spaces, '_' and '-' alike.

    So "Komodo_dragon", "komodo dragon" and "Komodo-Dragon" all match.
    """
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


def find_sample_photo(name: str | int) -> SamplePhoto:
    """Return the sample photo of a class given its name (``"whiptail"``), WNID or class index."""
    photos = sample_photos()
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
        from xai_helpers.classifier.checks import check_class_index

        return photos[check_class_index(name, len(photos))]
    if not isinstance(name, str):
        raise TypeError(f"name must be a class name, WNID or class index, got {name!r}.")
    if re.fullmatch(r"n\d{8}", name.strip()):
        hits = [p for p in photos if p.wnid == name.strip()]
    else:
        hits = [p for p in photos if normalise_class_name(p.name) == normalise_class_name(name)]
    if not hits:
        raise ValueError(f"No ImageNet class is named {name!r}; use a Keras class name such as "
                         f"'whiptail' or a WNID such as 'n01685808'.")
    if len(hits) > 1:
        raise ValueError(f"The class name {name!r} is ambiguous in ImageNet; use one of the WNIDs "
                         f"{', '.join(p.wnid for p in hits)}.")
    return hits[0]


def sample_image(name: str | int) -> str:
    """Return the local path of the ImageNet sample photo of one class (by name, WNID or index).

    The photo is fetched with ``keras.utils.get_file`` and verified against its sha256: online it is
    downloaded once from the public repository EliSchwartz/imagenet-sample-images; offline it must
    already be in ``$KERAS_HOME/imagenet-sample-images/``.
    """
    photo = find_sample_photo(name)
    return cached_get_file(photo.fname, SAMPLE_IMAGES_ORIGIN + photo.fname, SAMPLE_IMAGES_SUBDIR,
                           file_hash=photo.sha256)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Return an 8-bit RGB version of ``image`` following the module's colour policy."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        samples = np.asarray(image, dtype=np.float64)
        full_scale = 65535.0 if image.mode.startswith("I;16") or samples.max() > 255 else 255.0
        gray = np.clip(np.rint(samples * (255.0 / full_scale)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if image.mode == "F":
        raise ValueError("Floating-point images are not supported; save the photo as 8- or 16-bit.")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            warnings.warn("The image has transparent pixels; they were composited over white.",
                          UserWarning, stacklevel=3)
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


#: Modes whose pixels ``Image.reduce`` averages correctly in place (one box mean per channel).
REDUCIBLE_MODES = ("L", "LA", "RGB", "RGBA", "CMYK", "I")
#: Budget of one strip of ``_reduce_in_strips`` / ``_reduce_16bit`` (its converted copy), in bytes.
STRIP_BYTES = 16 * 2 ** 20


def _shrink(image: Image.Image, size: int = IMAGE_SIZE, keep_aspect: bool = False) -> Image.Image:
    """Return a non-JPEG ``image`` box-reduced by an integer factor per axis to at most ~4 x 224 px a side
    (``keep_aspect``: one factor for both axes, set by the shorter side, for a crop that keeps the aspect).

    JPEG decodes at reduced scale through ``draft``; other formats (PNG, TIFF, ...) are decoded at full
    size, and shrinking before any colour conversion keeps a 13000 x 13000 photo from costing gigabytes
    of full-size copies (module docstring: memory policy). ``REDUCIBLE_MODES`` are reduced in place;
    16-bit grey becomes 8-bit grey through ``_reduce_16bit``; every other mode (palette, PA, premultiplied,
    YCbCr, ...) is converted strip by strip to RGB, or RGBA when it has transparency, and reduced
    (``_reduce_in_strips``).
    """
    factors = tuple(max(1, side // (2 * size)) for side in image.size)
    if keep_aspect:
        factors = (min(factors),) * 2
    if factors == (1, 1) or image.format == "JPEG":
        return image
    if image.mode == "1":
        image = image.convert("L")
    if image.mode in REDUCIBLE_MODES:
        return image.reduce(factors)
    if image.mode.startswith("I;16"):
        return _reduce_16bit(image, factors)
    has_alpha = "A" in image.mode or "a" in image.mode or "transparency" in image.info
    return _reduce_in_strips(image, factors, "RGBA" if has_alpha else "RGB")


def _strip_rows(width: int, bytes_per_pixel: int, factor: int) -> int:
    """Return the rows of one strip: a multiple of ``factor``, about ``STRIP_BYTES`` of converted pixels."""
    return max(factor, STRIP_BYTES // max(1, width * bytes_per_pixel) // factor * factor)


def _reduce_in_strips(image: Image.Image, factors: tuple[int, int], mode: str) -> Image.Image:
    """Return ``image`` converted to ``mode`` and box-reduced by ``factors``, one strip of rows at a time.

    The same result as ``image.convert(mode).reduce(factors)`` (strips start on multiples of the row
    factor), without the full-size converted copy. An RGBA result without any transparent pixel is
    returned as RGB.
    """
    fx, fy = factors
    width, height = image.size
    out = Image.new(mode, (-(-width // fx), -(-height // fy)))
    rows = _strip_rows(width, 4, fy)
    transparent = False
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(height, top + rows))).convert(mode)
        if mode == "RGBA" and not transparent:
            transparent = strip.getextrema()[3][0] < 255
        out.paste(strip.reduce(factors), (0, top // fy))
    return out if mode != "RGBA" or transparent else out.convert("RGB")


def _reduce_16bit(image: Image.Image, factors: tuple[int, int]) -> Image.Image:
    """Return 16-bit grey ``image`` as 8-bit grey, box-averaged by ``factors`` at full precision, then
    scaled by 255/65535 and rounded (the colour policy), one strip of rows at a time."""
    fx, fy = factors
    width, height = image.size
    out = np.empty((-(-height // fy), -(-width // fx)), np.uint8)
    columns = np.arange(0, width, fx)
    column_counts = np.diff(np.append(columns, width))
    rows = _strip_rows(width, 8, fy)
    for top in range(0, height, rows):
        strip = np.asarray(image.crop((0, top, width, min(height, top + rows))), dtype=np.float64)
        starts = np.arange(0, strip.shape[0], fy)
        counts = np.diff(np.append(starts, strip.shape[0]))
        sums = np.add.reduceat(np.add.reduceat(strip, starts, axis=0), columns, axis=1)
        means = sums / np.outer(counts, column_counts)
        out[top // fy:top // fy + len(starts)] = np.clip(np.rint(means * (255.0 / 65535.0)), 0, 255)
    return Image.fromarray(out)  # uint8 (H, W): mode L


class _Refused(ValueError):
    """A photo ``load_image`` refuses itself (its message names the file), as opposed to Pillow's errors."""


def load_image(path: str | os.PathLike, size: int = IMAGE_SIZE, resize: str = "whole") -> np.ndarray:
    """Return the photo at ``path`` as a float32 (size, size, 3) array in MobileNetV2's range [-1, 1].

    ``size`` is the model's input side (224 for MobileNetV2; ``model.input_shape(model)[0]`` for another
    model, e.g. 240 for EfficientNetB1).

    ``x = pixel / 127.5 - 1`` (``keras.applications.mobilenet_v2.preprocess_input``), after applying
    EXIF orientation, converting to RGB and resizing the whole photo to size x size (module docstring:
    resize and colour policy), or with ``resize="centre_crop"`` its central square (``RESIZE_POLICIES``).
    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (naming
    the file) for a name too long for its file system and for anything that is not a decodable image of
    at least 32 px a side and at most ~179 megapixels (also one whose metadata is too large to decompress,
    such as a PNG text chunk of many megabytes). An animation or a multi-page file gives its first frame,
    with a ``UserWarning`` saying how many frames it has.
    """
    from xai_helpers.classifier.file_names import check_name_length

    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIDE <= size <= 1024:
        raise ValueError(f"size must be a whole number of pixels from {MIN_SIDE} to 1024, got {size!r}.")
    if resize not in RESIZE_POLICIES:
        raise ValueError(f"resize must be one of {RESIZE_POLICIES}, got {resize!r}.")
    path = Path(path)
    check_name_length(path)
    if not path.is_file():
        raise FileNotFoundError(f"No image file at {path}.")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes), not an image.")
    try:
        with warnings.catch_warnings():
            # We enforce our own pixel limit below, before any pixel is decoded.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise _Refused(f"{path} is {width} x {height} pixels, more than the "
                                   f"{MAX_PIXELS:,}-pixel limit; downscale it first.")
                if min(width, height) < MIN_SIDE:
                    raise _Refused(f"{path} is {width} x {height} pixels; both sides must be at "
                                   f"least {MIN_SIDE} px.")
                if image.mode == "F":  # refused before its (4 bytes a pixel) samples are decoded
                    raise _Refused(f"{path}: floating-point images are not supported; save the photo as 8- "
                                   f"or 16-bit.")
                # (n_frames seeks through the frames' headers and comes back to the first frame)
                frames = int(getattr(image, "n_frames", 1)) if getattr(image, "is_animated", False) else 1
                # JPEG can decode at 1/2, 1/4 or 1/8 scale: a huge photo never occupies full memory.
                image.draft("RGB", (2 * size, 2 * size))
                image.load()
                image = ImageOps.exif_transpose(_shrink(image, size, keep_aspect=resize == "centre_crop"))
                rgb = _to_rgb(image)
    except _Refused:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, zlib.error) as err:
        # (ValueError: e.g. Pillow's "Decompressed data too large" for a PNG text chunk of many megabytes)
        raise ValueError(f"{path} is not a readable image ({_one_line(err)}).") from None
    except Image.DecompressionBombError:
        raise ValueError(f"{path} is larger than the {MAX_PIXELS:,}-pixel limit.") from None
    if frames > 1:
        warnings.warn(f"{path.name} has {frames} frames (an animation or a multi-page file); only the first "
                      f"of them, frame 1 of {frames}, is used.", UserWarning, stacklevel=2)
    resized = (_centre_crop(rgb, size) if resize == "centre_crop" else
               rgb.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None))
    return preprocess(np.asarray(resized, dtype=np.float32))


def _centre_crop(rgb: Image.Image, size: int) -> Image.Image:
    """The central size x size square of ``rgb`` after its shorter side is resized to
    ``round(size / CENTRE_CROP_FRACTION)`` (aspect kept; ``RESIZE_POLICIES``)."""
    width, height = rgb.size
    scale = round(size / CENTRE_CROP_FRACTION) / min(width, height)
    new = (max(size, round(width * scale)), max(size, round(height * scale)))
    resized = rgb.resize(new, Image.Resampling.BILINEAR, reducing_gap=None)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return resized.crop((left, top, left + size, top + size))


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()).rstrip(".")
    return text or type(err).__name__


def preprocess(pixels: np.ndarray) -> np.ndarray:
    """Return ``pixels`` (0-255 RGB) mapped to MobileNetV2's input range: ``pixels / 127.5 - 1``."""
    return (np.asarray(pixels, dtype=np.float32) / 127.5 - 1.0).astype(np.float32)


def deprocess(x: np.ndarray) -> np.ndarray:
    """Return a model-range image (values in [-1, 1]) as displayable RGB in [0, 1]: ``(x + 1) / 2``."""
    return np.clip((np.asarray(x, dtype=np.float32) + 1.0) / 2.0, 0.0, 1.0)
