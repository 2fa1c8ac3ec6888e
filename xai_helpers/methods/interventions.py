"""Which area of an adversarial image causes the model's mistake: answers by intervention.

A heat-map says where the evidence for a class lies; it does not say what *caused* the prediction to
change. Three interventions on the perturbation ``delta = adv - x`` answer the causal question directly:

* **Restriction.** Keep the perturbation only inside a mask M (values in [0, 1])::

      restrict(x, adv, M) = x + M * (adv - x)

  and read the score there. The *share of the attack's effect* a region carries is
  ``(F(restrict(x, adv, M)) - F(x)) / (F(adv) - F(x))``: 1 = the region alone does all the attack does,
  0 = nothing. The score ``F`` is a logit ``z_c`` or, with a contrast class k, the margin ``z_c - z_k``
  whose sign decides c against k (Carlini & Wagner, "Towards Evaluating the Robustness of Neural
  Networks", IEEE S&P 2017, use this margin as the attack's objective). Logits are used, not
  probabilities, because a probability saturates (a 0.5% class has no probability left to lose).
* **Attack attribution.** Integrated Gradients (Sundararajan, Taly & Yan, ICML 2017) along the straight
  path from the clean image (the baseline) to the adversarial image::

      A_i = delta_i * integral_0^1 dF(x + a delta) / dx_i da,      sum_i A_i = F(adv) - F(x)

  Completeness makes it an exact split of the change the attack caused among the pixels (up to the
  quadrature's error, reported as ``delta`` and refined adaptively to within 1% by default). Because
  the path is the attack's own, this attributes the *change*, not the evidence of either image.
* **Perturbation curves.** Rank pixels by a saliency map, keep the perturbation on the top fraction f
  only, and record the share of the effect kept, for f from 0 to 1; a map that found the confusing area
  keeps most of the effect with few pixels. The same curve for seeded random pixel masks of equal area
  is the chance level (the control), so "the map found the confusing area" becomes a number against
  chance: the area under the curve (AUC) of the map against the random masks' AUCs. (The idea is that of
  deletion/insertion, Petsiuk, Das & Saenko, BMVC 2018, applied to the perturbation instead of the photo.)

All images are (H, W, C) in the model's input range [-1, 1]; scores are computed batched with one compiled
forward function per model.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from xai_helpers.classifier.checks import check_class_index, check_image, check_map
from xai_helpers.classifier.forward import CHUNK, input_shape, logits, num_classes
from xai_helpers.methods.compare import top_mask
from xai_helpers.methods.integrated_gradients import (
    ADAPTIVE_MAX_STEPS,
    ADAPTIVE_TOLERANCE,
    IGResult,
    adaptive_integrated_gradients_batch,
    integrated_gradients_batch,
)

#: Fractions of the pixels at which a perturbation curve is sampled (0 to 1 in steps of 0.05).
DEFAULT_FRACTIONS = tuple(np.round(np.linspace(0.0, 1.0, 21), 4))
#: Seeded random masks per curve: enough for a 95% interval of the chance AUC from the 2.5th/97.5th
#: percentiles.
DEFAULT_RANDOM_MASKS = 40
SEED = 0


def scores(model, images: np.ndarray, class_index: int, contrast_class: int | None = None) -> np.ndarray:
    """Return F of each image (N,): the logit ``z_c`` or, with ``contrast_class`` k, the margin ``z_c - z_k``."""
    c, k = _check_classes(model, class_index, contrast_class)
    return _score(logits(model, images), c, k)


def _check_classes(model, class_index: int, contrast_class: int | None) -> tuple[int, int | None]:
    """Return the class and the contrast class (or None) as ints, each checked against the model's classes."""
    c = check_class_index(class_index, num_classes(model))
    return c, None if contrast_class is None else check_class_index(contrast_class, num_classes(model),
                                                                     "contrast_class")


def _score(z: np.ndarray, c: int, k: int | None) -> np.ndarray:
    """F of each row of logits ``z`` (N, classes): ``z_c``, or ``z_c - z_k`` with a contrast class k."""
    return z[:, c] - (z[:, k] if k is not None else 0.0)


