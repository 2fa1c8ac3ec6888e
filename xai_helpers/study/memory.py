"""Giving freed memory back to the system between the stages of a long run (``explain``, the study).

TensorFlow frees a gradient pass's buffers to the C heap, and a decoded photo's pixels go there too; glibc
keeps them, so the next stage (the model, the figure) would stack its memory on top. ``malloc_trim(0)``
returns them: it lowered ``explain``'s peak by ~300 MB. No TensorFlow here, so the command line can trim
before it loads the model.
"""
from __future__ import annotations


def release_freed_memory() -> None:
    """Return the C heap's freed memory to the system (glibc's ``malloc_trim``; a no-op elsewhere)."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


__all__ = ["release_freed_memory"]
