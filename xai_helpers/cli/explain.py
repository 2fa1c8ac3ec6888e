"""``python -m xai_helpers explain``: one photo (a figure, a JSON, a printed table) or many (one of each per
photo, and an index page). This module parses and checks, calls the per-photo analysis
(``study.analysis.explain_photo``) and writes; what the report says is ``report``, the figure is
``study.explain_figure``."""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from xai_helpers.cli.parser import (
    CURVE_FRACTIONS,
    CURVE_RANDOM_MASKS,
    DEFAULT_EPS_LEVELS,
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


def run_explain(args: argparse.Namespace) -> int:
    """Run ``explain`` from parsed arguments; return the exit status (0; 3: a targeted attack missed)."""
    images = [args.image] if isinstance(args.image, str) else list(args.image)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning(getattr(args, "_prog", "xai_helpers"))
        if len(images) == 1 and not Path(images[0]).is_dir() and args.out_dir is None:
            return explain_one(argparse.Namespace(**{**vars(args), "image": images[0]}))
        return _explain_many(args, images)



def _explain_many(args: argparse.Namespace, images: list[str]) -> int:
    """Explain several photos (or a folder's) into ``--out-dir``: a figure and a JSON each, and an index.html.

    A photo that cannot be explained is named in the index and on stderr and the others go on; the exit
    status is 2 if any photo failed, else 3 if a targeted attack missed any, else 0.
    """
    from xai_helpers.classifier.file_names import absolute
    from xai_helpers.cli.report import index_page
    from xai_helpers.study.outputs import check_outputs, write_text_atomic
    from xai_helpers.study.photos import IMAGE_SUFFIXES

    if args.out is not None or args.json is not None:
        raise ValueError("--out and --json name one photo's files; with several photos or a folder, give "
                         "--out-dir (each photo's figure and JSON go there, with an index.html).")
    photos: list[Path] = []
    for image in map(Path, images):
        if image.is_dir():
            found = sorted(p for p in image.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ValueError(f"{image} holds no photos (files ending in {', '.join(IMAGE_SUFFIXES)}).")
            photos += found
        else:
            photos.append(image)
    out_dir = absolute(args.out_dir or "explained")
    index = check_outputs({"the index page": out_dir / "index.html"}, force=args.force,
                          make_folders=True)["the index page"]
    stems = [p.stem for p in photos]
    names = [p.stem if stems.count(p.stem) == 1 else f"{p.stem}_{p.suffix.lstrip('.')}" for p in photos]
    out_dir.mkdir(parents=True, exist_ok=True)
    entries, statuses, prog = [], [], getattr(args, "_prog", "xai_helpers")
    for k, (photo, name) in enumerate(zip(photos, names), 1):
        print(f"[{k}/{len(photos)}] {photo}", file=sys.stderr, flush=True)
        one = argparse.Namespace(**{**vars(args), "image": str(photo), "out": str(out_dir / f"{name}_explained.png"),
                                    "json": str(out_dir / f"{name}.json"), "out_dir": None})
        try:
            statuses.append(explain_one(one))
        except (ValueError, TypeError, OSError) as err:
            print(f"{prog}: error: {_one_line(err)}", file=sys.stderr, flush=True)
            entries.append({"photo": photo.name, "error": _one_line(err)})
            statuses.append(EXIT_BAD_INPUT)
            continue
        entries.append({"photo": photo.name, "figure": f"{name}_explained.png",
                        "report": json.loads(Path(one.json).read_text(encoding="utf-8"))})
    write_text_atomic(index, index_page(entries, f"{len(photos)} photos explained"), replace=args.force)
    print(f"wrote {index}")
    return next((s for s in (EXIT_BAD_INPUT, EXIT_TARGET_MISSED) if s in statuses), EXIT_OK)


def explain_one(args: argparse.Namespace) -> int:
    """Explain one photo: its figure (``--out``), its JSON (``--json``) and the printed table; return the
    exit status (0, or 3 when a targeted attack missed its class)."""
    started = time.perf_counter()
    eps, paths = _check_explain_args(args)
    x, target_class = _read_photo(args)
    sets = list(TARGET_SETS) if args.targets == "both" else [args.targets]
    stages = _Stages(_stage_names(args, sets), args.quiet)
    # The figure and the JSON are renamed into place together, at the end; without --force a file that
    # appeared meanwhile (another run) is never replaced.
    from xai_helpers.study.outputs import PendingFiles

    files = PendingFiles(replace=getattr(args, "force", False))
    try:
        model, x, result = _analyse(args, x, eps, target_class, sets, stages.next)
        stages.next("figure")
        attack = attack_record(model, x, result, eps, target_class, args.iterations)
        _write_figure(files, paths["--out"], x, result, attack, eps, Path(args.image).name)
    except BaseException:
        files.discard()
        raise
    finally:
        stages.close()
    report = explain_report(args.image, paths["--out"], model, x, result, attack, time.perf_counter() - started)
    with files:
        if paths.get("--json") is not None:
            files.write_text(paths["--json"], json.dumps(jsonable(report), indent=2) + "\n")
        files.commit()
    return _announce(args, report, paths)


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
    names = [f"loading {args.model}", "attack"]
    for name in sets:
        gc_target, ig_target = TARGET_SETS[name]
        names += [f"Grad-CAM ({gc_target})", f"IG ({ig_target}, {args.steps} steps)"]
    return names + ["interventions", "figure"]


def _analyse(args: argparse.Namespace, x, eps: float, target_class: int | None, sets: Sequence[str], stage):
    """Load the model and run the per-photo analysis; return (model, the photo at the model's size, result)."""
    from xai_helpers.classifier.data import load_image
    from xai_helpers.classifier.forward import input_shape
    from xai_helpers.classifier.loading import load_model
    from xai_helpers.study.analysis import ExplainOptions, IGSettings, explain_photo

    stage(f"loading {args.model}")
    model = load_model(args.model, args.weights)
    if input_shape(model)[0] != x.shape[0]:  # a model whose input is not 224 px
        x = load_image(args.image, input_shape(model)[0])
    options = ExplainOptions(target_sets={name: TARGET_SETS[name] for name in sets},
                             ig=IGSettings(steps=args.steps, method=args.method, baseline=args.baseline),
                             fractions=CURVE_FRACTIONS, n_random=CURVE_RANDOM_MASKS, top=TOP,
                             iterations=args.iterations)
    return model, x, explain_photo(model, x, eps, target_class, options, progress=stage)


def _write_figure(files, out: Path, x, result, attack: dict, eps: float, photo_name: str) -> None:
    """Draw the figure and hand it to ``files`` (written at the commit)."""
    import matplotlib.pyplot as plt

    from xai_helpers.study.explain_figure import explain_figure

    fig = explain_figure(x, result, attack, eps, title=f"{photo_name}: {attack['description']}")
    try:
        files.write(out, lambda f: fig.savefig(f, format=out.suffix.lower().lstrip("."), dpi=110))
    finally:
        plt.close(fig)


def _announce(args: argparse.Namespace, report: dict, paths: dict) -> int:
    """Print the table and the files written; return the exit status (3 when a targeted attack missed)."""
    if not args.quiet:
        print(format_report(report))
    print(f"wrote {paths['--out']}")
    if paths.get("--json") is not None:
        print(f"wrote {paths['--json']}")
    missed = missed_target(report)
    if missed:
        print(f"{getattr(args, '_prog', 'xai_helpers')}: warning: {missed} (exit status {EXIT_TARGET_MISSED}).",
              file=sys.stderr)
        return EXIT_TARGET_MISSED
    return EXIT_OK


def _check_explain_args(args: argparse.Namespace) -> tuple[float, dict[str, Path]]:
    """Return (eps in model units, {"--out": figure, "--json": JSON (when asked)}) as absolute paths, after
    every check that needs no model: eps, steps, iterations, the figure's format, and the outputs
    (``outputs.check_outputs``: writable folder, not the photo, not each other, not existing unless
    ``--force``)."""
    from xai_helpers.study.outputs import check_outputs

    if args.eps_units == "levels":
        levels = DEFAULT_EPS_LEVELS if args.eps is None else args.eps
        if not 0.0 <= levels <= MAX_EPS_LEVELS:
            raise ValueError(f"--eps must be between 0 and {MAX_EPS_LEVELS:g} pixel levels (0-255 scale), "
                             f"got {levels:g}.")
        eps = levels * LEVEL
    else:
        eps = DEFAULT_EPS_LEVELS * LEVEL if args.eps is None else args.eps
        if not 0.0 <= eps <= 1.0:
            raise ValueError(f"--eps must be between 0 and 1 in model units (--eps-units model), "
                             f"got {eps:g}.")
    if not MIN_STEPS <= args.steps <= MAX_STEPS:
        raise ValueError(f"--steps must be between {MIN_STEPS} and {MAX_STEPS}, got {args.steps}.")
    if args.iterations < 1 or args.iterations > 1000:
        raise ValueError(f"--iterations must be between 1 and 1000, got {args.iterations}.")
    image = Path(args.image)
    out = Path(args.out) if args.out else Path.cwd() / f"{image.stem}_explained.png"
    import matplotlib

    matplotlib.use("Agg")  # files only, no window; must precede pyplot's first import
    from matplotlib.backend_bases import FigureCanvasBase

    if out.suffix.lower().lstrip(".") not in FigureCanvasBase.get_supported_filetypes():
        raise ValueError(f"--out must end with an image suffix such as .png, .pdf or .svg, got {out.name!r}.")
    paths = check_outputs({"--out": out, "--json": args.json}, inputs=[image],
                          force=getattr(args, "force", False))
    return eps, paths



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


__all__ = ["explain_one", "run_explain"]
