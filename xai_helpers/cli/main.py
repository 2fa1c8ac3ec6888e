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

The sub-commands live beside this module: ``explain`` (one photo or many) and ``study``.

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
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from xai_helpers.cli import parser as cli_parser
from xai_helpers.cli.explain import run_explain
from xai_helpers.cli.parser import EXIT_BAD_INPUT, EXIT_DISK_FULL, EXIT_INTERRUPTED, _one_line
from xai_helpers.cli.study_command import run_report_command, run_study_command
from xai_helpers.study.outputs import DiskFull


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """Return the command's parser (``cli_parser.build_parser``) with this module's runners."""
    return cli_parser.build_parser(prog or _prog_name(), {"explain": run_explain, "study": run_study_command,
                                                          "report": run_report_command})


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
        except DiskFull as err:
            print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
            return EXIT_DISK_FULL
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


__all__ = ["build_parser", "main"]
