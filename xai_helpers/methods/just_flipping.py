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

from collections.abc import Sequence

import numpy as np

from xai_helpers.classifier.forward import logits
from xai_helpers.methods.attacks import PGD_STEPS, pgd_batch, pixels_to_eps

#: The grid of the search, in pixel levels: steps of 1/8 level up to 8 levels (64 budgets).
STEP_LEVELS = 0.125
MAX_LEVELS = 8.0


def just_flipping(model, xs: np.ndarray, labels: Sequence[int], seeds: Sequence, steps: int = PGD_STEPS,
                  step_levels: float = STEP_LEVELS, max_levels: float = MAX_LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(levels, images)``: per photo the smallest budget (pixel levels) on the grid at which PGD
    moves the top-1 class away from its label, and PGD's image at that budget; NaN and the photo itself
    where even ``max_levels`` does not flip it (or where the photo is not of its label to begin with).

    The bisections of all photos run in lock-step: each round sends every open search through PGD once,
    batched, so a batch costs the rounds of one photo (7 for the default grid).
    """
    xs = np.asarray(xs, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(xs) or len(seeds) != len(xs):
        raise ValueError(f"just_flipping needs one label and one seed per photo ({len(xs)}), got "
                         f"{len(labels)} and {len(seeds)}.")
    top = int(round(max_levels / step_levels))
    if top < 1 or not np.isclose(top * step_levels, max_levels):
        raise ValueError(f"max_levels ({max_levels:g}) must be a positive multiple of step_levels ({step_levels:g}).")
    images = xs.copy()
    clean_ok = logits(model, xs).argmax(axis=1) == labels if len(xs) else np.zeros(0, bool)
    lo, hi = np.zeros(len(xs), np.int64), np.full(len(xs), top, np.int64)
    ok = np.flatnonzero(clean_ok)
    valid = clean_ok.copy()
    valid[ok] = _probe(model, xs, labels, seeds, hi[ok], step_levels, steps, images, ok)
    while np.any(open_ := valid & (hi - lo > 1)):
        which = np.flatnonzero(open_)
        mid = (lo[which] + hi[which]) // 2
        flipped = _probe(model, xs, labels, seeds, mid, step_levels, steps, images, which)
        hi[which] = np.where(flipped, mid, hi[which])
        lo[which] = np.where(flipped, lo[which], mid)
    return np.where(valid, hi * step_levels, np.nan), np.where(valid[:, None, None, None], images, xs)


# long: the search's state, passed whole (photos, labels, seeds, grid, PGD steps, images found, open photos)
def _probe(model, xs, labels, seeds, points, step_levels, steps, images, which) -> np.ndarray:
    """PGD on the photos ``which`` at their grid ``points``; keep each image that flips in ``images``;
    return which flipped."""
    if len(which) == 0:
        return np.zeros(0, bool)
    eps = np.array([pixels_to_eps(k * step_levels) for k in points])
    advs = pgd_batch(model, xs[which], labels[which], eps, steps, seeds=[seeds[i] for i in which])
    flipped = logits(model, advs).argmax(axis=1) != labels[which]
    images[which[flipped]] = advs[flipped]
    return flipped


__all__ = ["MAX_LEVELS", "STEP_LEVELS", "just_flipping"]
