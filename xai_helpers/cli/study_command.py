"""``python -m xai_helpers study``: the many-photo study from parsed arguments, its exit status and messages."""
from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from pathlib import Path

from xai_helpers.cli.parser import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, SAMPLE_PHOTOS_DEFAULT
from xai_helpers.study.photos import folder_photos
from xai_helpers.study.settings import photo_order


def run_study_command(args: argparse.Namespace) -> int:
    """Run the study from parsed command-line arguments; return the exit status.

    0 = done (photos that could not be read are rows with status ``error``; their count is printed);
    1 = a Ray worker kept dying ("N rows kept in FILE"; every finished batch is in the table);
    2 = with ``--strict``, some photo could not be read;
    130 = interrupted by Ctrl-C or SIGTERM ("interrupted, N rows kept in FILE" on stderr; the table holds
    every finished batch, and running the same command again resumes it).
    """
    from xai_helpers.classifier.file_names import absolute
    from xai_helpers.study import runner as study
    from xai_helpers.study.settings import ModelSpec

    images = getattr(args, "images", None)
    labels = getattr(args, "labels", None)
    n_max = len(photo_order()) if images is None else len(folder_photos(images, labels))
    n_photos = args.photos if args.photos is not None else SAMPLE_PHOTOS_DEFAULT if images is None else n_max
    if not 1 <= n_photos <= n_max:
        where = "sample photos" if images is None else f"photos in {images}"
        raise ValueError(f"--photos must be in [1, {n_max}] (the number of {where}), got {n_photos}.")
    if images is None and getattr(args, "labels", None) is not None:
        raise ValueError("--labels goes with --images (the sample photos' classes are known).")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}.")
    if args.sanity_photos < 0:
        raise ValueError(f"--sanity-photos must be 0 or more, got {args.sanity_photos}.")
    weights = None if str(args.weights).lower() == "none" else args.weights
    model = ModelSpec(args.model, weights, args.alpha, args.size)
    out = absolute(args.out)
    prog = getattr(args, "_prog", "xai_helpers study")

    def terminate(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)  # (``main`` sets the same for the whole run)
    try:
        ray_address = getattr(args, "ray", None)
        options = study.RunOptions(batch_size=args.batch_size, sanity_photos=args.sanity_photos,
                                   progress=not args.quiet, force_new=getattr(args, "force_new", False),
                                   use_ray=ray_address is not None, ray_address=ray_address or None,
                                   ray_workers=getattr(args, "ray_workers", None), images=images,
                                   labels=getattr(args, "labels", None), model=model)
        settings = dataclasses.replace(study.StudySettings(), resize=getattr(args, "resize", "whole"))
        study.run_study(n_photos, out, settings, options=options)
        print(f"wrote {out}", flush=True)
    except study.StudyFailed as failed:
        print(f"{prog}: error: {failed}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    except KeyboardInterrupt as stop:  # StudyInterrupted, or Ctrl-C just before or after the study
        kept = stop.rows_kept if isinstance(stop, study.StudyInterrupted) else study.rows_on_disk(out)
        note = "" if getattr(stop, "sanity_written", True) or not args.sanity_photos else \
            " (the sanity table was not written)"
        print(f"{prog}: interrupted, {kept} rows kept in {out}{note}", file=sys.stderr, flush=True)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    from xai_helpers.study.table import analysed_rows, load_table

    _, skipped = analysed_rows(load_table(out).rows)
    _summarise(out, getattr(args, "summary", None), prog)
    if skipped:
        print(f"{prog}: {skipped} photo(s) could not be read and were skipped; their rows in {out} say why "
              f"(status 'error')", file=sys.stderr, flush=True)
        if getattr(args, "strict", False):
            return EXIT_BAD_INPUT
    return EXIT_OK


def _summarise(table: Path, html: str | None, prog: str) -> None:
    """Print the table's headline numbers (``chapters.study_summary``: the book's own), and write them as
    a page to ``html`` when given."""
    from xai_helpers.chapters.study_summary import summary_html, summary_text
    from xai_helpers.chapters.study_tables import load_study
    from xai_helpers.study.outputs import write_text_atomic

    book = load_study(table, sanity=None)
    if len(book.table):
        print(summary_text(book), flush=True)
    if html is not None:
        write_text_atomic(html, summary_html(book, f"Study summary: {table.name}"), replace=True)
        print(f"wrote {html}", flush=True)


def run_report_command(args: argparse.Namespace) -> int:
    """``report TABLE [--html FILE]``: the headline numbers of a study table made by ``study``."""
    from xai_helpers.classifier.file_names import absolute

    table = absolute(args.table)
    html = None if args.html is None else str(absolute(args.html))
    _summarise(table, html, getattr(args, "_prog", "xai_helpers report"))
    return EXIT_OK


__all__ = ["run_report_command", "run_study_command"]
