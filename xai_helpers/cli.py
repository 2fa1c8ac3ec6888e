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
cannot be written) ends with exit status 2 and one line on stderr, checked before the model is loaded
wherever possible. Progress goes to stderr; the table and the ``wrote ...`` lines go to stdout.
"""
from __future__ import annotations

import argparse
import difflib
import json
import math
import re
import sys
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
    from .integrated_gradients import BASELINES, DEFAULT_METHOD, DEFAULT_STEPS, METHODS

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
    parser.add_argument("--out", metavar="FILE.png", default=None,
                        help="figure to write (PNG, or any format matplotlib knows by its suffix); default "
                             "<photo name>_explained.png in the current folder")
    parser.add_argument("--json", metavar="FILE", default=None, help="also write the numbers as JSON")
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
                    "weights' fingerprint. Exit status 2 with one line on stderr for bad input.")
    add_explain_arguments(explain)
    explain.set_defaults(func=run_explain, _prog=explain.prog)
    try:
        from . import study
    except ImportError:  # the study module is optional: without it the sub-command is not offered
        study = None
    if study is not None:
        sub = commands.add_parser("study", help="run the many-photo study on the ImageNet sample photos",
                                  description="Run the many-photo study and write its CSV tables.")
        study.add_arguments(sub)
        sub.set_defaults(func=study.run_from_args, _prog=sub.prog)
    return parser


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

    0 = done; 2 = bad input (one line on stderr, never a traceback); 130 = interrupted.
    """
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
        return 130
    except (ValueError, TypeError, OSError) as err:  # the package's one-sentence input errors
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return 2


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


def _check_explain_args(args: argparse.Namespace) -> tuple[float, Path, Path | None]:
    """Return (eps in model units, figure path, JSON path) after the checks that need no model."""
    from .attacks import DEFAULT_EPS_PIXELS, pixels_to_eps

    if args.eps_units == "levels":
        levels = DEFAULT_EPS_PIXELS if args.eps is None else args.eps
        if not 0.0 <= levels <= MAX_EPS_LEVELS:
            raise ValueError(f"--eps must be between 0 and {MAX_EPS_LEVELS:g} pixel levels (0-255 scale), "
                             f"got {levels:g}.")
        eps = pixels_to_eps(levels)
    else:
        eps = pixels_to_eps(DEFAULT_EPS_PIXELS) if args.eps is None else args.eps
        if not 0.0 <= eps <= 1.0:
            raise ValueError(f"--eps must be between 0 and 1 in model units (--eps-units model), "
                             f"got {eps:g}.")
    if not MIN_STEPS <= args.steps <= MAX_STEPS:
        raise ValueError(f"--steps must be between {MIN_STEPS} and {MAX_STEPS}, got {args.steps}.")
    if args.iterations < 1 or args.iterations > 1000:
        raise ValueError(f"--iterations must be between 1 and 1000, got {args.iterations}.")
    image = Path(args.image)
    out = Path(args.out) if args.out else Path.cwd() / f"{image.stem}_explained.png"
    _check_writable(out, "--out")
    fmt = out.suffix.lower().lstrip(".")
    import matplotlib

    matplotlib.use("Agg")  # files only, no window; must precede pyplot's first import
    from matplotlib.backend_bases import FigureCanvasBase

    if fmt not in FigureCanvasBase.get_supported_filetypes():
        raise ValueError(f"--out must end with an image suffix such as .png, .pdf or .svg, got {out.name!r}.")
    if image.exists() and out.exists() and out.resolve() == image.resolve():
        raise ValueError(f"--out {out} is the input photo itself; choose another file name.")
    json_path = Path(args.json) if args.json else None
    if json_path is not None:
        _check_writable(json_path, "--json")
    return eps, out, json_path


