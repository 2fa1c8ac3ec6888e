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

The path function of MobileNetV2 is not smooth (ReLU6 kinks, "shattered" gradients), so no rule
converges smoothly below ~100 evaluations; the defaults ``method="trapezoid", steps=128`` keep the error under
1% for both targets on the whiptail, and every result carries its ``delta`` (the measurements behind these
defaults: ``benchmarks/README.md``, ``benchmarks/ig_accuracy.py``; on more photos: the explainers chapter).

The path points of all images are evaluated in compiled chunks of exactly ``forward.CHUNK`` points
(``forward.in_chunks``), and each image's weighted sum is accumulated in float64 in node order, so an
image's attributions are the same bit for bit whatever other images share its call.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from scipy import ndimage

from xai_helpers.classifier import passes
from xai_helpers.classifier.checks import check_image, check_images
from xai_helpers.classifier.compiled import per_model
from xai_helpers.classifier.forward import CHUNK, in_chunks, inference_fn, input_shape, num_classes, scores_model
from xai_helpers.methods.targets import TARGETS, check_targets

METHODS = ("riemann_right", "trapezoid", "gauss_legendre")
BASELINES = ("black", "zeros", "blur")
DEFAULT_METHOD = "trapezoid"
DEFAULT_STEPS = 128
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


class _PathIntegrator:
    """Compiled functions of one model and target, traced once and reused: ``gradients(points, classes,
    contrast)`` (dF/dx at each point) and ``scores(images, classes, contrast)`` (F)."""

    def __init__(self, model, target: str):
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}.")
        outputs = inference_fn(scores_model(model, "softmax" if target == "softmax" else "logits"))
        margin = target == "margin"
        image = tf.TensorSpec((None, *input_shape(model)), tf.float32)
        classes = tf.TensorSpec((None,), tf.int32)

        def class_scores(points, class_per_point, contrast_per_point):
            out = outputs(points)
            chosen = tf.gather(out, class_per_point, axis=1, batch_dims=1)
            if margin:
                chosen -= tf.gather(out, contrast_per_point, axis=1, batch_dims=1)
            return chosen

        @tf.function(input_signature=[image, classes, classes])
        def gradients(points, class_per_point, contrast_per_point):
            with tf.GradientTape() as tape:
                tape.watch(points)
                s = class_scores(points, class_per_point, contrast_per_point)
            return tape.gradient(s, points)

        self.gradients = gradients
        self.scores = tf.function(class_scores, input_signature=[image, classes, classes])

    def integrate(self, xs, baselines, alphas, weights, classes, contrast, ends: bool = True):
        """Return (attributions[N,H,W,C] float64, F(x)[N], F(x')[N]; the last two None without ``ends``):
        ``(x - x') sum_k w_k dF(x' + a_k (x - x'))/dx`` accumulated in float64 in node order."""
        n, k = len(xs), len(alphas)
        image_of, node_of = np.repeat(np.arange(n), k), np.tile(np.arange(k), n)
        diff = xs - baselines
        total = np.zeros(xs.shape, np.float64)
        for start in range(0, n * k, CHUNK):
            i, j = image_of[start:start + CHUNK], node_of[start:start + CHUNK]
            points = diff[i].astype(np.float64)   # x' + a (x - x') in float64, in place (no temporaries)
            points *= alphas[j, None, None, None]
            points += baselines[i]
            points = points.astype(np.float32)
            grads = in_chunks(self.gradients, points, classes[i], contrast[i])
            for g, image, node in zip(grads, i, j):   # (in node order: the same sums whatever the chunks)
                total[image] += float(weights[node]) * g
        if not ends:
            return diff * total, None, None
        both = in_chunks(self.scores, np.concatenate([xs, baselines]), np.concatenate([classes, classes]),
                         np.concatenate([contrast, contrast])).astype(np.float64)
        return diff * total, both[:n], both[n:]


def _integrator(model, target: str) -> _PathIntegrator:
    return per_model(model, ("integrated gradients", target), lambda: _PathIntegrator(model, target))


