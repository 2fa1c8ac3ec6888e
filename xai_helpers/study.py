"""The study runner: the photos a table lacks, analysed batch by batch (here or on Ray), written as they come.

What a row holds is ``study_rows`` (the per-photo analysis); what a run is, ``study_settings``; where its
photos come from, ``study_photos``; how a table is written and checked, ``table``; how batches run on a
Ray cluster, ``distributed``. This module only runs them: ``run_study`` resumes a table made with the same
settings, model, weights and package version, rewrites it atomically after every batch (so an interrupted run
keeps every finished batch), and turns Ctrl-C and SIGTERM into ``StudyInterrupted`` with the rows kept.

The names the chapters and tests use keep working from here (``study.StudySettings``,
``study.analyse_batch``, ``study.photo_order``, ``study.read_table``, ...).
"""
from __future__ import annotations

import contextlib
import functools
import sys
import time
from pathlib import Path

from .study_photos import (IMAGE_SUFFIXES, SAMPLE_SOURCE, StudyPhoto, folder_photos, folder_source,  # noqa: F401
                           photo_list_sha256)
from .study_settings import *  # noqa: F401,F403  (every setting constant, re-exported)
from .study_settings import (SANITY_IG_STEPS, ModelSpec, StudySettings, photo_order,  # noqa: F401
                             random_sign_noise, settings_for_key)
from .distributed import WorkerLost
from .table import (analysed_rows, check_resumable, load_table, read_table, set_aside, table_header,  # noqa: F401
                    write_table)

#: Names re-exported from the modules that load TensorFlow, imported on first use (PEP 562), so that the
#: runner's bookkeeping (resuming, signals, writing the table) starts in a second, not after TensorFlow's 7 s.
_LAZY = {"analyse_batch": "study_rows", "normalized_entropy": "study_rows", "runner_up_share": "study_rows",
         "detection_auc": "detection", "high_frequency_energy": "detection",
         "transfer_detection_auc": "detection",
         "class_probability_curves": "faithfulness", "curve_auc": "faithfulness",
         "deletion_insertion_aucs": "faithfulness", "deletion_insertion_images": "faithfulness",
         "road_scores": "faithfulness",
         "SANITY_STAGES": "sanity", "randomize_top_layers": "sanity",
         "sanity_check": "sanity",
         "binned": "summary", "bootstrap_ci": "summary"}


def __getattr__(name: str):
    if name in _LAZY:
        from . import detection, faithfulness, sanity, study_rows, summary   # (written out: the layer test reads them)

        modules = {"detection": detection, "faithfulness": faithfulness, "sanity": sanity, "study_rows": study_rows,
                   "summary": summary}
        value = getattr(modules[_LAZY[name]], name)
        globals()[name] = value   # later lookups (and a test's replacement) go through the module dict
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _current(name: str):
    """This module's ``name`` as it is now: a replacement a test made, or the lazily imported original."""
    return getattr(sys.modules[__name__], name)

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


def run_study(n_photos: int, out: str | Path, settings: StudySettings | None = None, batch_size: int = 8,
              sanity_photos: int = 20, progress: bool = True, force_new: bool = False,
              ray_address: str | None = None, use_ray: bool = False, ray_workers: int | None = None,
              images: str | Path | None = None, labels: str | Path | None = None,
              model: ModelSpec = ModelSpec()) -> Path:
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
    from .locks import table_lock
    from .outputs import absolute, check_outputs

    settings = settings or StudySettings()
    out = absolute(out)
    if sanity_photos and not model.is_default_architecture():
        if progress:
            print(f"no sanity table: its randomised layers are MobileNetV2's, and the model is {model.name}",
                  file=sys.stderr)
        sanity_photos = 0
    sanity_path = out.with_name(out.stem + "_sanity.csv")
    state: dict = {"rows": [], "kept": None, "new": 0}
    photos = None if images is None else folder_photos(images, labels)
    source = {"photo_source": SAMPLE_SOURCE} if photos is None else {
        "photo_source": folder_source(images),
        "photo_files": f"{len(photos)} files, list sha256 {photo_list_sha256(photos)}"}
    try:
        check_outputs({"--out": out, "the sanity table": sanity_path if sanity_photos else None}, force=True,
                      make_folders=True)
        # One run writes a table at a time (the lock names its holder); its folder is made only now.
        with table_lock(out, make_folders=True):
            header = table_header(settings, 0, "per photo", source, model=model.load())
            if out.exists() or out.is_symlink():
                if force_new:
                    old = set_aside(out)
                    if sanity_photos and sanity_path.exists():
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
                _run_batches(n_photos, out, settings, batch_size, progress, header, state,
                             ray=(ray_address, ray_workers) if use_ray else None, photos=photos, model=model)
                if sanity_photos:
                    # (sample photos only: the sanity check loads photos by class index)
                    chosen = [int(r["class_index"]) for r in state["rows"]
                              if photos is None and str(r.get("clean_correct", "")) in ("1", "1.0")]
                    sanity_rows = _current("sanity_check")(model.load(), chosen[:sanity_photos], settings,
                                                           progress=progress)
                    extra = {"sanity_ig_steps": SANITY_IG_STEPS}
                    write_table(sanity_path, table_header(settings, len(chosen[:sanity_photos]), "sanity check",
                                                          extra, model=model.load()),
                                sanity_rows)
    except StudyInterrupted:
        raise
    except WorkerLost as lost:
        raise StudyFailed(str(lost), state["kept"] or 0, out) from None
    except KeyboardInterrupt:
        kept = state["kept"] if state["kept"] is not None else rows_on_disk(out)
        raise StudyInterrupted(kept, out, sanity_written=False) from None
    if progress:
        skipped = analysed_rows(state["rows"])[1]
        print(f"wrote {out} ({len(state['rows'])} photos; {state['new']} new in {state['seconds']:.0f} s"
              f"{f'; {skipped} could not be read' if skipped else ''})", file=sys.stderr)
    return out


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


def _run_batches(n_photos: int, out: Path, settings: StudySettings, batch_size: int, progress: bool,
                 header: list[str], state: dict, ray: tuple[str | None, int | None] | None = None,
                 photos: list[StudyPhoto] | None = None, model: ModelSpec = ModelSpec()) -> None:
    """Analyse the photos ``state["rows"]`` lacks, batch by batch, rewriting ``out`` after each batch;
    ``state`` always says what the table on disk holds (``rows``, ``kept``), even when interrupted.
    ``ray = (address, workers)`` runs the batches on Ray instead of here."""
    from tqdm.auto import tqdm

    from .distributed import ray_shards, serial_shards
    from .outputs import signals_deferred

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
    shards = [todo[b:b + batch_size] for b in range(0, len(todo), batch_size)]
    start = time.perf_counter()
    # Looked up now, not at import: tests replace ``study.analyse_batch`` with a fast fake analysis.
    analyse = functools.partial(_current("analyse_batch"), settings=settings)
    results = (serial_shards(model.load(), shards, analyse) if ray is None else
               ray_shards(shards, analyse, model.load, address=ray[0], workers=ray[1]))
    where = machine_description()   # after the model is loaded here (it loads TensorFlow, which sees the GPUs)
    with tqdm(total=len(order), initial=len(order) - len(todo), desc="photos", unit="photo",
              disable=not progress, file=sys.stderr) as bar:
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


#: Columns holding whole numbers (for readers of ``read_table``, which gives floats).
_INT_COLUMNS = {"class_index", "clean_top1", "clean_correct", "fgsm_top1", "pgd_top1", "fgsm_fooled", "pgd_fooled",
                "noise_top1"}