def _check_writable(path: Path, option: str) -> None:
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; give a file name.")
    if not path.parent.is_dir():
        raise ValueError(f"{option}: the folder {path.parent} does not exist.")


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
    """Run ``explain`` from parsed arguments; return the exit status (0)."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning(getattr(args, "_prog", "xai_helpers"))
        return _run_explain(args)


def _run_explain(args: argparse.Namespace) -> int:
    from .data import load_image

    started = time.perf_counter()
    eps, out, json_path = _check_explain_args(args)
    x = load_image(args.image)  # missing or undecodable file: one sentence, before the model is loaded
    target_class = resolve_class(args.target_class) if args.target_class is not None else None

    from . import plotting  # noqa: F401  (after matplotlib.use("Agg") above)
    from .attacks import eps_to_pixels, fgsm, iterative_fgsm_targeted
    from .compare import compare_maps, to_2d
    from .gradcam import gradcam
    from .integrated_gradients import integrated_gradients_batch
    from .model import load_model, predict, weights_fingerprint

    sets = list(TARGET_SETS) if args.targets == "both" else [args.targets]
    stage_names = ["loading MobileNetV2", "attack"]
    for name in sets:
        gc_target, ig_target = TARGET_SETS[name]
        stage_names += [f"Grad-CAM ({gc_target})", f"IG ({ig_target}, {args.steps} steps)"]
    stage_names.append("figure")
    stages = _Stages(stage_names, args.quiet)
    names = iter(stage_names)

    def stage():
        stages.start(next(names))

    try:
        stage()
        model = load_model()
        stages.done()

        stage()
        clean_top = predict(model, x, top=TOP)
        if target_class is None:
            adv = fgsm(model, x, eps=eps)
        else:
            adv = iterative_fgsm_targeted(model, x, target_class, eps, iterations=args.iterations)
        adv_top = predict(model, adv, top=TOP)
        stages.done()

        pair = np.stack([x, adv])
        classes = [clean_top[0].class_index, adv_top[0].class_index]
        explanations, maps = [], {}
        for name in sets:
            gc_target, ig_target = TARGET_SETS[name]
            stage()
            cams = gradcam(model, pair, classes, target=gc_target)
            stages.done()
            stage()
            igs = integrated_gradients_batch(model, pair, classes, target=ig_target, baseline=args.baseline,
                                             steps=args.steps, method=args.method)
            stages.done()
            ig_maps = [to_2d(r.attributions) for r in igs]
            maps[name] = (cams, [plotting.normalize_for_display(m) for m in ig_maps])
            explanations.append({"targets": name, "method": "gradcam", "target": gc_target,
                                 "compare": compare_maps(cams[0], cams[1])})
            explanations.append({
                "targets": name, "method": "integrated_gradients", "target": ig_target,
                "compare": compare_maps(ig_maps[0], ig_maps[1]), "steps": args.steps,
                "quadrature": args.method, "baseline": args.baseline,
                "clean": _ig_numbers(igs[0]), "adversarial": _ig_numbers(igs[1])})

        stage()
        attack = _attack_description(eps, eps_to_pixels(eps), target_class, args.iterations, adv_top)
        fig = explain_figure(x, adv, eps, eps_to_pixels(eps), clean_top[0], adv_top[0], maps,
                             title=f"{Path(args.image).name}: {attack['description']}")
        fig.savefig(out, dpi=110)
        import matplotlib.pyplot as plt

        plt.close(fig)
        stages.done()
    finally:
        stages.close()

    success = (adv_top[0].class_index != clean_top[0].class_index) if target_class is None \
        else adv_top[0].class_index == target_class
    attack["succeeded"] = bool(success)
    report = {
        "image": str(args.image),
        "figure": str(out),
        "eps": {"levels": eps_to_pixels(eps), "model_units": eps},
        "attack": attack,
        "clean": {"top5": [p._asdict() for p in clean_top]},
        "adversarial": {"top5": [p._asdict() for p in adv_top],
                        "linf_levels": eps_to_pixels(float(np.abs(adv - x).max()))},
        "explanations": explanations,
        "weights": weights_fingerprint(),
        "versions": _versions(),
        "seconds": time.perf_counter() - started,
    }
    if not args.quiet:
        print(format_report(report))
    print(f"wrote {out}")
    if json_path is not None:
        json_path.write_text(json.dumps(_jsonable(report), indent=2) + "\n")
        print(f"wrote {json_path}")
    return 0


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
    lines = [f"photo:   {report['image']}",
             f"attack:  {report['attack']['description']}; "
             f"{'succeeded' if report['attack']['succeeded'] else 'did not change the top-1 class'}"]
    lines += ["", f"{'':3}{'clean':<34}{'adversarial':<34}"]
    for k, (a, b) in enumerate(zip(report["clean"]["top5"], report["adversarial"]["top5"]), start=1):
        lines.append(f"{k:<3}{_pred(a):<34}{_pred(b):<34}")
    lines += ["", "maps: clean image (its top-1 class) vs adversarial image (its top-1 class)",
              f"{'method':<10}{'target':<9}{'top-10% IoU':>12}{'Spearman':>10}{'CoM shift':>11}"
              f"{_IG_DELTA_HEADER:>37}"]
    for e in report["explanations"]:
        c = e["compare"]
        method = "Grad-CAM" if e["method"] == "gradcam" else "IG"
        delta = ""
        if e["method"] == "integrated_gradients":
            delta = f"{e['clean']['relative_delta']:.2%}, {e['adversarial']['relative_delta']:.2%}" \
                    f" ({e['steps']} {e['quadrature']})"
        lines.append(f"{method:<10}{e['target']:<9}{c['top_iou']:>12.2f}{c['spearman']:>10.2f}"
                     f"{c['com_shift_px']:>9.1f}px{delta:>37}")
    worst = max((e[side]["relative_delta"] for e in report["explanations"]
                 if e["method"] == "integrated_gradients" for side in ("clean", "adversarial")), default=0.0)
    if worst > 0.05:
        lines.append(f"(IG's completeness error reaches {worst:.0%}: raise --steps for a more exact IG map)")
    w = report["weights"]
    lines += ["", f"weights: sha256 {w['sha256'][:16]}... {w['path']}", f"         {w['source']}",
              f"time:    {report['seconds']:.1f} s"]
    return "\n".join(line.rstrip() for line in lines)


def _pred(p: dict) -> str:
    return f"{p['name'][:24]:<25}{p['probability']:>7.2%}"


def explain_figure(x: np.ndarray, adv: np.ndarray, eps: float, eps_pixels: float, clean_top1, adv_top1,
                   maps: dict, title: str | None = None):
    """Return the figure: row 1 original / perturbation / adversarial (assignment Fig 1); rows 2-3 each
    image with its Grad-CAM and IG overlays (assignment Fig 5), one pair of columns per target set.

    ``maps[name] = (gradcam maps [clean, adv], IG maps scaled for display [clean, adv])``.
    """
    import matplotlib.pyplot as plt

    from .plotting import overlay, show_image, show_perturbation

    cols = 1 + 2 * len(maps)
    fig, axes = plt.subplots(3, cols, figsize=(2.7 * cols + 0.9, 3 * 2.9), squeeze=False,
                             constrained_layout=True)
    labels = [f"{p.name} {p.probability:.1%}" for p in (clean_top1, adv_top1)]
    show_image(axes[0, 0], x, f"Original\n{labels[0]}")
    show_perturbation(axes[0, 1], adv - x, eps,
                      f"Perturbation, eps = {eps_pixels:g}/255\n(grey = 0, scaled to +-eps)")
    show_image(axes[0, 2], adv, f"Adversarial\n{labels[1]}")
    for ax in axes[0, 3:]:
        ax.axis("off")
    im = None
    for row, (image, kind) in enumerate(((x, "Original"), (adv, "Adversarial")), start=1):
        show_image(axes[row, 0], image, f"{kind}: {labels[row - 1]}")
        col = 1
        for name, (cams, igs) in maps.items():
            gc_target, ig_target = TARGET_SETS[name]
            tag = f"{name}: " if len(maps) > 1 else ""
            overlay(axes[row, col], image, cams[row - 1], f"{tag}Grad-CAM ({gc_target})")
            im = overlay(axes[row, col + 1], image, igs[row - 1], f"{tag}IG ({ig_target})")
            col += 2
    if im is not None:
        fig.colorbar(im, ax=axes[1:, 1:].ravel().tolist(), shrink=0.8,
                     label="importance (Grad-CAM / max; IG / 99.5th pct.)")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


__all__ = ["build_parser", "explain_figure", "format_report", "main", "resolve_class", "run_explain"]
