"""Sufficient and necessary regions of a perturbation, and the smallest region that is enough.

A region R of the perturbation ``delta = adv - x`` (a mask M) can be

* **sufficient**: keeping the perturbation only in R already changes the label,
  ``top1(restrict(x, adv, M)) != c``;
* **necessary**: removing the perturbation from R, and keeping it everywhere else, undoes the attack,
  ``top1(remove(x, adv, M)) == c`` with ``remove(x, adv, M) = restrict(x, adv, 1 - M)``.

A perturbation is *redundant* when a region is sufficient without being necessary: its complement is
sufficient too. The shares of the attack's effect ``(F(.) - F(x)) / (F(adv) - F(x))`` (``interventions``)
say how much of the margin change each intervention keeps.

**The smallest sufficient region** (Fong, Patrick & Vedaldi, "Understanding Deep Networks via Extremal
Perturbations and Smooth Masks", ICCV 2019, applied to the perturbation instead of the photo): for each
area a, a smooth mask ``M_a = upsample(sigmoid(m_a))`` of a low-resolution parameter ``m_a`` maximises the
share kept, ``share(M_a)``, while a ranking constraint holds its area at a::

    loss(m_a) = -share(M_a) + lambda * mean((sort(M_a) - r_a)^2),   r_a = (0, ..., 0, 1, ..., 1), a ones

optimised by gradient descent (momentum) for all areas in one batch, starting from the attack attribution's ranking (its top-a
pixels). The result is read as a hard mask of exactly a: the top-a pixels of the optimised mask, or of the
attribution when those keep more (so it always keeps at least what the ranking it starts from keeps). The
cheap version is a bisection: the smallest fraction of a ranking's top pixels whose perturbation alone
flips the label (``smallest_flipping_fraction``), log2(pixels) forward passes.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from xai_helpers.classifier import passes
from xai_helpers.classifier.checks import check_class_index, check_image, check_map
from xai_helpers.classifier.forward import inference_fn, input_shape, logits, logits_model, num_classes
from xai_helpers.methods.compare import top_mask
from xai_helpers.methods.interventions import _check_pair, effect_shares, restrict

#: Areas (fractions of the pixels) at which ``minimal_region`` optimises a mask.
DEFAULT_AREAS = (0.02, 0.05, 0.1, 0.2)
#: Side of the low-resolution mask parameter (upsampled to the image): smooth masks, as in Fong et al.
MASK_SIDE = 28
#: Final weight of the area (ranking) constraint. Both terms of the loss scale as 1/pixels, so it does not
#: depend on the image size; Fong et al.'s 300 (for a probability score) froze the starting order here.
AREA_WEIGHT = 30.0


def remove(x: np.ndarray, adv: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return ``restrict(x, adv, 1 - mask)``: the perturbation removed from ``mask``, kept everywhere else.

    An all-ones mask returns ``x``, an all-zeros mask ``adv``."""
    return restrict(x, adv, 1.0 - np.asarray(mask, dtype=np.float32))


def top1(model, images: np.ndarray) -> np.ndarray:
    """Return each image's top-1 class (N,), from one batched compiled forward pass."""
    return logits(model, images).argmax(axis=1)


@dataclass
class RegionVerdict:
    """What keeping and removing the perturbation in one region does."""

    kept_share: float  #: share of the effect kept by the region alone
    removed_share: float  #: share of the effect that survives removing the region
    sufficient: bool  #: keeping only the region changes the label
    necessary: bool  #: removing the region gives the true label back
    area: float  #: the region's share of the pixels

    @property
    def redundant(self) -> bool:
        """Sufficient, and yet not necessary: the rest of the perturbation is enough too."""
        return self.sufficient and not self.necessary


