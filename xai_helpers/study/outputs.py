"""Output files written safely: every path checked before any work, every file written whole or not at all.

* ``check_outputs`` runs before the model is loaded: each output must name a file (not a folder) in an
  existing, writable folder (or, with ``make_folders``, one the writer may create); it must not be one of
  the inputs (``--json photo.jpg`` would destroy the photo), nor another output of the same run (``--json``
  equal to ``--out``), nor lie under ``/proc`` or ``/sys``; an existing path is only replaced with
  ``--force``, and only when it is a regular file (never a device such as ``/dev/null``, a FIFO, a socket
  or a folder); a name longer than the file system allows is "file name too long". It creates nothing and
  returns absolute paths, the ones the command prints.
* ``write_atomic`` / ``PendingFiles`` write to a temporary file created exclusively (``O_EXCL``) in the
  destination's folder, flush it to disk (``fsync``) and only then move it to the destination: over the
  old file (``os.replace``, atomic on POSIX and Windows within one file system) when replacing is allowed,
  otherwise only if the name is still free (``os.link``, which refuses an existing name without a race),
  so that a second run writing the same file fails rather than replacing the first run's. A full disk, a
  kill or an exception half-way leaves either the old file or nothing, never a truncated file; the error
  names the file. Missing folders are created only with ``make_folders``, when the file is written.
* (``locks.table_lock`` marks a study table as being written by one run.)
* ``signals_deferred`` holds Ctrl-C and SIGTERM back while a file is being committed, so that an
  interrupted run always knows what it kept.
"""
from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

from xai_helpers.classifier.file_names import absolute, check_name_length, short_name

#: Signals that ``signals_deferred`` holds back (SIGTERM is what ``kill`` and most schedulers send).
DEFERRED_SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s)


#: Folders of the kernel's pseudo-files: nothing is ever written under them (``--out /proc/x.png``).
PSEUDO_FILE_SYSTEMS = ("/proc", "/sys")
#: Characters of the destination's name that its temporary file's name keeps (so that it stays short).
TMP_NAME_CHARS = 50


def _not_regular(path: Path) -> str | None:
    """Return what ``path`` is ("a FIFO (named pipe)", ...) when it exists and is not a regular file (a
    symbolic link is followed); None when it is a regular file or does not exist."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    for test, words in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                        (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return "a special file"


def _pseudo_file_system(path: Path) -> str | None:
    """Return the pseudo-file system (``/proc``, ``/sys``) ``path`` lies under, as given or resolved."""
    for candidate in (os.path.normpath(path), os.path.realpath(path)):
        for root in PSEUDO_FILE_SYSTEMS:
            if candidate == root or candidate.startswith(root + os.sep):
                return root
    return None


def _nearest_folder(path: Path) -> Path:
    """Return the nearest ancestor of ``path`` that exists (a folder or not)."""
    folder = path.parent
    while not (folder.exists() or folder.is_symlink()) and folder.parent != folder:
        folder = folder.parent
    return folder


def _same_file(a: Path, b: Path) -> bool:
    """Return True when ``a`` and ``b`` name the same file (hard or symbolic links included)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def check_outputs(outputs: Mapping[str, str | os.PathLike | None], inputs: Iterable[str | os.PathLike] = (),
                  force: bool = False, force_option: str = "--force",
                  make_folders: bool = False) -> dict[str, Path]:
    """Return ``{option: absolute path}`` of the outputs after checking that each can be written.

    ``outputs`` maps the option that names a file (``"--out"``) to its path (``None``: not wanted).
    Raises ``ValueError`` (one sentence naming the option and the file) when an output's name is too long
    for its file system, lies under ``/proc`` or ``/sys``, is a folder or anything else that is not a
    regular file (a device such as ``/dev/null``, a FIFO, a socket: refused even with ``force``), lies in
    a folder that does not exist or is not writable, is one of ``inputs``, is the same file as an earlier
    output, or already exists and ``force`` is false. With ``make_folders`` a missing folder is accepted
    when its nearest existing ancestor is a writable folder; it is created by the writer
    (``PendingFiles(make_folders=True)``), not here: this function creates nothing.
    """
    inputs = [absolute(p) for p in inputs]
    checked: dict[str, Path] = {}
    for option, raw in outputs.items():
        if raw is None:
            continue
        path = absolute(raw)
        check_name_length(path, option)
        root = _pseudo_file_system(path)
        if root is not None:
            raise ValueError(f"{option} {path} lies under {root}, the kernel's pseudo-files, where no output "
                             f"is ever written; choose a file in an ordinary folder.")
        if path.is_dir():
            raise ValueError(f"{option} {path} is a folder; give a file name.")
        kind = _not_regular(path)
        if kind is not None:
            raise ValueError(f"{option} {path} is {kind}, not a regular file, and is never replaced (not even "
                             f"with {force_option}); give the name of a regular file.")
        folder = path.parent
        if not folder.is_dir():
            nearest = _nearest_folder(path)
            if nearest.exists() and not nearest.is_dir():
                raise ValueError(f"{option} {path}: {nearest} is not a folder.")
            if not make_folders or not nearest.is_dir():
                raise ValueError(f"{option} {path}: the folder {folder} does not exist.")
            folder = nearest
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ValueError(f"{option} {path}: the folder {folder} is not writable.")
        for source in inputs:
            if _same_file(path, source):
                raise ValueError(f"{option} {path} is the input {source.name} itself; choose another file "
                                 f"name.")
        for other, other_path in checked.items():
            if _same_file(path, other_path):
                raise ValueError(f"{option} {path} is also the {other} file; give each output its own name.")
        if (path.exists() or path.is_symlink()) and not force:
            raise ValueError(f"{option} {path} already exists; pass {force_option} to replace it, or choose "
                             f"another name.")
        checked[option] = path
    return checked


