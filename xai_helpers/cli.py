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
import difflib
import importlib.util
import json
import math
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: Explanation targets: (Grad-CAM target, IG target). "standard" is the usual choice (Grad-CAM on the
#: pre-softmax score as in Selvaraju et al., IG on the softmax probability as in the assignment);
#: "reversed" is the assignment's question 3 (Grad-CAM on the softmax, IG on the logits).
TARGET_SETS = {"standard": ("logits", "softmax"), "reversed": ("softmax", "logits")}
#: The largest eps the attacks accept: 1 model unit = 127.5 pixel levels (half the 0-255 range).
MAX_EPS_LEVELS = 127.5
#: IG steps accepted on the command line (the trapezoid rule needs 2; beyond 4096 nothing is gained).
MIN_STEPS, MAX_STEPS = 2, 4096
#: Iterations of the targeted attack (``iterative_fgsm_targeted``).
DEFAULT_ITERATIONS = 10
TOP = 5
#: Exit statuses, listed by ``--help`` (``EXIT_STATUS_HELP``).
EXIT_OK, EXIT_BAD_INPUT, EXIT_TARGET_MISSED, EXIT_INTERRUPTED = 0, 2, 3, 130
EXIT_STATUS_HELP = ("exit status: 0 done; 2 bad input (one line on stderr, nothing written); 3 the targeted "
                    "attack missed its class (figure and JSON written, the miss said on stderr and in the "
                    "figure); 130 interrupted (Ctrl-C)")
#: Integrated Gradients' choices and defaults, the values of ``integrated_gradients``'s METHODS, BASELINES,
#: DEFAULT_METHOD and DEFAULT_STEPS (a test checks they agree), so that the parser needs no TensorFlow.
IG_METHODS = ("riemann_right", "trapezoid", "gauss_legendre")
IG_BASELINES = ("black", "zeros", "blur")
IG_DEFAULT_METHOD, IG_DEFAULT_STEPS = "trapezoid", 128
#: One pixel level in model units and the default eps in levels (``attacks.pixels_to_eps(1)``,
#: ``attacks.DEFAULT_EPS_PIXELS``; a test checks they agree).
LEVEL = 2.0 / 255.0
DEFAULT_EPS_LEVELS = 1.0
#: IG path points per compiled chunk in ``explain`` (``integrated_gradients_batch(batch_size=...)`` and the
#: attack attribution), chosen for memory: the compiled IG loop runs one chunk at a time, so the peak follows
#: the chunk size. Whole ``explain`` (interventions included) at default settings on 2 cores: 1.3 GB peak on
#: the whiptail photo, under 2 GB on a 13000 x 13000 16-bit PNG (tests/test_memory.py).
EXPLAIN_IG_BATCH = 8
#: Perturbation curves of ``explain``: budgets 0, 10%, ..., 100% of the pixels, against this many seeded
#: random pixel orders (``analysis.intervene``; about 3 s on 2 cores).
CURVE_FRACTIONS = tuple(k / 10 for k in range(11))
CURVE_RANDOM_MASKS = 20
#: What each explainer differentiates, in plain words (figure titles, the printed table).
TARGET_WORDS = {"logits": "class score (logit)", "softmax": "class probability (softmax)"}


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr (exit status 2), not usage + error."""

    def error(self, message: str):  # noqa: D102 - argparse API
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def _one_line(message: object) -> str:
    """Return ``message`` as one line: whitespace, including newlines, collapsed to single spaces."""
    return " ".join(str(message).split())


def _integer(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def add_explain_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``explain`` sub-command's arguments to ``parser``."""
    BASELINES, DEFAULT_METHOD, DEFAULT_STEPS, METHODS = (IG_BASELINES, IG_DEFAULT_METHOD, IG_DEFAULT_STEPS,
                                                         IG_METHODS)
    parser.add_argument("image", metavar="IMAGE",
                        help="the photo to explain: JPEG, PNG, WebP, BMP, ... of any size (>= 32 px a side) "
                             "and any colour mode; it is resized whole to 224 x 224")
    parser.add_argument("--eps", type=_finite_float, default=None,
                        help="attack strength, by default in 0-255 pixel levels (1 = one grey level; "
                             f"allowed 0-{MAX_EPS_LEVELS:g}); default 1 level = 2/255 model units")
    parser.add_argument("--eps-units", choices=("levels", "model"), default="levels",
                        help="units of --eps: 'levels' (0-255 pixel scale, default) or 'model' (MobileNetV2 "
                             "input units, where the whole pixel range spans [-1, 1]: 1 level = 2/255; "
                             "allowed 0-1)")
    parser.add_argument("--target-class", metavar="CLASS", default=None,
                        help="make a targeted attack (iterative FGSM) toward CLASS: a Keras ImageNet class "
                             "name ('Komodo_dragon' or 'komodo dragon'), a WNID (n01695060) or an index "
                             "(0-999); default: untargeted FGSM away from the model's top-1 class")
    parser.add_argument("--iterations", type=_integer, default=DEFAULT_ITERATIONS,
                        help=f"iterations of the targeted attack (default {DEFAULT_ITERATIONS})")
    parser.add_argument("--targets", choices=("standard", "reversed", "both"), default="standard",
                        help="what the explainers differentiate: 'standard' = Grad-CAM of the logit and IG "
                             "of the softmax probability; 'reversed' = Grad-CAM of the softmax and IG of "
                             "the logit; 'both' = both (default: standard)")
    parser.add_argument("--steps", type=_integer, default=DEFAULT_STEPS,
                        help=f"IG gradient evaluations ({MIN_STEPS}-{MAX_STEPS}, default {DEFAULT_STEPS}); "
                             "IG's time grows linearly with it")
    parser.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                        help=f"IG quadrature rule (default {DEFAULT_METHOD}; riemann_right is the "
                             "assignment's formula)")
    parser.add_argument("--baseline", choices=BASELINES, default="black",
                        help="IG baseline image (default black)")
    parser.add_argument("--model", metavar="NAME|PATH", default="MobileNetV2",
                        help="the classifier: a keras.applications name (MobileNetV2, ResNet50, "
                             "EfficientNetB0, MobileNetV3Small, DenseNet121, ConvNeXtTiny, ...; default "
                             "MobileNetV2) or the path of a .keras model file that takes the [-1, 1] input "
                             "itself; eps stays in 0-255 pixel levels for every model")
    parser.add_argument("--weights", metavar="imagenet|none|PATH", default="imagenet",
                        help="'imagenet' (Keras's weights, from $KERAS_HOME/models or downloaded; default), "
                             "'none' (random initialisation, seeded: offline trials) or a weights file")
    parser.add_argument("--out", metavar="FILE.png", default=None,
                        help="figure to write (PNG, or any format matplotlib knows by its suffix); default "
                             "<photo name>_explained.png in the current folder")
    parser.add_argument("--json", metavar="FILE", default=None,
                        help="also write the numbers as JSON (not the photo, not the --out file)")
    parser.add_argument("--force", action="store_true",
                        help="replace --out and --json files that exist already (without it: exit status 2)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress and no table; only the 'wrote ...' lines (and warnings)")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """Return the command's parser: ``explain`` and, when ``xai_helpers.study`` imports, ``study``."""
    from . import __version__

    prog = prog or _prog_name()
    parser = _Parser(prog=prog, description="FGSM adversarial examples on MobileNetV2, explained with "
                                            "Grad-CAM and Integrated Gradients.",
                     epilog=f"'{prog} IMAGE ...' is short for '{prog} explain IMAGE ...'; "
                            f"'{prog} explain --help' lists its options.")
    parser.add_argument("--version", action="version", version=f"xai_helpers {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    explain = commands.add_parser(
        "explain", help="attack one photo and explain it before and after (the default command)",
        description="Attack one photo with FGSM and explain the clean and the adversarial image, each for "
                    "its own top-1 class, with Grad-CAM and Integrated Gradients. Writes a figure "
                    "(original / perturbation / adversarial, then Grad-CAM and IG of both) and prints "
                    "top-5 before and after, map-comparison numbers, IG's completeness error and the "
                    "weights' fingerprint.", epilog=EXIT_STATUS_HELP)
    add_explain_arguments(explain)
    explain.set_defaults(func=run_explain, _prog=explain.prog)
    # The study sub-command is offered when its module exists; it is imported only when it runs.
    if importlib.util.find_spec(f"{__package__}.study") is not None:
        sub = commands.add_parser("study", help="run the many-photo study on the ImageNet sample photos",
                                  description="Run the many-photo study and write its CSV tables (resumable: "
                                              "run the same command again to continue). Measured on two CPU "
                                              "cores: about 13 s per photo among the first 400 (with ROAD) and 9 "
                                              "s after them (about 2.9 h for all 1000), peak memory about "
                                              "4.1 GB at the default batch of 8.",
                                  epilog="exit status: 0 done; 2 bad input, or a table that cannot be "
                                         "resumed (one line on stderr); 130 interrupted by Ctrl-C or SIGTERM "
                                         "('interrupted, N rows kept in FILE' on stderr)")
        add_study_arguments(sub)
        sub.set_defaults(func=_run_study, _prog=sub.prog)
    return parser


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``study`` sub-command's options to ``parser`` (``study.add_arguments`` calls this)."""
    parser.add_argument("--photos", type=_integer, default=300,
                        help="number of photos (classes) to analyse, in the seeded study order (max 1000)")
    parser.add_argument("--out", default="results/study.csv",
                        help="CSV file to write; an existing one is resumed when it was made with the same "
                             "settings, weights and xai_helpers version, and refused otherwise")
    parser.add_argument("--force-new", action="store_true",
                        help="when --out exists, rename it to <name>.old.csv (.old2.csv, ...) and start a "
                             "new table instead of resuming it")
    parser.add_argument("--batch-size", type=_integer, default=8, help="photos per batch (default 8)")
    parser.add_argument("--sanity-photos", type=_integer, default=20,
                        help="photos for the cascading-randomisation sanity check (0 to skip)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                        help="run the batches as Ray tasks (one model per worker, the same rows as a serial "
                             "run): alone, on a local Ray cluster sized to this machine; with ADDRESS, on "
                             "that cluster (e.g. 'auto' on a cluster node, or ray://HEAD:10001)")
    parser.add_argument("--images", metavar="DIR", default=None,
                        help="study the photos of this folder (sorted by file name) instead of the ImageNet "
                             "sample photos; rows are keyed by photo_index")
    parser.add_argument("--labels", metavar="CSV", default=None,
                        help="with --images: 'file,class' lines (class: name, WNID or index 0-999); an "
                             "unlabelled photo is attacked and explained for the model's own top-1 class")
    parser.add_argument("--ray-workers", type=_integer, default=None, metavar="N",
                        help="Ray workers (CPUs; default: all of the local machine or the cluster)")


def _run_study(args: argparse.Namespace) -> int:
    """Run ``study`` (imported here, so that ``--help`` needs neither it nor TensorFlow)."""
    from . import study

    return study.run_from_args(args)


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


def resolve_class(text: str) -> int:
    """Return the ImageNet class index named by ``text``: a class name, a WNID or an index 0-999.

    Names match Keras's labels ignoring case and treating spaces, '_' and '-' alike ('komodo dragon' =
    'Komodo_dragon'). Raises ``ValueError`` (one sentence, with close matches) for an unknown or
    ambiguous name ('crane' is both a bird and a machine: give its WNID or index).
    """
    from .data import normalise_class_name
    from .model import class_labels

    labels = class_labels()
    text = str(text).strip()
    if re.fullmatch(r"[+-]?\d+", text):
        index = int(text)
        if not 0 <= index < len(labels):
            raise ValueError(f"--target-class index must be in [0, {len(labels) - 1}], got {index}.")
        return index
    if re.fullmatch(r"n\d{8}", text):
        hits = [i for i, (wnid, _) in enumerate(labels) if wnid == text]
        if not hits:
            raise ValueError(f"--target-class: no ImageNet class has the WNID {text}.")
        return hits[0]
    key = normalise_class_name(text)
    names = [normalise_class_name(name) for _, name in labels]
    hits = [i for i, name in enumerate(names) if name == key]
    if len(hits) > 1:
        raise ValueError(f"--target-class {text!r} is ambiguous in ImageNet: give one of the indices "
                         + ", ".join(f"{i} ({labels[i][0]})" for i in hits) + ".")
    if not hits:
        close = difflib.get_close_matches(key, sorted(set(names)), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else \
            " (use a Keras ImageNet class name such as 'Komodo_dragon', a WNID or an index 0-999)."
        raise ValueError(f"--target-class: no ImageNet class is named {text!r}{hint}")
    return hits[0]


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

        self.bar = tqdm(total=len(names), desc=names[0] if names else "", unit="stage", file=sys.stderr,
                        disable=quiet, leave=False,
                        bar_format="{desc:<34} {bar:20} {n_fmt}/{total_fmt} [{elapsed}]")

    def start(self, name: str) -> None:
        self.bar.set_description_str(name)

    def done(self) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _show_warning(prog: str):
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {_one_line(message)}", file=sys.stderr)
    return show


def run_explain(args: argparse.Namespace) -> int:
    """Run ``explain`` from parsed arguments; return the exit status (0; 3: a targeted attack missed)."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning(getattr(args, "_prog", "xai_helpers"))
        return _run_explain(args)


def _run_explain(args: argparse.Namespace) -> int:
    from .data import load_image

    started = time.perf_counter()
    eps, paths = _check_explain_args(args)
    out, json_path = paths["--out"], paths.get("--json")
    # Missing or undecodable file: one sentence, before the model is loaded; the input side comes from
    # the architecture's table (no model needed), 224 for a model file until it is loaded.
    x = load_image(args.image, _input_side(args.model))
    _release_freed_memory()  # a big photo's decoded pixels, freed: give them back before TensorFlow comes
    target_class = resolve_class(args.target_class) if args.target_class is not None else None

    from . import analysis, plotting  # noqa: F401  (after matplotlib.use("Agg") above)
    from .attacks import eps_to_pixels
    from .compare import compare_maps
    from .model import load_model, predict, probabilities, weights_fingerprint
    from .outputs import PendingFiles, absolute

    sets = list(TARGET_SETS) if args.targets == "both" else [args.targets]
    stage_names = [f"loading {args.model}", "attack"]
    for name in sets:
        gc_target, ig_target = TARGET_SETS[name]
        stage_names += [f"Grad-CAM ({gc_target})", f"IG ({ig_target}, {args.steps} steps)"]
    stage_names += ["interventions", "figure"]
    stages = _Stages(stage_names, args.quiet)
    names = iter(stage_names)

    def stage():
        stages.start(next(names))

    files = PendingFiles()  # the figure and the JSON are renamed into place together, at the end
    try:
        stage()
        model = load_model(args.model, args.weights)
        from .model import input_shape

        if input_shape(model)[0] != x.shape[0]:  # a model file whose input is not 224 px
            x = load_image(args.image, input_shape(model)[0])
        stages.done()

        stage()
        clean_top = predict(model, x, top=TOP)
        adv = analysis.attack(model, x[None], [clean_top[0].class_index], eps,
                              kind="fgsm" if target_class is None else "targeted", target=target_class,
                              iterations=args.iterations)[0]
        adv_top = predict(model, adv, top=TOP)
        stages.done()

        pair = np.stack([x, adv])
        classes = [clean_top[0].class_index, adv_top[0].class_index]
        ig_settings = analysis.IGSettings(steps=args.steps, method=args.method, baseline=args.baseline,
                                          batch_size=EXPLAIN_IG_BATCH)
        explanations, maps, comparisons, raw_maps = [], {}, {}, {}
        for name in sets:
            gc_target, ig_target = TARGET_SETS[name]
            stage()
            cams, _ = analysis.explain(model, pair, classes, "gradcam", gc_target)
            _release_freed_memory()
            stages.done()
            stage()
            ig_maps, igs = analysis.explain(model, pair, classes, "ig", ig_target, ig_settings)
            _release_freed_memory()  # what IG freed goes back to the system before the next stage
            stages.done()
            raw_maps[name] = (cams, ig_maps)
            maps[name] = (cams, [plotting.normalize_for_display(m) for m in ig_maps])
            comparisons[name] = (compare_maps(cams[0], cams[1]), compare_maps(ig_maps[0], ig_maps[1]))
            explanations.append({"targets": name, "method": "gradcam", "target": gc_target,
                                 "compare": comparisons[name][0]})
            explanations.append({
                "targets": name, "method": "integrated_gradients", "target": ig_target,
                "compare": comparisons[name][1], "steps": args.steps,
                "quadrature": args.method, "baseline": args.baseline,
                "clean": _ig_numbers(igs[0]), "adversarial": _ig_numbers(igs[1])})

        stage()
        intervention, causal = None, {"skipped": "the attack did not change the top-1 class, so there is no "
                                                 "margin change to attribute"}
        if classes[0] != classes[1]:
            # The causal question on this photo: which pixels carry the attack (analysis.intervene).
            cams, ig_maps = raw_maps[sets[0]]
            gc_target, ig_target = TARGET_SETS[sets[0]]
            ranked = {f"Grad-CAM ({gc_target}), original": cams[0], f"Grad-CAM ({gc_target}), adversarial": cams[1],
                      f"IG ({ig_target}), original": ig_maps[0], f"IG ({ig_target}), adversarial": ig_maps[1]}
            intervention = analysis.intervene(model, x, adv, classes[0], classes[1], ranked,
                                              fractions=CURVE_FRACTIONS, n_random=CURVE_RANDOM_MASKS,
                                              batch_size=EXPLAIN_IG_BATCH)
            causal = intervention.summary()
            _release_freed_memory()
        stages.done()

        stage()
        attack = _attack_description(eps, eps_to_pixels(eps), target_class, args.iterations, adv_top)
        if target_class is None:
            success = adv_top[0].class_index != clean_top[0].class_index
        else:
            success = adv_top[0].class_index == target_class
            p_clean, p_adv = probabilities(model, pair)[:, target_class]
            attack["target_probability"] = {"clean": float(p_clean), "adversarial": float(p_adv)}
        attack["succeeded"] = bool(success)
        fig = explain_figure(x, adv, eps, eps_to_pixels(eps), clean_top[0], adv_top[0], maps,
                             title=f"{Path(args.image).name}: {attack['description']}",
                             comparisons=comparisons, target=_target_note(attack), intervention=intervention)
        files.write(out, lambda f: fig.savefig(f, format=out.suffix.lower().lstrip("."), dpi=110))
        import matplotlib.pyplot as plt

        plt.close(fig)
        stages.done()
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
        "versions": _versions(),
        "seconds": time.perf_counter() - started,
    }
    with files:
        if json_path is not None:
            files.write_text(json_path, json.dumps(_jsonable(report), indent=2) + "\n")
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


def _release_freed_memory() -> None:
    """Return the C heap's freed memory to the system (glibc's ``malloc_trim``; a no-op elsewhere).

    TensorFlow frees a gradient pass's buffers to the C heap, which keeps them, so the next stage (the
    figure) would stack its memory on top; trimming lowered ``explain``'s peak by ~300 MB.
    """
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _input_side(model_name: str) -> int:
    """Return the input side of a keras.applications model by name (224 for a file or an unknown name)."""
    if Path(model_name).suffix in (".keras", ".h5"):
        return 224
    from .architectures import architecture

    try:
        return int(architecture(model_name).size)
    except ValueError:
        return 224  # an unknown name is reported by load_model, with suggestions


def _target_note(attack: dict) -> str | None:
    """Return the figure's line about a targeted attack's target ("target X: p% (missed)"), or None."""
    if attack.get("target_class") is None:
        return None
    p = attack["target_probability"]["adversarial"]
    outcome = "reached" if attack["succeeded"] else "MISSED"
    return f"target {attack['target_class']['name']}: {p:.1%} ({outcome})"


def _ig_numbers(result) -> dict[str, float]:
    return {"class_index": result.class_index, "f_x": result.f_x, "f_baseline": result.f_baseline,
            "delta": result.delta, "relative_delta": result.relative_delta}


def _attack_description(eps: float, levels: float, target_class: int | None, iterations: int,
                        adv_top) -> dict:
    from .model import class_labels

    size = f"eps = {levels:g}/255 levels ({eps:.4f} model units)"
    if target_class is None:
        return {"kind": "fgsm", "target_class": None, "iterations": None,
                "description": f"untargeted FGSM, {size}"}
    wnid, name = class_labels()[target_class]
    return {"kind": "iterative_fgsm_targeted",
            "target_class": {"class_index": target_class, "wnid": wnid, "name": name},
            "iterations": iterations,
            "description": f"targeted iterative FGSM toward {name} ({iterations} its), {size}"}


def _versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    from . import __version__

    return {"xai_helpers": __version__, "tensorflow": tf.__version__, "keras": keras.__version__}


def _jsonable(value):
    """Return ``value`` with NumPy scalars as Python numbers and NaN/inf as null (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


_IG_DELTA_HEADER = "IG |delta|/|F(x)-F(x')| clean, adv"


def format_report(report: dict) -> str:
    """Return the text table ``explain`` prints: top-5 before/after, map comparison, IG delta, weights."""
    attack = report["attack"]
    if attack.get("target_class") is None:
        outcome = "changed the top-1 class" if attack["succeeded"] else "did not change the top-1 class"
    else:
        p = attack["target_probability"]["adversarial"]
        outcome = (f"reached its target ({attack['target_class']['name']} {p:.1%})" if attack["succeeded"]
                   else f"MISSED its target: {attack['target_class']['name']} has {p:.1%}")
    lines = [f"photo:   {report['image']}", f"attack:  {attack['description']}; {outcome}"]
    lines += ["", f"{'':3}{'clean':<34}{'adversarial':<34}"]
    for k, (a, b) in enumerate(zip(report["clean"]["top5"], report["adversarial"]["top5"]), start=1):
        lines.append(f"{k:<3}{_pred(a):<34}{_pred(b):<34}")
    lines += ["", "maps: clean image (its top-1 class) vs adversarial image (its top-1 class)",
              f"{'map (what it explains)':<45}{'top-10% IoU':>12}{'Spearman':>10}{'CoM shift':>11}"
              f"{_IG_DELTA_HEADER:>37}"]
    for e in report["explanations"]:
        c = e["compare"]
        method = "Grad-CAM" if e["method"] == "gradcam" else "IG"
        label = f"{method} of the {TARGET_WORDS.get(e['target'], e['target'])}"
        delta = ""
        if e["method"] == "integrated_gradients":
            delta = f"{e['clean']['relative_delta']:.2%}, {e['adversarial']['relative_delta']:.2%}" \
                    f" ({e['steps']} {e['quadrature']})"
        lines.append(f"{label:<45}{c['top_iou']:>12.2f}{c['spearman']:>10.2f}"
                     f"{c['com_shift_px']:>9.1f}px{delta:>37}")
    worst = max((e[side]["relative_delta"] for e in report["explanations"]
                 if e["method"] == "integrated_gradients" for side in ("clean", "adversarial")), default=0.0)
    if worst > 0.05:
        lines.append(f"(IG's completeness error reaches {worst:.0%}: raise --steps for a more exact IG map)")
    causal = report.get("interventions") or {}
    if "maps" in causal:
        a, r = causal["attribution"], causal["random"]
        lines += ["", "which pixels carry the attack (the perturbation kept on each map's top pixels only; "
                      "share of the margin change z_true - z_adv kept)",
                  f"{'ranking':<45}{'AUC':>8}{'kept at top 10%':>17}",
                  f"{'random pixels (median)':<45}{r['auc_median']:>8.2f}{r['kept_at_top']:>17.2f}"]
        for name, m in causal["maps"].items():
            label = "attack attribution" if name == "attack" else name
            lines.append(f"{label[:44]:<45}{m['auc']:>8.2f}{m['kept_at_top']:>17.2f}")
        lines.append(f"(attack attribution: {a['gradient_evaluations']} gradient evaluations, completeness error "
                     f"{a['relative_delta']:.2%}; its top 10% carry {a['top_share']:.0%} of the true logit's change)")
    elif causal:
        lines += ["", f"interventions: skipped ({causal['skipped']})"]
    w = report["weights"]
    lines += ["", f"weights: sha256 {w['sha256'][:16]}... {w['path']}", f"         {w['source']}",
              f"time:    {report['seconds']:.1f} s"]
    return "\n".join(line.rstrip() for line in lines)


def _pred(p: dict) -> str:
    return f"{p['name'][:24]:<25}{p['probability']:>7.2%}"


def explain_figure(x: np.ndarray, adv: np.ndarray, eps: float, eps_pixels: float, clean_top1, adv_top1,
                   maps: dict, title: str | None = None, *, comparisons: dict | None = None,
                   target: str | None = None, intervention=None):
    """Return the figure: row 1 original / perturbation / adversarial (assignment Fig 1); rows 2-3 each
    image with its Grad-CAM and IG overlays (assignment Fig 5), one pair of columns per target set, each
    column titled with what its map explains in plain words.

    ``maps[name] = (gradcam maps [clean, adv], IG maps scaled for display [clean, adv])``;
    ``comparisons[name] = (compare_maps of the Grad-CAM pair, of the IG pair)``, written under the
    adversarial maps (how alike they are to the clean ones); ``target``: a line about a targeted attack's
    target class (its probability, reached or missed), shown under the adversarial image.
    ``intervention`` (an ``analysis.Intervention``) adds a last row: the attack attribution of the true
    class's logit (signed) and the perturbation curve of each map against random pixels.
    """
    import matplotlib.pyplot as plt

    from .plotting import overlay, show_image, show_perturbation

    cols = 1 + 2 * len(maps)
    n_rows = 3 if intervention is None else 4
    # At least 12 in wide: the overlap numbers under each map need about 3.5 in per column.
    fig, axes = plt.subplots(n_rows, cols, figsize=(max(3.6 * cols + 1.2, 12.0), n_rows * 3.3), squeeze=False,
                             constrained_layout=True)
    if intervention is not None:
        _intervention_row(fig, axes[3], x, intervention)
    labels = [f"{p.name} {p.probability:.1%}" for p in (clean_top1, adv_top1)]
    show_image(axes[0, 0], x, f"Original\n{labels[0]}")
    show_perturbation(axes[0, 1], adv - x, eps,
                      f"Perturbation, eps = {eps_pixels:g}/255\n(grey = 0, scaled to +-eps)")
    show_image(axes[0, 2], adv, f"Adversarial\n{labels[1]}" + (f"\n{target}" if target else ""))
    for ax in axes[0, 3:]:
        ax.axis("off")
    im = None
    for row, (image, kind) in enumerate(((x, "Original"), (adv, "Adversarial")), start=1):
        show_image(axes[row, 0], image, f"{kind}: {labels[row - 1]}")
        col = 1
        for name, (cams, igs) in maps.items():
            pair_numbers = (comparisons or {}).get(name, (None, None))
            for k, (method, what, panel_maps) in enumerate(zip(("Grad-CAM", "IG"), TARGET_SETS[name],
                                                               (cams, igs))):
                panel_title = f"{method} of the\n{TARGET_WORDS[what]}"
                if row == 2 and pair_numbers[k] is not None:
                    panel_title += "\n" + _overlap_words(pair_numbers[k])
                im = overlay(axes[row, col + k], image, panel_maps[row - 1], panel_title)
            col += 2
    if im is not None:
        fig.colorbar(im, ax=axes[1:3, 1:].ravel().tolist(), shrink=0.8,
                     label="importance (Grad-CAM / max; IG / 99.5th pct.)")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _intervention_row(fig, row_axes, x: np.ndarray, intervention) -> None:
    """Draw the causal row: the signed attack attribution, then every map's perturbation curve vs random."""
    from .interventions import signed_map
    from .plotting import draw_perturbation_curves, signed_overlay

    attribution = signed_map(intervention.attribution.attributions)
    signed_overlay(row_axes[0], x, attribution,
                   f"Attack attribution (blue: lowered\nthe true class's logit; its top 10%\n"
                   f"carry {intervention.attribution_top_share:.0%} of the change)")
    grid = row_axes[1].get_gridspec()
    for ax in row_axes[1:]:
        ax.remove()
    ax = fig.add_subplot(grid[-1, 1:])
    labels = {name: f"{'attack attribution' if name == 'attack' else name}: AUC {curve.auc:.2f}"
              for name, curve in intervention.curves.items()}
    draw_perturbation_curves(ax, intervention.curves, {"attack": {"color": "black", "lw": 2.2}}, labels)
    ax.set_xlabel("share of pixels that keep the perturbation (each map's top pixels first)", fontsize=9)
    ax.set_ylabel("share of the margin change kept", fontsize=9)
    ax.set_title("Which pixels carry the attack? (the perturbation kept on each map's top pixels only)",
                 fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5))


def _overlap_words(c: dict) -> str:
    """Return ``compare_maps`` numbers as the figure shows them under an adversarial map."""
    def num(v, fmt):
        return format(v, fmt) if v is not None and math.isfinite(v) else "undefined"
    return (f"vs clean: top-10% IoU {num(c['top_iou'], '.2f')}\nSpearman {num(c['spearman'], '.2f')}, "
            f"shift {num(c['com_shift_px'], '.0f')} px")


__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_TARGET_MISSED", "add_study_arguments",
           "build_parser", "explain_figure", "format_report", "main", "resolve_class", "run_explain"]
