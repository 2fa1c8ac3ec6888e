"""Is the study's IG step count enough where only ranks are read? 32 trapezoid steps against a 256-step
reference on a seeded random subset of the sample photos (each explained for its own class).

For every photo: IG (``--target``: the study's maps are of logits, its reversed-target maps of the softmax;
black baseline) at the study's steps and at 256 steps, compared with ``compare_maps`` (Spearman rank
correlation of all pixels, top-10% IoU) for the map of |IG| and for the signed map (sum over channels, the
ranking of "positive evidence first"), and both completeness errors.
Last line: ``ig_ranks target=... median_spearman=... median_top_iou=... median_signed_spearman=... n=...``.

    python benchmarks/ig_ranks.py [--photos 20] [--steps 32] [--reference 256] [--target logits]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=20, help="photos in the seeded subset")
    parser.add_argument("--steps", type=int, default=32, help="the study's IG steps")
    parser.add_argument("--reference", type=int, default=256, help="reference IG steps")
    parser.add_argument("--target", choices=("softmax", "logits"), default="logits", help="IG's target")
    args = parser.parse_args()

    import xai_helpers as xh
    from xai_helpers.compare import compare_maps, to_2d
    from xai_helpers.integrated_gradients import integrated_gradients_batch
    from xai_helpers.study import photo_order

    print(common.machine())
    model = xh.load_model()
    classes = [int(c) for c in photo_order(0)[:args.photos]]
    rho, iou, signed_rho, err_study, err_ref = [], [], [], [], []
    start = time.perf_counter()
    for c in classes:
        x = xh.load_image(xh.sample_image(c))
        own = xh.predict(model, x, top=1)[0].class_index
        study, reference = (integrated_gradients_batch(model, x[None], [own], args.target, steps=n)[0]
                            for n in (args.steps, args.reference))
        numbers = compare_maps(to_2d(study.attributions), to_2d(reference.attributions))
        rho.append(numbers["spearman"])
        iou.append(numbers["top_iou"])
        signed_rho.append(compare_maps(study.attributions.sum(-1), reference.attributions.sum(-1))["spearman"])
        err_study.append(study.relative_delta)
        err_ref.append(reference.relative_delta)
        print(f"class {c:4d}: Spearman {rho[-1]:.3f}, top-10% IoU {iou[-1]:.3f}, signed Spearman {signed_rho[-1]:.3f}, completeness error "
              f"{err_study[-1]:.1%} ({args.steps}) vs {err_ref[-1]:.1%} ({args.reference})", flush=True)
    q = lambda v: np.percentile(v, [10, 50, 90])  # noqa: E731
    print(f"\n{len(classes)} photos in {time.perf_counter() - start:.0f} s")
    print("Spearman 10/50/90th percentile:", np.round(q(rho), 3))
    print("top-10% IoU 10/50/90th percentile:", np.round(q(iou), 3))
    print("signed-map Spearman 10/50/90th percentile:", np.round(q(signed_rho), 3))
    print("completeness error at the study's steps, 10/50/90th percentile:", np.round(q(err_study), 3))
    print(f"ig_ranks target={args.target} median_spearman={np.median(rho):.3f} median_top_iou={np.median(iou):.3f} "
          f"median_signed_spearman={np.median(signed_rho):.3f} n={len(classes)}")


if __name__ == "__main__":
    main()
