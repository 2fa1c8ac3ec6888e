"""Fast Gradient Sign Method (Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial
Examples", ICLR 2015), untargeted and targeted.

All ``eps`` values are in the model's input units, where the full 0-255 pixel range spans [-1, 1]: one
pixel level is ``2 / 255`` (``pixels_to_eps``).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from xai_helpers.classifier import passes
from xai_helpers.classifier.checks import check_class_index, check_eps, check_image, check_images
from xai_helpers.classifier.compiled import per_model
from xai_helpers.classifier.forward import (
    in_chunks,
    inference_fn,
    input_shape,
    logits_model,
    num_classes,
    probabilities,
)

#: Default attack strength: one pixel level (eps = 2/255 ~ 0.0078 model units), the smallest perturbation
#: that survives saving the image as 8-bit; the TensorFlow FGSM tutorial's eps = 0.01 is 1.3 levels.
DEFAULT_EPS_PIXELS = 1.0


def pixels_to_eps(levels: float) -> float:
    """Return the model-unit eps for a perturbation of ``levels`` pixel levels (0-255 scale): ``2 L / 255``."""
    return float(levels) * 2.0 / 255.0


def eps_to_pixels(eps: float) -> float:
    """Return the 0-255 pixel-level size of a model-unit eps: ``255 eps / 2``."""
    return float(eps) * 255.0 / 2.0


DEFAULT_EPS = pixels_to_eps(DEFAULT_EPS_PIXELS)

def _loss_gradient_sign_fn(model):
    """Return a compiled ``(x[B,H,W,C], labels[B]) -> sign(grad_x J)`` for ``model`` (cached)."""
    return per_model(model, "sign of the loss gradient", lambda: _build_sign_fn(model))


def _build_sign_fn(model):
    logits = inference_fn(logits_model(model))
    spec = tf.TensorSpec((None, *input_shape(model)), tf.float32)

    @tf.function(input_signature=[spec, tf.TensorSpec((None,), tf.int32)])
    def sign_of_loss_gradient(x, labels):
        with tf.GradientTape() as tape:
            tape.watch(x)
            # J = -log softmax(z)_y, computed from the logits z for numerical stability: it is the
            # same function as the cross-entropy of the softmax output, without log(0) when p_y -> 1.
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits(x))
        return tf.sign(tape.gradient(loss, x))

    return sign_of_loss_gradient


def loss_gradient_sign(model, x: np.ndarray, label: int | None = None) -> np.ndarray:
    """Return ``sign(grad_x J(theta, x, y))`` for one image, J the cross-entropy against ``label``.

    ``label`` defaults to the model's own top-1 on ``x``. The result (values in {-1, 0, 1}) is the FGSM
    direction for every eps, so a sweep over eps needs one gradient.
    """
    x = check_image(x, input_shape(model))
    return loss_gradient_signs(model, x[None], [_resolve_label(model, x, label)])[0]


def loss_gradient_signs(model, xs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Return ``sign(grad_x J)`` for a batch ``xs`` (N, H, W, C) with one label per image (batched study)."""
    xs = check_images(xs, input_shape(model))
    labels = np.asarray([check_class_index(int(c), num_classes(model), "label") for c in labels], np.int32)
    passes.record(gradient=len(xs))
    return in_chunks(_loss_gradient_sign_fn(model), xs, labels)


def apply_perturbation(x: np.ndarray, direction: np.ndarray, eps: float) -> np.ndarray:
    """Return ``clip(x + eps * direction, -1, 1)``: one signed step, kept in the model's input range."""
    return np.clip(x + check_eps(eps) * direction, -1.0, 1.0).astype(np.float32)


def fgsm(model, x: np.ndarray, label: int | None = None, eps: float = DEFAULT_EPS) -> np.ndarray:
    """Return the untargeted FGSM adversarial image ``clip(x + eps * sign(grad_x J(theta, x, y)), -1, 1)``.

    Goodfellow et al. 2015, eq. (3). ``J`` is the cross-entropy of the softmax output against ``label``
    (default: the model's own top-1 on ``x``); stepping *up* the loss pushes the image away from that
    class. ``x`` is one (224, 224, 3) image in [-1, 1]; ``eps`` in [0, 1] model units (``pixels_to_eps``
    converts from 0-255 levels). ``||adv - x||_inf <= eps`` and the result stays in [-1, 1].
    """
    x = check_image(x, input_shape(model))
    eps = check_eps(eps)
    return apply_perturbation(x, loss_gradient_sign(model, x, label), eps)


def fgsm_targeted(model, x: np.ndarray, target: int, eps: float = DEFAULT_EPS) -> np.ndarray:
    """Return the targeted FGSM image ``clip(x - eps * sign(grad_x J(theta, x, t)), -1, 1)``.

    Stepping *down* the cross-entropy of the target class ``t`` pulls the prediction towards ``t``
    (Kurakin, Goodfellow & Bengio, "Adversarial Examples in the Physical World", 2017, sec. 2.2, one step).
    Units and ranges as in ``fgsm``.
    """
    x = check_image(x, input_shape(model))
    eps = check_eps(eps)
    target = check_class_index(target, num_classes(model), "target")
    return apply_perturbation(x, -loss_gradient_sign(model, x, target), eps)


