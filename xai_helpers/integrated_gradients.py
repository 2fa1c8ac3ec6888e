"""Integrated Gradients for Keras 3 models (Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep
Networks", ICML 2017).

For input x, baseline x' and the score F of one class::

    IG_i(x) = (x_i - x'_i) * integral_0^1  dF(x' + a (x - x')) / dx_i  da
           ~= (x_i - x'_i) * sum_k  w_k  dF(x' + a_k (x - x')) / dx_i

The assignment's formula is the right Riemann sum, ``a_k = k/m, w_k = 1/m``. Completeness,
``sum_i IG_i = F(x) - F(x')``, holds for the exact integral; the quadrature's error is reported as
``delta = sum_i IG_i - (F(x) - F(x'))``.

Quadrature rules (``method``) with n gradient evaluations:

* ``"riemann_right"``: a_k = k/n, w_k = 1/n (the assignment's formula);
* ``"trapezoid"``: n equally spaced nodes including both ends;
* ``"gauss_legendre"``: n Gauss-Legendre nodes on [0, 1].

Measured on the whiptail sample photo with the offline weights and the black baseline, |delta| as a share
of |F(x) - F(x')| (softmax / logits target; ``benchmarks/ig_accuracy.py`` and the explainers chapter
re-measure this on more photos)::

    gradient evaluations      50            64            96            128
    riemann_right         1.2% / 3.0%        -             -        0.85% / 1.8%
    trapezoid                  -        4.3% / 2.1%   0.46% / 1.5%  0.33% / 0.10%
    gauss_legendre             -        8.7% / 2.5%   0.82% / 0.48% 0.76% / 0.18%

The path function of MobileNetV2 is not smooth (ReLU6 kinks, "shattered" gradients), so no rule
converges smoothly and the error jumps around below ~100 evaluations. A non-uniform schedule that
placed nodes where F changes fastest (found with 32-64 forward probes) was tried and did *not* beat the
uniform rules (1%-30% error at 16-48 evaluations), so it is not offered. Hence the defaults
``method="trapezoid", steps=128``: under 1% for both targets on the whiptail with the most margin
(Gauss-Legendre at 128 is under 1% too, but closer to it, and converges no faster on other photos);
the assignment's right-Riemann sum with 50 steps misses 1% on both. On other photos 128 evaluations can
leave several percent (``benchmarks/README.md``): every result carries its ``delta``.

All path points are evaluated batched inside one compiled ``tf.function`` (a ``tf.while_loop`` over
chunks of ``batch_size`` points, so memory stays bounded) that is traced once per model and target.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from scipy import ndimage

from ._validate import check_class_index, check_image
from .model import input_shape, num_classes, scores_model

METHODS = ("riemann_right", "trapezoid", "gauss_legendre")
BASELINES = ("black", "zeros", "blur")
DEFAULT_METHOD = "trapezoid"
DEFAULT_STEPS = 128
#: Path points per compiled batch: 32 is where MobileNetV2's batched gradient throughput levels off on a
#: 2-core CPU and keeps peak memory near 1.5 GB.
DEFAULT_BATCH_SIZE = 32
#: Gaussian sigma (pixels) of the "blur" baseline (Sturmfels, Lundberg & Lee, Distill 2020).
BLUR_SIGMA = 10.0


@dataclass(frozen=True)
class IGResult:
    """Integrated Gradients of one image: attributions and the completeness check."""

    attributions: np.ndarray  #: (H, W, C), same units as F
    f_x: float  #: F(x)
    f_baseline: float  #: F(x')
    delta: float  #: sum(attributions) - (F(x) - F(x'))
    class_index: int
    target: str
    method: str
    steps: int  #: gradient evaluations

    @property
    def relative_delta(self) -> float:
        """Return |delta| / |F(x) - F(x')| (inf when F(x) = F(x'))."""
        gap = abs(self.f_x - self.f_baseline)
        return abs(self.delta) / gap if gap > 0 else float("inf")


def quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the nodes a_k in [0, 1] and weights w_k (summing to 1) of a uniform-path rule."""
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")
    if method == "riemann_right":
        return np.arange(1, steps + 1) / steps, np.full(steps, 1.0 / steps)
    if method == "trapezoid":
        if steps < 2:
            raise ValueError("The trapezoid rule needs at least 2 steps.")
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] /= 2
        return np.linspace(0.0, 1.0, steps), weights
    if method == "gauss_legendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1.0) / 2.0, weights / 2.0
    raise ValueError(f"method must be one of {METHODS}, got {method!r}.")


def make_baseline(x: np.ndarray, baseline: str | np.ndarray = "black") -> np.ndarray:
    """Return the baseline image x' for ``x``: black (-1), zeros (mid-grey 0), blur (Gaussian) or an array."""
    if isinstance(baseline, str):
        if baseline == "black":
            return np.full_like(x, -1.0)
        if baseline == "zeros":
            return np.zeros_like(x)
        if baseline == "blur":
            return ndimage.gaussian_filter(x, sigma=(BLUR_SIGMA, BLUR_SIGMA, 0), mode="nearest")
        raise ValueError(f"baseline must be one of {BASELINES} or an array, got {baseline!r}.")
    return check_image(baseline, x.shape, name="baseline")


