"""Re-make the study's sanity table (cascading randomisation) on more photos, for the committed study table.

``study --sanity-photos N`` makes the sanity table at the end of a run, with the run's settings; this script
makes it for a study table that is already complete (``results/study.csv`` by default), with that table's
own settings (read from its header's key), on the first ``--photos`` correctly classified photos in the
table's row order (the study's seeded order), exactly as the study would. Grad-CAM maps are placed
half-pixel (the package's default, recorded in the header). It writes ``<table stem>_sanity.csv`` beside the
table (``results/study_sanity.csv``, read by the book's faithfulness chapter).

    python benchmarks/sanity_table.py [--photos 100] [--table results/study.csv]

MobileNetV2 only (its layers are randomised by name): 4 randomised stages x (Grad-CAM + 16 IG steps) per photo.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=100, help="correct photos, first in the table's order")
    parser.add_argument("--table", type=Path, default=None, help="the study table (default results/study.csv)")
    args = parser.parse_args()

    import xai_helpers as xh
    from xai_helpers.chapters.study_tables import load_study
    from xai_helpers.study.sanity import sanity_check
    from xai_helpers.study.settings import SANITY_IG_STEPS
    from xai_helpers.study.table import table_header, write_table

    print(common.machine(), flush=True)
    table = args.table or xh.results_path("study.csv")
    book = load_study(table, sanity=None)
    chosen = [int(r["class_index"]) for r in book.rows if r.get("clean_correct") == 1][:args.photos]
    if len(chosen) < args.photos:
        raise SystemExit(f"{table} has only {len(chosen)} correctly classified photos, fewer than --photos "
                         f"{args.photos}.")
    model = xh.load_model()
    start = time.perf_counter()
    rows = sanity_check(model, chosen, book.settings, progress=True)
    out = Path(table).with_name(Path(table).stem + "_sanity.csv")
    header = table_header(book.settings, len(chosen), "sanity check",
                          {"sanity_ig_steps": SANITY_IG_STEPS, "gradcam_upsampling": "half_pixel"}, model=model)
    write_table(out, header, rows)
    print(f"{len(chosen)} photos, {len(rows)} rows in {time.perf_counter() - start:.0f} s: {out}", flush=True)


if __name__ == "__main__":
    main()
