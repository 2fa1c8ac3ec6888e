"""Sweeps the chapters report as curves: attack strength (eps) and the Integrated Gradients step budget.

Both are pure functions of the model and NumPy arrays; they reuse the package's attacks and explainers
and add no new maths.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xai_helpers.classifier.checks import check_class_index, check_image
from xai_helpers.classifier.forward import input_shape, num_classes, probabilities
from xai_helpers.classifier.labels import class_labels
from xai_helpers.methods.attacks import apply_perturbation, eps_to_pixels
from xai_helpers.methods.integrated_gradients import integrated_gradients


@dataclass(frozen=True)
class EpsPoint:
    """The model's answer on ``clip(x + eps * direction, -1, 1)`` for one eps."""

    eps: float  #: model units (the [-1, 1] input range)
    pixels: float  #: the same eps in 0-255 pixel levels
    top1: int  #: predicted class index
    top1_name: str
    top1_probability: float
    tracked: dict[int, float]  #: softmax probability of each tracked class


def eps_sweep(model, x: np.ndarray, direction: np.ndarray, eps_values: Sequence[float],
              track: Sequence[int] = ()) -> list[EpsPoint]:
    """Return the top-1 prediction on ``clip(x + eps * direction, -1, 1)`` for every eps, in one batch.

    ``direction`` is a fixed step direction, e.g. ``loss_gradient_sign(model, x, y)`` for untargeted FGSM
    or its negative for a targeted step (Goodfellow et al. 2015, eq. 3): the sign of the gradient does not
    depend on eps, so the whole sweep costs one gradient and one batched forward pass. ``eps`` in model
    units (``pixels_to_eps``); ``track`` lists classes whose probabilities are recorded at every eps.
    """
    x = check_image(x, input_shape(model))
    direction = check_image(direction, x.shape, in_model_range=False, name="direction")
    tracked = [check_class_index(c, num_classes(model), "track") for c in track]
    batch = np.stack([apply_perturbation(x, direction, eps) for eps in eps_values])
    probs = probabilities(model, batch)
    names = class_labels() if probs.shape[-1] == 1000 else None
    points = []
    for eps, p in zip(eps_values, probs):
        top = int(np.argmax(p))
        points.append(EpsPoint(float(eps), eps_to_pixels(eps), top,
                               names[top][1] if names else f"class_{top}", float(p[top]),
                               {c: float(p[c]) for c in tracked}))
    return points


@dataclass(frozen=True)
class CompletenessPoint:
    """How far one Integrated Gradients run is from completeness."""

    target: str  #: "softmax" or "logits"
    method: str  #: quadrature rule
    steps: int  #: gradient evaluations
    relative_delta: float  #: |sum IG - (F(x) - F(x'))| / |F(x) - F(x')|
    f_x: float
    f_baseline: float


def completeness_sweep(model, x: np.ndarray, class_index: int, targets: Sequence[str],
                       methods: Sequence[str], steps: Sequence[int],
                       baseline: str | np.ndarray = "black") -> list[CompletenessPoint]:
    """Return the completeness error of Integrated Gradients for every (target, method, steps).

    Completeness (Sundararajan et al. 2017, prop. 1): ``sum_i IG_i(x) = F(x) - F(x')`` for the exact
    integral, so ``|delta| / |F(x) - F(x')|`` measures the quadrature error alone. Cost: ``len(targets) *
    len(methods) * sum(steps)`` gradient evaluations.
    """
    points = []
    for target in targets:
        for method in methods:
            for n in steps:
                result = integrated_gradients(model, x, class_index, target=target, baseline=baseline,
                                              steps=int(n), method=method)
                points.append(CompletenessPoint(target, method, int(n), float(result.relative_delta),
                                                result.f_x, result.f_baseline))
    return points


__all__ = ["CompletenessPoint", "EpsPoint", "completeness_sweep", "eps_sweep"]
