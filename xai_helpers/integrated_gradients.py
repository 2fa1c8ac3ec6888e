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

from . import passes
from ._validate import check_class_index, check_image
from .model import inference_fn, input_shape, num_classes, scores_model

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
    contrast_class: int | None = None  #: k of the margin z_c - z_k (target "margin" only)

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


#: What F can be: the softmax probability of the class, its logit, or the margin z_c - z_k between its
#: logit and that of a contrast class k (``contrast_class``): the score whose sign decides c against k.
TARGETS = ("softmax", "logits", "margin")


class _PathIntegrator:
    """Compiled path functions of one model and target, traced once and reused."""

    def __init__(self, model, target: str):
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}.")
        scores = inference_fn(scores_model(model, "softmax" if target == "softmax" else "logits"))
        margin = target == "margin"
        image = tf.TensorSpec((None, *input_shape(model)), tf.float32)
        vector = tf.TensorSpec((None,), tf.float32)
        classes = tf.TensorSpec((None,), tf.int32)
        scalar = tf.TensorSpec((), tf.int32)

        def class_scores(points, class_per_point, contrast_per_point):
            out = scores(points)
            chosen = tf.gather(out, class_per_point, axis=1, batch_dims=1)
            if margin:
                chosen -= tf.gather(out, contrast_per_point, axis=1, batch_dims=1)
            return chosen

        def path_points(x, baseline, alphas):
            # (N images) x (K alphas) -> N*K points, image-major.
            diff = x - baseline
            points = baseline[:, None] + alphas[None, :, None, None, None] * diff[:, None]
            return tf.reshape(points, (-1, *x.shape[1:]))

        @tf.function(input_signature=[image, image, vector, vector, classes, classes, scalar])
        def integrate(x, baseline, alphas, weights, class_index, contrast_index, batch_size):
            """Return (attributions[N,H,W,C], F(x)[N], F(x')[N])."""
            n_images = tf.shape(x)[0]
            n_alphas = tf.shape(alphas)[0]
            per_chunk = tf.maximum(batch_size // n_images, 1)
            total = tf.zeros_like(x)
            for start in tf.range(0, n_alphas, per_chunk):
                # One chunk at a time: the while loop would otherwise run up to 10 chunks concurrently,
                # multiplying peak memory (attributions are bit-identical either way).
                tf.autograph.experimental.set_loop_options(parallel_iterations=1)
                chunk_alphas = alphas[start:start + per_chunk]
                chunk_weights = weights[start:start + per_chunk]
                k = tf.shape(chunk_alphas)[0]
                points = path_points(x, baseline, chunk_alphas)
                with tf.GradientTape() as tape:
                    tape.watch(points)
                    s = class_scores(points, tf.repeat(class_index, k), tf.repeat(contrast_index, k))
                grads = tf.reshape(tape.gradient(s, points), (n_images, k, *x.shape[1:]))
                total += tf.einsum("k,nk...->n...", chunk_weights, grads)
            ends = class_scores(tf.concat([x, baseline], 0), tf.concat([class_index, class_index], 0),
                                tf.concat([contrast_index, contrast_index], 0))
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
                         method: str = DEFAULT_METHOD, batch_size: int = DEFAULT_BATCH_SIZE,
                         contrast_class: int | None = None) -> IGResult:
    """Return the Integrated Gradients of ``class_index`` for one image, with its completeness check.

    ``IG_i = (x_i - x'_i) sum_k w_k dF(x' + a_k (x - x'))/dx_i`` (module docstring; Sundararajan et al.
    2017, eq. 1 and sec. 5). ``F`` is the softmax probability of the class (``target="softmax"``, the
    assignment's standard choice; attributions then sum to a change of probability, at most 1 in size),
    its pre-softmax logit (``target="logits"``) or the logit margin ``z_c - z_k`` against
    ``contrast_class`` k (``target="margin"``: the score whose sign decides between the two classes, and
    the one to explain for a class that has lost its probability). ``x``: (224, 224, 3) in [-1, 1];
    ``steps``: number of gradient evaluations; ``batch_size``: path points per compiled batch.
    """
    contrast = None if contrast_class is None else [contrast_class]
    return integrated_gradients_batch(model, np.asarray(x)[None], [class_index], target, baseline,
                                      steps, method, batch_size, contrast)[0]


