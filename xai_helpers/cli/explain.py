"""``python -m xai_helpers explain``: one photo (a figure, a JSON, a printed table) or many (one of each per
photo, and an index page). This module parses and checks, calls the per-photo analysis
(``study.analysis.explain_photo``) and writes; what the report says is ``report``, the figure is
``study.explain_figure``, the index page ``index_page``.

Many photos: every photo's outputs get a name of their own within the run (``output_names``: the photo's
name made safe for a file, with its folder or a short hash where two would collide), each photo is written
once, and a run started again without ``--force`` keeps every photo whose figure and JSON are there and
were made from the same bytes with the same settings (``_finished``), explaining only the rest.
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import re
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from xai_helpers.cli.parser import (
    CURVE_FRACTIONS,
    CURVE_RANDOM_MASKS,
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_TARGET_MISSED,
    LEVEL,
    MAX_EPS_LEVELS,
    MAX_STEPS,
    MIN_STEPS,
    TOP,
    _one_line,
)
from xai_helpers.cli.report import attack_record, explain_report, format_report, jsonable, missed_target
from xai_helpers.methods.targets import TARGET_SETS

#: The largest JSON of a finished photo that a resumed run reads back (a report is a few kB).
MAX_REPORT_BYTES = 4 * 2 ** 20


def run_explain(args: argparse.Namespace) -> int:
    """Run ``explain`` from parsed arguments; return the exit status (0; 3: a targeted attack missed)."""
    images = [args.image] if isinstance(args.image, str) else list(args.image)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning(getattr(args, "_prog", "xai_helpers"))
        if len(images) == 1 and not Path(images[0]).is_dir() and args.out_dir is None:
            return explain_one(argparse.Namespace(**{**vars(args), "image": images[0]}))
        return _explain_many(args, images)


def explain_one(args: argparse.Namespace) -> int:
    """Explain one photo: its figure (``--out``), its JSON (``--json``) and the printed table; return the
    exit status (0, or 3 when a targeted attack missed its class)."""
    from xai_helpers.study.outputs import PendingFiles

    started = time.perf_counter()
    eps, paths = _check_explain_args(args)
    x, target_class = _read_photo(args)
    sets = list(TARGET_SETS) if args.targets == "both" else [args.targets]
    stages = _Stages(_stage_names(args, sets), args.quiet)
    # The figure and the JSON are renamed into place together, at the end; without --force a file that
    # appeared meanwhile (another run) is never replaced.
    files = PendingFiles(replace=getattr(args, "force", False))
    try:
        model, x, eps, result, search = _analyse(args, x, eps, target_class, sets, stages.next)
        stages.next("figure")
        attack = attack_record(model, x, result, eps, target_class, args.iterations)
        attack["eps_search"] = search if search is not None else _suggestion(model, x, result, attack, args)
        mask = _object_mask(x, result.clean_top[0].class_index, args)
        _write_figure(files, paths["--out"], x, result, attack, eps, Path(args.image).name, mask)
    except BaseException:
        files.discard()
        raise
    finally:
        stages.close()
    report = explain_report(args.image, paths["--out"], model, x, result, attack, time.perf_counter() - started)
    report.update(photo_sha256=_sha256(args.image), settings=explain_settings(args))
    with files:
        if paths.get("--json") is not None:
            files.write_text(paths["--json"], json.dumps(jsonable(report), indent=2) + "\n")
        files.commit()
    return _announce(args, report, paths)


def explain_settings(args: argparse.Namespace) -> dict:
    """What decides a photo's outputs besides its bytes (a resumed run reuses a photo made with the same)."""
    return {name: getattr(args, name, None) for name in ("eps", "eps_units", "target_class", "iterations",
                                                         "targets", "steps", "method", "baseline", "model",
                                                         "weights")}


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2 ** 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_photo(args: argparse.Namespace):
    """The photo at MobileNetV2's 224 px and the target class, checked before TensorFlow loads (7 s): a
    missing or undecodable file, or an unknown class, is one sentence."""
    from xai_helpers.classifier.data import IMAGE_SIZE, load_image
    from xai_helpers.classifier.labels import resolve_class
    from xai_helpers.study.memory import release_freed_memory

    x = load_image(args.image, IMAGE_SIZE)
    release_freed_memory()  # a big photo's decoded pixels, freed: give them back before TensorFlow comes
    return x, resolve_class(args.target_class) if args.target_class is not None else None


