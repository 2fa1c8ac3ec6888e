"""Input checks shared by every public function.

Each check raises one plain sentence (``ValueError``/``TypeError``) at the public boundary, so that bad input
never reaches TensorFlow and never gets "fixed" silently.
"""
from __future__ import annotations

import numbers

import numpy as np

#: The package's input range for every model: MobileNetV2's ``preprocess_input``, pixel / 127.5 - 1 (other
#: models carry their own preprocessing as their first layer; see ``architectures``).
INPUT_RANGE = (-1.0, 1.0)


def check_eps(eps: float, name: str = "eps") -> float:
    """Return ``eps`` as a float after checking it lies in [0, 1] (model input units)."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1], got {eps!r}.")
    eps = float(eps)
    if not np.isfinite(eps) or not 0.0 <= eps <= 1.0:
        raise ValueError(f"{name} must be a finite number in [0, 1] (model input units), got {eps!r}.")
    return eps


def check_class_index(class_index: object, num_classes: int, name: str = "class_index") -> int:
    """Return ``class_index`` as an int after checking it is an integer in [0, num_classes - 1]."""
    if isinstance(class_index, bool) or not isinstance(class_index, numbers.Integral):
        raise TypeError(f"{name} must be an integer in [0, {num_classes - 1}], got {class_index!r}.")
    class_index = int(class_index)
    if not 0 <= class_index < num_classes:
        raise ValueError(f"{name} must be in [0, {num_classes - 1}], got {class_index}.")
    return class_index


def check_image(x: object, shape: tuple[int, ...] | None = None, in_model_range: bool = True,
                name: str = "x") -> np.ndarray:
    """Return ``x`` as a float32 array after checking shape, dtype, finiteness and range.

    ``shape`` is the expected (H, W, C) of one image; a leading batch axis is not accepted here, so that
    every public function has one unambiguous signature.
    """
    if not isinstance(x, np.ndarray):
        if hasattr(x, "numpy"):
            x = x.numpy()
        else:
            raise TypeError(f"{name} must be a NumPy array of shape {shape or '(H, W, 3)'}, "
                            f"got {type(x).__name__}.")
    _check_real(x, name)
    if shape is not None and tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}.")
    if shape is None and (x.ndim != 3 or x.shape[-1] != 3):
        raise ValueError(f"{name} must have shape (H, W, 3), got {tuple(x.shape)}.")
    return _finite_in_range(x, name, in_model_range)


def _check_real(x: np.ndarray, name: str) -> None:
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)) \
            or x.dtype == np.bool_:
        raise TypeError(f"{name} must be a real-valued array, got dtype {x.dtype}.")


def _finite_in_range(x: np.ndarray, name: str, in_model_range: bool = True) -> np.ndarray:
    """``x`` as float32 (not copied when it is already), checked finite and, optionally, in the input range."""
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    if in_model_range:
        lo, hi = INPUT_RANGE
        if x.min() < lo - 1e-6 or x.max() > hi + 1e-6:
            raise ValueError(f"{name} must lie in the model input range [-1, 1] (use load_image), "
                             f"got values in [{x.min():.3g}, {x.max():.3g}].")
    return x


def check_images(xs: object, shape: tuple[int, ...], name: str = "x") -> np.ndarray:
    """Return a batch of images (N, H, W, C) as float32 after ``check_image``'s checks of every image.

    A NumPy batch of the right shape that passes them passes in one sweep and is not copied when it is
    float32 already (the callers only read it); anything else (a list of images, a bad batch) is checked
    image by image, so that a bad image gets ``check_image``'s own sentence about itself.
    """
    if isinstance(xs, np.ndarray) and xs.ndim == 4 and len(xs) and tuple(xs.shape[1:]) == tuple(shape):
        try:
            _check_real(xs, name)
            return _finite_in_range(xs, name)
        except (TypeError, ValueError):
            pass   # the image-by-image checks below raise the bad image's own sentence
    return np.stack([check_image(x, shape, name=name) for x in xs])


def check_map(m: object, name: str = "map") -> np.ndarray:
    """Return a 2-D float map after checking it is finite (an IG (H, W, C) map must be reduced first)."""
    m = np.asarray(m)
    if m.ndim != 2:
        raise ValueError(f"{name} must be a 2-D map (reduce IG attributions with to_2d first), "
                         f"got shape {m.shape}.")
    m = m.astype(np.float64, copy=False)
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return m
