"""The per-photo analysis, in one place: attack, explain, compare, intervene.

The command line renders its result (figure, table, JSON), the study flattens it into table rows, and the
chapters call the same steps, so a new idea is written once. Each step is batched over photos and returns
arrays; ``progress`` callbacks (a stage name) let a caller show where a long run is.

1. ``attack``: the adversarial images (FGSM, PGD or the targeted iterative FGSM; ``xai_helpers.methods.attacks``).
2. ``explain``: saliency maps of many (image, class) pairs for one method and target in one compiled call
   (Grad-CAM through tf-keras-vis, Integrated Gradients reduced with ``compare.to_2d``).
3. ``intervene``: the causal side (``xai_helpers.methods.interventions``): the attack attribution along the
   clean-to-adversarial path and the perturbation curve of every map against seeded random pixels.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from xai_helpers.classifier import passes
from xai_helpers.methods.attacks import fgsm, iterative_fgsm_targeted, pgd_batch
from xai_helpers.methods.compare import DEFAULT_TOP_FRACTION, to_2d, top_mask
from xai_helpers.methods.gradcam import gradcam
from xai_helpers.methods.integrated_gradients import (
    DEFAULT_METHOD,
    DEFAULT_STEPS,
    IGResult,
    integrated_gradients_batch,
)
from xai_helpers.methods.interventions import (
    DEFAULT_RANDOM_MASKS,
    PerturbationCurve,
    attack_attribution,
    curves_analysis,
    shared_pass,
    signed_map,
)
from xai_helpers.study.memory import release_freed_memory

ATTACKS = ("fgsm", "pgd", "targeted")
Progress = Callable[[str], None] | None


def attack(model, xs: np.ndarray, labels: Sequence[int], eps: float, kind: str = "fgsm",
           target: int | None = None, iterations: int = 10, seeds: Sequence | None = None) -> np.ndarray:
    """Return adversarial images (N, H, W, C) of ``xs`` within ``eps`` (model units) of each photo.

    ``kind``: ``"fgsm"`` (untargeted, against ``labels``), ``"pgd"`` (untargeted, 10 steps of eps/4,
    random start seeded by ``seeds``) or ``"targeted"`` (iterative FGSM toward ``target``).
    """
    xs = np.asarray(xs, dtype=np.float32)
    if kind == "fgsm":
        return np.stack([fgsm(model, x, int(c), eps) for x, c in zip(xs, labels)])
    if kind == "pgd":
        return pgd_batch(model, xs, labels, eps, seeds=seeds)
    if kind == "targeted":
        if target is None:
            raise ValueError("A targeted attack needs a target class.")
        return np.stack([iterative_fgsm_targeted(model, x, target, eps, iterations=iterations) for x in xs])
    raise ValueError(f"kind must be one of {ATTACKS}, got {kind!r}.")


#: ``explain --eps auto``: the smallest budget on a grid of 1/8 pixel level, up to 16 levels.
AUTO_STEP_LEVELS = 0.125
AUTO_MAX_LEVELS = 16.0


def flipping_levels(model, x: np.ndarray, label: int, target: int | None = None, iterations: int = 10,
                    step_levels: float = AUTO_STEP_LEVELS, max_levels: float = AUTO_MAX_LEVELS) -> float:
    """The smallest eps (pixel levels) on the grid at which ``explain``'s attack succeeds on photo ``x``: the
    untargeted FGSM moves the top-1 class away from ``label``; the targeted iterative FGSM makes ``target``
    the top-1 class. NaN when not even ``max_levels`` does (``just_flipping.smallest_budget``)."""
    from xai_helpers.classifier.forward import logits
    from xai_helpers.methods.attacks import pixels_to_eps
    from xai_helpers.methods.just_flipping import smallest_budget

    kind = "fgsm" if target is None else "targeted"

    def run(which, levels):
        return attack(model, x[None], [label], pixels_to_eps(float(levels[0])), kind=kind, target=target,
                      iterations=iterations)

    def succeeded(which, images):
        top = logits(model, images).argmax(axis=1)
        return top != label if target is None else top == target

    return float(smallest_budget(run, succeeded, 1, step_levels, max_levels)[0][0])


@dataclass(frozen=True)
class IGSettings:
    """How Integrated Gradients is computed (the command line's and the study's defaults differ)."""

    steps: int = DEFAULT_STEPS
    method: str = DEFAULT_METHOD
    baseline: str = "black"


# long: one call for both methods: the method, its target and each method's own options
def explain(model, images: np.ndarray, classes: Sequence[int], method: str, target: str,
            ig: IGSettings = IGSettings(), contrast: Sequence[int] | None = None,
            gradcam_engine: str = "tf-keras-vis", gradcam_upsampling: str = "half_pixel"
            ) -> tuple[list[np.ndarray], list[IGResult] | None]:
    """Return the (H, W) maps of each (image, class) pair, and the IG results when ``method="ig"``.

    ``method``: ``"gradcam"`` (each map divided by its maximum) or ``"ig"`` (``to_2d``: sum of |IG| over
    channels); ``target``: ``"logits"``, ``"softmax"`` or ``"margin"`` (then ``contrast`` gives the class
    k of each pair's margin z_c - z_k). One compiled call for all pairs. ``gradcam_engine`` and
    ``gradcam_upsampling``: ``gradcam.gradcam``'s ``engine`` and ``upsampling``.
    """
    images = np.asarray(images, dtype=np.float32)
    if method == "gradcam":
        cams = gradcam(model, images, list(classes), target=target, engine=gradcam_engine,
                       upsampling=gradcam_upsampling, contrast_class=None if contrast is None else list(contrast))
        return list(cams), None
    if method == "ig":
        results = integrated_gradients_batch(model, images, list(classes), target=target, baseline=ig.baseline,
                                             steps=ig.steps, method=ig.method,
                                             contrast_classes=None if contrast is None else list(contrast))
        return [to_2d(r.attributions) for r in results], results
    raise ValueError(f"method must be 'gradcam' or 'ig', got {method!r}.")


@dataclass
class Intervention:
    """The causal analysis of one (clean, adversarial) pair: what carries the attack's effect."""

    true_class: int
    adv_class: int
    #: IG from the clean to the adversarial image of the true class's logit: sum = the logit's change.
    attribution: IGResult
    #: Share of the logit change carried by the top ``top_fraction`` pixels of the attribution.
    attribution_top_share: float
    #: The same attribution of the margin z_true - z_adv (ranks the "attack" curve).
    margin_attribution: IGResult | None = None
    #: Perturbation curve (margin z_true - z_adv) of each map and of the attribution ("attack"), sharing
    #: one random control.
    curves: dict[str, PerturbationCurve] = field(default_factory=dict)
    top_fraction: float = DEFAULT_TOP_FRACTION

    def summary(self) -> dict:
        """Return the numbers a report shows: attribution accuracy and cost, AUCs, shares kept at top_fraction."""
        first = next(iter(self.curves.values()))
        low, mid, high = first.random_auc_interval if len(first.fractions) > 1 else (np.nan,) * 3
        at = self.top_fraction
        return {"true_class": self.true_class, "adv_class": self.adv_class,
                "score": "margin z_true - z_adv (logits)",
                "attribution": {"true_logit_change": self.attribution.f_x - self.attribution.f_baseline,
                                "relative_delta": self.attribution.relative_delta,
                                "gradient_evaluations": self.attribution.steps,
                                "top_share": self.attribution_top_share},
                "random": {"auc_low": low, "auc_median": mid, "auc_high": high,
                           "kept_at_top": first.random_share_at(at)},
                "maps": {name: {"auc": c.auc if len(c.fractions) > 1 else np.nan, "kept_at_top": c.share_at(at)}
                         for name, c in self.curves.items()}}


# long: the intervention's keyword options (fractions, random controls, seed, IG tolerance), each with a default
def intervene(model, x: np.ndarray, adv: np.ndarray, true_class: int, adv_class: int,
              maps: Mapping[str, np.ndarray], fractions: Sequence[float] = (DEFAULT_TOP_FRACTION,),
              n_random: int = DEFAULT_RANDOM_MASKS, seed: int | Sequence[int] = 0,
              top_fraction: float = DEFAULT_TOP_FRACTION,
              attributions: tuple[IGResult, IGResult] | None = None) -> Intervention:
    """Return the attack attribution and the perturbation curves of ``maps`` for one attacked photo.

    The attribution (``interventions.attack_attribution``, adaptive to 1% completeness) explains the true
    class's logit; that of the margin ranks pixels by their push in the attack's direction, joining ``maps``
    as ``"attack"``.
    Curves use the margin ``z_true - z_adv`` at ``fractions`` (``top_fraction`` is added), with
    ``n_random`` random pixel orders seeded by ``seed`` as the chance level. ``attributions``: the two
    attributions (true logit, margin), when a caller computed them already for a batch of photos.
    """
    if true_class == adv_class:
        raise ValueError("The attack did not change the label, so there is no margin change to intervene on.")
    if attributions is None:
        with passes.stage("attack_attribution"):
            # The curves measure the margin, so the attack's own ranking comes from the margin's attribution.
            attributions = (attack_attribution(model, x, adv, true_class),
                            attack_attribution(model, x, adv, true_class, contrast_class=adv_class))
    with passes.stage("interventions"):
        analysis = intervention_analysis(model, x, adv, true_class, adv_class, maps, attributions, fractions,
                                         n_random, seed, top_fraction)
        return shared_pass(model, x, adv, analysis)[0]


# long: intervene's options, the attributions given
def intervention_analysis(model, x: np.ndarray, adv: np.ndarray, true_class: int, adv_class: int,
                          maps: Mapping[str, np.ndarray], attributions: tuple[IGResult, IGResult],
                          fractions: Sequence[float] = (DEFAULT_TOP_FRACTION,), n_random: int = DEFAULT_RANDOM_MASKS,
                          seed: int | Sequence[int] = 0, top_fraction: float = DEFAULT_TOP_FRACTION):
    """``intervene`` with its two attributions, as an analysis of ``interventions.shared_pass`` (its curves'
    masks yielded, their logits received)."""
    if true_class == adv_class:
        raise ValueError("The attack did not change the label, so there is no margin change to intervene on.")
    attribution, margin_attribution = attributions
    signed = signed_map(attribution.attributions)
    top_share = float(signed[top_mask(np.sign(signed.sum()) * signed, top_fraction)].sum() / signed.sum())
    margin_signed = signed_map(margin_attribution.attributions)
    toward_attack = np.sign(margin_signed.sum()) * margin_signed
    # The curves are always sampled at top_fraction too, so that summary() can report the share kept there.
    fractions = np.union1d(np.asarray(fractions, dtype=np.float64), [top_fraction])
    curves = yield from curves_analysis(model, x, adv, {**maps, "attack": toward_attack}, true_class,
                                        contrast_class=adv_class, fractions=fractions, n_random=n_random, seed=seed)
    return Intervention(true_class, adv_class, attribution, top_share, margin_attribution, curves, top_fraction)


@dataclass
class PhotoExplanation:
    """``explain_photo``'s result: the attack, the maps of each target set, their comparison, the causal row."""

    clean_top: list  #: ``model.predict`` of the clean photo (top classes)
    adv: np.ndarray  #: the adversarial image
    adv_top: list
    #: ``maps[set name] = (Grad-CAM maps [clean, adv], IG maps [clean, adv])``, raw (not scaled for display)
    maps: dict
    #: ``comparisons[set name] = (compare_maps of the Grad-CAM pair, of the IG pair)``
    comparisons: dict
    explanations: list  #: one dict per (set, method): targets, numbers, IG's completeness (for the JSON)
    intervention: Intervention | None  #: None when the attack did not change the top-1 class
    causal: dict  #: ``intervention.summary()``, or why it was skipped


@dataclass(frozen=True)
class ExplainOptions:
    """What ``explain_photo`` computes beside the attack: the target sets (``name -> (Grad-CAM target, IG
    target)``), IG's settings, the perturbation curves' fractions and random controls, how many top classes
    are kept, and the targeted attack's iterations."""

    target_sets: Mapping[str, tuple[str, str]] = field(default_factory=lambda: {"standard": ("logits", "softmax")})
    ig: IGSettings = IGSettings()
    fractions: Sequence[float] = (DEFAULT_TOP_FRACTION,)
    n_random: int = DEFAULT_RANDOM_MASKS
    top: int = 5
    iterations: int = 10


def explain_photo(model, x: np.ndarray, eps: float, target_class: int | None = None,
                  options: ExplainOptions = ExplainOptions(), progress: Progress = None) -> PhotoExplanation:
    """Return the whole analysis of one photo ``x`` (H, W, 3) in [-1, 1]: what ``explain`` reports.

    The attack: untargeted FGSM away from the model's top-1 class, or (``target_class``) the targeted
    iterative FGSM. Each target set of ``options`` explains the clean image and the adversarial one, each
    for its own top-1 class; the maps of the first set are ranked by the interventions (``intervene``)
    when the attack changed the top-1 class. ``progress(stage name)`` is called as each stage begins.
    """
    from xai_helpers.classifier.forward import predict

    def stage(name: str) -> None:
        if progress is not None:
            progress(name)

    target_sets, ig = options.target_sets, options.ig
    stage("attack")
    clean_top = predict(model, x, top=options.top)
    adv = attack(model, x[None], [clean_top[0].class_index], eps,
                 kind="fgsm" if target_class is None else "targeted", target=target_class,
                 iterations=options.iterations)[0]
    adv_top = predict(model, adv, top=options.top)
    pair = np.stack([x, adv])
    classes = [clean_top[0].class_index, adv_top[0].class_index]
    explanations, maps, comparisons = [], {}, {}
    for name, targets in target_sets.items():
        maps[name], comparisons[name], entries = _explain_target_set(model, pair, classes, name, targets, ig, stage)
        explanations += entries
    stage("interventions")
    intervention, causal = None, {"skipped": "the attack did not change the top-1 class, so there is no "
                                             "margin change to attribute"}
    if classes[0] != classes[1]:
        # The causal question on this photo: which pixels carry the attack, ranked by the first set's maps.
        name = next(iter(target_sets))
        (gc_target, ig_target), (cams, ig_maps) = target_sets[name], maps[name]
        ranked = {f"Grad-CAM ({gc_target}), original": cams[0], f"Grad-CAM ({gc_target}), adversarial": cams[1],
                  f"IG ({ig_target}), original": ig_maps[0], f"IG ({ig_target}), adversarial": ig_maps[1]}
        intervention = intervene(model, x, adv, classes[0], classes[1], ranked, fractions=options.fractions,
                                 n_random=options.n_random)
        causal = intervention.summary()
        release_freed_memory()
    return PhotoExplanation(clean_top, adv, adv_top, maps, comparisons, explanations, intervention, causal)


def _explain_target_set(model, pair: np.ndarray, classes: list[int], name: str, targets: tuple[str, str],
                        ig: IGSettings, stage: Callable[[str], None]) -> tuple[tuple, tuple, list[dict]]:
    """Grad-CAM and IG of the (clean, adversarial) ``pair``, each for its own class, for one target set:
    return (maps, their comparisons, the JSON's two explanation entries)."""
    from xai_helpers.methods.compare import compare_maps

    gc_target, ig_target = targets
    stage(f"Grad-CAM ({gc_target})")
    cams, _ = explain(model, pair, classes, "gradcam", gc_target)
    release_freed_memory()
    stage(f"IG ({ig_target}, {ig.steps} steps)")
    ig_maps, igs = explain(model, pair, classes, "ig", ig_target, ig)
    release_freed_memory()  # what IG freed goes back to the system before the next stage
    comparisons = (compare_maps(cams[0], cams[1]), compare_maps(ig_maps[0], ig_maps[1]))
    entries = [{"targets": name, "method": "gradcam", "target": gc_target, "compare": comparisons[0]},
               {"targets": name, "method": "integrated_gradients", "target": ig_target, "compare": comparisons[1],
                "steps": ig.steps, "quadrature": ig.method, "baseline": ig.baseline, "clean": _ig_numbers(igs[0]),
                "adversarial": _ig_numbers(igs[1])}]
    return (cams, ig_maps), comparisons, entries


def _ig_numbers(result: IGResult) -> dict[str, float]:
    return {"class_index": result.class_index, "f_x": result.f_x, "f_baseline": result.f_baseline,
            "delta": result.delta, "relative_delta": result.relative_delta}


__all__ = ["ATTACKS", "AUTO_MAX_LEVELS", "AUTO_STEP_LEVELS", "ExplainOptions", "IGSettings", "Intervention",
           "PhotoExplanation", "attack", "explain", "explain_photo", "flipping_levels", "intervene",
           "intervention_analysis"]
