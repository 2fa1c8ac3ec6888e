"""The study table's columns, named in one place: the rows are written through these names and the chapters
read through them, so a column family is spelt once.

Naming: ``a`` is an attack (``ATTACKS``), ``method`` "gc" (Grad-CAM) or "ig" (Integrated Gradients), an
``image`` "clean" or an attack's, a ``pair`` the (image, class) a map explains ("clean": the photo for its
class; "{a}adv" / "{a}true": the attacked image for its new / true class; "noise": the photo with random-sign
noise of the same eps; "clean{a}": the photo for the class attack a chose; "cleanrunnerup" / "cleanrandom":
the photo for its runner-up class / a seeded random class, the controls of the class share).
"""
from __future__ import annotations

#: The attacks whose images are explained and intervened on: FGSM and PGD at the study eps, PGD towards a
#: seeded random class ("tpgd"), and the just-flipping PGD ("jf", the smallest budget that flips the label).
ATTACKS = ("fgsm", "pgd", "tpgd", "jf")
#: Names of the attacks in tables and figures.
ATTACK_TITLES = {"fgsm": "FGSM", "pgd": "PGD", "tpgd": "targeted PGD", "jf": "just-flipping PGD"}
#: The rankings whose top pixels are kept or removed (besides each attack's own maps): the attack
#: attribution ("attack"), at Grad-CAM's 7 x 7 resolution ("attack7"), and the first-order maps of the margin.
FIRST_ORDER = ("grad", "gradinput", "smoothgrad")
#: The regions of the photo that a pixel set is located in: the object (photos with a mask) and the edges.
REGIONS = ("object", "edges")


def at_eps(attack: str, levels: float, field: str) -> str:
    """An attack at one eps of the grid: ``top1``, ``p_top1``, ``p_true``, ``changed``, ``hf``."""
    return f"{attack}{levels:g}_{field}"


def attacked(attack: str, field: str) -> str:
    """An attack at the study eps: ``top1``, ``p_top1``, ``p_true``, ``runnerup_share``, ``fooled``; the
    targeted attack's ``target``, ``p_target``, ``hit``; the just-flipping attack's ``levels``."""
    return f"{attack}_{field}"


def compared(method: str, pair: str, metric: str) -> str:
    """``compare_maps`` of the clean map and the map of ``pair``: ``top_iou``, ``spearman``, ``com_shift_px``."""
    return f"{method}_{pair}_{metric}"


def kept(attack: str, ranking: str) -> str:
    """Share of the attack's margin change kept when only the ranking's top pixels keep the perturbation."""
    return f"{attack}_kept_{ranking}"


def kept_moved(attack: str, ranking: str) -> str:
    """The median of ``kept`` over moved copies (same shape and area) of the ranking's top pixels."""
    return f"{attack}_kept_moved_{ranking}_median"


def removed(attack: str, ranking: str) -> str:
    """Share of the margin change that survives removing the perturbation from the ranking's top pixels."""
    return f"{attack}_removed_{ranking}"


def verdict(attack: str, kind: str, ranking: str) -> str:
    """1 or 0: keeping only the region flips the label (``sufficient``; a targeted attack: reaches its
    target), or removing it gives the true label back (``necessary``)."""
    return f"{attack}_{kind}_{ranking}"


def located(attack: str, pixels: str, region: str) -> str:
    """Share of a pixel set (``attack``: the attack attribution's top pixels, ``flip``: the smallest flipping
    region, ``gcadv`` / ``igadv``: the adversarial class's evidence) inside a region (``REGIONS``, or
    ``gcclean`` / ``igclean``: the true class's evidence on the photo)."""
    return f"{attack}_{pixels}_on_{region}"


def clean_located(method: str, region: str) -> str:
    """Share of the photo's true-class evidence (the clean map's top pixels) inside a region."""
    return f"{method}_clean_on_{region}"


def overlap(attack: str, ranking: str) -> str:
    """Top-pixel IoU of the attack attribution and another ranking (a first-order map)."""
    return f"{attack}_attack_vs_{ranking}_iou"


def faithfulness(curve: str, map_name: str, image: str, variant: str = "") -> str:
    """Deletion or insertion AUC of a map (``variant`` "half": half the steps; "logit": scored on the logit)."""
    return f"{curve[:3]}_{map_name}_{image}_auc" + (f"_{variant}" if variant else "")


__all__ = ["ATTACKS", "ATTACK_TITLES", "FIRST_ORDER", "REGIONS", "at_eps", "attacked", "clean_located", "compared",
           "faithfulness", "kept", "kept_moved", "located", "overlap", "removed", "verdict"]