def region_verdicts(model, x: np.ndarray, adv: np.ndarray, masks: Mapping[str, np.ndarray], class_index: int,
                    contrast_class: int | None = None, target: int | None = None) -> dict[str, RegionVerdict]:
    """Return a ``RegionVerdict`` per named mask (H, W) in [0, 1], against the true class ``class_index``.

    Shares use the logit of ``class_index`` or, with ``contrast_class``, the margin against it; the labels
    are the model's top-1 on ``restrict`` (kept) and ``remove`` (removed) images, all in one batch. With
    ``target`` (a targeted attack's class) a region is sufficient only where keeping it reaches the target,
    not merely leaves the true class.
    """
    x, adv = _check_pair(model, x, adv)
    names = list(masks)
    stack = np.stack([np.asarray(masks[n], dtype=np.float32) for n in names])
    both = np.concatenate([stack, 1.0 - stack])
    shares = effect_shares(model, x, adv, both, class_index, contrast_class)
    labels = top1(model, restrict(x, adv, both))
    n = len(names)
    moved = labels[:n] != class_index if target is None else labels[:n] == target
    return {name: RegionVerdict(float(shares[i]), float(shares[n + i]), bool(moved[i]),
                                bool(labels[n + i] == class_index), float(stack[i].mean()))
            for i, name in enumerate(names)}


def smallest_flipping_fraction(model, x: np.ndarray, adv: np.ndarray, ranking: np.ndarray,
                               class_index: int) -> float:
    """Return the smallest fraction of the pixels, taken in the order of ``ranking`` (H, W; highest first),
    whose perturbation alone changes the top-1 away from ``class_index`` (by bisection over pixel counts).

    Assumes what the bisection needs: the clean image is classified ``class_index`` and the adversarial one
    is not (``ValueError`` otherwise). Where flipping is not monotone in the count, the bisection finds *a*
    count k that flips while k - 1 does not, not necessarily the smallest; for a ranking along which the
    margin falls monotonically (a linear model, the test) it is the smallest."""
    fraction = smallest_flipping_fractions(model, np.asarray(x)[None], np.asarray(adv)[None],
                                           np.asarray(ranking)[None], [class_index])[0]
    if np.isnan(fraction):
        raise ValueError("smallest_flipping_fraction needs a clean image of class class_index and an "
                         "adversarial image of another class.")
    return float(fraction)


def smallest_flipping_fractions(model, xs: np.ndarray, advs: np.ndarray, rankings: np.ndarray,
                                class_indices: Sequence[int], targets: Sequence[int] | None = None) -> np.ndarray:
    """Return ``smallest_flipping_fraction`` for each photo of a batch (N,), NaN where it is not defined.

    ``xs``, ``advs``: (N, H, W, C); ``rankings``: (N, H, W); ``class_indices``: (N,). The N bisections run
    in lock-step: each round sends one image per still-open search through the model in one batched pass,
    so a batch costs the ~log2(H * W) rounds of one photo (16 at 224 x 224), not N times as many
    single-image passes, and each search takes the same steps as it would alone. A photo whose clean image
    is not of its class, or whose adversarial image still is, gets NaN (nothing to bisect). With ``targets``
    (a targeted attack's classes) a fraction flips only where it reaches the target, and a photo whose
    adversarial image did not reach it gets NaN.
    """
    shape = input_shape(model)
    xs = np.stack([check_image(x, shape, name="x") for x in xs]) if len(xs) else np.zeros((0, *shape), np.float32)
    advs = np.stack([check_image(a, shape, name="adv") for a in advs]) if len(advs) else xs.copy()
    if len(advs) != len(xs) or len(rankings) != len(xs) or len(class_indices) != len(xs):
        raise ValueError(f"smallest_flipping_fractions needs as many adversarial images, rankings and classes "
                         f"as photos ({len(xs)}), got {len(advs)}, {len(rankings)} and {len(class_indices)}.")
    classes = np.array([check_class_index(c, num_classes(model)) for c in class_indices], dtype=np.int64)
    orders = [np.argsort(-_check_ranking(r, shape[:2]).ravel(), kind="stable") for r in rankings]
    n, count = int(np.prod(shape[:2])), len(xs)
    if count == 0:
        return np.zeros(0)
    goal = None if targets is None else np.asarray(targets, dtype=np.int64)

    def flips(labels, which):
        return labels != classes[which] if goal is None else labels == goal[which]

    everyone = np.arange(count)
    ends = top1(model, np.concatenate([xs, advs]))
    valid = (ends[:count] == classes) & flips(ends[count:], everyone)
    lo, hi = np.zeros(count, dtype=np.int64), np.full(count, n, dtype=np.int64)  # flips(lo) False, flips(hi) True
    while np.any(open_ := valid & (hi - lo > 1)):
        which = np.flatnonzero(open_)
        mid = (lo[which] + hi[which]) // 2
        masks = np.zeros((len(which), n), dtype=np.float32)
        for row, (i, k) in enumerate(zip(which, mid)):
            masks[row, orders[i][:k]] = 1.0
        masks = masks.reshape(len(which), *shape[:2], 1)
        flipped = flips(top1(model, xs[which] + masks * (advs[which] - xs[which])), which)
        hi[which] = np.where(flipped, mid, hi[which])
        lo[which] = np.where(flipped, lo[which], mid)
    return np.where(valid, hi / n, np.nan)


