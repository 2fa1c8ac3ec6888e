"""The command line: explain any photo, or run the many-photo study.

::

    python -m xai_helpers explain PHOTO [options]    # the report's key figure for PHOTO
    python -m xai_helpers study [options]            # the many-photo study (when xai_helpers.study exists)
    xai-explain PHOTO [options]                      # console script, same parser

``explain`` is the default sub-command: when the first argument is not a sub-command name (nor ``-h``,
``--help``, ``--version``), ``explain`` is put in front of the arguments, so ``xai-explain PHOTO`` and
``python -m xai_helpers PHOTO`` both mean ``... explain PHOTO``. (A photo literally named ``study`` is
given as ``explain study``.)

``explain`` attacks the photo with FGSM (Goodfellow et al. 2015; or, with ``--target-class``, the targeted
iterative FGSM of Kurakin et al. 2017), explains the clean and the adversarial image, each for its own
top-1 class, with Grad-CAM (Selvaraju et al. 2017) and Integrated Gradients (Sundararajan et al. 2017),
draws the assignment's Fig 1 + Fig 5 layout into one PNG and prints a short table: top-5 before and
after, how alike the clean and adversarial maps are (``compare_maps``), IG's completeness error and the
fingerprint of the weights.

Bad input (a missing or non-image file, an unknown class, eps or steps out of range, an output path that
cannot be written, that is the photo or another output, or that exists already without ``--force``) ends
with exit status 2 and one line on stderr, checked before the model is loaded. Outputs are written whole or
not at all (``outputs``: temporary file, fsync, rename). A targeted attack that misses its class still
writes its outputs, says so on stderr and in the figure, and exits with status 3. Progress goes to stderr;
the table and the ``wrote ...`` lines (absolute paths) go to stdout. Building the parser imports neither
TensorFlow nor the study, so ``--help`` and ``--version`` answer at once.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import cli_parser
from .cli_parser import *  # noqa: F401,F403  (the constants and argument helpers, re-exported)
from .cli_parser import (CURVE_FRACTIONS, CURVE_RANDOM_MASKS, DEFAULT_EPS_LEVELS, EXIT_BAD_INPUT, EXIT_FAILED,
                         EXIT_INTERRUPTED, EXIT_OK, EXIT_TARGET_MISSED, EXPLAIN_IG_BATCH, LEVEL, MAX_EPS_LEVELS,
                         MAX_STEPS, MIN_STEPS, TOP, _one_line, add_study_arguments)
from .report import (TARGET_SETS, TARGET_WORDS, attack_description, explain_figure,  # noqa: F401
                     format_report, jsonable, target_note, versions)


def _run_study(args: argparse.Namespace) -> int:
    """Run the study from parsed command-line arguments; return the exit status.

    0 = done (photos that could not be read are rows with status ``error``; their count is printed);
    1 = a Ray worker kept dying ("N rows kept in FILE"; every finished batch is in the table);
    2 = with ``--strict``, some photo could not be read;
    130 = interrupted by Ctrl-C or SIGTERM ("interrupted, N rows kept in FILE" on stderr; the table holds
    every finished batch, and running the same command again resumes it).
    """
    from . import study
    from .outputs import absolute
    from .study_settings import ModelSpec

    images = getattr(args, "images", None)
    labels = getattr(args, "labels", None)
    n_max = len(study.photo_order()) if images is None else len(study.folder_photos(images, labels))
    if not 1 <= args.photos <= n_max:
        where = "sample photos" if images is None else f"photos in {images}"
        raise ValueError(f"--photos must be in [1, {n_max}] (the number of {where}), got {args.photos}.")
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
        study.run_study(args.photos, out, batch_size=args.batch_size, sanity_photos=args.sanity_photos,
                  progress=not args.quiet, force_new=getattr(args, "force_new", False),
                  use_ray=ray_address is not None, ray_address=ray_address or None,
                  ray_workers=getattr(args, "ray_workers", None), images=images,
                  labels=getattr(args, "labels", None), model=model)
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
    from .table import analysed_rows, load_table

    _, skipped = analysed_rows(load_table(out).rows)
    if skipped:
        print(f"{prog}: {skipped} photo(s) could not be read and were skipped; their rows in {out} say why "
              f"(status 'error')", file=sys.stderr, flush=True)
        if getattr(args, "strict", False):
            return EXIT_BAD_INPUT
    return EXIT_OK


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """Return the command's parser (``cli_parser.build_parser``) with this module's runners."""
    return cli_parser.build_parser(prog or _prog_name(), {"explain": run_explain, "study": _run_study})


def _prog_name() -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "python -m xai_helpers" if name in ("__main__.py", "", "-c") else name


def _subcommands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:  # argparse offers no public accessor for the sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``) and return the exit status.

    0 = done; 2 = bad input (one line on stderr, never a traceback); 3 = ``explain``'s targeted attack
    missed its class (outputs written); 130 = interrupted (Ctrl-C; the study also on SIGTERM).
    """
    from_command_line = argv is None
    previous = _sigterm_as_interrupt()  # SIGTERM ends a run like Ctrl-C: a message and exit 130
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        parser = build_parser(prog)
        if not argv or (argv[0] not in _subcommands(parser) and argv[0] not in ("-h", "--help", "--version")):
            argv.insert(0, "explain")
        args = parser.parse_args(argv)
        prog = getattr(args, "_prog", parser.prog)
        try:
            return int(args.func(args) or 0)
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except (ValueError, TypeError, OSError) as err:  # the package's one-sentence input errors
            print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
            return EXIT_BAD_INPUT
    finally:
        if from_command_line and previous is not None:
            # The run is over and its outputs are in place: a Ctrl-C or SIGTERM during the interpreter's
            # (and TensorFlow's) shutdown can change nothing, so it must not turn into a traceback or a
            # different exit status.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        elif previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _sigterm_as_interrupt():
    """Make SIGTERM raise ``KeyboardInterrupt`` (main thread only); return the previous handler or None."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        return None
    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except (ValueError, OSError):
        return None


# ----------------------------------------------------------------------------------------------------
# explain

from .labels import resolve_class  # noqa: E402  (re-exported: ``cli.resolve_class`` keeps working)


def _check_explain_args(args: argparse.Namespace) -> tuple[float, dict[str, Path]]:
    """Return (eps in model units, {"--out": figure, "--json": JSON (when asked)}) as absolute paths, after
    every check that needs no model: eps, steps, iterations, the figure's format, and the outputs
    (``outputs.check_outputs``: writable folder, not the photo, not each other, not existing unless
    ``--force``)."""
    from .outputs import check_outputs

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


def run_explain(args: argparse.Namespace) -> int:
    """Run ``explain`` from parsed arguments; return the exit status (0; 3: a targeted attack missed)."""
    images = [args.image] if isinstance(args.image, str) else list(args.image)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning(getattr(args, "_prog", "xai_helpers"))
        if len(images) == 1 and not Path(images[0]).is_dir() and args.out_dir is None:
            return _run_explain(argparse.Namespace(**{**vars(args), "image": images[0]}))
        return _explain_many(args, images)


def _explain_many(args: argparse.Namespace, images: list[str]) -> int:
    """Explain several photos (or a folder's) into ``--out-dir``: a figure and a JSON each, and an index.html.

    A photo that cannot be explained is named in the index and on stderr and the others go on; the exit
    status is 2 if any photo failed, else 3 if a targeted attack missed any, else 0.
    """
    from .outputs import absolute, check_outputs, write_text_atomic
    from .report import index_page
    from .study_photos import IMAGE_SUFFIXES

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
            statuses.append(_run_explain(one))
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


def _run_explain(args: argparse.Namespace) -> int:
    from .data import IMAGE_SIZE, load_image

    started = time.perf_counter()
    eps, paths = _check_explain_args(args)
    out, json_path = paths["--out"], paths.get("--json")
    # Missing or undecodable file: one sentence, before TensorFlow and the model are loaded (7 s); read at
    # MobileNetV2's 224 px, and again below for a model of another input side.
    x = load_image(args.image, IMAGE_SIZE)
    from .memory import release_freed_memory

    release_freed_memory()  # a big photo's decoded pixels, freed: give them back before TensorFlow comes
    target_class = resolve_class(args.target_class) if args.target_class is not None else None

    from . import analysis, plotting  # noqa: F401  (after matplotlib.use("Agg") above)
    from .attacks import eps_to_pixels
    from .model import load_model, probabilities, weights_fingerprint
    from .outputs import PendingFiles, absolute

    sets = list(TARGET_SETS) if args.targets == "both" else [args.targets]
    stage_names = [f"loading {args.model}", "attack"]
    for name in sets:
        gc_target, ig_target = TARGET_SETS[name]
        stage_names += [f"Grad-CAM ({gc_target})", f"IG ({ig_target}, {args.steps} steps)"]
    stage_names += ["interventions", "figure"]  # (analysis.explain_photo names the stages between)
    stages = _Stages(stage_names, args.quiet)

    def stage(name: str | None = None) -> None:  # the next stage begins (the names are the analysis's own)
        stages.next(name)

    # The figure and the JSON are renamed into place together, at the end; without --force a file that
    # appeared meanwhile (another run) is never replaced.
    files = PendingFiles(replace=getattr(args, "force", False))
    try:
        stage(stage_names[0])
        model = load_model(args.model, args.weights)
        from .model import input_shape

        if input_shape(model)[0] != x.shape[0]:  # a model whose input is not 224 px
            x = load_image(args.image, input_shape(model)[0])

        result = analysis.explain_photo(
            model, x, eps, target_class=target_class, iterations=args.iterations,
            target_sets={name: TARGET_SETS[name] for name in sets},
            ig=analysis.IGSettings(steps=args.steps, method=args.method, baseline=args.baseline,
                                   batch_size=EXPLAIN_IG_BATCH),
            fractions=CURVE_FRACTIONS, n_random=CURVE_RANDOM_MASKS, top=TOP, progress=stage)
        clean_top, adv, adv_top, pair = result.clean_top, result.adv, result.adv_top, np.stack([x, result.adv])
        maps = {name: (cams, [plotting.normalize_for_display(m) for m in ig_maps])
                for name, (cams, ig_maps) in result.maps.items()}
        comparisons, explanations = result.comparisons, result.explanations
        intervention, causal = result.intervention, result.causal

        stage("figure")
        attack = attack_description(eps, eps_to_pixels(eps), target_class, args.iterations, adv_top)
        if target_class is None:
            success = adv_top[0].class_index != clean_top[0].class_index
        else:
            success = adv_top[0].class_index == target_class
            p_clean, p_adv = probabilities(model, pair)[:, target_class]
            attack["target_probability"] = {"clean": float(p_clean), "adversarial": float(p_adv)}
        attack["succeeded"] = bool(success)
        fig = explain_figure(x, adv, eps, eps_to_pixels(eps), clean_top[0], adv_top[0], maps,
                             title=f"{Path(args.image).name}: {attack['description']}",
                             comparisons=comparisons, target=target_note(attack), intervention=intervention,
                             attack_failed=not success)
        files.write(out, lambda f: fig.savefig(f, format=out.suffix.lower().lstrip("."), dpi=110))
        import matplotlib.pyplot as plt

        plt.close(fig)
    except BaseException:
        files.discard()
        raise
    finally:
        stages.close()

    report = {
        "image": str(absolute(args.image)),
        "figure": str(out),
        "eps": {"levels": eps_to_pixels(eps), "model_units": eps},
        "attack": attack,
        "clean": {"top5": [p._asdict() for p in clean_top]},
        "adversarial": {"top5": [p._asdict() for p in adv_top],
                        "linf_levels": eps_to_pixels(float(np.abs(adv - x).max()))},
        "explanations": explanations,
        "interventions": causal,
        "weights": weights_fingerprint(model),
        "versions": versions(),
        "seconds": time.perf_counter() - started,
    }
    with files:
        if json_path is not None:
            files.write_text(json_path, json.dumps(jsonable(report), indent=2) + "\n")
        files.commit()
    if not args.quiet:
        print(format_report(report))
    print(f"wrote {out}")
    if json_path is not None:
        print(f"wrote {json_path}")
    if target_class is not None and not success:
        name, p_target = attack["target_class"]["name"], attack["target_probability"]["adversarial"]
        print(f"{getattr(args, '_prog', 'xai_helpers')}: warning: the targeted attack missed: the "
              f"adversarial image is {adv_top[0].name} ({adv_top[0].probability:.1%}), and {name} has "
              f"{p_target:.1%} (it had {attack['target_probability']['clean']:.1%}); try a larger --eps or "
              f"more --iterations (exit status {EXIT_TARGET_MISSED}).", file=sys.stderr)
        return EXIT_TARGET_MISSED
    return EXIT_OK


__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_TARGET_MISSED", "add_study_arguments",
           "build_parser", "explain_figure", "format_report", "main", "resolve_class", "run_explain"]
