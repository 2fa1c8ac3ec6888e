"""The study runner: the photos a table lacks, analysed batch by batch (here or on Ray), written as they come.

What a row holds is ``rows`` (the per-photo analysis); what a run computes, ``settings.StudySettings``; how
it runs (batch size, Ray, photo folder, model), ``RunOptions``; where its photos come from, ``photos``; how
a table is written and checked, ``table``; how batches run on a Ray cluster, ``distributed``. This module only
runs them: ``run_study`` resumes a table made with the same settings, model, weights and package version,
rewrites it atomically after every batch (so an interrupted run keeps every finished batch), and turns Ctrl-C
and SIGTERM into ``StudyInterrupted`` with the rows kept.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import sys
import time
from pathlib import Path

from xai_helpers.study.distributed import WorkerLost
from xai_helpers.study.photos import SAMPLE_SOURCE, StudyPhoto, folder_photos, folder_source, photo_list_sha256
from xai_helpers.study.settings import SANITY_IG_STEPS, ModelSpec, StudySettings, photo_order
from xai_helpers.study.table import analysed_rows, check_resumable, load_table, set_aside, table_header, write_table


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a study run goes, beside what it computes (``StudySettings``): none of these change a row.

    ``batch_size`` photos per batch; a sanity-check table for the first ``sanity_photos`` correct photos;
    a progress bar when ``progress``; ``force_new`` sets an existing table of other settings aside instead of
    refusing it; ``use_ray`` runs the batches on Ray (``ray_address``: an existing cluster, None: a local one
    of ``ray_workers`` CPUs); ``images`` / ``labels`` study a folder of photos instead of the sample photos;
    ``model`` names the classifier.
    """

    batch_size: int = 8
    sanity_photos: int = 20
    progress: bool = True
    force_new: bool = False
    use_ray: bool = False
    ray_address: str | None = None
    ray_workers: int | None = None
    images: str | Path | None = None
    labels: str | Path | None = None
    model: ModelSpec = ModelSpec()


class StudyInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped ``run_study``; ``rows_kept`` rows are in the table at ``path``."""

    def __init__(self, rows_kept: int, path: Path, sanity_written: bool = True):
        super().__init__(f"interrupted, {rows_kept} rows kept in {path}")
        self.rows_kept, self.path, self.sanity_written = rows_kept, path, sanity_written


class StudyFailed(RuntimeError):
    """The study could not go on (Ray workers kept dying on some photos); ``rows_kept`` rows, every finished
    batch, are in the table at ``path``, and running the same command again resumes it."""

    def __init__(self, reason: str, rows_kept: int, path: Path):
        super().__init__(f"{reason}; {rows_kept} rows kept in {path} (run the same command again to resume)")
        self.rows_kept, self.path = rows_kept, path


class _ExpectedRetracing:
    """A logging filter for TensorFlow's "triggered tf.function retracing" warning, which the study gets
    by design: the sanity check builds a new randomised model per stage, and each new model needs its own
    trace of the compiled explainers (one trace per model, not a retrace per call)."""

    @staticmethod
    def filter(record) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def _study_warnings():
    """Inside: no TensorFlow retracing warning (``_ExpectedRetracing``) and no ``compare_maps`` warning
    about constant maps, whose NaN cells the table records and the study chapter counts."""
    import logging
    import warnings

    logger = logging.getLogger("tensorflow")
    logger.addFilter(_ExpectedRetracing)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="compare_maps: map", category=RuntimeWarning)
            yield
    finally:
        logger.removeFilter(_ExpectedRetracing)


def run_study(n_photos: int, out: str | Path, settings: StudySettings | None = None,
              options: RunOptions = RunOptions()) -> Path:
    """Run the study on the first ``n_photos`` photos of ``photo_order`` and write ``out`` (CSV).

    The table is rewritten atomically after every batch (``table.write_table``: temporary file, fsync,
    rename), so an interrupted run keeps every finished batch and never leaves a cut table. An existing
    table is checked (``table.load_table``: damaged or repeated rows raise ``ValueError`` naming the file
    and line) and resumed when it was made with the same settings, weights and package version; otherwise
    ``ValueError`` says so in one sentence, unless ``force_new``, which renames it to ``<stem>.old.csv``
    (``.old2.csv``, ...) and starts a new table. Resumed rows keep their cells' text exactly; rows of photos
    beyond ``n_photos`` are kept too. A sanity-check table (``<out stem>_sanity.csv``, rewritten whole) is
    made for the first ``sanity_photos`` correctly classified photos.

    ``images`` studies the first ``n_photos`` photos (in file-name order) of a folder instead of the ImageNet
    sample photos (``folder_photos``, with the optional ``labels`` CSV). Their rows are keyed by file name
    and the sha256 of the file's bytes, so a resumed table gains rows for new photos, keeps those of photos
    still there, and is refused (``ValueError`` naming the files) when a photo's bytes changed since its
    row was made. The header records the photo source (sample photos, or which folder, with a hash of its
    file list), and a table of another source is not resumed. A photo that cannot be read becomes a row
    with ``status`` ``error`` and its ``error`` (``study_rows.analyse_batch``); the study goes on, and a
    resumed run tries such photos again.
    With ``use_ray`` the batches run as Ray tasks (``distributed.ray_shards``: one model per worker, the same
    batches as a serial run, so the same rows; ``ray_address=None`` starts a local cluster of
    ``ray_workers`` CPUs, default all). Rows are written as batches finish, whichever finishes first.

    ``model`` names the classifier (``ModelSpec``: a ``load_model`` name, weights and architecture
    options); the header records it and its weights' sha256. The sanity check randomises MobileNetV2's top
    layers by name, so it runs for MobileNetV2 only (another model: no sanity table, said on stderr).

    Ctrl-C (``KeyboardInterrupt``) raises ``StudyInterrupted`` with the number of rows kept. Returns the
    absolute path of ``out``.
    """
    from xai_helpers.classifier.file_names import absolute

    settings, out = settings or StudySettings(), absolute(out)
    options = _without_foreign_sanity(options)
    sanity_path = out.with_name(out.stem + "_sanity.csv")
    state: dict = {"rows": [], "kept": None, "new": 0}
    photos = None if options.images is None else folder_photos(options.images, options.labels)
    try:
        _write_study(n_photos, out, sanity_path, settings, options, photos, state)
    except StudyInterrupted:
        raise
    except WorkerLost as lost:
        raise StudyFailed(str(lost), state["kept"] or 0, out) from None
    except KeyboardInterrupt:
        kept = state["kept"] if state["kept"] is not None else rows_on_disk(out)
        raise StudyInterrupted(kept, out, sanity_written=False) from None
    if options.progress:
        skipped = analysed_rows(state["rows"])[1]
        print(f"wrote {out} ({len(state['rows'])} photos; {state['new']} new in {state['seconds']:.0f} s"
              f"{f'; {skipped} could not be read' if skipped else ''})", file=sys.stderr)
    return out


def _without_foreign_sanity(options: RunOptions) -> RunOptions:
    """``options`` with no sanity table, said on stderr, when the check cannot run: the model is not
    MobileNetV2 (its randomised layers are MobileNetV2's), or the photos are a folder's (the check loads
    sample photos by class)."""
    if not options.sanity_photos:
        return options
    if not options.model.is_default_architecture():
        why = f"its randomised layers are MobileNetV2's, and the model is {options.model.name}"
    elif options.images is not None:
        why = "it runs on the sample photos, and this study's photos are a folder's"
    else:
        return options
    if options.progress:
        print(f"no sanity table: {why}", file=sys.stderr)
    return dataclasses.replace(options, sanity_photos=0)


def _write_study(n_photos: int, out: Path, sanity_path: Path, settings: StudySettings, options: RunOptions,
                 photos: list[StudyPhoto] | None, state: dict) -> None:
    """Under the table's lock: resume or set aside the table at ``out``, run the missing batches, then the
    sanity stage; ``state`` says what the table on disk holds at every moment."""
    from xai_helpers.study.locks import table_lock
    from xai_helpers.study.outputs import check_outputs

    source = {"photo_source": SAMPLE_SOURCE} if photos is None else {
        "photo_source": folder_source(options.images),
        "photo_files": f"{len(photos)} files, list sha256 {photo_list_sha256(photos)}"}
    check_outputs({"--out": out, "the sanity table": sanity_path if options.sanity_photos else None},
                  force=True, make_folders=True)
    # One run writes a table at a time (the lock names its holder); its folder is made only now.
    with table_lock(out, make_folders=True):
        header = table_header(settings, 0, "per photo", source, model=options.model.load())
        if out.exists() or out.is_symlink():
            if options.force_new:
                old = set_aside(out)
                if options.sanity_photos and sanity_path.exists():
                    set_aside(sanity_path)
                print(f"kept the old table as {old}", file=sys.stderr)
            else:
                table = load_table(out)
                check_resumable(table, header)
                if photos is not None:
                    _check_unchanged(table, photos)
                state["rows"] = table.rows
        state["kept"] = len(state["rows"])
        with _study_warnings():
            _run_batches(n_photos, out, settings, options, header, state, photos)
            if options.sanity_photos:
                _write_sanity(sanity_path, settings, options, state["rows"], photos is None)


def _write_sanity(path: Path, settings: StudySettings, options: RunOptions, rows: list[dict],
                  sample_photos: bool) -> None:
    """Write the sanity-check table for the first ``options.sanity_photos`` correct sample photos of ``rows``
    (the sanity check loads photos by class index, so a folder study has none)."""
    from xai_helpers.study import sanity

    chosen = [int(r["class_index"]) for r in rows
              if sample_photos and str(r.get("clean_correct", "")) in ("1", "1.0")][:options.sanity_photos]
    model = options.model.load()
    sanity_rows = sanity.sanity_check(model, chosen, settings, progress=options.progress)
    header = table_header(settings, len(chosen), "sanity check", {"sanity_ig_steps": SANITY_IG_STEPS}, model=model)
    write_table(path, header, sanity_rows)


def _check_unchanged(table, photos: list[StudyPhoto]) -> None:
    """Raise ``ValueError`` (one sentence, naming the files) if a photo of the folder has other bytes than
    when the table's row of it was made (rows of photos that could not be read are retried, not compared)."""
    now = {p.name: p.sha256 for p in photos if p.sha256}
    changed = sorted(row["file"] for row in table.rows if row.get("status", "ok") != "error"
                     and row.get("file") in now and row.get("sha256") != now[row["file"]])
    if changed:
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        raise ValueError(f"{table.path} holds rows of {len(changed)} photo(s) whose bytes changed since they "
                         f"were analysed ({shown}), so it cannot be resumed; restore those files, or pass "
                         f"--force-new to start a new table and keep this one.")


def rows_on_disk(path: Path) -> int:
    """Return the number of rows of the table at ``path`` (0 when there is none or it cannot be read)."""
    try:
        return len(load_table(path).rows)
    except (OSError, ValueError):
        return 0


def _run_batches(n_photos: int, out: Path, settings: StudySettings, options: RunOptions, header: list[str],
                 state: dict, photos: list[StudyPhoto] | None = None) -> None:
    """Analyse the photos ``state["rows"]`` lacks, batch by batch, rewriting ``out`` after each batch;
    ``state`` always says what the table on disk holds (``rows``, ``kept``), even when interrupted.
    ``options.use_ray`` runs the batches on Ray instead of here."""
    from tqdm.auto import tqdm

    from xai_helpers.study import rows  # (here: it loads TensorFlow, which the bookkeeping above does not need)
    from xai_helpers.study.distributed import ray_shards, serial_shards
    from xai_helpers.study.outputs import signals_deferred

    # A photo's key says which photo it is (a folder's: file name and sha256); its slot, which row of the
    # table is its own (a folder's: the file name, unique in a folder).
    if photos is None:  # the ImageNet sample photos, by class index, in the seeded study order
        full_order: list = [int(c) for c in photo_order(settings.seed)]
        key_of_photo = slot_of_photo = (lambda c: c)
        key_of_row = slot_of_row = (lambda r: int(float(r["class_index"])))
    else:  # a folder's photos, in file-name order
        full_order, key_of_photo, slot_of_photo = photos, (lambda p: p.key), (lambda p: p.name)
        key_of_row = lambda r: (r.get("file"), r.get("sha256", ""))  # noqa: E731
        slot_of_row = lambda r: r.get("file")  # noqa: E731
    rank = {slot_of_photo(p): k for k, p in enumerate(full_order)}
    order = full_order[:n_photos]
    done = {key_of_row(r) for r in state["rows"] if r.get("status", "ok") != "error"}
    todo = [p for p in order if key_of_photo(p) not in done]
    shards = [todo[b:b + options.batch_size] for b in range(0, len(todo), options.batch_size)]
    start = time.perf_counter()
    analyse = functools.partial(rows.analyse_batch, settings=settings)
    model = options.model
    results = (ray_shards(shards, analyse, model.load, address=options.ray_address, workers=options.ray_workers)
               if options.use_ray else serial_shards(model.load(), shards, analyse))
    where = machine_description()   # after the model is loaded here (it loads TensorFlow, which sees the GPUs)
    with tqdm(total=len(order), initial=len(order) - len(todo), desc="photos", unit="photo",
              disable=not options.progress, file=sys.stderr) as bar:
        for batch, new, seconds in results:
            per_photo = seconds / len(batch)
            for row in new:
                row.update(seconds=per_photo, ran_on=where)
            # A new row replaces an earlier one of the same photo (one that could not be read then); rows of
            # photos no longer in the folder stay, after the folder's, in their earlier order.
            fresh = {slot_of_row(r) for r in new}
            kept = [r for r in state["rows"] if slot_of_row(r) not in fresh]
            merged = sorted(kept + new, key=lambda r: rank.get(slot_of_row(r), len(rank)))
            lines = [f"# photos: {len(merged)}" if h.startswith("# photos:") else h for h in header]
            with signals_deferred():  # the table on disk and `state` change together
                write_table(out, lines, merged)
                state.update(rows=merged, kept=len(merged), new=state["new"] + len(new))
            bar.update(len(batch))
    state["seconds"] = time.perf_counter() - start


def machine_description() -> str:
    """Return where a study row was computed, e.g. ``x86_64, 2 CPUs`` or ``x86_64, 16 CPUs, NVIDIA H100``
    (the table's ``ran_on`` column: the same code and seeds give the same rows up to float summation order)."""
    import os
    import platform

    words = [platform.machine(), f"{os.cpu_count()} CPUs"]
    # The GPUs of this process's TensorFlow; a process that never loaded it (a Ray driver, whose workers
    # compute the rows, or a test's fake analysis) computed nothing on one, and loading it costs 7 s.
    tf = sys.modules.get("tensorflow")
    for gpu in tf.config.list_physical_devices("GPU") if tf is not None else ():
        words.append(tf.config.experimental.get_device_details(gpu).get("device_name", "GPU"))
    return ", ".join(words)
