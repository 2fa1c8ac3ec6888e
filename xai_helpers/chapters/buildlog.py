"""Progress lines for whoever runs a chapter: the book build's log, never the chapter's own output.

A chapter's long cells (the study's live re-check, a many-step reference) would leave the build silent for
minutes. ``note`` writes a timestamped line to the terminal that started the chapter's kernel. Inside
ipykernel that is the copy of the original stderr that its output capture keeps (``sys.stderr.fileno()``),
or, under nbmake (where ipykernel captures nothing), file descriptor 2 itself; so the line reaches the
build's log and not the notebook. Anywhere else it is plain stderr. Where there is no such terminal,
nothing is written.
"""
from __future__ import annotations

import os
import sys
import time


def _terminal_fd() -> int | None:
    """The file descriptor of the terminal that started this process, or None where there is none."""
    stream = sys.stderr
    copy = getattr(stream, "_original_stdstream_copy", None)   # ipykernel capturing fd 2 for the notebook
    if copy is not None:
        return copy
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # (io.UnsupportedOperation: a stream without a terminal)
        # ipykernel leaves fd 2 alone when started under pytest (nbmake: PYTEST_CURRENT_TEST is set), so
        # fd 2 is still the terminal's, though its sys.stderr has no descriptor.
        return 2 if type(stream).__module__.startswith("ipykernel") else None


def note(message: str) -> None:
    """Write ``  [HH:MM:SS] message`` on the terminal that runs this chapter (the build's log)."""
    fd = _terminal_fd()
    if fd is None:
        return
    try:
        os.write(fd, f"  [{time.strftime('%H:%M:%S')}] {message}\n".encode("utf-8", "replace"))
    except OSError:
        pass


__all__ = ["note"]