def _new_file_mode(path: Path) -> int:
    """Return the permission bits a replaced file keeps (its old ones) or a new file gets (0666 - umask)."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entry table to disk, so that a rename survives a power cut (POSIX only)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class DiskFull(OSError):
    """A file could not be written because the disk (or the user's quota) is full: the command line's own
    exit status, since nothing was wrong with the input."""


def _write_failed(path: Path, err: BaseException) -> OSError:
    if getattr(err, "errno", None) == errno.ENAMETOOLONG:
        return OSError(f"Could not write {short_name(path)}: file name too long; no file was left behind.")
    reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
    try:
        existed = path.exists()
    except OSError:
        existed = False
    full = getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
    return (DiskFull if full else OSError)(f"Could not write {path} ({reason}); "
                                           + ("the previous file is unchanged." if existed else
                                              "no file was left behind."))


def _move_if_absent(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` only if no ``target`` exists, without a race; ``FileExistsError``
    otherwise (the source is then left where it is).

    ``os.link`` creates the new name only if it is free (atomic on POSIX); the source's name is then
    removed. Where hard links are not supported (some FAT, FUSE or network file systems) the name is
    reserved with an exclusively created empty file (``O_EXCL``) and the source renamed over it.
    """
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except (OSError, NotImplementedError):
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # FileExistsError if taken
        os.close(fd)
        try:
            os.replace(source, target)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(target)
            raise
        return
    with contextlib.suppress(OSError):
        os.unlink(source)


def _missing_folders(folder: Path) -> list[Path]:
    """Return the folders ``folder.mkdir(parents=True)`` would create, deepest first."""
    missing = []
    while not (folder.exists() or folder.is_symlink()) and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    return missing


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the ones created, deepest first."""
    missing = _missing_folders(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_empty_folders(folders: Iterable[Path]) -> None:
    """Remove each of ``folders`` (deepest first) that is still empty; leave the others."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _temporary_prefix(path: Path, pid: int) -> str:
    return f".{path.name[:TMP_NAME_CHARS]}.pid{pid}."


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries of ``path`` that a killed run left beside it (``.<name>.pid<PID>.*.tmp`` whose
    process no longer runs; regular files only, never followed through a link); return them."""
    import re

    pattern = re.compile(re.escape(f".{path.name[:TMP_NAME_CHARS]}.pid") + r"(\d+)\.[^/]*\.tmp")
    removed = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for name in names:
        match = pattern.fullmatch(name)
        if match is None or int(match.group(1)) == os.getpid() or _process_runs(int(match.group(1))):
            continue
        stale = path.parent / name
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.lstat(stale).st_mode):
                stale.unlink()
                removed.append(stale)
    return removed


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:   # (it runs, as another user; or this system cannot say: keep its files)
        return True
    return True


class PendingFiles:
    """Files written to temporaries now and moved into place together by ``commit()``.

    ``replace``: an existing destination (a regular file) is replaced; False (the command line without
    ``--force``): ``commit()`` refuses a destination that exists by then (another run wrote it meanwhile)
    and leaves it as it is. ``make_folders``: missing folders of a destination are created when its
    temporary file is written (and removed again, if still empty, when the files are discarded).

    Use as a context manager: leaving the block without ``commit()`` (an exception, an interrupt) removes
    the temporaries and leaves every destination as it was.
    """

    def __init__(self, replace: bool = True, make_folders: bool = False) -> None:
        self.replace, self.make_folders = replace, make_folders
        self._pending: list[tuple[Path, Path]] = []
        self._made: list[Path] = []  # folders this object created, deepest first

    def write(self, path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
        """Write ``path``'s future content with ``write(binary file)`` into a temporary file beside it."""
        path = absolute(path)
        try:
            check_name_length(path)
        except ValueError as err:
            raise OSError(f"Could not write {str(err).rstrip('.')}.") from None
        try:
            if self.make_folders:
                self._made = _make_folders(path.parent) + self._made
            remove_stale_temporaries(path)
            # mkstemp creates the file with O_EXCL; the name keeps a short part of path's (so that a long,
            # allowed name does not make the temporary's too long) and this process's PID, so that a later
            # run recognises a temporary that a killed run left behind.
            fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path, os.getpid()), suffix=".tmp", dir=path.parent)
        except OSError as err:
            raise _write_failed(path, err) from None
        tmp = Path(tmp)
        self._pending.append((tmp, path))
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, _new_file_mode(path))
        except OSError as err:
            raise _write_failed(path, err) from None
        return path

    def write_bytes(self, path: str | os.PathLike, data: bytes) -> Path:
        return self.write(path, lambda f: f.write(data))

    def write_text(self, path: str | os.PathLike, text: str) -> Path:
        return self.write(path, lambda f: f.write(text.encode("utf-8")))

    def commit(self) -> list[Path]:
        """Move every temporary to its destination (with Ctrl-C held back); return the destinations.

        Every destination is checked first: one that has become something other than a regular file, or
        (``replace`` False) that exists, raises ``OSError`` naming it, and nothing is moved.
        """
        done = []
        with signals_deferred():
            for _, path in self._pending:
                kind = _not_regular(path)
                if kind is not None:
                    raise OSError(f"Could not write {path}: it is now {kind}, not a regular file, and was left "
                                  f"as it is.")
                if not self.replace and (path.exists() or path.is_symlink()):
                    raise _appeared(path)
            for tmp, path in self._pending:
                try:
                    if self.replace:
                        os.replace(tmp, path)
                    else:
                        _move_if_absent(tmp, path)
                except FileExistsError:
                    raise _appeared(path) from None
                except OSError as err:
                    raise _write_failed(path, err) from None
                done.append(path)
            for folder in {path.parent for _, path in self._pending}:
                _fsync_folder(folder)
            self._pending, self._made = [], []
        return done

    def discard(self) -> None:
        """Remove the temporaries not yet committed (and the folders made for them, if still empty)."""
        for tmp, _ in self._pending:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._pending = []
        _remove_empty_folders(self._made)
        self._made = []

    def __enter__(self) -> PendingFiles:
        return self

    def __exit__(self, *exc) -> bool:
        self.discard()
        return False