def _stage_names(args: argparse.Namespace, sets: Sequence[str]) -> list[str]:
    """The progress bar's stages, as ``explain_photo`` names them (and the loading and the figure)."""
    search = ["finding the smallest eps"] if args.eps in (None, "auto") else []
    names = [f"loading {args.model}", *search, "attack"]
    for name in sets:
        gc_target, ig_target = TARGET_SETS[name]
        names += [f"Grad-CAM ({gc_target})", f"IG ({ig_target}, {args.steps} steps)"]
    return names + ["interventions", "figure"]


# long: the parsed arguments, the photo, its budget and target, the target sets and the progress callback
def _analyse(args: argparse.Namespace, x, eps: float | None, target_class: int | None, sets: Sequence[str],
             stage):
    """Load the model, find the budget when ``--eps auto`` (``eps`` None) and run the per-photo analysis;
    return (model, the photo at the model's size, eps, result, the budget search or None)."""
    from xai_helpers.classifier.data import load_image
    from xai_helpers.classifier.forward import input_shape, predict
    from xai_helpers.classifier.loading import load_model
    from xai_helpers.study.analysis import AUTO_MAX_LEVELS, ExplainOptions, IGSettings, explain_photo, flipping_levels

    stage(f"loading {args.model}")
    model = load_model(args.model, args.weights)
    if input_shape(model)[0] != x.shape[0]:  # a model whose input is not 224 px
        x = load_image(args.image, input_shape(model)[0])
    search = None
    if eps is None:
        stage("finding the smallest eps")
        found = flipping_levels(model, x, predict(model, x, top=1)[0].class_index, target_class, args.iterations)
        search = {"auto": True, "flipping_levels": None if math.isnan(found) else found, "max_levels": AUTO_MAX_LEVELS}
        eps = (AUTO_MAX_LEVELS if math.isnan(found) else found) * LEVEL
    options = ExplainOptions(target_sets={name: TARGET_SETS[name] for name in sets},
                             ig=IGSettings(steps=args.steps, method=args.method, baseline=args.baseline),
                             fractions=CURVE_FRACTIONS, n_random=CURVE_RANDOM_MASKS, top=TOP,
                             iterations=args.iterations)
    return model, x, eps, explain_photo(model, x, eps, target_class, options, progress=stage), search


def _suggestion(model, x, result, attack: dict, args: argparse.Namespace) -> dict:
    """A fixed budget's attack that failed: the smallest budget that would have succeeded (or None)."""
    if attack["succeeded"]:
        return {"auto": False}
    from xai_helpers.study.analysis import AUTO_MAX_LEVELS, flipping_levels

    target = attack["target_class"]["class_index"] if attack.get("target_class") else None
    found = flipping_levels(model, x, result.clean_top[0].class_index, target, args.iterations)
    return {"auto": False, "flipping_levels": None if math.isnan(found) else found, "max_levels": AUTO_MAX_LEVELS}


def _object_mask(x, class_index: int, args: argparse.Namespace):
    """The photo's object mask when its class has a PASCAL category (``segmentation``); None otherwise, and
    when the segmenter cannot be had (a warning says why: the figure goes without it)."""
    from xai_helpers.classifier.pascal import pascal_category

    if pascal_category(class_index) is None:
        return None
    from xai_helpers.classifier.segmentation import object_mask

    try:
        return object_mask(x, class_index)
    except (OSError, ValueError, ImportError) as err:
        print(f"{getattr(args, '_prog', 'xai_helpers')}: warning: no object mask ({_one_line(err)})", file=sys.stderr)
        return None


# long: the files to write, the figure's path, the photo, its result, the attack, its budget, name and mask
def _write_figure(files, out: Path, x, result, attack: dict, eps: float, photo_name: str, mask) -> None:
    """Draw the figure and hand it to ``files`` (written at the commit)."""
    import matplotlib.pyplot as plt

    from xai_helpers.study.explain_figure import explain_figure

    fig = explain_figure(x, result, attack, eps, title=f"{shown(photo_name)}: {attack['description']}",
                         object_mask=mask)
    try:
        files.write(out, lambda f: fig.savefig(f, format=out.suffix.lower().lstrip("."), dpi=110))
    finally:
        plt.close(fig)


def _announce(args: argparse.Namespace, report: dict, paths: dict) -> int:
    """Print the table and the files written; return the exit status (3 when a targeted attack missed)."""
    if not args.quiet:
        print(format_report(report))
    print(f"wrote {shown(paths['--out'])}")
    if paths.get("--json") is not None:
        print(f"wrote {shown(paths['--json'])}")
    prog = getattr(args, "_prog", "xai_helpers")
    search = report["attack"].get("eps_search") or {}
    if not report["attack"]["succeeded"] and not search.get("auto"):
        levels = search.get("flipping_levels")
        would = (f"--eps {levels:g} would (the smallest budget in steps of 1/8 level)" if levels is not None else
                 f"no budget up to {search.get('max_levels', 16):g} levels would")
        print(f"{prog}: warning: the attack did not succeed at --eps {report['eps']['levels']:g}; {would}.",
              file=sys.stderr)
    missed = missed_target(report)
    if missed:
        print(f"{prog}: warning: {missed} (exit status {EXIT_TARGET_MISSED}).", file=sys.stderr)
        return EXIT_TARGET_MISSED
    return EXIT_OK


