"""Named image regions (hand-annotated boxes) and how much of a saliency map falls inside each.

The assignment claims that on the adversarial image both explainers look at the *head and front of the
body*, while on the original they also use the *tail and legs*. To test that with numbers we need the
regions themselves. They are an annotation, not a measurement: boxes drawn by hand on the whiptail sample
photo as ``load_image`` returns it (the whole 500 x 332 photo resized to 224 x 224), written down here so
that a reader can draw them over the photo and check them (the explaining chapter does).

A map's *mass fraction* in a region is ``sum(map[region]) / sum(map)`` (``compare.mass_fraction``); a map
that ignored the image would put the region's *area fraction* there, so ``mass / area`` (the
*enrichment*) says how much more evidence per pixel the region holds than an average pixel.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from xai_helpers.classifier.checks import check_map
from xai_helpers.classifier.data import IMAGE_SIZE
from xai_helpers.methods.compare import mass_fraction


class Box(NamedTuple):
    """A rectangle in pixels of the 224 x 224 model input: rows [top, bottom), columns [left, right)."""

    top: int
    bottom: int
    left: int
    right: int


#: Hand annotation of the whiptail sample photo (class 41, ``sample_image("whiptail")``) in the 224 x 224
#: frame of ``load_image``. The lizard faces right: its head (snout to neck) is at the right, the body with
#: the front legs in the middle, and the thin tail runs to the left. The legs are too small and occluded to
#: box on their own; the front legs lie inside "body". Boxes do not overlap.
WHIPTAIL_REGIONS: dict[str, Box] = {
    "head": Box(top=78, bottom=108, left=160, right=194),
    "body": Box(top=88, bottom=132, left=116, right=160),
    "tail": Box(top=84, bottom=122, left=44, right=116),
}


def box_mask(box: Box, shape: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE)) -> np.ndarray:
    """Return the boolean (H, W) mask of ``box``; raises if the box is empty or leaves the image."""
    top, bottom, left, right = (int(v) for v in box)
    if not (0 <= top < bottom <= shape[0] and 0 <= left < right <= shape[1]):
        raise ValueError(f"The box {tuple(box)} must be non-empty and inside an image of shape {shape}.")
    mask = np.zeros(shape, dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def region_masks(regions: Mapping[str, Box] = WHIPTAIL_REGIONS,
                 shape: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE),
                 exclusive: bool = False) -> dict[str, np.ndarray]:
    """Return one boolean mask per named box, plus ``"elsewhere"`` (every pixel outside all boxes).

    Overlapping boxes raise, so that the mass fractions of all the masks add up to 1; with
    ``exclusive=True`` a pixel shared by several boxes goes to the first of them in ``regions`` order
    instead (used for enlarged boxes in ``box_variants``).
    """
    masks: dict[str, np.ndarray] = {}
    covered = np.zeros(shape, dtype=bool)
    for name, box in regions.items():
        mask = box_mask(box, shape)
        if np.any(mask & covered):
            if not exclusive:
                raise ValueError("The region boxes overlap; mass fractions would be counted twice.")
            mask &= ~covered
        masks[name] = mask
        covered |= mask
    masks["elsewhere"] = ~covered
    return masks


def intervention_masks(regions: Mapping[str, Box] = WHIPTAIL_REGIONS,
                       front: Sequence[str] = ("head", "body"),
                       shape: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE)) -> dict[str, np.ndarray]:
    """Return the regions the interventions keep or remove, in the order the book's tables list them.

    Each box of ``regions``, the ``front`` boxes together (after the last of them), the whole animal (the
    union of all boxes) and everything outside it. The boxes must not overlap (``region_masks``).
    """
    boxes = region_masks(regions, shape)
    animal = ~boxes.pop("elsewhere")
    masks: dict[str, np.ndarray] = {}
    for name, mask in boxes.items():
        masks[name] = mask
        if name == front[-1]:
            masks[" + ".join(front)] = np.logical_or.reduce([boxes[f] for f in front])
    masks["whole animal"] = animal
    masks["outside the animal"] = ~animal
    return masks


def box_variants(regions: Mapping[str, Box] = WHIPTAIL_REGIONS, shifts: Sequence[int] = (-8, 0, 8),
                 margins: Sequence[int] = (-4, 0, 4),
                 shape: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE)) -> list[dict[str, Box]]:
    """Return perturbed copies of a hand annotation, to test how much a conclusion depends on it.

    Every combination of a vertical shift, a horizontal shift (both from ``shifts``, pixels) and a margin
    (pixels added on every side; negative shrinks) is applied to all boxes together, clipped to the
    image. The unperturbed annotation is among them when 0 is in both ``shifts`` and ``margins``. Use
    ``region_masks(..., exclusive=True)`` on the results, since enlarged boxes may touch.
    """
    variants = []
    for dy in shifts:
        for dx in shifts:
            for m in margins:
                variants.append({name: Box(max(0, b.top + dy - m), min(shape[0], b.bottom + dy + m),
                                           max(0, b.left + dx - m), min(shape[1], b.right + dx + m))
                                 for name, b in regions.items()})
    return variants


def area_fractions(masks: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Return each mask's share of the image's pixels: the mass fraction of a uniform map."""
    return {name: float(np.mean(mask)) for name, mask in masks.items()}


def region_mass(saliency: np.ndarray, masks: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Return the share of a non-negative (H, W) map's total mass inside each mask.

    Over masks that partition the image (``region_masks``) the shares add up to 1. ``saliency`` is a
    Grad-CAM map or ``to_2d`` of Integrated Gradients; its scale does not matter (a ratio).
    """
    saliency = check_map(saliency)
    return {name: mass_fraction(saliency, mask) for name, mask in masks.items()}


def enrichment(mass: Mapping[str, float], area: Mapping[str, float]) -> dict[str, float]:
    """Return ``mass / area`` per region: 1 = as much evidence per pixel as the image's average pixel."""
    return {name: float(mass[name] / area[name]) for name in mass}


def group_enrichment(mass: Mapping[str, float], area: Mapping[str, float], names: Sequence[str]) -> float:
    """Return the enrichment of several regions taken together: ``sum(mass) / sum(area)`` over ``names``."""
    return float(sum(mass[n] for n in names) / sum(area[n] for n in names))


def front_to_tail(mass: Mapping[str, float], area: Mapping[str, float],
                  front: Sequence[str] = ("head", "body"), tail: Sequence[str] = ("tail",)) -> float:
    """Return how much more evidence per pixel the front of the animal holds than its tail.

    ``group_enrichment(front) / group_enrichment(tail)``: above 1, a pixel of the head or body carries more
    of the map than a pixel of the tail; the assignment's claim predicts this ratio grows under attack.
    """
    return group_enrichment(mass, area, front) / group_enrichment(mass, area, tail)


__all__ = ["WHIPTAIL_REGIONS", "Box", "area_fractions", "box_mask", "box_variants", "enrichment", "front_to_tail",
           "group_enrichment", "region_masks", "region_mass"]