def _appeared(path: Path) -> OSError:
    return FileExistsError(f"Could not write {path}: a file of that name appeared while this run was working "
                           f"(another run writing it?), and it was left as it is.")


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object], *, replace: bool = True,
                 make_folders: bool = False) -> Path:
    """Write ``path`` whole or not at all (temporary file, fsync, rename); return its absolute path.

    ``replace`` and ``make_folders``: as for ``PendingFiles``. Raises ``OSError`` naming the file when it
    cannot be written; the old file (if any) is then unchanged.
    """
    with PendingFiles(replace=replace, make_folders=make_folders) as files:
        files.write(path, write)
        return files.commit()[0]


def write_text_atomic(path: str | os.PathLike, text: str, *, replace: bool = True,
                      make_folders: bool = False) -> Path:
    """``write_atomic`` of a UTF-8 text."""
    return write_atomic(path, lambda f: f.write(text.encode("utf-8")), replace=replace,
                        make_folders=make_folders)


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT and SIGTERM back inside the block; raise ``KeyboardInterrupt`` after it if one came.

    Only the main thread can handle signals; elsewhere (or when another handler must not be replaced) the
    block runs unprotected.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {}
    try:
        for sig in DEFERRED_SIGNALS:
            previous[sig] = signal.signal(sig, lambda signum, frame: received.append(signum))
    except (ValueError, OSError):  # not the main interpreter
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        sig = received[0]
        handler = previous.get(sig)
        if handler is signal.SIG_IGN:
            return
        if callable(handler):
            handler(sig, None)  # e.g. the study's SIGTERM handler, or Python's SIGINT default
        elif handler == signal.SIG_DFL and sig != getattr(signal, "SIGINT", None):
            os.kill(os.getpid(), sig)  # the default action of SIGTERM: end the process, as it would have
        else:
            raise KeyboardInterrupt


__all__ = ["PSEUDO_FILE_SYSTEMS", "DiskFull", "PendingFiles", "check_outputs", "remove_stale_temporaries",
           "signals_deferred", "write_atomic", "write_text_atomic"]