def _check_explain_args(args: argparse.Namespace) -> tuple[float | None, dict[str, Path]]:
    """Return (eps in model units, None for ``--eps auto``; {"--out": figure, "--json": JSON (when asked)} as
    absolute paths), after every check that needs no model: eps, steps, iterations, the figure's format, and
    the outputs (``outputs.check_outputs``: writable folder, not the photo, not each other, not existing
    unless ``--force``)."""
    from xai_helpers.study.outputs import check_outputs

    eps = _eps(args)
    if not MIN_STEPS <= args.steps <= MAX_STEPS:
        raise ValueError(f"--steps must be between {MIN_STEPS} and {MAX_STEPS}, got {args.steps}.")
    if args.iterations < 1 or args.iterations > 1000:
        raise ValueError(f"--iterations must be between 1 and 1000, got {args.iterations}.")
    image = Path(args.image)
    out = Path(args.out) if args.out else Path.cwd() / f"{safe_name(image.stem)}_explained.png"
    import matplotlib

    matplotlib.use("Agg")  # files only, no window; must precede pyplot's first import
    from matplotlib.backend_bases import FigureCanvasBase

    if out.suffix.lower().lstrip(".") not in FigureCanvasBase.get_supported_filetypes():
        raise ValueError(f"--out must end with an image suffix such as .png, .pdf or .svg, got {out.name!r}.")
    paths = check_outputs({"--out": out, "--json": args.json}, inputs=[image],
                          force=getattr(args, "force", False))
    return eps, paths


def _eps(args: argparse.Namespace) -> float | None:
    """``--eps`` in model units (None: ``auto``), checked against its units' range."""
    if args.eps in (None, "auto"):
        return None
    if args.eps_units == "levels":
        if not 0.0 <= args.eps <= MAX_EPS_LEVELS:
            raise ValueError(f"--eps must be between 0 and {MAX_EPS_LEVELS:g} pixel levels (0-255 scale), "
                             f"got {args.eps:g}.")
        return args.eps * LEVEL
    if not 0.0 <= args.eps <= 1.0:
        raise ValueError(f"--eps must be between 0 and 1 in model units (--eps-units model), got {args.eps:g}.")
    return args.eps


# ----------------------------------------------------------------------------------------------------
# many photos

def _explain_many(args: argparse.Namespace, images: list[str]) -> int:
    """Explain several photos (or a folder's) into ``--out-dir``: a figure and a JSON each, and an index.html.

    A photo that cannot be explained is named in the index and on stderr and the others go on; a full disk
    stops the run. Without ``--force``, photos finished by an earlier run (same bytes, same settings) are
    kept. The exit status is 2 if any photo failed, else 3 if a targeted attack missed any, else 0.
    """
    from xai_helpers.classifier.file_names import absolute
    from xai_helpers.cli.index_page import index_page
    from xai_helpers.study.memory import release_freed_memory
    from xai_helpers.study.outputs import DiskFull, check_outputs, write_text_atomic

    if args.out is not None or args.json is not None:
        raise ValueError("--out and --json name one photo's files; with several photos or a folder, give "
                         "--out-dir (each photo's figure and JSON go there, with an index.html).")
    photos = _photos(images)
    out_dir = absolute(args.out_dir or "explained")
    index = check_outputs({"the index page": out_dir / "index.html"}, force=True, make_folders=True)["the index page"]
    out_dir.mkdir(parents=True, exist_ok=True)
    entries, statuses, prog = [], [], getattr(args, "_prog", "xai_helpers")
    for k, (photo, name) in enumerate(zip(photos, output_names(photos)), 1):
        figure, numbers = out_dir / f"{name}_explained.png", out_dir / f"{name}.json"
        kept = None if getattr(args, "force", False) else _finished(photo, figure, numbers, explain_settings(args))
        print(f"[{k}/{len(photos)}] {shown(photo)}" + (" (kept: explained before with these settings)" if kept else ""),
              file=sys.stderr, flush=True)
        if kept is None:
            one = argparse.Namespace(**{**vars(args), "image": str(photo), "out": str(figure),
                                        "json": str(numbers), "out_dir": None})
            try:
                statuses.append(explain_one(one))
            except DiskFull:
                raise
            except (ValueError, TypeError, OSError) as err:
                print(f"{prog}: error: {_one_line(err)}", file=sys.stderr, flush=True)
                entries.append({"photo": photo.name, "error": _one_line(err)})
                statuses.append(EXIT_BAD_INPUT)
                continue
            finally:   # a photo's buffers, freed, go back to the system: memory stays flat over a folder
                gc.collect()
                release_freed_memory()
            kept = _read_report(numbers)
        else:
            statuses.append(EXIT_TARGET_MISSED if missed_target(kept) else EXIT_OK)
        entries.append({"photo": photo.name, "figure": figure.name, "json": numbers.name, "report": kept})
    write_text_atomic(index, index_page(entries, f"{len(photos)} photos explained"), replace=True)
    print(f"wrote {shown(index)}")
    return next((s for s in (EXIT_BAD_INPUT, EXIT_TARGET_MISSED) if s in statuses), EXIT_OK)


