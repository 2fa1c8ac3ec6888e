"""Progress lines for whoever runs a chapter: the book build's log, never the chapter's own output.

A chapter's long cells (the study's live re-check, a many-step reference) would leave the build silent for
minutes. ``note`` writes a timestamped line to the terminal that started the chapter's kernel. Inside
ipykernel that is the copy of the original stderr that its output capture keeps (``sys.stderr.fileno()``),
so the line reaches the build's log and not the notebook. Anywhere else it is plain stderr. Where there is no
such terminal, nothing is written.
"""
from __future__ import annotations

import os
import sys
import time


def note(message: str) -> None:
    """Write ``  [HH:MM:SS] message`` on the terminal that runs this chapter (the build's log)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # (io.UnsupportedOperation: a stream without a terminal)
        return
    try:
        os.write(fd, f"  [{time.strftime('%H:%M:%S')}] {message}\n".encode("utf-8", "replace"))
    except OSError:
        pass


__all__ = ["note"]
