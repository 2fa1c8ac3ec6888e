"""Findings the chapters put into words, each decided by the data rather than written in by hand.

A sentence such as "Grad-CAM's top pixels keep no more than random pixels" is true on one table and false on
another. Each function here returns the numbers a chapter glues *and the words for them*: the words follow a
paired test (``study.summary.paired_difference``: mean of the per-photo differences, 95% bootstrap interval,
t-test p-value) with Holm's correction over the tests of that one function, per network and attack, or, for a
ratio, its 95% bootstrap interval; each docstring names its family.
"""
from __future__ import annotations

from xai_helpers.chapters.study_tables import StudyBook, column, median
from xai_helpers.study import columns as col
from xai_helpers.study.summary import corrected_verdict, family_verdicts, paired_difference


def _worded(tests: dict[str, dict], above: str, below: str, neither: str) -> dict[str, dict]:
    """Each test of one family with its Holm verdict in words (``above``, ``below`` or ``neither``)."""
    verdicts = family_verdicts(tests)
    return {name: {**t, "words": corrected_verdict(verdicts[name], above, below, neither)}
            for name, t in tests.items()}


def gradient_share(book: StudyBook, attack: str = "fgsm") -> dict[str, float]:
    """How much of what the attack attribution finds the clean photo's vanilla gradient already finds.

    ``ratio``: the median share of the margin change kept by the gradient's top pixels over the attribution's
    (1 = the gradient finds as much); ``iou``: the median top-fraction IoU of the two sets; ``iou_times``:
    that IoU over chance's, ``f / (2 - f)`` for two random sets of a share f of the pixels. No test: numbers.
    """
    fooled, f = book.fooled[attack], book.settings.top_fraction
    kept_attack = median(column(fooled, col.kept(attack, "attack")))
    kept_grad = median(column(fooled, col.kept(attack, "grad")))
    iou = median(column(fooled, col.overlap(attack, "grad")))
    return {"kept_attack": kept_attack, "kept_grad": kept_grad, "ratio": kept_grad / kept_attack,
            "iou": iou, "iou_chance": f / (2 - f), "iou_times": iou / (f / (2 - f))}


def gradcam_controls(book: StudyBook, attack: str = "fgsm") -> dict[str, dict]:
    """Grad-CAM of the photo's own class against its two controls, as shares of the attack kept.

    ``moved``: the same top pixels moved, turned and mirrored (the shape-matched control); ``random``:
    scattered random pixels of the same number. Family: these two paired tests. Each result holds the paired
    difference (Grad-CAM minus control: ``mean``, ``ci_low``, ``ci_high``, ``n``) and ``words``: "more than",
    "less than" or "no different from".
    """
    fooled = book.fooled[attack]
    gradcam = column(fooled, col.kept(attack, "gc_clean"))
    tests = {"moved": paired_difference(gradcam, column(fooled, col.kept_moved(attack, "gc_clean"))),
             "random": paired_difference(gradcam, column(fooled, col.kept(attack, "random_median")))}
    return _worded(tests, "more than", "less than", "no different from")


def object_controls(book: StudyBook, attack: str = "fgsm") -> dict[str, dict]:
    """The perturbation kept on the object alone against kept on the background alone and on the object's
    mask moved elsewhere (the shape-matched control), on the photos with an object mask.

    Family: these two paired tests. Results as ``gradcam_controls``' (object minus the other region).
    """
    fooled = book.fooled[attack]
    on_object = column(fooled, col.kept(attack, "object"))
    tests = {"background": paired_difference(on_object, column(fooled, col.kept(attack, "background"))),
             "moved": paired_difference(on_object, column(fooled, col.kept_moved(attack, "object")))}
    return _worded(tests, "more than", "less than", "no different from")


def class_or_perturbation(book: StudyBook, attack: str = "fgsm", method: str = "gc") -> dict:
    """Does the attacked image's map move further from the photo's than the photo's own map for the new class?

    ``share`` (``StudyBook.class_share``): the move of the unattacked photo's map for the new class over the
    attacked image's, moves being 1 - median top-pixel IoU with the photo's map for its true class, over the
    photos the attack fooled; 1 = the class alone moves the map as far. ``low``, ``high``: its 95% bootstrap
    interval (photos resampled in pairs). Family: this one interval. ``words``, from the interval: the attacked
    image's map moves "further than", "less far than" or "as far as" the class alone moves it; ``sentence``,
    what that says about the move, for the answer and the conclusions.
    """
    share = book.class_share(attack, method)
    low, high = book.class_share_interval(attack, method)
    words = "further than" if high < 1 else "less far than" if low > 1 else "as far as"
    sentence = {"as far as": "the map's move belongs to the class, not to the perturbation",
                "further than": f"the class alone makes {share:.0%} of the map's move and the perturbation the rest",
                "less far than": "the class alone moves the map further than the attacked image's map moves"}[words]
    return {"share": share, "low": low, "high": high, "words": words, "sentence": sentence}


def target_swap(book: StudyBook) -> dict:
    """Which explainer changes more when its target is swapped: Grad-CAM (logit against softmax) or IG
    (softmax against logit), on the correctly classified photos.

    Per photo, the Spearman correlation of the two maps of each method; the paired difference Grad-CAM minus
    IG (positive: Grad-CAM's maps agree more, so IG changes more). Family: this one test. ``words``: which
    changes more ("IG", "Grad-CAM" or "neither"); ``sentence`` for the abstract; ``short`` for the answer.
    """
    correct = book.correct
    test = _worded({"swap": paired_difference(column(correct, "clean_gc_logit_vs_softmax_spearman"),
                                              column(correct, "clean_ig_softmax_vs_logit_spearman"))},
                   "IG", "Grad-CAM", "neither")["swap"]
    sentence = {"IG": "Swapping the explainers' targets changes Integrated Gradients more than Grad-CAM",
                "Grad-CAM": "Swapping the explainers' targets changes Grad-CAM more than Integrated Gradients",
                "neither": "Swapping the explainers' targets changes Grad-CAM and Integrated Gradients alike"}
    short = {"IG": "Less for Grad-CAM than for IG", "Grad-CAM": "Less for IG than for Grad-CAM",
             "neither": "About as much for Grad-CAM as for IG"}
    return {**test, "sentence": sentence[test["words"]], "short": short[test["words"]]}


__all__ = ["class_or_perturbation", "gradcam_controls", "gradient_share", "object_controls", "target_swap"]
