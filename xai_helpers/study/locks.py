"""A study table held by one run at a time: an advisory lock file ``<table>.lock`` holding the run's PID.

``fcntl.flock`` where the system has it (a lock left by a killed run is released by the kernel and simply
taken over), otherwise ``O_EXCL`` creation plus a check that the PID in the file is alive. A second run on
the same table fails in one sentence naming the file and the holder's PID (``TableLocked``, an
``OSError``, so the command line exits 2).
"""
from __future__ import annotations

import contextlib
import os
import stat
import time
from pathlib import Path

from xai_helpers.classifier.file_names import absolute, check_name_length
from xai_helpers.study.outputs import _make_folders, _remove_empty_folders

try:
    import fcntl
except ImportError:  # Windows: the PID in the lock file decides
    fcntl = None


class TableLocked(OSError):
    """``table_lock``: another run holds the table's lock (the message names the file and its PID)."""


#: How long ``table_lock`` waits for a lock file that another process has just created to get its PID.
LOCK_PID_WAIT_S = 1.0


def _read_pid(lock: Path) -> int | None:
    try:
        text = lock.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def _pid_alive(pid: int) -> bool:
    """Return whether process ``pid`` runs (on Windows, where this cannot be asked safely: True)."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    except OSError:
        return True
    return True


def _locked(path: Path, lock: Path, pid: int | None) -> TableLocked:
    holder = f"process {pid}" if pid is not None else "a process that has not yet written its PID"
    return TableLocked(f"{path} is being written by another run ({holder}, lock file {lock.name}); wait for "
                       f"it to finish, or delete {lock} if no such run exists.")


#: The most a lock file of this package holds: a PID and a newline. A larger file is not one.
LOCK_FILE_BYTES = 32


def _open_lock(path: Path, lock: Path) -> int:
    """Open (or create) ``lock`` without following a symbolic link, and check that it is a lock file: a
    regular file holding nothing or a PID. Anything else (a link, a FIFO, a folder, a file with other
    content) is refused in one sentence and left as it is."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(lock, flags, 0o644)
    except OSError:
        if lock.is_symlink() or os.path.lexists(lock):
            what = "a symbolic link" if lock.is_symlink() else "not a regular file"
            raise _not_a_lock(path, lock, what) from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise _not_a_lock(path, lock, "not a regular file")
    if info.st_size > LOCK_FILE_BYTES or not _holds_a_pid(os.pread(fd, LOCK_FILE_BYTES + 1, 0)):
        os.close(fd)
        raise _not_a_lock(path, lock, "a file that does not hold a process ID")
    return fd


def _holds_a_pid(data: bytes) -> bool:
    text = data.decode("ascii", errors="replace").strip()
    return text == "" or text.isdigit()


def _not_a_lock(path: Path, lock: Path, what: str) -> TableLocked:
    return TableLocked(f"Could not lock {path}: {lock} is {what}, not a lock file of this program, and was left "
                       f"as it is; move it away.")


def _flock(path: Path, lock: Path) -> int | None:
    """Take ``lock`` with ``fcntl.flock`` and write our PID in it; return its descriptor (None: the file
    system has no flock). The kernel releases a flock when its process ends, so a lock file left by a
    killed run is free: it is taken over (only a lock file: ``_open_lock``)."""
    while True:
        fd = _open_lock(path, lock)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            deadline = time.monotonic() + LOCK_PID_WAIT_S
            pid = _read_pid(lock)
            while pid is None and time.monotonic() < deadline:  # its holder is writing its PID just now
                time.sleep(0.02)
                pid = _read_pid(lock)
            raise _locked(path, lock, pid) from None
        except OSError:  # e.g. ENOLCK: no flock on this file system
            os.close(fd)
            return None
        # The holder before us may have removed the file after we opened it: then lock the new one.
        try:
            current = os.stat(lock)
        except FileNotFoundError:
            current = None
        if current is None or not os.path.samestat(os.fstat(fd), current):
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        os.fsync(fd)
        return fd


def _pid_lock(path: Path, lock: Path) -> None:
    """Take ``lock`` by creating it exclusively with our PID in it (where there is no flock); a lock whose
    process no longer runs is removed and taken."""
    deadline = time.monotonic() + LOCK_PID_WAIT_S
    while True:
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            os.close(_open_lock(path, lock))   # (a link, a FIFO or another file is refused, never removed)
            pid = _read_pid(lock)
            if pid is None and time.monotonic() < deadline:  # its holder is writing its PID just now
                time.sleep(0.02)
                continue
            if pid is not None and _pid_alive(pid):
                raise _locked(path, lock, pid) from None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)  # stale: its process has ended (or it never got a PID)
            continue
        try:
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        return


@contextlib.contextmanager
def table_lock(path: str | os.PathLike, make_folders: bool = False):
    """Hold the advisory lock of the table ``path`` inside the block: the file ``<path>.lock``, holding
    this process's PID, removed at the end of the block.

    Taken with ``fcntl.flock`` where there is one (a lock left by a killed run is then free), otherwise by
    creating the file exclusively (``O_EXCL``), a lock whose PID no longer runs being taken over. Raises
    ``TableLocked`` (an ``OSError``: one sentence naming the table and the holder's PID) when another run
    holds it, also another ``table_lock`` of this process. ``make_folders``: create the table's missing
    folders first (removed again at the end if the block left them empty). Yields the lock file's path.
    """
    path = absolute(path)
    lock = path.with_name(path.name + ".lock")
    try:
        check_name_length(lock)
    except ValueError as err:
        raise OSError(f"Could not lock {str(err).rstrip('.')}.") from None
    made: list[Path] = []
    try:
        if make_folders:
            made = _make_folders(path.parent)
        fd = _flock(path, lock) if fcntl is not None else None
        if fd is None:
            _pid_lock(path, lock)
    except TableLocked:
        _remove_empty_folders(made)
        raise
    except OSError as err:
        _remove_empty_folders(made)
        raise OSError(f"Could not lock {path} with {lock.name} "
                      f"({getattr(err, 'strerror', None) or err}).") from None
    try:
        yield lock
    finally:
        with contextlib.suppress(OSError):
            if _read_pid(lock) == os.getpid():
                os.unlink(lock)  # (while the flock is held: the next run locks a new file)
        if fd is not None:
            os.close(fd)
        _remove_empty_folders(made)


__all__ = ["TableLocked", "table_lock"]
