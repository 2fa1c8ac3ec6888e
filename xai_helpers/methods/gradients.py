"""First-order saliency of the logit margin: what the gradient alone says about where an attack acts.

For a photo x, its true class c and the class k an attack moved it to, the margin ``m(x) = z_c(x) - z_k(x)``
is the score the attack flips. Its first-order maps, summed over the colour channels per pixel:

* vanilla gradient (Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks", 2014):
  ``sum_ch |dm/dx|``;
* gradient x input (Shrikumar et al., "Learning Important Features Through Propagating Activation
  Differences", 2017): ``|sum_ch x dm/dx|``;
* SmoothGrad (Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017): the vanilla gradient
  averaged over ``SMOOTHGRAD_SAMPLES`` copies of x with Gaussian noise of ``SMOOTHGRAD_SIGMA`` (15% of the
  input range, the paper's recommendation), seeded per photo.

FGSM moves every pixel by eps in the sign of the loss gradient, so to first order its effect on m is
``eps * sum |dm/dx|``: the vanilla gradient *is* the first-order attack attribution. These maps say how much
of "the attack attribution finds the pixels" the gradient at the clean photo already says.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xai_helpers.classifier import passes
from xai_helpers.classifier.checks import check_images
from xai_helpers.classifier.compiled import per_model
from xai_helpers.classifier.forward import in_chunks, inference_fn, input_shape, logits_model, num_classes
from xai_helpers.methods.targets import check_targets

#: Noisy copies per photo in SmoothGrad, and their noise (standard deviation, model units: 15% of [-1, 1]).
SMOOTHGRAD_SAMPLES = 16
SMOOTHGRAD_SIGMA = 0.3
#: The first-order maps, in the order ``first_order_maps`` returns them.
FIRST_ORDER = ("grad", "gradinput", "smoothgrad")


def _margin_gradient_fn(model):
    import tensorflow as tf

    logits = inference_fn(logits_model(model))
    image = tf.TensorSpec((None, *input_shape(model)), tf.float32)
    classes = tf.TensorSpec((None,), tf.int32)

    @tf.function(input_signature=[image, classes, classes])
    def gradient(x, c, k):
        with tf.GradientTape() as tape:
            tape.watch(x)
            z = logits(x)
            margin = tf.gather(z, c, axis=1, batch_dims=1) - tf.gather(z, k, axis=1, batch_dims=1)
        return tape.gradient(margin, x)

    return gradient


def margin_gradients(model, xs: np.ndarray, classes: Sequence[int], contrast: Sequence[int]) -> np.ndarray:
    """Return ``d(z_c - z_k)/dx`` (N, H, W, C) of each image for its class c and contrast class k."""
    xs = check_images(xs, input_shape(model))
    targets = check_targets("margin", list(classes), len(xs), num_classes(model), list(contrast))
    passes.record(gradient=len(xs))
    fn = per_model(model, "margin gradient", lambda: _margin_gradient_fn(model))
    return in_chunks(fn, xs, np.asarray(targets.classes, np.int32), np.asarray(targets.contrast, np.int32))


def _noisy_copies(xs: np.ndarray, seeds: Sequence, samples: int, sigma: float) -> np.ndarray:
    """``samples`` copies of each image plus Gaussian noise of ``sigma`` (seeded by the image's seed and 13),
    clipped to the input range: (N * samples, H, W, C) float32, made in place in one array."""
    noisy = np.empty((len(xs) * samples, *xs.shape[1:]), np.float32)
    for j, (x, s) in enumerate(zip(xs, seeds)):
        block = noisy[j * samples:(j + 1) * samples]
        np.random.default_rng([*np.atleast_1d(s).astype(int).tolist(), 13]).standard_normal(
            dtype=np.float32, out=block)
        block *= np.float32(sigma)
        block += x
    return np.clip(noisy, -1.0, 1.0, out=noisy)


def first_order_maps(model, xs: np.ndarray, classes: Sequence[int], contrast: Sequence[int],
                     seeds: Sequence, samples: int = SMOOTHGRAD_SAMPLES,
                     sigma: float = SMOOTHGRAD_SIGMA) -> dict[str, np.ndarray]:
    """Return ``{"grad", "gradinput", "smoothgrad"}`` maps (N, H, W) of the margin ``z_c - z_k`` of each image.

    ``seeds``: one per image (an int or a sequence of ints), so SmoothGrad's noise never depends on the batch.
    """
    xs = np.asarray(xs, dtype=np.float32)
    if len(seeds) != len(xs):
        raise ValueError(f"Got {len(seeds)} seeds for {len(xs)} images.")
    grads = margin_gradients(model, xs, classes, contrast)
    noisy_grads = margin_gradients(model, _noisy_copies(xs, seeds, samples, sigma), np.repeat(classes, samples),
                                   np.repeat(contrast, samples))
    smooth = np.abs(noisy_grads).sum(axis=-1).reshape(len(xs), samples, *xs.shape[1:3]).mean(axis=1)
    return {"grad": np.abs(grads).sum(axis=-1), "gradinput": np.abs((xs * grads).sum(axis=-1)),
            "smoothgrad": smooth}


__all__ = ["FIRST_ORDER", "SMOOTHGRAD_SAMPLES", "SMOOTHGRAD_SIGMA", "first_order_maps", "margin_gradients"]