def _photos(images: Sequence[str]) -> list[Path]:
    """The photos named, a folder's photos in file-name order in its place; each photo once."""
    from xai_helpers.study.photos import IMAGE_SUFFIXES

    photos: list[Path] = []
    for image in map(Path, images):
        if image.is_dir():
            found = sorted(p for p in image.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())
            if not found:
                raise ValueError(f"{shown(image)} holds no photos (files ending in {', '.join(IMAGE_SUFFIXES)}).")
            photos += found
        else:
            photos.append(image)
    seen, unique = set(), []
    for photo in photos:
        key = str(photo.resolve()) if photo.exists() else str(photo)
        if key not in seen:
            seen.add(key)
            unique.append(photo)
    return unique


def safe_name(stem: str) -> str:
    """``stem`` made safe as part of a file name and a URL: letters, digits, ``.``, ``-`` and ``_`` only
    (anything else becomes ``_``), at most 80 characters, never empty or starting with a dot."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", stem)[:80].lstrip(".")
    return name or "photo"


def output_names(photos: Sequence[Path]) -> list[str]:
    """One name per photo for its outputs, unique within the run: its safe stem; where two collide, the
    folder's name in front; where they still collide, a short hash of the photo's whole path behind."""
    names = [safe_name(p.stem) for p in photos]
    clash = [names.count(n) > 1 for n in names]
    names = [safe_name(f"{p.parent.name}_{p.stem}") if c else n for p, n, c in zip(photos, names, clash)]
    clash = [names.count(n) > 1 or n.lower() == "index" for n in names]
    return [f"{n}_{hashlib.sha256(str(p).encode()).hexdigest()[:8]}" if c else n
            for p, n, c in zip(photos, names, clash)]


def _finished(photo: Path, figure: Path, numbers: Path, settings: dict) -> dict | None:
    """The report of a photo an earlier run finished with these settings (its figure and JSON there, made
    from the photo's present bytes), or None: then it is explained (again)."""
    if not figure.is_file() or figure.is_symlink():
        return None
    report = _read_report(numbers)
    try:
        same = (report is not None and report.get("settings") == settings
                and report.get("photo_sha256") == _sha256(photo))
    except OSError:
        return None
    return report if same else None


def _read_report(path: Path) -> dict | None:
    """A photo's JSON report as data (None when it is missing, too large or not a report)."""
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_REPORT_BYTES:
            return None
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return report if isinstance(report, dict) and isinstance(report.get("attack"), dict) else None


#: Characters that would hide or reorder what a path says on a terminal: controls, bidirectional marks.
_HIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def shown(path) -> str:
    """``path`` as printed: every control or bidirectional character made visible as ``\\uXXXX``."""
    return _HIDDEN.sub(lambda m: f"\\u{ord(m.group()):04x}", str(path))


class _Stages:
    """A tqdm bar over the named stages of a run (stderr; disabled by ``--quiet``)."""

    def __init__(self, names: Sequence[str], quiet: bool):
        from tqdm import tqdm

        self.started = False
        self.bar = tqdm(total=len(names), desc=names[0] if names else "", unit="stage", file=sys.stderr,
                        disable=quiet, leave=False,
                        bar_format="{desc:<34} {bar:20} {n_fmt}/{total_fmt} [{elapsed}]")

    def next(self, name: str | None) -> None:
        """The stage before is done, ``name`` begins."""
        if self.started:
            self.bar.update(1)
        self.started = True
        if name:
            self.bar.set_description_str(name)

    def close(self) -> None:
        if self.started:
            self.bar.update(1)
        self.bar.close()


def _show_warning(prog: str):
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {_one_line(message)}", file=sys.stderr)
    return show


__all__ = ["MAX_REPORT_BYTES", "explain_one", "explain_settings", "output_names", "run_explain", "safe_name", "shown"]
