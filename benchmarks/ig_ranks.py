"""Is the study's IG step count enough where only ranks are read? 32 trapezoid steps against a 256-step
reference on the first photos of the study's seeded order (each explained for its own top-1 class).

For every photo: IG (``--target``: the study's maps are of logits, its reversed-target maps of the softmax;
black baseline) at the study's steps and at 256 steps, compared with ``compare_maps`` (Spearman rank
correlation of all pixels, top-10% IoU) for the map of |IG| and for the signed map (sum over channels, the
ranking of "positive evidence first"), and both completeness errors. One row per photo goes to ``--out``
(default ``results/ig_ranks_clean.csv``, read by the book's appendix; its header names the steps, the target,
the weights and the machine). Last line: ``ig_ranks target=... median_spearman=... median_top_iou=...
median_signed_spearman=... n=...``.

    python benchmarks/ig_ranks.py [--photos 20] [--steps 32] [--reference 256] [--target logits] [--out FILE]

About 18 s per photo on two CPU cores ((32 + 256) IG steps).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import common
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=20, help="photos, first in the study's seeded order")
    parser.add_argument("--steps", type=int, default=32, help="the study's IG steps")
    parser.add_argument("--reference", type=int, default=256, help="reference IG steps")
    parser.add_argument("--target", choices=("softmax", "logits"), default="logits", help="IG's target")
    parser.add_argument("--batch", type=int, default=4, help="photos per batch")
    parser.add_argument("--out", type=Path, default=None, help="CSV to write (default results/ig_ranks_clean.csv)")
    args = parser.parse_args()

    import xai_helpers as xh
    from xai_helpers.methods.compare import compare_maps, to_2d
    from xai_helpers.methods.integrated_gradients import integrated_gradients_batch
    from xai_helpers.study.settings import photo_order

    print(common.machine())
    out = args.out or xh.results_path("study.csv").parent / "ig_ranks_clean.csv"
    model = xh.load_model()
    classes = [int(c) for c in photo_order(0)[:args.photos]]
    rows = []
    start = time.perf_counter()
    for i in range(0, len(classes), args.batch):
        batch = classes[i:i + args.batch]
        xs = np.stack([xh.load_image(xh.sample_image(c)) for c in batch])
        own = [xh.predict(model, x, top=1)[0].class_index for x in xs]
        study, reference = (integrated_gradients_batch(model, xs, own, args.target, steps=n)
                            for n in (args.steps, args.reference))
        for c, o, a, r in zip(batch, own, study, reference):
            numbers = compare_maps(to_2d(a.attributions), to_2d(r.attributions))
            signed = compare_maps(a.attributions.sum(-1), r.attributions.sum(-1))
            rows.append({"class_index": c, "explained_class": o, "spearman": numbers["spearman"],
                         "top_iou": numbers["top_iou"], "signed_spearman": signed["spearman"],
                         "reldelta_study": a.relative_delta, "reldelta_reference": r.relative_delta})
            print(f"class {c:4d}: Spearman {numbers['spearman']:.3f}, top-10% IoU {numbers['top_iou']:.3f}, "
                  f"signed Spearman {signed['spearman']:.3f}, completeness error {a.relative_delta:.1%} "
                  f"({args.steps}) vs {r.relative_delta:.1%} ({args.reference})", flush=True)
    common.write_rows(out, f"IG ranks on clean photos (own top-1 class, {args.target}): {args.steps} vs "
                           f"{args.reference} trapezoid steps, black baseline, the first {len(classes)} photos "
                           f"of the study order (seed 0)", rows)
    values = {k: [r[k] for r in rows] for k in ("spearman", "top_iou", "signed_spearman", "reldelta_study")}
    q = lambda v: np.percentile(v, [10, 50, 90])  # noqa: E731
    print(f"\n{len(classes)} photos in {time.perf_counter() - start:.0f} s")
    print("Spearman 10/50/90th percentile:", np.round(q(values["spearman"]), 3))
    print("top-10% IoU 10/50/90th percentile:", np.round(q(values["top_iou"]), 3))
    print("signed-map Spearman 10/50/90th percentile:", np.round(q(values["signed_spearman"]), 3))
    print("completeness error at the study's steps, 10/50/90th percentile:", np.round(q(values["reldelta_study"]), 3))
    print(f"ig_ranks target={args.target} median_spearman={np.median(values['spearman']):.3f} "
          f"median_top_iou={np.median(values['top_iou']):.3f} "
          f"median_signed_spearman={np.median(values['signed_spearman']):.3f} n={len(classes)}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