def _check_batch(model, xs, class_indices, target: str, baseline, contrast_classes):
    """Return validated (images, baselines, classes, contrast classes) of a batched IG call."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}.")
    xs = np.stack([check_image(x, input_shape(model)) for x in np.asarray(xs)])
    classes = np.array([check_class_index(c, num_classes(model)) for c in class_indices], np.int32)
    if len(classes) != len(xs):
        raise ValueError(f"Got {len(classes)} class indices for {len(xs)} images.")
    if (target == "margin") != (contrast_classes is not None):
        raise ValueError("contrast_class must be given exactly when target is 'margin'.")
    contrast = classes.copy() if contrast_classes is None else np.array(
        [check_class_index(c, num_classes(model), "contrast_class") for c in contrast_classes], np.int32)
    if len(contrast) != len(xs):
        raise ValueError(f"Got {len(contrast)} contrast classes for {len(xs)} images.")
    if target == "margin" and np.any(contrast == classes):
        raise ValueError("contrast_class must differ from class_index (their margin is always 0).")
    if isinstance(baseline, np.ndarray) and baseline.ndim == 4:
        if baseline.shape != xs.shape:
            raise ValueError(f"A batch of baselines must have the images' shape {xs.shape}, "
                             f"got {baseline.shape}.")
        baselines = np.stack([make_baseline(x, b) for x, b in zip(xs, baseline)])
    else:
        baselines = np.stack([make_baseline(x, baseline) for x in xs])
    return xs, baselines, classes, contrast


def _results(attributions, f_x, f_base, classes, contrast, target, method, steps) -> list[IGResult]:
    out = []
    for i in range(len(attributions)):
        attr = np.asarray(attributions[i], dtype=np.float32)
        delta = float(attr.sum(dtype=np.float64)) - (float(f_x[i]) - float(f_base[i]))
        out.append(IGResult(attr, float(f_x[i]), float(f_base[i]), delta, int(classes[i]), target,
                            method, int(steps), int(contrast[i]) if target == "margin" else None))
    return out


def integrated_gradients_batch(model, xs: np.ndarray, class_indices, target: str = "softmax",
                               baseline: str | np.ndarray = "black", steps: int = DEFAULT_STEPS,
                               method: str = DEFAULT_METHOD,
                               batch_size: int = DEFAULT_BATCH_SIZE,
                               contrast_classes=None) -> list[IGResult]:
    """Return ``integrated_gradients`` of several images (N, H, W, C), one class each, in one compiled call.

    ``baseline`` may also be a batch (N, H, W, C): one baseline per image (the attack attribution uses
    each clean image as the baseline of its adversarial image). ``contrast_classes``: one per image, with
    ``target="margin"`` only. Each compiled chunk holds ``max(batch_size // N, 1)`` path points per
    image, so a chunk never exceeds ``batch_size`` points unless N itself does: pass at most
    ``batch_size`` images to bound memory.
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    xs, baselines, classes, contrast = _check_batch(model, xs, class_indices, target, baseline,
                                                    contrast_classes)
    alphas, weights = quadrature(method, steps)
    passes.record(forward=2 * len(xs), gradient=len(xs) * len(alphas))
    attributions, f_x, f_base = (t.numpy() for t in _integrator(model, target).integrate(
        xs, baselines, alphas.astype(np.float32), weights.astype(np.float32), classes, contrast,
        np.int32(batch_size)))
    return _results(attributions, f_x, f_base, classes, contrast, target, method, steps)


#: Adaptive IG: start with this many trapezoid nodes (a power of two plus one, so doubling nests) ...
ADAPTIVE_START_STEPS = 17
#: ... and stop doubling at this many (1025 gradient evaluations), accepting what error is left.
ADAPTIVE_MAX_STEPS = 1025
#: Default completeness target of the adaptive rule: |delta| <= 1% of |F(x) - F(x')|.
ADAPTIVE_TOLERANCE = 0.01


def adaptive_integrated_gradients_batch(model, xs: np.ndarray, class_indices, target: str = "logits",
                                        baseline: str | np.ndarray = "black",
                                        tolerance: float = ADAPTIVE_TOLERANCE,
                                        start_steps: int = ADAPTIVE_START_STEPS,
                                        max_steps: int = ADAPTIVE_MAX_STEPS,
                                        batch_size: int = DEFAULT_BATCH_SIZE,
                                        contrast_classes=None) -> list[IGResult]:
    """Return IG by nested trapezoid doubling, refined per image until completeness holds to ``tolerance``.

    The trapezoid rule with ``2n - 1`` nodes reuses every node of the rule with ``n``: with spacing h,
    ``T_{h/2} = T_h / 2 + (h/2) sum_j g(a_j + h/2)`` (the composite-trapezoid recursion, e.g. Press et al.,
    *Numerical Recipes*, sec. 4.2), so each doubling costs only the new midpoints. An image stops as soon
    as ``|delta| <= tolerance |F(x) - F(x')|`` (Sundararajan et al. 2017, sec. 5 suggest checking
    completeness to within 5%); images that never get there stop at ``max_steps`` nodes and keep their
    error in ``delta``. ``IGResult.steps`` records the gradient evaluations each image cost.
    """
    if not (isinstance(tolerance, float | int) and 0 < tolerance < 1):
        raise ValueError(f"tolerance must be a number in (0, 1), got {tolerance!r}.")
    for name, value in (("start_steps", start_steps), ("max_steps", max_steps)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 2 \
                or (value - 1) & (value - 2):
            raise ValueError(f"{name} must be a power of two plus one (e.g. 17, 33, 1025), got {value!r}.")
    if max_steps < start_steps:
        raise ValueError(f"max_steps ({max_steps}) must be at least start_steps ({start_steps}).")
    xs, baselines, classes, contrast = _check_batch(model, xs, class_indices, target, baseline,
                                                    contrast_classes)
    integrate = _integrator(model, target).integrate
    alphas, weights = quadrature("trapezoid", start_steps)
    passes.record(forward=2 * len(xs), gradient=len(xs) * len(alphas))
    attr, f_x, f_base = (t.numpy().astype(np.float64) for t in integrate(
        xs, baselines, alphas.astype(np.float32), weights.astype(np.float32), classes, contrast,
        np.int32(batch_size)))
    steps = np.full(len(xs), start_steps)
    intervals = start_steps - 1

    def relative_error(i: int) -> float:
        gap = abs(f_x[i] - f_base[i])
        error = abs(attr[i].sum() - (f_x[i] - f_base[i]))
        return error / gap if gap > 0 else (0.0 if error == 0 else float("inf"))

    while True:
        todo = [i for i in range(len(xs)) if relative_error(i) > tolerance and 2 * intervals + 1 <= max_steps]
        if not todo:
            break
        midpoints = (np.arange(intervals) + 0.5) / intervals
        # (the refinement's end-point scores are computed and discarded: 2 forward passes per image)
        passes.record(forward=2 * len(todo), gradient=len(todo) * intervals)
        new = integrate(xs[todo], baselines[todo], midpoints.astype(np.float32),
                        np.full(intervals, 0.5 / intervals, np.float32), classes[todo], contrast[todo],
                        np.int32(batch_size))[0].numpy()
        for j, i in enumerate(todo):
            attr[i] = attr[i] / 2 + new[j]
            steps[i] += intervals
        intervals *= 2
    results = _results(attr, f_x, f_base, classes, contrast, target, "trapezoid", 0)
    return [IGResult(r.attributions, r.f_x, r.f_baseline, r.delta, r.class_index, r.target, r.method,
                     int(n), r.contrast_class) for r, n in zip(results, steps)]