# long: the public method's keyword options (target, baseline, steps, method, ...), as Captum's IG has
def integrated_gradients(model, x: np.ndarray, class_index: int, target: str = "softmax",
                         baseline: str | np.ndarray = "black", steps: int = DEFAULT_STEPS,
                         method: str = DEFAULT_METHOD, contrast_class: int | None = None) -> IGResult:
    """Return the Integrated Gradients of ``class_index`` for one image, with its completeness check.

    ``IG_i = (x_i - x'_i) sum_k w_k dF(x' + a_k (x - x'))/dx_i`` (module docstring; Sundararajan et al.
    2017, eq. 1 and sec. 5). ``F`` is the softmax probability of the class (``target="softmax"``, the
    assignment's standard choice; attributions then sum to a change of probability, at most 1 in size),
    its pre-softmax logit (``target="logits"``) or the logit margin ``z_c - z_k`` against
    ``contrast_class`` k (``target="margin"``: the score whose sign decides between the two classes, and
    the one to explain for a class that has lost its probability). ``x``: (224, 224, 3) in [-1, 1];
    ``steps``: number of gradient evaluations.
    """
    contrast = None if contrast_class is None else [contrast_class]
    return integrated_gradients_batch(model, np.asarray(x)[None], [class_index], target, baseline,
                                      steps, method, contrast)[0]


def _check_batch(model, xs, class_indices, target: str, baseline, contrast_classes):
    """Return validated (images, baselines, classes, contrast classes) of a batched IG call."""
    checked = check_targets(target, list(class_indices), len(class_indices), num_classes(model), contrast_classes)
    xs = check_images(xs, input_shape(model))
    if len(checked.classes) != len(xs):
        raise ValueError(f"Got {len(checked.classes)} class indices for {len(xs)} images.")
    classes = np.array(checked.classes, np.int32)
    contrast = classes.copy() if checked.contrast is None else np.array(checked.contrast, np.int32)
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


# long: the same keyword options as integrated_gradients, for a batch
def integrated_gradients_batch(model, xs: np.ndarray, class_indices, target: str = "softmax",
                               baseline: str | np.ndarray = "black", steps: int = DEFAULT_STEPS,
                               method: str = DEFAULT_METHOD, contrast_classes=None) -> list[IGResult]:
    """Return ``integrated_gradients`` of several images (N, H, W, C), one class each, in one compiled call.

    ``baseline`` may also be a batch (N, H, W, C): one baseline per image (the attack attribution uses
    each clean image as the baseline of its adversarial image). ``contrast_classes``: one per image, with
    ``target="margin"`` only. Each image's result is the same whatever other images share the call.
    """
    xs, baselines, classes, contrast = _check_batch(model, xs, class_indices, target, baseline,
                                                    contrast_classes)
    alphas, weights = quadrature(method, steps)
    passes.record(forward=2 * len(xs), gradient=len(xs) * len(alphas))
    attributions, f_x, f_base = _integrator(model, target).integrate(xs, baselines, alphas, weights, classes,
                                                                     contrast)
    return _results(attributions, f_x, f_base, classes, contrast, target, method, steps)


#: Adaptive IG: start with this many trapezoid nodes (a power of two plus one, so doubling nests) ...
ADAPTIVE_START_STEPS = 17
#: ... and stop doubling at this many (1025 gradient evaluations), accepting what error is left.
ADAPTIVE_MAX_STEPS = 1025
#: Default completeness target of the adaptive rule: |delta| <= 1% of |F(x) - F(x')|.
ADAPTIVE_TOLERANCE = 0.01


# long: integrated_gradients_batch's options and the adaptive rule's own (tolerance, start and largest step count)
def adaptive_integrated_gradients_batch(model, xs: np.ndarray, class_indices, target: str = "logits",
                                        baseline: str | np.ndarray = "black",
                                        tolerance: float = ADAPTIVE_TOLERANCE,
                                        start_steps: int = ADAPTIVE_START_STEPS,
                                        max_steps: int = ADAPTIVE_MAX_STEPS,
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
    attr, f_x, f_base = integrate(xs, baselines, alphas, weights, classes, contrast)
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
        new = integrate(xs[todo], baselines[todo], midpoints, np.full(intervals, 0.5 / intervals),
                        classes[todo], contrast[todo], ends=False)[0]
        for j, i in enumerate(todo):
            attr[i] = attr[i] / 2 + new[j]
            steps[i] += intervals
        intervals *= 2
    passes.record_each(forward=[2] * len(xs), gradient=[int(n) for n in steps])  # each image's own cost
    results = _results(attr, f_x, f_base, classes, contrast, target, "trapezoid", 0)
    return [IGResult(r.attributions, r.f_x, r.f_baseline, r.delta, r.class_index, r.target, r.method,
                     int(n), r.contrast_class) for r, n in zip(results, steps)]
