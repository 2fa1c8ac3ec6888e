"""The just-flipping attack: PGD at the smallest budget on a fine grid that changes the label.

An attack at a fixed eps overshoots the decision boundary by a different margin on every photo, and how far
it overshoots moves every intervention (a region is "sufficient" more easily the further the whole attack
went). The just-flipping attack removes that confound: for each photo, the smallest eps on the grid
``step_levels x k`` (k = 1 .. ``max_levels / step_levels``; pixel levels of the 0-255 scale) at which
untargeted PGD (``attacks.pgd_batch``, seeded per photo) changes the top-1 class, found by bisection over
k (log2 of the grid's size PGD runs instead of all of them), and PGD's image there. The bisection assumes
that PGD flips the label at every eps above the smallest one (true for a linear model, where the test checks
it against a scan of the whole grid); where it does not, it finds *an* eps that flips while the grid point
below it does not.

The same budget search is ``explain --eps auto``'s: the smallest eps that shows the user an attack.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from xai_helpers.classifier.forward import logits
from xai_helpers.methods.attacks import PGD_STEPS, pgd_batch, pixels_to_eps

#: The grid of the search, in pixel levels: steps of 1/8 level up to 8 levels (64 budgets).
STEP_LEVELS = 0.125
MAX_LEVELS = 8.0


# long: the attack and its success test, the photos' count and the grid
def smallest_budget(attack: Callable[[np.ndarray, np.ndarray], np.ndarray],
                    succeeded: Callable[[np.ndarray, np.ndarray], np.ndarray], count: int,
                    step_levels: float = STEP_LEVELS, max_levels: float = MAX_LEVELS) -> tuple[np.ndarray, list]:
    """Return ``(levels, images)``: per photo the smallest budget ``step_levels x k`` (pixel levels) at which
    ``attack`` succeeds, by bisection over k, and the attack's image there; NaN and None where even
    ``max_levels`` does not succeed.

    ``attack(which, levels)`` returns the images of photos ``which`` (indices) at their budgets ``levels``
    (pixel levels, one per photo); ``succeeded(which, images)`` says which of them succeeded. The photos'
    searches run in lock-step: one call of each per round for every photo still searching.
    """
    top = int(round(max_levels / step_levels))
    if top < 1 or not np.isclose(top * step_levels, max_levels):
        raise ValueError(f"max_levels ({max_levels:g}) must be a positive multiple of step_levels ({step_levels:g}).")
    images: list = [None] * count
    lo, hi = np.zeros(count, np.int64), np.full(count, top, np.int64)

    def probe(which: np.ndarray, points: np.ndarray) -> np.ndarray:
        advs = attack(which, points * step_levels)
        ok = np.asarray(succeeded(which, advs), dtype=bool)
        for i, image, flag in zip(which, advs, ok):
            if flag:
                images[i] = image
        return ok

    everyone = np.arange(count)
    valid = probe(everyone, hi) if count else np.zeros(0, bool)
    while np.any(open_ := valid & (hi - lo > 1)):
        which = np.flatnonzero(open_)
        mid = (lo[which] + hi[which]) // 2
        flipped = probe(which, mid)
        hi[which] = np.where(flipped, mid, hi[which])
        lo[which] = np.where(flipped, lo[which], mid)
    return np.where(valid, hi * step_levels, np.nan), images


def just_flipping(model, xs: np.ndarray, labels: Sequence[int], seeds: Sequence, steps: int = PGD_STEPS,
                  step_levels: float = STEP_LEVELS, max_levels: float = MAX_LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(levels, images)``: per photo the smallest budget (pixel levels) on the grid at which PGD
    moves the top-1 class away from its label, and PGD's image at that budget; NaN and the photo itself
    where even ``max_levels`` does not flip it (or where the photo is not of its label to begin with).

    The bisections of all photos run in lock-step (``smallest_budget``), so a batch costs the rounds of one
    photo (7 for the default grid).
    """
    xs = np.asarray(xs, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(xs) or len(seeds) != len(xs):
        raise ValueError(f"just_flipping needs one label and one seed per photo ({len(xs)}), got "
                         f"{len(labels)} and {len(seeds)}.")
    clean_ok = np.flatnonzero(logits(model, xs).argmax(axis=1) == labels) if len(xs) else np.zeros(0, np.int64)

    def attack(which, levels):
        photos = clean_ok[which]
        return pgd_batch(model, xs[photos], labels[photos], np.array([pixels_to_eps(v) for v in levels]), steps,
                         seeds=[seeds[i] for i in photos])

    def succeeded(which, images):
        return logits(model, images).argmax(axis=1) != labels[clean_ok[which]]

    found, images = smallest_budget(attack, succeeded, len(clean_ok), step_levels, max_levels)
    levels, out = np.full(len(xs), np.nan), xs.copy()
    for k, i in enumerate(clean_ok):
        if images[k] is not None:
            levels[i], out[i] = found[k], images[k]
    return levels, out


__all__ = ["MAX_LEVELS", "STEP_LEVELS", "just_flipping", "smallest_budget"]
