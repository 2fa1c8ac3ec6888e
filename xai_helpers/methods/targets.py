"""What an explanation differentiates: its target, checked once for Grad-CAM, IG and the interventions.

A target is one of ``TARGETS``: the class's softmax probability p_c, its logit z_c, or the logit margin
``z_c - z_k`` against a contrast class k (the score whose sign decides between the two classes: the one to
explain for a class that has lost its probability, and the one an attack flips). ``check_targets`` turns a
call's (target, class or classes, contrast class or classes) into one ``Targets`` value with one class and
one contrast class per image, every error one sentence.

``TARGET_SETS`` names the two ways the report explains an image (the assignment's question 3): "standard"
(Grad-CAM of the logit as in Selvaraju et al. 2017, IG of the softmax as in the assignment) and "reversed"
(Grad-CAM of the softmax, IG of the logit). Light: NumPy only, so the command line imports it at once.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from xai_helpers.classifier.checks import check_class_index

#: The scores an explanation may differentiate.
TARGETS = ("logits", "softmax", "margin")
#: Explanation targets of the report: (Grad-CAM target, IG target).
TARGET_SETS = {"standard": ("logits", "softmax"), "reversed": ("softmax", "logits")}
#: What each target is, in plain words (figure titles, the printed table).
TARGET_WORDS = {"logits": "class score (logit)", "softmax": "class probability (softmax)",
                "margin": "logit margin against the contrast class"}


class Targets(NamedTuple):
    """One explanation call's targets: the score, one class per image and (for the margin) one contrast class
    per image (None otherwise)."""

    target: str
    classes: list[int]
    contrast: list[int] | None


def check_targets(target: str, class_index, n_images: int, n_classes: int, contrast_class=None) -> Targets:
    """Return the ``Targets`` of ``n_images`` images: ``class_index`` and ``contrast_class`` are one int each
    or one per image; the contrast class is given exactly when ``target`` is "margin" and differs from the
    class. Raises ``ValueError`` (one sentence) otherwise."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}.")
    classes = _per_image(class_index, n_images, "class indices")
    classes = [check_class_index(c, n_classes) for c in classes]
    if (target == "margin") != (contrast_class is not None):
        raise ValueError("contrast_class must be given exactly when target is 'margin'.")
    if contrast_class is None:
        return Targets(target, classes, None)
    contrast = [check_class_index(k, n_classes, "contrast_class")
                for k in _per_image(contrast_class, n_images, "contrast classes")]
    if any(c == k for c, k in zip(classes, contrast)):
        raise ValueError("contrast_class must differ from class_index (their margin is always 0).")
    return Targets(target, classes, contrast)


def _per_image(value, n_images: int, what: str) -> list:
    values = [value] * n_images if np.ndim(value) == 0 else list(value)
    if len(values) != n_images:
        raise ValueError(f"Got {len(values)} {what} for {n_images} images.")
    return values


__all__ = ["TARGETS", "TARGET_SETS", "TARGET_WORDS", "Targets", "check_targets"]
