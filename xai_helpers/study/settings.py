"""What a study run is: its settings (every one that changes a number, hashed into the table's key) and
the seeded order and noise it draws from. No model: the runner, the per-photo analysis and
the command line all read it.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import numpy as np

from xai_helpers.classifier.data import sample_photos

EPS_GRID_PIXELS = (0.5, 1.0, 2.0, 4.0, 8.0)
#: The explanations' eps: one pixel level, as in the single-photo chapters (``attacks.DEFAULT_EPS_PIXELS``).
STUDY_EPS_PIXELS = 1.0
#: The attacks compared side by side at every eps (PGD is left out when ``pgd_steps`` is 0).
ATTACK_NAMES = ("fgsm", "pgd", "tpgd")  # (tpgd: PGD towards a seeded random target class, at the study eps)
#: IG steps in the study: 32 trapezoid steps (4x cheaper than the report's default of 128); the
#: completeness error this costs is recorded per map (``ig_reldelta_*``) and shown in the chapter.
STUDY_IG_STEPS = 32
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
#: (``tests/test_gradcam_engines.py``) and 10x faster, so not a setting that changes a number.
STUDY_GRADCAM_ENGINE = "compiled"


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
    #: How Grad-CAM's 7 x 7 map is brought to the photo's size (``gradcam.UPSAMPLINGS``): "half_pixel",
    #: or "corner" for tables made before the placement fix (only to re-check them).
    gradcam_upsampling: str = "half_pixel"
    #: Per fooled photo, necessity beside sufficiency (``sufficiency``): each map's top pixels removed as
    #: well as kept, the smallest flipping fraction of the margin attribution's ranking, and moved copies of
    #: each clean map's top pixels (same shape and area) as a control; False for tables made before.
    necessity_tests: bool = True
    #: PGD towards a seeded random target class per photo (``random_target``), at the study eps only, with
    #: the untargeted attacks' explanations and interventions (columns ``tpgd_*``); False for tables made before.
    targeted_pgd: bool = True
    #: Deletion and insertion of the logit maps scored on the class logit too (columns ``*_auc_logit``), the
    #: target those maps explain, from the same forward passes; False for tables made before.
    logit_faithfulness: bool = True
    extra: dict = field(default_factory=dict)

    def key(self) -> str:
        """Return a short hash of the settings, to refuse resuming a table made with other settings.

        A setting added later is left out of the hash while it has the value every earlier table was made
        with (``LEGACY_VALUES``), so an earlier table keeps its key and is recognised for what it is.
        """
        text = repr(sorted((k, v) for k, v in asdict(self).items()
                           if k != "extra" and LEGACY_VALUES.get(k, object()) != v))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


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


#: Settings added after the first tables, with the value those tables were made with (see ``key``).
LEGACY_VALUES = {"gradcam_upsampling": "corner", "necessity_tests": False, "targeted_pgd": False,
                 "logit_faithfulness": False}


def random_target(true_class: int, seed_id: int, seed: int = SEED, n_classes: int = 1000) -> int:
    """Return the targeted attack's class for one photo: uniform over the classes other than the true one,
    seeded by (seed, the photo's seed id), so it never depends on the batch."""
    draw = int(np.random.default_rng([seed, seed_id, 11]).integers(n_classes - 1))
    return draw + (draw >= true_class)


def settings_for_key(key: str) -> StudySettings:
    """Return the default ``StudySettings``, or those with some settings at their ``LEGACY_VALUES``, whose
    ``key()`` is ``key``: the settings an earlier table of the default study was made with (its header
    records the key). Raises ``ValueError`` when none matches (a table made with other settings)."""
    from itertools import combinations

    names = sorted(LEGACY_VALUES)
    for n in range(len(names) + 1):
        for chosen in combinations(names, n):
            settings = StudySettings(**{name: LEGACY_VALUES[name] for name in chosen})
            if settings.key() == key:
                return settings
    raise ValueError(f"No default or earlier default study settings have the key {key}; the table was made "
                     f"with other settings (its header lists them).")


def photo_order(seed: int = SEED) -> np.ndarray:
    """Return the class indices 0..999 in the study's seeded random order."""
    return np.random.default_rng(seed).permutation(len(sample_photos()))


def random_sign_noise(shape: tuple[int, ...], class_index: int, seed: int = SEED) -> np.ndarray:
    """Return a {-1, +1} array, seeded by (seed, class_index) so each photo's control noise is fixed."""
    rng = np.random.default_rng([seed, class_index])
    return rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=shape)


__all__ = [name for name in dir() if name.isupper()] + ["ModelSpec", "StudySettings", "photo_order",
                                                         "random_sign_noise", "random_target", "settings_for_key"]
