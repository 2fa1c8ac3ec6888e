"""What one study photo costs, stage by stage, against the bare model rate of the same model.

Runs ``study.analyse_batch`` (the study's per-photo work with its default settings) on batches of photos
from the study's seeded order: ``--batches`` batches of ``--batch-size`` photos inside the ROAD subset
(the first ``road_photos`` of the order) and as many outside it, after one uncounted warm-up batch (the
last photos of the ROAD subset: the study traces its functions once per run, not once per photo). Every
model pass is counted by stage
(``xai_helpers.classifier.passes``: images sent forward only, and forward and back) and every stage timed. Before
and after every batch, and between the study's stages at least every ``--sample-every`` seconds during it, it
times the bare compiled batched forward pass and forward+backward pass of the same model (one chunk of the
study's chunk size, nothing around them; the sampling's own time is left out of the batch's). The batch's bare
rates are the means of those samples, so each stage has an *ideal* time measured under the machine's load of
that batch, not only of the seconds around it::

    ideal(stage) = forward(stage) / forward_rate + gradient(stage) / gradient_rate

Prints per stage: measured seconds, passes and ideal seconds per photo, then
``study_cost seconds_per_photo=... ideal_seconds_per_photo=... study_vs_ideal_ratio=... hours_for_1000=...``
where ``study_vs_ideal_ratio = ideal / measured`` (1 = every second is bare model work) and the projection
weights the two kinds of batch by their share of the 1000 photos.

    python benchmarks/study_cost.py [--batches 1] [--batch-size 8] [--model MobileNet --alpha 0.75 --size 192]
    python benchmarks/study_cost.py --gradcam-engine tf-keras-vis     # the study's Grad-CAM before the engine
    python benchmarks/study_cost.py --scope ig16                      # the study with 16 IG steps, not 32

To compare with an earlier version of the package on the same machine, run this script with that version's
``xai_helpers`` first on ``PYTHONPATH`` (a ``git worktree`` of the commit), right after this one.
"""
from __future__ import annotations

import argparse
import contextlib
import time
from collections import defaultdict

import common
import numpy as np

from xai_helpers.study.rows import analyse_batch
from xai_helpers.study.settings import StudySettings, photo_order

#: The study's work at each scope, as settings that differ from the defaults.
SCOPES = {
    "default": {},
    "ig16": {"ig_steps": 16},
}


def bare_rates(model, batch: int = common.BATCH):
    """Return a function measuring (forward images/s, forward+backward images/s) of ``model`` right now."""
    import tensorflow as tf

    from xai_helpers.classifier.forward import input_shape, logits_model

    logits = logits_model(model)
    spec = tf.TensorSpec((None, *input_shape(model)), tf.float32)

    @tf.function(input_signature=[spec])
    def forward(x):
        return model(x, training=False)

    @tf.function(input_signature=[spec, tf.TensorSpec((None,), tf.int32)])
    def gradient(x, classes):
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(tf.gather(logits(x, training=False), classes, batch_dims=1))
        return tape.gradient(total, x)

    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (batch, *input_shape(model))), tf.float32)
    classes = tf.constant(np.arange(batch) % 1000, tf.int32)
    forward(x), gradient(x, classes)  # trace once

    def measure() -> tuple[float, float]:
        f = common.median(common.timed(lambda: forward(x).numpy()) for _ in range(3))
        g = common.median(common.timed(lambda: gradient(x, classes).numpy()) for _ in range(3))
        return batch / f, batch / g

    return measure


