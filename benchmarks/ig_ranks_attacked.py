"""Is the study's IG step count enough on the *attacked* images, where the study reads their true-class maps?

The study compares the map of (adversarial image, true class) with the clean photo's, through ranks only
(Spearman, top-10% IoU). Its 32-step maps miss completeness by a median 19% (FGSM) and 31% (PGD) there, so
this check asks whether their *ranks* match a 256-step reference. On the first ``--photos`` photos of the
study's seeded order that the committed table (``results/study.csv``) lists as correct and fooled by both
FGSM and PGD, it re-creates the study's FGSM and PGD images (same eps, same per-photo PGD seeds), computes
logit IG of the true class at the study's steps and at ``--reference`` steps (black baseline), and writes
one row per (photo, attack) to ``--out`` (default ``results/ig_ranks_attacked.csv``, read by the book's
appendix): Spearman and top-10% IoU of |IG| and the Spearman of the signed map, and both completeness errors.

    python benchmarks/ig_ranks_attacked.py [--photos 50] [--reference 256] [--out results/ig_ranks_attacked.csv]

About 20 s per photo on two CPU cores (2 images x (32 + 256) IG steps).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import common
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=50, help="fooled photos, first in the study order")
    parser.add_argument("--reference", type=int, default=256, help="reference IG steps")
    parser.add_argument("--batch", type=int, default=4, help="photos per batch")
    parser.add_argument("--out", type=Path, default=None, help="CSV to write (default results/ig_ranks_attacked.csv)")
    args = parser.parse_args()

    import xai_helpers as xh
    from xai_helpers.chapters.study_tables import load_study
    from xai_helpers.methods.attacks import pixels_to_eps
    from xai_helpers.methods.compare import compare_maps, to_2d
    from xai_helpers.methods.integrated_gradients import integrated_gradients_batch
    from xai_helpers.study.rows import untargeted_images
    from xai_helpers.study.settings import photo_order

    print(common.machine(), flush=True)
    book = load_study()
    settings = book.settings
    both = book.correct[(book.correct.fgsm_fooled == 1) & (book.correct.pgd_fooled == 1)]
    order = {int(c): i for i, c in enumerate(photo_order(settings.seed))}
    classes = sorted((int(c) for c in both.class_index), key=order.__getitem__)[:args.photos]
    model = xh.load_model()
    eps = pixels_to_eps(settings.study_eps_pixels)
    out = args.out or xh.results_path("study.csv").parent / "ig_ranks_attacked.csv"
    fields = ["class_index", "attack", "spearman", "top_iou", "signed_spearman", "reldelta_study",
              "reldelta_reference"]
    rows, start = [], time.perf_counter()
    for b in range(0, len(classes), args.batch):
        batch = classes[b:b + args.batch]
        xs = np.stack([xh.load_image(xh.sample_image(c)) for c in batch])
        truth = np.array(batch)
        images = untargeted_images(model, xs, truth, eps, settings, list(batch))  # the study's own images
        for attack, adv in images.items():
            few, many = (integrated_gradients_batch(model, adv, list(batch), "logits", steps=n)
                         for n in (settings.ig_steps, args.reference))
            for c, a, r in zip(batch, few, many):
                numbers = compare_maps(to_2d(a.attributions), to_2d(r.attributions))
                signed = compare_maps(a.attributions.sum(-1), r.attributions.sum(-1))
                rows.append({"class_index": c, "attack": attack, "spearman": numbers["spearman"],
                             "top_iou": numbers["top_iou"], "signed_spearman": signed["spearman"],
                             "reldelta_study": a.relative_delta, "reldelta_reference": r.relative_delta})
        print(f"{len(rows) // 2}/{len(classes)} photos, {time.perf_counter() - start:.0f} s", flush=True)
    common.write_rows(out, f"IG ranks on attacked images (true class, logits): {settings.ig_steps} vs "
                           f"{args.reference} steps, eps {settings.study_eps_pixels:g} pixel level, study settings "
                           f"key {settings.key()}", [{k: row[k] for k in fields} for row in rows])
    for attack in images:
        sel = [r for r in rows if r["attack"] == attack]
        print(f"ig_ranks_attacked attack={attack} median_spearman={np.median([r['spearman'] for r in sel]):.3f} "
              f"median_top_iou={np.median([r['top_iou'] for r in sel]):.3f} "
              f"median_reldelta_study={np.median([r['reldelta_study'] for r in sel]):.3f} n={len(sel)}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
