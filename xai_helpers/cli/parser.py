"""The command line's parser: every option of ``explain`` and ``study``, their defaults and help texts.

Building it imports neither TensorFlow nor the study, so ``--help`` and ``--version`` answer at once; the
runners it calls are handed in by ``cli``. Usage errors are one line on stderr (exit status 2).
"""
from __future__ import annotations

import argparse
import importlib.util
import math

#: The largest eps the attacks accept: 1 model unit = 127.5 pixel levels (half the 0-255 range).
MAX_EPS_LEVELS = 127.5
#: IG steps accepted on the command line (the trapezoid rule needs 2; beyond 4096 nothing is gained).
MIN_STEPS, MAX_STEPS = 2, 4096
#: Iterations of the targeted attack (``iterative_fgsm_targeted``).
DEFAULT_ITERATIONS = 10
TOP = 5
#: Sample photos a study analyses when --photos is not given (with --images: the whole folder).
SAMPLE_PHOTOS_DEFAULT = 300
#: Exit statuses, listed by ``--help`` (``EXIT_STATUS_HELP``).
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_TARGET_MISSED, EXIT_DISK_FULL, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_STATUS_HELP = ("exit status: 0 done; 1 the study could not go on (its rows kept); 2 bad input (one line on "
                    "stderr, nothing written); 3 the targeted attack missed its class (figure and JSON written, "
                    "the miss said on stderr and in the figure); 4 the disk is full (nothing half-written); "
                    "130 interrupted (Ctrl-C or SIGTERM)")
#: The memory ``explain`` may use, said by its ``--help`` (tests/test_memory.py holds it to this bound;
#: benchmarks/README.md gives the measurements over 1, 10 and 50 photos).
MEMORY_HELP = ("memory: at most 2.5 GB resident at the default settings, for any photo (a huge one adds at most "
               "its decoding, ~0.4 GB, freed before the model loads) and for a folder of any length (each "
               "photo's buffers go back to the system before the next)")
#: Integrated Gradients' choices and defaults, the values of ``integrated_gradients``'s METHODS, BASELINES,
#: DEFAULT_METHOD and DEFAULT_STEPS (a test checks they agree), so that the parser needs no TensorFlow.
IG_METHODS = ("riemann_right", "trapezoid", "gauss_legendre")
#: ``data.RESIZE_POLICIES``, written out for the same reason (a test checks they agree).
RESIZE_POLICIES = ("whole", "centre_crop")
IG_BASELINES = ("black", "zeros", "blur")
IG_DEFAULT_METHOD, IG_DEFAULT_STEPS = "trapezoid", 128
#: One pixel level in model units and the default eps in levels (``attacks.pixels_to_eps(1)``,
#: ``attacks.DEFAULT_EPS_PIXELS``; a test checks they agree).
LEVEL = 2.0 / 255.0
DEFAULT_EPS_LEVELS = 1.0
#: Perturbation curves of ``explain``: budgets 0, 10%, ..., 100% of the pixels, against this many seeded
#: random pixel orders (``analysis.intervene``; about 3 s on 2 cores).
CURVE_FRACTIONS = tuple(k / 10 for k in range(11))
CURVE_RANDOM_MASKS = 20


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr (exit status 2), not usage + error."""

    #: The default sub-command's parser, whose options the top-level help shows too (``IMAGE`` alone runs it).
    default_command: argparse.ArgumentParser | None = None

    def error(self, message: str):  # noqa: D102 - argparse API
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")

    def format_help(self) -> str:  # noqa: D102 - argparse API
        text = super().format_help()
        if self.default_command is not None:
            text += f"\n{self.default_command.prog} (the default command):\n\n" + self.default_command.format_help()
        return text


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


def _eps_value(text: str) -> float | str:
    return "auto" if text.strip().lower() == "auto" else _finite_float(text)


def add_explain_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``explain`` sub-command's arguments to ``parser``."""
    BASELINES, DEFAULT_METHOD, DEFAULT_STEPS, METHODS = (IG_BASELINES, IG_DEFAULT_METHOD, IG_DEFAULT_STEPS,
                                                         IG_METHODS)
    parser.add_argument("image", metavar="IMAGE", nargs="+",
                        help="the photo to explain: JPEG, PNG, WebP, BMP, ... of any size (>= 32 px a side) "
                             "and any colour mode; it is resized whole to 224 x 224. Several photos, or a "
                             "folder of them: each is explained into --out-dir, with an index.html of the "
                             "figures and a summary table")
    parser.add_argument("--eps", type=_eps_value, default="auto",
                        help="attack strength, in 0-255 pixel levels (1 = one grey level; allowed "
                             f"0-{MAX_EPS_LEVELS:g}), or 'auto' (default): the smallest budget, in steps of "
                             "1/8 level up to 16 levels, at which the attack succeeds; the figure, the table "
                             "and the JSON say which eps was used")
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
    parser.add_argument("--out-dir", metavar="DIR", default=None,
                        help="with several photos or a folder: where each photo's <name>_explained.png and "
                             "<name>.json and the index.html go (default: explained/ in the current folder; "
                             "made if missing)")
    parser.add_argument("--force", action="store_true",
                        help="replace --out and --json files that exist already (without it: exit status 2)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress and no table; only the 'wrote ...' lines (and warnings)")