class RateSampler:
    """Bare rates sampled between the study's outermost stages, at least ``every`` seconds apart.

    ``install`` wraps ``passes.stage`` (which every stage of the package enters as ``passes.stage``): when an
    outermost stage ends and ``every`` seconds have passed since the last sample, ``measure()`` runs and its
    time is added to ``spent``, to be left out of the batch's wall time.
    """

    def __init__(self, measure, every: float):
        self.measure, self.every = measure, every
        self.samples: list[tuple[float, float]] = []
        self.spent, self.last, self.depth = 0.0, time.perf_counter(), 0

    def start(self) -> None:
        """Begin a batch: no samples, no time spent, the clock from now."""
        self.samples, self.spent, self.last = [], 0.0, time.perf_counter()

    def install(self, passes) -> None:
        original = passes.stage

        @contextlib.contextmanager
        def stage(name, photos=()):
            self.depth += 1
            try:
                with original(name, photos):
                    yield
            finally:
                self.depth -= 1
            if self.depth == 0 and time.perf_counter() - self.last >= self.every:
                t = time.perf_counter()
                self.samples.append(self.measure())
                self.last = time.perf_counter()
                self.spent += self.last - t

        passes.stage = stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=1, help="batches inside and outside the ROAD subset")
    parser.add_argument("--sample-every", type=float, default=10.0,
                        help="seconds between samples of the bare rates during a batch (0: only around it)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--model", default="MobileNetV2")
    parser.add_argument("--alpha", type=float, default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--gradcam-engine", default="compiled", choices=("compiled", "tf-keras-vis"))
    parser.add_argument("--scope", default="default", choices=tuple(SCOPES),
                        help="the study's default settings, or those with 16 IG steps")
    args = parser.parse_args()

    from xai_helpers.classifier import passes
    from xai_helpers.study import rows_maps
    from xai_helpers.study.settings import ModelSpec

    rows_maps.STUDY_GRADCAM_ENGINE = args.gradcam_engine
    print(common.machine())
    model = ModelSpec(args.model, "imagenet", args.alpha, args.size).load()
    print(f"model {args.model} (alpha {args.alpha}, size {args.size}); Grad-CAM engine {args.gradcam_engine}")
    settings = StudySettings(**SCOPES[args.scope])
    print(f"scope {args.scope}: {SCOPES[args.scope] or 'the default settings'}")
    order = [int(c) for c in photo_order(settings.seed)]
    rates = bare_rates(model)
    sampler = RateSampler(rates, args.sample_every if args.sample_every > 0 else float("inf"))
    sampler.install(passes)
    # Warm-up, not counted: a whole batch of the ROAD subset that is not measured, so that every compiled
    # function is traced and every batch shape's kernels are set up once, as they are once per study run.
    analyse_batch(model, order[settings.road_photos - args.batch_size:settings.road_photos], settings)
    per_kind: dict = {}
    for kind, start in (("ROAD subset", 0), ("outside it", settings.road_photos)):
        seconds = defaultdict(float)
        counts = defaultdict(lambda: {"forward": 0.0, "gradient": 0.0})
        ideal = defaultdict(float)
        n, wall = 0, 0.0
        for b in range(args.batches):
            photos = order[start + b * args.batch_size:start + (b + 1) * args.batch_size]
            before = rates()
            with passes.counting() as tally:
                sampler.start()
                t = time.perf_counter()
                analyse_batch(model, photos, settings)
                wall += time.perf_counter() - t - sampler.spent
            samples = [before, *sampler.samples, rates()]
            forward_rate = float(np.mean([f for f, _ in samples]))
            gradient_rate = float(np.mean([g for _, g in samples]))
            n += len(photos)
            for stage, kinds in tally.totals().items():
                counts[stage]["forward"] += kinds["forward"]
                counts[stage]["gradient"] += kinds["gradient"]
                ideal[stage] += kinds["forward"] / forward_rate + kinds["gradient"] / gradient_rate
            for stage, s in tally.seconds.items():
                seconds[stage] += s
            print(f"{kind} batch {b}: bare forward {forward_rate:.1f}/s, forward+backward {gradient_rate:.1f}/s "
                  f"(means of {len(samples)} samples; forward+backward from {min(g for _, g in samples):.1f} to "
                  f"{max(g for _, g in samples):.1f}/s)", flush=True)
        outside = wall - sum(seconds.values())  # loading photos, the rows' own arithmetic
        print(f"\n{kind}: per photo, {n} photos")
        print(f"{'stage':<20}{'seconds':>9}{'forward':>9}{'gradient':>10}{'ideal s':>9}{'ideal/measured':>16}")
        for stage in passes.STAGES:
            if stage in seconds or stage in counts:
                c = counts[stage]
                ratio = ideal[stage] / seconds[stage] if seconds[stage] else float("nan")
                print(f"{stage:<20}{seconds[stage] / n:>9.2f}{c['forward'] / n:>9.0f}{c['gradient'] / n:>10.0f}"
                      f"{ideal[stage] / n:>9.2f}{ratio:>16.2f}")
        print(f"{'(outside stages)':<20}{outside / n:>9.2f}")
        total_ideal = sum(ideal.values())
        print(f"{'total':<20}{wall / n:>9.2f}{sum(c['forward'] for c in counts.values()) / n:>9.0f}"
              f"{sum(c['gradient'] for c in counts.values()) / n:>10.0f}{total_ideal / n:>9.2f}"
              f"{total_ideal / wall:>16.2f}\n", flush=True)
        per_kind[kind] = (wall / n, total_ideal / n)
    inside = settings.road_photos / 1000
    measured = inside * per_kind["ROAD subset"][0] + (1 - inside) * per_kind["outside it"][0]
    ideal_photo = inside * per_kind["ROAD subset"][1] + (1 - inside) * per_kind["outside it"][1]
    print(f"study_cost model={args.model} scope={args.scope} seconds_per_photo={measured:.2f} ideal_seconds_per_photo={ideal_photo:.2f} "
          f"study_vs_ideal_ratio={ideal_photo / measured:.2f} hours_for_1000={1000 * measured / 3600:.2f}")


if __name__ == "__main__":
    main()
