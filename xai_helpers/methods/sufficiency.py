"""Sufficient and necessary regions of a perturbation, and the smallest region that is enough.

A region R of the perturbation ``delta = adv - x`` (a mask M) can be

* **sufficient**: keeping the perturbation only in R already changes the label,
  ``top1(restrict(x, adv, M)) != c``;
* **necessary**: removing the perturbation from R, and keeping it everywhere else, undoes the attack,
  ``top1(remove(x, adv, M)) == c`` with ``remove(x, adv, M) = restrict(x, adv, 1 - M)``.

A perturbation is *redundant* when a region is sufficient without being necessary: its complement is
sufficient too. The shares of the attack's effect ``(F(.) - F(x)) / (F(adv) - F(x))`` (``interventions``)
say how much of the margin change each intervention keeps.

**The smallest sufficient region**, bounded from above: the smallest fraction of a ranking's top pixels whose
perturbation alone flips the label (``smallest_flipping_fraction``), found by bisection in log2(pixels)
forward passes (for many photos in lock-step: ``smallest_flipping_fractions``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from xai_helpers.classifier.checks import check_class_index, check_images, check_map
from xai_helpers.classifier.forward import input_shape, logits, num_classes
from xai_helpers.methods.interventions import _check_classes, _check_pair, _scored, restrict, shared_pass



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
    return shared_pass(model, x, adv, verdicts_analysis(model, x, adv, masks, class_index, contrast_class,
                                                        target))[0]


def verdicts_analysis(model, x: np.ndarray, adv: np.ndarray, masks: Mapping[str, np.ndarray], class_index: int,
                      contrast_class: int | None = None, target: int | None = None):
    """``region_verdicts`` as an analysis of ``interventions.shared_pass``: yields the kept and removed
    masks, receives their logits (shares and labels)."""
    _check_pair(model, x, adv)
    c, k = _check_classes(model, class_index, contrast_class)
    names = list(masks)
    stack = np.stack([np.asarray(masks[n], dtype=np.float32) for n in names])
    logits_of = yield np.concatenate([stack, 1.0 - stack])
    f_x, f_adv, f = _scored(logits_of, c, k)
    shares, labels = (f - f_x) / (f_adv - f_x), logits_of[1].argmax(axis=1)
    n = len(names)
    moved = labels[:n] != c if target is None else labels[:n] == target
    return {name: RegionVerdict(float(shares[i]), float(shares[n + i]), bool(moved[i]),
                                bool(labels[n + i] == c), float(stack[i].mean()))
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
    xs = check_images(xs, shape, name="x") if len(xs) else np.zeros((0, *shape), np.float32)
    advs = check_images(advs, shape, name="adv") if len(advs) else xs.copy()
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


__all__ = ["RegionVerdict", "region_verdicts", "remove", "smallest_flipping_fraction", "smallest_flipping_fractions",
           "top1", "verdicts_analysis"]