def _check_ranking(ranking: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    ranking = check_map(ranking, name="ranking")
    if ranking.shape != tuple(shape):
        raise ValueError(f"ranking must have the image's shape {tuple(shape)}, got {ranking.shape}.")
    return ranking


@dataclass
class MinimalRegions:
    """``minimal_region``'s result, one entry per area."""

    areas: np.ndarray  #: (A,) the areas asked for
    masks: np.ndarray  #: (A, H, W) boolean: the region chosen at each area (exactly that many pixels)
    shares: np.ndarray  #: (A,) share of the effect each keeps
    optimised_shares: np.ndarray  #: (A,) share kept by the optimised mask's top pixels
    ranking_shares: np.ndarray  #: (A,) share kept by the starting ranking's top pixels
    flips: np.ndarray  #: (A,) whether each region alone changes the label
    soft_masks: np.ndarray  #: (A, H, W) the optimised smooth masks

    @property
    def smallest_flipping_area(self) -> float:
        """The smallest area whose region flips the label (NaN if none does)."""
        flipping = self.areas[self.flips]
        return float(flipping.min()) if flipping.size else float("nan")

    @property
    def flipping_or_largest_index(self) -> int:
        """The index of the smallest area whose region flips the label, or of the largest area if none does."""
        smallest = self.smallest_flipping_area
        return int(np.argmax(self.areas == smallest)) if not np.isnan(smallest) else int(np.argmax(self.areas))


def _to_logits(masks: np.ndarray, side: int) -> np.ndarray:
    """Low-resolution logits whose upsampled sigmoid approximates each mask (A, H, W) in [0, 1]."""
    small = tf.image.resize(masks[..., None].astype(np.float32), (side, side), method="area").numpy()[..., 0]
    small = np.clip(small, 0.3, 0.7)  # a mild start: the order is a hint, not yet a decision
    return np.log(small / (1 - small)).astype(np.float32)


def minimal_region(model, x: np.ndarray, adv: np.ndarray, class_index: int, contrast_class: int | None = None,
                   areas: Sequence[float] = DEFAULT_AREAS, ranking: np.ndarray | None = None, steps: int = 200,
                   learning_rate: float = 0.1, mask_side: int = MASK_SIDE,
                   area_weight: float = AREA_WEIGHT) -> MinimalRegions:
    """Return the region of each area that keeps the most of the attack's effect (module docstring).

    ``ranking`` (H, W) is where the optimisation starts and what it must beat: by default the attack
    attribution's signed map, negated (``interventions.attack_attribution``, adaptive steps: the pixels that
    pushed the score down most come first). The score is the logit
    of ``class_index`` or its margin against ``contrast_class`` (the attack lowers it). Costs ``steps``
    forward+backward passes of ``len(areas)`` images and a few forward passes.
    """
    from xai_helpers.methods.interventions import attack_attribution, signed_map

    x, adv = _check_pair(model, x, adv)
    areas = np.asarray(areas, dtype=np.float64)
    if areas.ndim != 1 or not areas.size or np.any((areas <= 0) | (areas > 1)):
        raise ValueError(f"areas must be fractions in (0, 1], got {list(areas)}.")
    if not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be a whole number >= 0, got {steps!r}.")
    c = check_class_index(class_index, num_classes(model))
    k = None if contrast_class is None else check_class_index(contrast_class, num_classes(model), "contrast_class")
    if ranking is None:
        # (negative attribution: the pixel pushed the score down, the attack's way; those come first)
        ranking = -signed_map(attack_attribution(model, x, adv, c, k).attributions)
    ranking = _check_ranking(ranking, x.shape[:2])
    height, width = x.shape[:2]
    side = min(mask_side, height, width)
    start = np.stack([top_mask(ranking, a) for a in areas]).astype(np.float32)
    n_pixels = height * width
    targets = np.stack([np.r_[np.zeros(n_pixels - int(round(a * n_pixels))), np.ones(int(round(a * n_pixels)))]
                        for a in areas]).astype(np.float32)
    soft = _optimise(model, x, adv, c, k, _to_logits(start, side), targets, steps, learning_rate, area_weight)
    optimised = np.stack([top_mask(soft[i], a) for i, a in enumerate(areas)])
    candidates = np.concatenate([optimised, start.astype(bool)])
    shares = effect_shares(model, x, adv, candidates, c, k)
    n = len(areas)
    optimised_shares, ranking_shares = shares[:n], shares[n:]
    # (the attack lowers F, so a larger share is more of the attack's effect)
    chosen = np.where((optimised_shares >= ranking_shares)[:, None, None], optimised, start.astype(bool))
    kept = np.maximum(optimised_shares, ranking_shares)
    flips = top1(model, restrict(x, adv, chosen)) != c
    return MinimalRegions(areas, chosen, kept, optimised_shares, ranking_shares, flips, soft)


def _optimise(model, x, adv, c, k, logits0, targets, steps, learning_rate, area_weight) -> np.ndarray:
    """Descend on the low-resolution mask logits of every area at once; return the smooth masks (A, H, W)."""
    logits_of = inference_fn(logits_model(model))
    height, width = input_shape(model)[:2]
    xt, delta = tf.constant(x[None]), tf.constant((adv - x)[None])
    f = _margin_fn(logits_of, c, k)
    f_x, f_adv = [float(v) for v in f(tf.constant(np.stack([x, adv])))]
    if f_adv == f_x:
        raise ValueError("The adversarial image leaves the score unchanged, so there is no effect to keep.")
    param = tf.Variable(logits0[..., None])
    # Gradient descent with momentum, each area's step scaled by its root-mean-square (not Adam: Adam scales
    # every pixel alone, so pixels whose gradients share a sign all move alike and the order never changes).
    velocity = tf.Variable(tf.zeros_like(param))
    count = tf.Variable(0.0)
    total_steps = float(max(int(steps), 1))
    targets = tf.constant(targets)

    def masks_of(p):
        return tf.image.resize(tf.sigmoid(p), (height, width), method="bilinear")[..., 0]

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            masks = masks_of(param)
            share = (f(xt + masks[..., None] * delta) - f_x) / (f_adv - f_x)
            flat = tf.sort(tf.reshape(masks, (tf.shape(masks)[0], -1)), axis=1)
            weight = area_weight * ((count + 1.0) / total_steps) ** 2
            loss = tf.reduce_sum(-share + weight * tf.reduce_mean((flat - targets) ** 2, axis=1))
        grad = tape.gradient(loss, param)
        count.assign_add(1.0)
        velocity.assign(0.9 * velocity + grad)
        rms = tf.sqrt(tf.reduce_mean(velocity ** 2, axis=[1, 2, 3], keepdims=True)) + 1e-12
        param.assign_sub(learning_rate * velocity / rms)

    for _ in range(int(steps)):
        step()
    passes.record(gradient=int(steps) * len(logits0))
    return masks_of(param).numpy()


def _margin_fn(logits_of, c: int, k: int | None):
    def f(images):
        z = logits_of(images)
        return z[:, c] - (z[:, k] if k is not None else 0.0)
    return f


__all__ = ["DEFAULT_AREAS", "MinimalRegions", "RegionVerdict", "minimal_region", "region_verdicts", "remove",
           "smallest_flipping_fraction", "smallest_flipping_fractions", "top1"]
