"""What a study run is: its settings (every one that changes a number, hashed into the table's key) and
the seeded order and noise it draws from. No model: the runner, the per-photo analysis and
the command line all read it.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np

from xai_helpers.classifier.data import sample_photos

EPS_GRID_PIXELS = (0.5, 1.0, 2.0, 4.0, 8.0)
#: The explanations' eps: one pixel level, as in the single-photo chapters (``attacks.DEFAULT_EPS_PIXELS``).
STUDY_EPS_PIXELS = 1.0
#: IG steps of the study's maps, where only their ranks are read: 16 trapezoid steps (8x cheaper than the
#: report's default of 128; benchmarks/ig_ranks.py measures the ranks against 256 steps); the completeness
#: error this costs is recorded per map (``ig_*_reldelta``).
STUDY_IG_STEPS = 16
STUDY_IG_METHOD = "trapezoid"
#: PGD steps of the study's attacks: ``attacks.PGD_STEPS``, the attacks' default, written out here so that
#: the settings (and the runner's bookkeeping) load without TensorFlow; a test keeps the two equal.
STUDY_PGD_STEPS = 10
#: IG steps of the sanity check (``sanity.sanity_check``): the map only needs to be compared with itself
#: before and after randomisation, so half the study's steps do (recorded in the sanity table's header).
SANITY_IG_STEPS = 16
#: Deletion/insertion: pixels are removed (replaced by the blurred photo) or inserted in this many equal
#: steps, most important first; the table also holds the area from every other point (``_auc_half``), so
#: that the chapter measures whether this many steps is enough.
DELETION_STEPS = 16
DELETION_BLUR_SIGMA = 10.0
SEED = 0
#: Random masks per fooled photo for the chance level of "share of the attack kept by a map's top pixels".
INTERVENTION_RANDOM_MASKS = 8
#: ROAD (noisy linear imputation, ~50 sparse solves per photo) runs on the explained photos among the first
#: this many of the seeded study order: a seeded random subset of about 330 correctly classified photos.
ROAD_PHOTOS = 400
#: The engine of the study's Grad-CAM maps: the compiled one, equal to tf-keras-vis's within 1e-5
#: (``tests/test_gradcam_engines.py``) and faster (benchmarks/README.md), so not a setting that changes a number.
STUDY_GRADCAM_ENGINE = "compiled"
#: The just-flipping attack's grid (``just_flipping``): budgets in steps of 1/8 pixel level up to 8 levels.
JF_STEP_LEVELS = 0.125
JF_MAX_LEVELS = 8.0
#: Noisy copies per photo and attack in SmoothGrad (``gradients.first_order_maps``).
SMOOTHGRAD_SAMPLES = 16


@dataclass(frozen=True)
class StudySettings:
    """Everything that determines the numbers of a study run (recorded in the CSV header)."""

    eps_grid_pixels: tuple[float, ...] = EPS_GRID_PIXELS
    study_eps_pixels: float = STUDY_EPS_PIXELS
    ig_steps: int = STUDY_IG_STEPS
    ig_method: str = STUDY_IG_METHOD
    ig_baseline: str = "black"
    deletion_steps: int = DELETION_STEPS
    deletion_blur_sigma: float = DELETION_BLUR_SIGMA
    top_fraction: float = 0.10
    seed: int = SEED
    #: Random pixel masks per fooled photo, the chance level of the intervention columns.
    intervention_random_masks: int = INTERVENTION_RANDOM_MASKS
    #: PGD (Madry et al. 2018) beside FGSM on the eps grid: this many steps of eps/4, random start seeded
    #: per photo; 0 leaves PGD out.
    pgd_steps: int = STUDY_PGD_STEPS
    #: ROAD's faithfulness numbers for the photos among the first this many of the study order.
    road_photos: int = ROAD_PHOTOS
    #: The just-flipping attack's grid: steps of ``jf_step_levels`` pixel levels up to ``jf_max_levels``.
    jf_step_levels: float = JF_STEP_LEVELS
    jf_max_levels: float = JF_MAX_LEVELS
    #: Noisy copies per photo in SmoothGrad, the third first-order map of the margin.
    smoothgrad_samples: int = SMOOTHGRAD_SAMPLES
    #: How a photo becomes the model's input (``data.RESIZE_POLICIES``): the whole photo, or its central
    #: square as in ImageNet's evaluation (the preprocessing check beside the report's policy).
    resize: str = "whole"

    def key(self) -> str:
        """Return a short hash of the settings, to refuse resuming a table made with other settings. A
        setting of ``ADDED_LATER`` enters the hash only away from its default, so the tables written before
        it existed (which used that default) keep their key."""
        items = {k: v for k, v in asdict(self).items() if ADDED_LATER.get(k, object()) != v}
        return hashlib.sha256(repr(sorted(items.items())).encode()).hexdigest()[:12]


#: Settings added after tables were written, with the value those tables used (``StudySettings.key``).
ADDED_LATER = {"resize": "whole"}


@dataclass(frozen=True)
class ModelSpec:
    """The classifier a study runs: ``model.load_model(name, weights, alpha=alpha, size=size)``.

    Picklable and cheap, so a Ray worker can load its own copy; the table's header records the loaded
    model's name, options and weights' sha256 (``model.weights_fingerprint``), not this spec.
    """

    name: str = "MobileNetV2"
    weights: str | None = "imagenet"
    alpha: float | None = None
    size: int | None = None

    def load(self):
        """Return the (cached) Keras model."""
        from xai_helpers.classifier import loading as model

        options = {k: v for k, v in (("alpha", self.alpha), ("size", self.size)) if v is not None}
        return model.load_model(self.name, self.weights, **options)

    def is_default_architecture(self) -> bool:
        """Return whether this is MobileNetV2 at its own width and size (the sanity check's layers)."""
        return self.name.lower() == "mobilenetv2" and self.alpha in (None, 1.0) and self.size in (None, 224)


def random_target(true_class: int, seed_id: int, seed: int = SEED, n_classes: int = 1000) -> int:
    """Return the targeted attack's class for one photo: uniform over the classes other than the true one,
    seeded by (seed, the photo's seed id), so it never depends on the batch."""
    draw = int(np.random.default_rng([seed, seed_id, 11]).integers(n_classes - 1))
    return draw + (draw >= true_class)


def settings_from_header(meta: dict[str, str], source: str = "the table") -> StudySettings:
    """Return the ``StudySettings`` a table's header records (its ``settings`` line, read as a Python literal,
    never run; a setting of ``ADDED_LATER`` it lacks takes the value those tables used), checked against its
    ``settings_key``; ``ValueError`` (one sentence naming ``source``) when
    the line is missing, is not a literal of this package's settings, or does not give the recorded key."""
    import ast
    from dataclasses import fields

    names = {f.name for f in fields(StudySettings)}
    try:
        recorded = ast.literal_eval(meta["settings"])
        if isinstance(recorded, dict):
            recorded = {**ADDED_LATER, **recorded}   # (what the header records wins)
        if not isinstance(recorded, dict) or set(recorded) != names:
            raise ValueError
        settings = StudySettings(**recorded)
    except (KeyError, ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError(f"{source} does not record study settings this version can read (its header's "
                         f"settings line); make it again with `python -m xai_helpers study`.") from None
    if settings.key() != meta.get("settings_key"):
        raise ValueError(f"{source} records settings whose key is {settings.key()}, not its settings_key "
                         f"{meta.get('settings_key')}: its header was edited.")
    return settings


def photo_order(seed: int = SEED) -> np.ndarray:
    """Return the class indices 0..999 in the study's seeded random order."""
    return np.random.default_rng(seed).permutation(len(sample_photos()))


def random_sign_noise(shape: tuple[int, ...], class_index: int, seed: int = SEED) -> np.ndarray:
    """Return a {-1, +1} array, seeded by (seed, class_index) so each photo's control noise is fixed."""
    rng = np.random.default_rng([seed, class_index])
    return rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=shape)


__all__ = ["DELETION_BLUR_SIGMA", "DELETION_STEPS", "EPS_GRID_PIXELS", "INTERVENTION_RANDOM_MASKS", "JF_MAX_LEVELS",
           "JF_STEP_LEVELS", "ROAD_PHOTOS", "SANITY_IG_STEPS", "SEED", "SMOOTHGRAD_SAMPLES", "STUDY_EPS_PIXELS",
           "STUDY_GRADCAM_ENGINE", "STUDY_IG_METHOD", "STUDY_IG_STEPS", "STUDY_PGD_STEPS", "ModelSpec",
           "StudySettings", "photo_order", "random_sign_noise", "random_target", "settings_from_header"]
