"""Model passes, counted: how many images each stage of an analysis sends through the model.

A *forward* pass is one image through the model; a *gradient* pass is one image forward and back (the
cost of one gradient). The methods report what they evaluate (``record``) from the Python side of their
compiled functions, where the batch size is known; nothing is counted unless a caller asked for it::

    with passes.counting() as tally:
        with passes.stage("ig", photos=[0, 1]):       # the passes inside are shared by photos 0 and 1
            integrated_gradients_batch(...)
    tally.per_photo[0]["ig"]  # -> {"forward": ..., "gradient": ...}

A stage's passes are split equally among the photos it names (the study's batched stages do the same work
for every photo they hold); stages nest: the innermost names the stage, and the photos unless it names
none. Standard library only.
"""
from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

#: The study's stages, in the order of a photo's analysis (the table's ``passes_{stage}_*`` columns).
STAGES = ("classify", "attacks", "just_flipping", "gradcam", "ig", "attack_attribution", "first_order",
          "deletion_insertion", "road", "interventions", "sanity")
KINDS = ("forward", "gradient")


@dataclass
class Tally:
    """Passes counted so far: ``per_photo[photo][stage][kind]`` (images; fractional where a stage's passes
    are split among photos) and ``unassigned[stage][kind]`` for passes outside any ``stage``."""

    per_photo: dict = field(default_factory=lambda: defaultdict(lambda: defaultdict(lambda: dict.fromkeys(KINDS, 0.0))))
    unassigned: dict = field(default_factory=lambda: defaultdict(lambda: dict.fromkeys(KINDS, 0.0)))
    #: Wall seconds spent in each stage, its nested stages' time excluded (the benchmark's breakdown).
    seconds: dict = field(default_factory=lambda: defaultdict(float))

    def columns(self, photo) -> dict[str, float]:
        """Return one photo's ``passes_{stage}_{kind}`` columns, every stage of ``STAGES`` included."""
        counts = self.per_photo.get(photo, {})
        return {f"passes_{s}_{k}": float(counts[s][k]) if s in counts else 0.0 for s in STAGES for k in KINDS}

    def totals(self) -> dict[str, dict[str, float]]:
        """Return the passes of every photo and the unassigned ones, summed per stage and kind."""
        out: dict = defaultdict(lambda: dict.fromkeys(KINDS, 0.0))
        for stages in list(self.per_photo.values()) + [self.unassigned]:
            for s, kinds in stages.items():
                for k, v in kinds.items():
                    out[s][k] += v
        return {s: dict(v) for s, v in out.items()}


_active: list[Tally] = []
_stages: list[tuple[str, tuple]] = []
_nested_seconds: list[float] = []  #: per open stage: the time its nested stages took


@contextlib.contextmanager
def counting() -> Iterator[Tally]:
    """Count every pass recorded inside (nested ``counting`` blocks each get their own ``Tally``)."""
    tally = Tally()
    _active.append(tally)
    try:
        yield tally
    finally:
        _active.remove(tally)


@contextlib.contextmanager
def stage(name: str, photos: Sequence = ()) -> Iterator[None]:
    """Attribute the passes recorded inside to stage ``name``, split equally among ``photos`` (none given:
    the photos of the enclosing stage, so a method can name its stage without knowing the photos)."""
    if name not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {name!r}.")
    _stages.append((name, tuple(photos) or (_stages[-1][1] if _stages else ())))
    _nested_seconds.append(0.0)
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        own = elapsed - _nested_seconds.pop()
        _stages.pop()
        if _nested_seconds:
            _nested_seconds[-1] += elapsed
        for tally in _active:
            tally.seconds[name] += own


def record(forward: int = 0, gradient: int = 0) -> None:
    """Add ``forward`` images sent forward only and ``gradient`` images sent forward and back."""
    if not _active or not (forward or gradient):
        return
    name, photos = _stages[-1] if _stages else ("classify", ())
    for tally in _active:
        _add(tally, name, photos, forward, gradient)


def record_each(forward: Sequence[float], gradient: Sequence[float]) -> None:
    """Add passes that differ from image to image of a batch (e.g. adaptive IG's, whose steps do): image
    ``i``'s go to photo ``i`` of the innermost stage when it names one photo per image; otherwise their
    sums are split equally among its photos, as ``record`` splits them."""
    if len(forward) != len(gradient):
        raise ValueError(f"forward and gradient must give one count per image, got {len(forward)} and "
                         f"{len(gradient)}.")
    name, photos = _stages[-1] if _stages else ("classify", ())
    if len(photos) != len(forward):
        record(forward=sum(forward), gradient=sum(gradient))
        return
    for tally in _active:
        for photo, f, g in zip(photos, forward, gradient):
            _add(tally, name, (photo,), f, g)


def _add(tally: Tally, name: str, photos: tuple, forward: float, gradient: float) -> None:
    """Add passes to stage ``name`` of ``tally``, split equally among ``photos`` (none: unassigned)."""
    if photos:
        for photo in photos:
            kinds = tally.per_photo[photo][name]
            kinds["forward"] += forward / len(photos)
            kinds["gradient"] += gradient / len(photos)
    else:
        tally.unassigned[name]["forward"] += forward
        tally.unassigned[name]["gradient"] += gradient


__all__ = ["KINDS", "STAGES", "Tally", "counting", "record", "record_each", "stage"]
