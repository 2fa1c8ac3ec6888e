"""Seconds per PGD batch of ``xai_helpers.methods.attacks.pgd_batch`` against ART's ``ProjectedGradientDescent``.

Both attack the same batch of sample photos on MobileNetV2 with the same settings: L-infinity, untargeted,
the cross-entropy of each photo's own class, ``--eps`` pixel levels (default one level, the package's
``DEFAULT_EPS``), step eps/4, ``PGD_STEPS`` (10) iterations, one uniform random start, input clipped to
[-1, 1]. ART (Adversarial Robustness Toolbox, a test dependency) wraps the Keras model itself in a
``TensorFlowV2Classifier`` with Keras's ``CategoricalCrossentropy`` of the softmax output; its loss gradient
runs the model eagerly, while the package's is one compiled ``tf.function``.

One warm-up call of each (tracing, first allocations), then ``--rounds`` interleaved rounds (one timing of
each per round, so that load from other processes hits both alike). Prints the median seconds per batch,
the median over rounds of the paired ratio ART time / package time, and for both attacks the success rate
and the median final margin ``z_true - max_other`` of the logits (clean margins for reference). Last line:
``pgd_vs_art art_over_package=R package_s=... art_s=... median_margin_package=... median_margin_art=...``.

    python benchmarks/pgd_vs_art.py [--batch-size 8] [--rounds 5] [--eps 1] [--random-weights]

Without ``--random-weights`` it uses the ImageNet weights from ``$KERAS_HOME`` and falls back to seeded
random weights (``weights=None``) when they are not there.
"""
from __future__ import annotations

import argparse
import warnings

import common
import numpy as np

#: Sample photos (ImageNet class indices): the four of ``common.PHOTO_CLASSES`` and four more, fixed.
PHOTOS = (*common.PHOTO_CLASSES, 1, 340, 409, 954)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=8, help=f"photos per batch (at most {len(PHOTOS)})")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (median reported)")
    parser.add_argument("--eps", type=float, default=1.0, help="L-infinity budget in 0-255 pixel levels")
    parser.add_argument("--random-weights", action="store_true", help="MobileNetV2 with weights=None")
    args = parser.parse_args()
    if not 1 <= args.batch_size <= len(PHOTOS):
        parser.error(f"--batch-size must be between 1 and {len(PHOTOS)}")

    import tensorflow as tf

    import xai_helpers as xh
    from xai_helpers.classifier.forward import logits_model
    from xai_helpers.methods.attacks import PGD_STEP_FRACTION, PGD_STEPS, pgd_batch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # ART: "PyTorch not found" (optional modules)
        import art
        from art.attacks.evasion import ProjectedGradientDescent
        from art.estimators.classification import TensorFlowV2Classifier

    print(common.machine() + f"; ART {art.__version__}")
    weights = "random (weights=None)" if args.random_weights else "ImageNet"
    try:
        model = xh.load_model("MobileNetV2", weights=None if args.random_weights else "imagenet")
    except Exception as err:  # noqa: BLE001 - offline without the weights: say so and go on
        print(f"ImageNet weights unavailable ({type(err).__name__}); using weights=None")
        weights = "random (weights=None)"
        model = xh.load_model("MobileNetV2", weights=None)
    n = args.batch_size
    classes = np.array(PHOTOS[:n], np.int32)
    xs = np.stack([xh.load_image(xh.sample_image(int(c))) for c in classes]).astype(np.float32)
    eps = xh.pixels_to_eps(args.eps)
    print(f"MobileNetV2, {weights} weights; {n} photos; eps = {args.eps:g} levels = {eps:.5f}, "
          f"step eps*{PGD_STEP_FRACTION:g}, {PGD_STEPS} steps, 1 random start")

    classifier = TensorFlowV2Classifier(model=model, nb_classes=int(model.output_shape[-1]),
                                        input_shape=tuple(xs.shape[1:]),
                                        loss_object=tf.keras.losses.CategoricalCrossentropy(),
                                        clip_values=(-1.0, 1.0))
    attack = ProjectedGradientDescent(classifier, norm=np.inf, eps=eps, eps_step=PGD_STEP_FRACTION * eps,
                                      max_iter=PGD_STEPS, num_random_init=1, targeted=False, batch_size=n,
                                      verbose=False)
    one_hot = np.eye(classifier.nb_classes, dtype=np.float32)[classes]
    np.random.seed(0)  # ART's random start comes from NumPy's global generator

    results = {}

    def run_package():
        results["package"] = pgd_batch(model, xs, classes, eps)
        return results["package"]

    def run_art():
        results["ART"] = attack.generate(xs, y=one_hot)
        return results["ART"]

    contenders = {"package": run_package, "ART": run_art}
    for fn in contenders.values():  # warm-up
        fn()
    times = {name: [] for name in contenders}
    for r in range(args.rounds):
        for name, fn in contenders.items():
            times[name].append(common.timed(fn))
        line = ", ".join(f"{name} {t[-1]:.2f} s" for name, t in times.items())
        print(f"round {r + 1}/{args.rounds}: {line}", flush=True)

    logits = logits_model(model)

    def margins(images):
        z = logits(tf.constant(images), training=False).numpy().astype(np.float64)
        rows = np.arange(len(z))
        true = z[rows, classes].copy()
        z[rows, classes] = -np.inf
        return true - z.max(axis=1)

    clean = margins(xs)
    ratio = common.median(np.divide(times["ART"], times["package"]))  # paired, per round
    print(f"\n{n} photos x {PGD_STEPS} steps per batch, {args.rounds} rounds, median:")
    print(f"{'':10}{'s/batch':>9}{'min s':>8}{'success':>9}{'median margin':>15}{'max |d|':>10}")
    print(f"{'clean':10}{'':>9}{'':>8}{np.mean(clean < 0):>9.2f}{np.median(clean):>15.3f}")
    summary = {}
    for name, t in times.items():
        m = margins(results[name])
        summary[name] = (common.median(t), float(np.median(m)))
        print(f"{name:10}{common.median(t):>9.2f}{min(t):>8.2f}{np.mean(m < 0):>9.2f}{np.median(m):>15.3f}"
              f"{np.abs(results[name] - xs).max():>10.5f}")
    print("(success: share of photos whose own class is no longer top-1; margin: z_true - max_other; "
          f"max |d|: L-infinity distance to the photo, eps = {eps:.5f})")
    print(f"ART time / package time, median over rounds: {ratio:.2f}")
    print(f"\npgd_vs_art art_over_package={ratio:.2f} package_s={summary['package'][0]:.2f} "
          f"art_s={summary['ART'][0]:.2f} median_margin_package={summary['package'][1]:.3f} "
          f"median_margin_art={summary['ART'][1]:.3f}")


if __name__ == "__main__":
    main()