def build_parser(prog: str, handlers: dict) -> argparse.ArgumentParser:
    """Return the command's parser: ``explain`` and, when ``xai_helpers.study`` exists, ``study``; each
    sub-command's ``func`` is ``handlers[name]`` (the command line's runners)."""
    from xai_helpers import __version__

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
                    "weights' fingerprint.", epilog=f"{EXIT_STATUS_HELP}. {MEMORY_HELP}.")
    add_explain_arguments(explain)
    explain.set_defaults(func=handlers["explain"], _prog=explain.prog)
    parser.default_command = explain
    # The study sub-command is offered when its module exists; it is imported only when it runs.
    if importlib.util.find_spec("xai_helpers.study.runner") is not None:  # noqa: SIM102
        sub = commands.add_parser("study", help="run the many-photo study on the ImageNet sample photos",
                                  description="Run the many-photo study and write its CSV table (resumable: "
                                              "run the same command again to continue), then print its "
                                              "headline numbers (the book's own summary). "
                                              "benchmarks/study_cost.py measures its cost per photo on your "
                                              "machine (benchmarks/README.md: measured costs).",
                                  epilog="exit status: 0 done (photos that could not be read are rows "
                                         "with status 'error', counted on stderr); 1 a Ray worker kept dying "
                                         "('N rows kept in FILE'); 2 bad input, a table that cannot be "
                                         "resumed, or with --strict a photo that could not be read (one line "
                                         "on stderr); 130 interrupted by Ctrl-C or SIGTERM ('interrupted, N "
                                         "rows kept in FILE' on stderr)")
        add_study_arguments(sub)
        sub.set_defaults(func=handlers["study"], _prog=sub.prog)
        report = commands.add_parser("report", help="print the headline numbers of a study table",
                                     description="Print the headline numbers of a table made by 'study' (the "
                                                 "summary the book's study chapters state), and write them as "
                                                 "an HTML page with --html.")
        report.add_argument("table", metavar="TABLE.csv", help="a table written by the study sub-command")
        report.add_argument("--html", metavar="FILE.html", default=None, help="also write the summary as a page")
        report.set_defaults(func=handlers["report"], _prog=report.prog)
    return parser


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``study`` sub-command's options to ``parser``."""
    parser.add_argument("--photos", type=_integer, default=None,
                        help="number of photos to analyse, in the seeded study order (max 1000; default "
                             f"{SAMPLE_PHOTOS_DEFAULT}); with --images, the first N of the folder (default: all)")
    parser.add_argument("--out", default="results/study.csv",
                        help="CSV file to write; an existing one is resumed when it was made with the same "
                             "settings, weights and xai_helpers version, and refused otherwise (default "
                             "%(default)s)")
    parser.add_argument("--summary", metavar="FILE.html", default=None,
                        help="also write the headline numbers as an HTML page (they are printed either way)")
    parser.add_argument("--force-new", action="store_true",
                        help="when --out exists, rename it to <name>.old.csv (.old2.csv, ...) and start a "
                             "new table instead of resuming it")
    parser.add_argument("--batch-size", type=_integer, default=8, help="photos per batch (default 8)")
    parser.add_argument("--sanity-photos", type=_integer, default=20,
                        help="photos for the cascading-randomisation sanity check (0 to skip; default "
                             "%(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                        help="run the batches as Ray tasks (one model per worker, the same rows as a serial "
                             "run): alone, on a local Ray cluster sized to this machine; with ADDRESS, on "
                             "that cluster (e.g. 'auto' on a cluster node, or ray://HEAD:10001)")
    parser.add_argument("--images", metavar="DIR", default=None,
                        help="study the photos of this folder (sorted by file name) instead of the ImageNet "
                             "sample photos; rows are keyed by file name and the sha256 of its bytes, so a "
                             "resumed table gains new photos and refuses photos whose bytes changed")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 2 when a photo could not be read (by default its row records "
                             "the error, the study goes on, and the count is printed)")
    parser.add_argument("--labels", metavar="CSV", default=None,
                        help="with --images: 'file,class' lines (class: name, WNID or index 0-999); an "
                             "unlabelled photo is attacked and explained for the model's own top-1 class")
    parser.add_argument("--ray-workers", type=_integer, default=None, metavar="N",
                        help="Ray workers (CPUs; default: all of the local machine or the cluster)")
    parser.add_argument("--model", metavar="NAME|PATH", default="MobileNetV2",
                        help="the classifier, as for explain (default MobileNetV2); e.g. '--model MobileNet "
                             "--alpha 0.75 --size 192' for MobileNet v1 0.75/192; the table records the "
                             "model, its options and its weights' sha256")
    parser.add_argument("--weights", metavar="imagenet|none|PATH", default="imagenet",
                        help="'imagenet' (default), 'none' (seeded random weights) or a weights file")
    parser.add_argument("--alpha", type=_finite_float, default=None,
                        help="width multiplier of MobileNet / MobileNetV2 / MobileNetV3 (default: the "
                             "constructor's, 1.0)")
    parser.add_argument("--size", type=_integer, default=None, metavar="PIXELS",
                        help="square input side (default: the architecture's, 224 for MobileNetV2)")
    parser.add_argument("--resize", choices=RESIZE_POLICIES, default="whole",
                        help="how a photo becomes the square input: 'whole' resizes the whole photo (default, "
                             "the report's); 'centre_crop' keeps its central square after resizing the shorter "
                             "side to 256/224 of the input side (ImageNet's standard evaluation); a setting, "
                             "so it is part of the table's key")