def iterative_fgsm_targeted(model, x: np.ndarray, target: int, eps: float = DEFAULT_EPS,
                            iterations: int = 10) -> np.ndarray:
    """Return the targeted iterative FGSM (basic iterative method) image within ``||adv - x||_inf <= eps``.

    ``adv_0 = x``; ``adv_{n+1} = Clip_{x, eps}( adv_n - a * sign(grad_x J(theta, adv_n, t)) )`` with step
    ``a = eps / iterations * 2.5`` (so the budget can be spent and re-spent), clipped to the eps-ball and to
    [-1, 1] after every step (Kurakin, Goodfellow & Bengio 2017, sec. 2.2 "iterative least-likely class",
    here with a chosen target). Units as in ``fgsm``; ``iterations`` gradients are computed.
    """
    x = check_image(x, input_shape(model))
    eps = check_eps(eps)
    target = check_class_index(target, num_classes(model), "target")
    if not isinstance(iterations, (int, np.integer)) or isinstance(iterations, bool) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}.")
    step = 2.5 * eps / iterations
    adv = x.copy()
    for _ in range(iterations):
        adv = apply_perturbation(adv, -loss_gradient_sign(model, adv, target), step)
        adv = np.clip(adv, x - eps, x + eps).astype(np.float32)
    return adv


#: PGD defaults (Madry et al. 2018): 10 steps of eps/4 from a uniform random start in the eps-ball.
PGD_STEPS = 10
PGD_STEP_FRACTION = 0.25


def pgd(model, x: np.ndarray, label: int | None = None, eps: float = DEFAULT_EPS, steps: int = PGD_STEPS,
        step_size: float | None = None, random_start: bool = True, seed: int = 0) -> np.ndarray:
    """Return the untargeted L-infinity PGD image (projected gradient descent on the negative loss).

    Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning Models Resistant to Adversarial
    Attacks", ICLR 2018, eq. (2)::

        adv_0     = x + U(-eps, eps)                                   (random start, seeded)
        adv_{t+1} = Clip_[-1,1]( Proj_{||. - x||_inf <= eps}( adv_t + a sign(grad_x J(theta, adv_t, y)) ) )

    with ``a = step_size`` (default ``eps / 4``) and ``steps`` iterations (default 10, so the budget can be
    crossed 2.5 times). ``J`` is the cross-entropy against ``label`` (default: the model's top-1 on ``x``).
    Units as in ``fgsm``; ``steps`` gradients are computed. FGSM is PGD with one step of size eps and no
    random start.
    """
    x = check_image(x, input_shape(model))
    return pgd_batch(model, x[None], [_resolve_label(model, x, label)], eps, steps, step_size, random_start,
                     [seed])[0]


# long: the public attack's keyword options (step, steps, targeted, seeds, ...), each with a default, as ART's PGD has
def pgd_batch(model, xs: np.ndarray, labels, eps: float | np.ndarray = DEFAULT_EPS, steps: int = PGD_STEPS,
              step_size: float | None = None, random_start: bool = True, seeds=None,
              targeted: bool = False) -> np.ndarray:
    """Return ``pgd`` of a batch (N, H, W, C) with one label and one seed per image (batched gradients).

    ``seeds`` defaults to ``0..N-1``; each image's random start depends only on its own seed, so a row of
    the study does not depend on which batch it was computed in. ``targeted``: ``labels`` are target
    classes, and each step *descends* their cross-entropy (``x - step * sign(grad)``) instead of ascending
    the true class's. ``eps`` is one budget or one per image (N,); the default step is each image's eps / 4.
    """
    xs = check_images(xs, input_shape(model))
    eps = np.array([check_eps(float(e)) for e in np.broadcast_to(np.asarray(eps, np.float64), (len(xs),))])
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")
    step = PGD_STEP_FRACTION * eps if step_size is None else np.full(len(xs), check_eps(step_size, "step_size"))
    eps, step = eps[:, None, None, None], step[:, None, None, None]
    seeds = list(range(len(xs))) if seeds is None else list(seeds)
    if len(seeds) != len(xs):
        raise ValueError(f"Got {len(seeds)} seeds for {len(xs)} images.")
    adv = xs.copy()
    if random_start:
        # An int or a sequence of ints per image (e.g. [study seed, class index]); 7 separates this stream
        # from other uses of the same seed.
        noise = np.stack([e * np.random.default_rng([*np.atleast_1d(s).astype(int).tolist(), 7])
                          .uniform(-1.0, 1.0, x.shape) for s, x, e in zip(seeds, xs, eps)])
        adv = np.clip(xs + noise, -1.0, 1.0).astype(np.float32)
    # Each step is projected on the eps-ball around x and then on the input range: on their intersection,
    # which holds x, so one clip to its bounds (computed once) gives the same numbers as the two clips.
    lowest, highest = np.maximum(xs - eps, -1.0), np.minimum(xs + eps, 1.0)
    signed_step = (-1.0 if targeted else 1.0) * step
    for _ in range(steps):
        adv = np.clip(adv + signed_step * loss_gradient_signs(model, adv, labels), lowest, highest).astype(np.float32)
    return adv


def _resolve_label(model, x: np.ndarray, label: int | None) -> int:
    if label is None:
        return int(np.argmax(probabilities(model, x)))
    return check_class_index(label, num_classes(model), "label")