def _check_pair(model, x: np.ndarray, adv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    shape = input_shape(model)
    return check_image(x, shape, name="x"), check_image(adv, shape, name="adv")


def restrict(x: np.ndarray, adv: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return ``x + mask * (adv - x)``: the adversarial perturbation kept only where ``mask`` is 1.

    ``x``, ``adv``: (H, W, C); ``mask``: (H, W) or a batch (N, H, W), values in [0, 1] (fractional values
    keep that share of the perturbation). Returns (H, W, C) or (N, H, W, C), float32. An all-ones mask
    returns ``adv``, an all-zeros mask ``x``; since ``x`` and ``adv`` are in the input range, so is
    every restriction (a convex combination of the two).
    """
    x, adv = check_image(x, name="x"), check_image(adv, x.shape, name="adv")
    mask = np.asarray(mask)
    if mask.dtype == np.bool_:
        mask = mask.astype(np.float32)
    if mask.shape[-2:] != x.shape[:2] or mask.ndim not in (2, 3):
        raise ValueError(f"mask must have shape {x.shape[:2]} or (N, {x.shape[0]}, {x.shape[1]}), "
                         f"got {mask.shape}.")
    if not np.all(np.isfinite(mask)) or mask.min() < 0 or mask.max() > 1:
        raise ValueError("mask values must be finite and lie in [0, 1].")
    return (x + mask[..., None].astype(np.float32) * (adv - x)).astype(np.float32)


def effect_shares(model, x: np.ndarray, adv: np.ndarray, masks: np.ndarray, class_index: int,
                  contrast_class: int | None = None) -> np.ndarray:
    """Return, per mask (N, H, W), the share of ``F(adv) - F(x)`` kept by ``restrict(x, adv, mask)``.

    ``(F(restrict(x, adv, M)) - F(x)) / (F(adv) - F(x))``, F the logit or margin (module docstring):
    1 = the masked perturbation does all the full attack does, 0 = nothing; values above 1 or below 0
    are possible (a part of the perturbation can do more than the whole). Raises if the attack does not
    change F at all (no effect to share).
    """
    return shared_pass(model, x, adv, shares_analysis(model, x, adv, masks, class_index, contrast_class))[0]


def shares_analysis(model, x: np.ndarray, adv: np.ndarray, masks: np.ndarray, class_index: int,
                    contrast_class: int | None = None):
    """``effect_shares`` as an analysis of ``shared_pass``: yields its masks, receives their logits."""
    _check_pair(model, x, adv)
    c, k = _check_classes(model, class_index, contrast_class)
    masks = np.asarray(masks)
    masks = masks[None] if masks.ndim == 2 else masks
    f_x, f_adv, f_restricted = _scored((yield masks), c, k)
    return (f_restricted - f_x) / (f_adv - f_x)


def shared_pass(model, x: np.ndarray, adv: np.ndarray, *analyses) -> list:
    """Run analyses of one (clean, adversarial) pair on one pass of the model; return their results.

    An analysis is a generator that yields a stack of masks (N, H, W) and receives ``(ends, z)``: the
    logits of ``x`` and ``adv`` (2, classes) and of each ``restrict(x, adv, mask)`` (N, classes); it returns
    its result. All the restricted images go through the model together in full chunks, made chunk by chunk
    (memory does not grow with the masks), so the analyses share the padding of one last chunk instead of
    each padding its own. A chunk of fixed shape gives an image the same logits whatever its chunk-mates,
    so each analysis gets the numbers it gets alone.
    """
    stacks = [next(analysis) for analysis in analyses]
    ends, zs = _pair_logits(model, x, adv, stacks)
    results = []
    for analysis, z in zip(analyses, zs):
        try:
            analysis.send((ends, z))
        except StopIteration as done:
            results.append(done.value)
        else:
            raise RuntimeError("An analysis of shared_pass must return after receiving its logits.")
    return results


def _pair_logits(model, x: np.ndarray, adv: np.ndarray, stacks: Sequence[np.ndarray]) -> tuple:
    """Logits of ``x`` and ``adv`` (2, classes) and of each stack's restricted images, in chunks of ``CHUNK``."""
    items = [(None, 0), (None, 1)] + [(k, j) for k, stack in enumerate(stacks) for j in range(len(stack))]
    z = []
    for start in range(0, len(items), CHUNK):
        chunk = items[start:start + CHUNK]
        ends = [(x, adv)[j] for k, j in chunk if k is None]
        masks = [stacks[k][j] for k, j in chunk if k is not None]
        z.append(logits(model, np.concatenate(([np.stack(ends)] if ends else []) +
                                              ([restrict(x, adv, np.stack(masks))] if masks else []))))
    z = np.concatenate(z)
    bounds = np.cumsum([2] + [len(stack) for stack in stacks])
    return z[:2], [z[a:b] for a, b in pairwise(bounds)]


def _scored(logits_of: tuple, c: int, k: int | None) -> tuple[float, float, np.ndarray]:
    """Return F(x), F(adv) and F of each restricted image from ``shared_pass``' ``(ends, z)``, classes checked
    by ``_check_classes``. Raises if the attack leaves F unchanged."""
    ends, z = logits_of
    f_ends = _score(ends, c, k)
    if f_ends[1] == f_ends[0]:
        raise ValueError("The adversarial image leaves the score unchanged, so there is no effect to share.")
    return float(f_ends[0]), float(f_ends[1]), _score(z, c, k)


# long: IG's keyword options and the attribution's (which logit, the margin's contrast class)
def attack_attribution(model, x: np.ndarray, adv: np.ndarray, class_index: int,
                       contrast_class: int | None = None, steps: int | None = None,
                       method: str = "trapezoid", tolerance: float = ADAPTIVE_TOLERANCE,
                       max_steps: int = ADAPTIVE_MAX_STEPS) -> IGResult:
    """Return Integrated Gradients along the straight path from ``x`` (baseline) to ``adv``.

    ``A_i = (adv_i - x_i) integral_0^1 dF(x + a (adv - x))/dx_i da`` (Sundararajan et al. 2017 with the
    clean image as baseline), F the logit of ``class_index`` or, with ``contrast_class`` k, the margin
    ``z_c - z_k``. By completeness ``attributions.sum() = F(adv) - F(x)`` up to ``delta``. With
    ``steps=None`` (default) the trapezoid rule is refined by nested doubling until
    ``|delta| <= tolerance |F(adv) - F(x)|`` (``adaptive_integrated_gradients_batch``); an int ``steps``
    uses that fixed rule (``method``). The result's ``f_x`` is F(adv) and ``f_baseline`` is F(x).
    """
    x, adv = _check_pair(model, x, adv)
    target = "logits" if contrast_class is None else "margin"
    contrast = None if contrast_class is None else [contrast_class]
    if steps is None:
        return attack_attributions(model, x[None], adv[None], [class_index], contrast, tolerance, max_steps)[0]
    return integrated_gradients_batch(model, adv[None], [class_index], target, baseline=x[None], steps=steps,
                                      method=method, contrast_classes=contrast)[0]


# long: the pairs, their classes and contrast classes, and the adaptive rule's tolerance and largest step count
def attack_attributions(model, xs: np.ndarray, advs: np.ndarray, class_indices: Sequence[int],
                        contrast_classes: Sequence[int] | None = None, tolerance: float = ADAPTIVE_TOLERANCE,
                        max_steps: int = ADAPTIVE_MAX_STEPS) -> list[IGResult]:
    """Return the adaptive ``attack_attribution`` of several (clean, adversarial) pairs in one batched call.

    Every pair gets the numbers it gets alone (each image is refined on its own; the path points of all
    pairs share full chunks of the model's passes, so fewer of them are padding).
    """
    xs, advs = np.asarray(xs), np.asarray(advs)
    if xs.shape != advs.shape or xs.ndim != 4:
        raise ValueError(f"xs and advs must be batches (N, H, W, C) of one shape, got {xs.shape} and {advs.shape}.")
    pairs = [_check_pair(model, x, adv) for x, adv in zip(xs, advs)]
    target = "logits" if contrast_classes is None else "margin"
    return adaptive_integrated_gradients_batch(model, np.stack([a for _, a in pairs]), list(class_indices), target,
                                               baseline=np.stack([x for x, _ in pairs]), tolerance=tolerance,
                                               max_steps=max_steps, contrast_classes=contrast_classes)


def signed_map(attributions: np.ndarray) -> np.ndarray:
    """Return the (H, W) map ``sum_c A[..., c]`` of (H, W, C) attributions, keeping the sign.

    For an attack attribution the sign matters: negative pixels pushed F down (towards the attack's
    goal when F is the true class's logit or margin), positive ones resisted it.
    """
    attributions = np.asarray(attributions, dtype=np.float64)
    if attributions.ndim != 3:
        raise ValueError(f"attributions must be (H, W, C), got shape {attributions.shape}.")
    return attributions.sum(axis=-1)


def random_masks(shape: tuple[int, int], fraction: float, n: int, seed: int | Sequence[int] = SEED) -> np.ndarray:
    """Return ``n`` seeded random boolean pixel masks (n, H, W), each with ``round(fraction * H * W)`` pixels."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}.")
    return _nested_random_masks(shape, [fraction], n, seed)[:, 0]


def _top_masks(saliency: np.ndarray, fractions: Sequence[float]) -> np.ndarray:
    """Return the top-``f`` masks of ``saliency`` for each f (f = 0 gives an empty mask)."""
    return np.stack([top_mask(saliency, f) if f > 0 else np.zeros(saliency.shape, bool) for f in fractions])


def _nested_random_masks(shape: tuple[int, int], fractions: Sequence[float], n: int,
                         seed: int | Sequence[int]) -> np.ndarray:
    """Return (n, len(fractions), H, W) masks: a random pixel order per draw, cut at each fraction.

    Nested like a map's top-f masks (the f = 0.2 mask contains the f = 0.1 one), so each random curve is
    the perturbation curve of one random map.
    """
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    out = np.zeros((n, len(fractions), size), dtype=bool)
    for i in range(n):
        order = rng.permutation(size)
        for j, f in enumerate(fractions):
            out[i, j, order[:int(round(f * size))]] = True
    return out.reshape(n, len(fractions), *shape)


def curve_area(fractions: Sequence[float], shares: np.ndarray) -> np.ndarray:
    """Return the trapezoid area under share-vs-fraction curves (last axis), per curve."""
    return np.trapezoid(np.asarray(shares, dtype=np.float64), np.asarray(fractions, dtype=np.float64), axis=-1)


@dataclass(frozen=True)
class PerturbationCurve:
    """Share of an attack's effect kept when only a map's top pixels keep the perturbation."""

    fractions: np.ndarray  #: (F,) shares of pixels kept, 0..1
    kept: np.ndarray  #: (F,) share of F(adv) - F(x) kept with the map's top-f pixels
    random: np.ndarray  #: (R, F) the same for R seeded random maps (the chance level)
    f_x: float  #: F(x), the clean image's score
    f_adv: float  #: F(adv)

    @property
    def auc(self) -> float:
        """Area under the map's curve (the effect kept, averaged over budgets 0..1)."""
        return float(curve_area(self.fractions, self.kept))

    @property
    def random_aucs(self) -> np.ndarray:
        """Areas under the random maps' curves (R,)."""
        return curve_area(self.fractions, self.random)

    @property
    def random_auc_interval(self) -> tuple[float, float, float]:
        """Return (2.5th percentile, median, 97.5th percentile) of the random maps' AUCs."""
        low, mid, high = np.percentile(self.random_aucs, [2.5, 50, 97.5])
        return float(low), float(mid), float(high)

    def share_at(self, fraction: float) -> float:
        """Return the map's kept share at one of the sampled fractions."""
        return float(self.kept[_fraction_index(self.fractions, fraction)])

    def random_share_at(self, fraction: float) -> float:
        """Return the random maps' median kept share at one of the sampled fractions."""
        return float(np.median(self.random[:, _fraction_index(self.fractions, fraction)]))


def _fraction_index(fractions: np.ndarray, fraction: float) -> int:
    hits = np.flatnonzero(np.isclose(fractions, fraction))
    if not len(hits):
        raise ValueError(f"fraction {fraction!r} is not one of the curve's fractions {list(fractions)}.")
    return int(hits[0])


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.ndim != 1 or len(fractions) < 1 or np.any(np.diff(fractions) <= 0) \
            or fractions[0] < 0 or fractions[-1] > 1:
        raise ValueError("fractions must be increasing numbers in [0, 1] (two or more for an area).")
    return fractions


# long: the curve's keyword options (fractions, random controls, seed, batch size), each with a default
def perturbation_curves(model, x: np.ndarray, adv: np.ndarray, saliencies: Mapping[str, np.ndarray],
                        class_index: int, contrast_class: int | None = None,
                        fractions: Sequence[float] = DEFAULT_FRACTIONS,
                        n_random: int = DEFAULT_RANDOM_MASKS,
                        seed: int | Sequence[int] = SEED) -> dict[str, PerturbationCurve]:
    """Return ``perturbation_curve`` of several maps of one image pair, sharing one random control.

    All restricted images (maps x fractions, plus ``n_random`` random maps x fractions) go through the
    model in compiled batches; the random maps are the same for every map, so their curves are compared
    with one chance level. The ends need no pass: f = 0 restricts to ``x`` itself (share 0) and f = 1 to
    ``adv`` (share 1), so only the fractions strictly between are evaluated.
    """
    return shared_pass(model, x, adv, curves_analysis(model, x, adv, saliencies, class_index, contrast_class,
                                                      fractions, n_random, seed))[0]


# long: perturbation_curves' options
def curves_analysis(model, x: np.ndarray, adv: np.ndarray, saliencies: Mapping[str, np.ndarray],
                    class_index: int, contrast_class: int | None = None,
                    fractions: Sequence[float] = DEFAULT_FRACTIONS, n_random: int = DEFAULT_RANDOM_MASKS,
                    seed: int | Sequence[int] = SEED):
    """``perturbation_curves`` as an analysis of ``shared_pass``: yields its masks, receives their logits."""
    x, adv = _check_pair(model, x, adv)
    c, k = _check_classes(model, class_index, contrast_class)
    fractions = _check_fractions(fractions)
    if not isinstance(n_random, (int, np.integer)) or n_random < 1:
        raise ValueError(f"n_random must be a positive integer, got {n_random!r}.")
    maps = {name: check_map(m, name) for name, m in saliencies.items()}
    for name, m in maps.items():
        if m.shape != x.shape[:2]:
            raise ValueError(f"map {name!r} must have the image's shape {x.shape[:2]}, got {m.shape}.")
    inner = (fractions > 0.0) & (fractions < 1.0)
    shares = np.zeros((len(maps) + n_random, len(fractions)))
    shares[:, fractions >= 1.0] = 1.0
    masks = np.zeros((0, *x.shape[:2]), np.float32)
    if inner.any():
        masks = [_top_masks(m, fractions[inner]) for m in maps.values()]
        # (a random order is one permutation per draw whatever the fractions: the same seed, the same orders)
        masks.append(_nested_random_masks(x.shape[:2], fractions[inner], n_random, seed).reshape(-1, *x.shape[:2]))
        masks = np.concatenate(masks)
    f_x, f_adv, f_restricted = _scored((yield masks), c, k)
    if inner.any():
        shares[:, inner] = ((f_restricted - f_x) / (f_adv - f_x)).reshape(len(shares), -1)
    random_shares = shares[len(maps):]
    return {name: PerturbationCurve(fractions, shares[i], random_shares, float(f_x), float(f_adv))
            for i, name in enumerate(maps)}


# long: perturbation_curves' options, for one map
def perturbation_curve(model, x: np.ndarray, adv: np.ndarray, saliency: np.ndarray,
                       fractions: Sequence[float], class_index: int, contrast_class: int | None = None, n_random: int = DEFAULT_RANDOM_MASKS,
                       seed: int = SEED) -> PerturbationCurve:
    """Return the share of ``F(adv) - F(x)`` kept when only the top-f pixels of ``saliency`` are perturbed.

    For each f in ``fractions``: ``(F(restrict(x, adv, T_f)) - F(x)) / (F(adv) - F(x))`` with ``T_f`` the
    top-f pixels of ``saliency`` (H, W; higher = kept first; ties by raster position). f = 0 gives 0 and
    f = 1 gives 1 exactly. ``.random`` holds the same curve for ``n_random`` seeded random maps (the
    chance level); ``.auc`` and ``.random_auc_interval`` compare them. F: logit of ``class_index`` or
    the margin against ``contrast_class``.
    """
    return perturbation_curves(model, x, adv, {"map": saliency}, class_index, contrast_class, fractions,
                               n_random, seed)["map"]


def random_placements(mask: np.ndarray, n: int, seed: int = SEED, avoid: np.ndarray | None = None,
                      max_tries: int = 10_000) -> np.ndarray:
    """Return ``n`` seeded copies (n, H, W) of a boolean ``mask``, each moved by a random whole-pixel shift.

    Every copy stays inside the image and, when ``avoid`` is given, shares no pixel with it: same shape and
    area, placed elsewhere (the control of a restriction to a region). Raises when fewer than ``n``
    placements are found in ``max_tries`` draws.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or not mask.any():
        raise ValueError("mask must be a non-empty 2-D boolean array.")
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    crop = mask[top:bottom, left:right]
    height, width = mask.shape
    avoid = np.zeros_like(mask) if avoid is None else np.asarray(avoid, dtype=bool)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(max_tries):
        r = int(rng.integers(0, height - crop.shape[0] + 1))
        c = int(rng.integers(0, width - crop.shape[1] + 1))
        placed = np.zeros_like(mask)
        placed[r:r + crop.shape[0], c:c + crop.shape[1]] = crop
        if not np.any(placed & avoid):
            out.append(placed)
            if len(out) == n:
                return np.stack(out)
    raise ValueError(f"Only {len(out)} of {n} placements of the mask avoid the excluded area; "
                     "use a smaller mask or exclusion.")


__all__ = ["DEFAULT_FRACTIONS", "DEFAULT_RANDOM_MASKS", "PerturbationCurve", "attack_attribution",
           "attack_attributions", "curve_area", "curves_analysis", "effect_shares", "perturbation_curve",
           "perturbation_curves", "random_masks", "random_placements", "restrict", "scores", "shared_pass",
           "shares_analysis", "signed_map"]
