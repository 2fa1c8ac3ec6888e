"""Output files written safely: every path checked before any work, every file written whole or not at all.

* ``check_outputs`` runs before the model is loaded: each output must name a file (not a folder) in an
  existing, writable folder; it must not be one of the inputs (``--json photo.jpg`` would destroy the
  photo), nor another output of the same run (``--json`` equal to ``--out``), and an existing file is only
  replaced with ``--force``. It returns absolute paths, the ones the command prints.
* ``write_atomic`` / ``PendingFiles`` write to a temporary file in the destination's folder, flush it to
  disk (``fsync``) and only then rename it over the destination (``os.replace``, atomic on POSIX and
  Windows within one file system). A full disk, a kill or an exception half-way leaves either the old file
  or nothing, never a truncated file; the error names the file.
* ``signals_deferred`` holds Ctrl-C and SIGTERM back while a file is being committed, so that an
  interrupted run always knows what it kept.
"""
from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

#: Signals that ``signals_deferred`` holds back (SIGTERM is what ``kill`` and most schedulers send).
DEFERRED_SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s)


def absolute(path: str | os.PathLike) -> Path:
    """Return ``path`` made absolute against the current folder (``~`` expanded, symlinks kept)."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def _same_file(a: Path, b: Path) -> bool:
    """Return True when ``a`` and ``b`` name the same file (hard or symbolic links included)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def check_outputs(outputs: Mapping[str, str | os.PathLike | None], inputs: Iterable[str | os.PathLike] = (),
                  force: bool = False, force_option: str = "--force") -> dict[str, Path]:
    """Return ``{option: absolute path}`` of the outputs after checking that each can be written.

    ``outputs`` maps the option that names a file (``"--out"``) to its path (``None``: not wanted).
    Raises ``ValueError`` (one sentence naming the option and the file) when an output is a folder, lies
    in a folder that does not exist or is not writable, is one of ``inputs``, is the same file as an
    earlier output, or already exists and ``force`` is false.
    """
    inputs = [absolute(p) for p in inputs]
    checked: dict[str, Path] = {}
    for option, raw in outputs.items():
        if raw is None:
            continue
        path = absolute(raw)
        if path.is_dir():
            raise ValueError(f"{option} {path} is a folder; give a file name.")
        if not path.parent.is_dir():
            raise ValueError(f"{option} {path}: the folder {path.parent} does not exist.")
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise ValueError(f"{option} {path}: the folder {path.parent} is not writable.")
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


def _write_failed(path: Path, err: BaseException) -> OSError:
    reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
    existed = path.exists()
    return OSError(f"Could not write {path} ({reason}); "
                   + ("the previous file is unchanged." if existed else "no file was left behind."))


class PendingFiles:
    """Files written to temporaries now and renamed into place together by ``commit()``.

    Use as a context manager: leaving the block without ``commit()`` (an exception, an interrupt) removes
    the temporaries and leaves every destination as it was.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []

    def write(self, path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
        """Write ``path``'s future content with ``write(binary file)`` into a temporary file beside it."""
        path = absolute(path)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
        """Rename every temporary over its destination (with Ctrl-C held back); return the destinations."""
        done = []
        with signals_deferred():
            for tmp, path in self._pending:
                try:
                    os.replace(tmp, path)
                except OSError as err:
                    raise _write_failed(path, err) from None
                done.append(path)
            for folder in {path.parent for _, path in self._pending}:
                _fsync_folder(folder)
            self._pending = []
        return done

    def discard(self) -> None:
        """Remove the temporaries not yet committed."""
        for tmp, _ in self._pending:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._pending = []

    def __enter__(self) -> PendingFiles:
        return self

    def __exit__(self, *exc) -> bool:
        self.discard()
        return False


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Write ``path`` whole or not at all (temporary file, fsync, rename); return its absolute path.

    Raises ``OSError`` naming the file when it cannot be written; the old file (if any) is then unchanged.
    """
    with PendingFiles() as files:
        files.write(path, write)
        return files.commit()[0]


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """``write_atomic`` of a UTF-8 text."""
    return write_atomic(path, lambda f: f.write(text.encode("utf-8")))


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


__all__ = ["PendingFiles", "absolute", "check_outputs", "signals_deferred", "write_atomic",
           "write_text_atomic"]
