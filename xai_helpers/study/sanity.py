"""Sanity check of explanations by cascading model-parameter randomisation (Adebayo, Gilmer, Muelly,
Goodfellow, Hardt & Kim, "Sanity Checks for Saliency Maps", NeurIPS 2018).

If a map stays the same when the top layers' weights are replaced by noise, it cannot be explaining what the
trained model learnt. The randomisation cascades from the logits downwards; each stage is compared with the
trained model's map by Spearman rank correlation.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

import numpy as np

from xai_helpers.classifier.data import load_image, sample_image
from xai_helpers.methods.compare import compare_maps, to_2d
from xai_helpers.methods.gradcam import gradcam
from xai_helpers.methods.integrated_gradients import integrated_gradients_batch
from xai_helpers.study.settings import SANITY_IG_STEPS

SEED = 0


def randomize_top_layers(model, layer_names: Iterable[str], seed: int = SEED):
    """Return a copy of ``model`` whose named layers' kernels and biases are re-drawn at random.

    Each weight is replaced by Gaussian noise of the same standard deviation (seeded), the "cascading
    randomisation" of Adebayo et al. 2018; BatchNorm statistics are kept so activations stay finite.
    """
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    rng = np.random.default_rng(seed)
    for name in layer_names:
        layer = clone.get_layer(name)
        for w in layer.weights:
            if any(k in w.path for k in ("kernel", "bias")):
                value = np.asarray(w.numpy())
                w.assign(rng.normal(0.0, value.std() or 1.0, size=value.shape).astype(value.dtype))
    return clone


#: Cascade stages: each randomises its layers *and* all earlier stages' (top of the network first).
SANITY_STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("logits", ("predictions",)),
    ("+Conv_1", ("Conv_1",)),
    ("+block_16", ("block_16_expand", "block_16_depthwise", "block_16_project")),
    ("+block_15", ("block_15_expand", "block_15_depthwise", "block_15_project")),
)


def sanity_check(model, class_indices: Sequence[int], settings,
                 ig_steps: int = SANITY_IG_STEPS, progress: bool = False) -> list[dict]:
    """Return rows (photo, stage, Spearman of the randomised map vs the original) for Grad-CAM and IG of
    logits (the study's maps).

    A randomised map that is constant (e.g. Grad-CAM with no positive evidence left) has no rank
    correlation: its row holds NaN, which the reader must count as "changed", not drop. ``progress``
    shows a bar on stderr over the trained model's maps and the randomised stages (each takes about a
    fifth of the check: minutes for 100 photos on 2 CPU cores).
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=1 + len(SANITY_STAGES), desc=f"sanity check ({len(class_indices)} photos)", unit="stage",
               file=sys.stderr, disable=not progress)
    xs = np.stack([load_image(sample_image(int(c)), resize=settings.resize) for c in class_indices])
    classes = [int(c) for c in class_indices]
    ig_kw = dict(baseline=settings.ig_baseline, steps=ig_steps, method=settings.ig_method)
    reference_gc = gradcam(model, xs, classes, target="logits")
    reference_ig = [to_2d(r.attributions) for r in
                    integrated_gradients_batch(model, xs, classes, target="logits", **ig_kw)]
    bar.update()
    rows, randomized = [], []
    for stage, layers in SANITY_STAGES:
        randomized += list(layers)
        noisy_model = randomize_top_layers(model, randomized, settings.seed)
        with np.errstate(all="ignore"):
            stage_gc = gradcam(noisy_model, xs, classes, target="logits")
        stage_ig = [to_2d(r.attributions) for r in
                    integrated_gradients_batch(noisy_model, xs, classes, target="logits", **ig_kw)]
        for i, c in enumerate(classes):
            rows.append({"class_index": c, "stage": stage,
                         "gc_spearman": compare_maps(reference_gc[i], stage_gc[i])["spearman"],
                         "ig_spearman": compare_maps(reference_ig[i], stage_ig[i])["spearman"]})
        bar.update()
    bar.close()
    return rows


__all__ = ["SANITY_STAGES", "randomize_top_layers", "sanity_check"]
