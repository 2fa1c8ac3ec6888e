"""The single-photo chapters' shared set-up: the model, the whiptail photo and its two attacked images.

The assignment's case is MobileNetV2 on the ImageNet sample photo of a whiptail lizard, attacked by one FGSM
step of one pixel level (``eps = DEFAULT_EPS``: ``x_adv = x + eps * sign(grad_x loss)``, Goodfellow et al.,
2015) and by ten iterative FGSM steps targeted at "Komodo dragon" within the same budget (Kurakin et al., 2017).
Every single-photo chapter starts from the same four arrays, so they come from one place.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from xai_helpers.classifier.data import load_image, sample_image, sample_photos
from xai_helpers.classifier.labels import class_labels
from xai_helpers.classifier.loading import load_model
from xai_helpers.methods.attacks import DEFAULT_EPS, fgsm, iterative_fgsm_targeted

PHOTO = "whiptail"
TARGET = "Komodo_dragon"
TARGETED_ITERATIONS = 10


@dataclass(frozen=True)
class OnePhoto:
    """The model, its labels, the photo (model range), its class, the target class and the two attacked images."""

    model: Any
    labels: list
    x: np.ndarray
    true_class: int
    target_class: int
    eps: float
    fgsm: np.ndarray
    targeted: np.ndarray


def nice(name: str) -> str:
    """Return an ImageNet class name as prose ("Komodo_dragon" -> "Komodo dragon")."""
    return name.replace("_", " ")


def whiptail_case(model: Any = None, eps: float = DEFAULT_EPS) -> OnePhoto:
    """Return the assignment's case: ``model`` (default: ``load_model()``), the whiptail photo, its FGSM image
    and its image targeted at Komodo dragon, both within ``eps``."""
    model = load_model() if model is None else model
    labels = class_labels()
    x = load_image(sample_image(PHOTO))
    true_class = next(p.class_index for p in sample_photos() if p.name == PHOTO)
    target_class = next(i for i, (_, name) in enumerate(labels) if name == TARGET)
    return OnePhoto(model=model, labels=labels, x=x, true_class=true_class, target_class=target_class, eps=eps,
                    fgsm=fgsm(model, x, true_class, eps),
                    targeted=iterative_fgsm_targeted(model, x, target_class, eps,
                                                     iterations=TARGETED_ITERATIONS))