class _PathIntegrator:
    """Compiled path functions of one model and target, traced once and reused."""

    def __init__(self, model, target: str):
        scores = scores_model(model, target)
        image = tf.TensorSpec((None, *input_shape(model)), tf.float32)
        vector = tf.TensorSpec((None,), tf.float32)
        classes = tf.TensorSpec((None,), tf.int32)
        scalar = tf.TensorSpec((), tf.int32)

        def class_scores(points, class_per_point):
            out = scores(points, training=False)
            return tf.gather(out, class_per_point, axis=1, batch_dims=1)

        def path_points(x, baseline, alphas):
            # (N images) x (K alphas) -> N*K points, image-major.
            diff = x - baseline
            points = baseline[:, None] + alphas[None, :, None, None, None] * diff[:, None]
            return tf.reshape(points, (-1, *x.shape[1:]))

        @tf.function(input_signature=[image, image, vector, vector, classes, scalar])
        def integrate(x, baseline, alphas, weights, class_index, batch_size):
            """Return (attributions[N,H,W,C], F(x)[N], F(x')[N])."""
            n_images = tf.shape(x)[0]
            n_alphas = tf.shape(alphas)[0]
            per_chunk = tf.maximum(batch_size // n_images, 1)
            total = tf.zeros_like(x)
            for start in tf.range(0, n_alphas, per_chunk):
                chunk_alphas = alphas[start:start + per_chunk]
                chunk_weights = weights[start:start + per_chunk]
                k = tf.shape(chunk_alphas)[0]
                points = path_points(x, baseline, chunk_alphas)
                with tf.GradientTape() as tape:
                    tape.watch(points)
                    s = class_scores(points, tf.repeat(class_index, k))
                grads = tf.reshape(tape.gradient(s, points), (n_images, k, *x.shape[1:]))
                total += tf.einsum("k,nk...->n...", chunk_weights, grads)
            ends = class_scores(tf.concat([x, baseline], 0), tf.concat([class_index, class_index], 0))
            return (x - baseline) * total, ends[:n_images], ends[n_images:]

        self.integrate = integrate


_INTEGRATORS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _integrator(model, target: str) -> _PathIntegrator:
    per_model = _INTEGRATORS.setdefault(model, {})
    if target not in per_model:
        per_model[target] = _PathIntegrator(model, target)
    return per_model[target]


def integrated_gradients(model, x: np.ndarray, class_index: int, target: str = "softmax",
                         baseline: str | np.ndarray = "black", steps: int = DEFAULT_STEPS,
                         method: str = DEFAULT_METHOD,
                         batch_size: int = DEFAULT_BATCH_SIZE) -> IGResult:
    """Return the Integrated Gradients of ``class_index`` for one image, with its completeness check.

    ``IG_i = (x_i - x'_i) sum_k w_k dF(x' + a_k (x - x'))/dx_i`` (module docstring; Sundararajan et al.
    2017, eq. 1 and sec. 5). ``F`` is the softmax probability of the class (``target="softmax"``, the
    assignment's standard choice; attributions then sum to a change of probability, at most 1 in size)
    or its pre-softmax logit (``target="logits"``). ``x``: (224, 224, 3) in [-1, 1]; ``steps``: number
    of gradient evaluations; ``batch_size``: path points per compiled batch.
    """
    return integrated_gradients_batch(model, np.asarray(x)[None], [class_index], target, baseline,
                                      steps, method, batch_size)[0]


def integrated_gradients_batch(model, xs: np.ndarray, class_indices, target: str = "softmax",
                               baseline: str | np.ndarray = "black", steps: int = DEFAULT_STEPS,
                               method: str = DEFAULT_METHOD,
                               batch_size: int = DEFAULT_BATCH_SIZE) -> list[IGResult]:
    """Return ``integrated_gradients`` of several images (N, H, W, C), one class each, in one compiled call.

    Each compiled chunk holds ``max(batch_size // N, 1)`` path points per image, so a chunk never exceeds
    ``batch_size`` points unless N itself does: pass at most ``batch_size`` images to bound memory.
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    xs = np.stack([check_image(x, input_shape(model)) for x in np.asarray(xs)])
    classes = np.array([check_class_index(c, num_classes(model)) for c in class_indices], np.int32)
    if len(classes) != len(xs):
        raise ValueError(f"Got {len(classes)} class indices for {len(xs)} images.")
    baselines = np.stack([make_baseline(x, baseline) for x in xs])
    integrator = _integrator(model, target)
    alphas, weights = quadrature(method, steps)
    results: list[IGResult | None] = [None] * len(xs)
    attributions, f_x, f_base = (t.numpy() for t in integrator.integrate(
        xs, baselines, alphas.astype(np.float32), weights.astype(np.float32), classes,
        np.int32(batch_size)))
    for i in range(len(xs)):
        attr = attributions[i].astype(np.float32)
        delta = float(attr.sum(dtype=np.float64)) - (float(f_x[i]) - float(f_base[i]))
        results[i] = IGResult(attr, float(f_x[i]), float(f_base[i]), delta, int(classes[i]), target,
                              method, int(steps))
    return results
