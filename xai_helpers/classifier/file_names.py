"""File names a user gives: made absolute, shortened for messages, and checked against the file system's
limits before anything is opened (so that a long name fails with a sentence, not a bare errno)."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path


def absolute(path: str | os.PathLike) -> Path:
    """Return ``path`` made absolute against the current folder (``~`` expanded, symlinks kept)."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


#: Longest name of one path component, in bytes, when the file system does not say (ext4, XFS, NTFS).
NAME_MAX = 255
#: Longest path, in bytes with its terminating NUL (Linux's PATH_MAX).
PATH_MAX = 4096


def short_name(path: str | os.PathLike, keep: int = 60) -> str:
    """Return ``path`` for a message, each component longer than ``keep`` characters cut in the middle."""
    parts = []
    for part in os.fspath(path).split(os.sep):
        parts.append(part if len(part) <= keep else f"{part[:keep - 20]}...{part[-17:]}")
    return os.sep.join(parts)


def _name_max(path: Path) -> int:
    """Return the longest component name (bytes) of the file system of ``path``'s nearest existing folder."""
    folder = path.parent
    while True:
        with contextlib.suppress(OSError):
            if folder.is_dir():
                break
        if folder.parent == folder:
            break
        folder = folder.parent
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return NAME_MAX


def check_name_length(path: str | os.PathLike, what: str = "") -> None:
    """Raise ``ValueError`` ("<what> <path>: file name too long ...", the path shortened) when a component
    of ``path`` is longer than its file system allows, before any call that would fail with a bare errno."""
    path = Path(os.fspath(path))
    prefix = f"{what} " if what else ""
    whole = len(os.fsencode(absolute(path)))
    if whole >= PATH_MAX:
        raise ValueError(f"{prefix}{short_name(path)}: path too long ({whole} bytes where the system allows "
                         f"{PATH_MAX - 1}); choose a shorter name or folder.")
    parts = [part for part in path.parts if part not in (os.sep, "")]
    longest = max(parts, key=lambda part: len(os.fsencode(part)), default="")
    size = len(os.fsencode(longest))
    if size <= 14:  # (no file system allows fewer than 14 bytes)
        return
    limit = _name_max(absolute(path))
    if size > limit:
        kind = "file" if longest == path.name else "folder"
        raise ValueError(f"{prefix}{short_name(path)}: {kind} name too long ({size} bytes where the file "
                         f"system allows {limit}); choose a shorter name.")
