"""Output files: checked before any work, written whole or not at all, errors that name the file.

A full disk is simulated with a writer (or an ``fsync``) that fails half-way with ENOSPC, the error a
full file system gives; no tmpfs or privileges are needed.
"""
from __future__ import annotations

import errno
import os
import signal
import stat
from pathlib import Path

import pytest

from xai_helpers.study.outputs import PendingFiles, check_outputs, signals_deferred, write_atomic, write_text_atomic


def _disk_full_after(n_bytes: int):
    """A writer that writes ``n_bytes`` and then fails as a full disk does."""
    def write(f):
        f.write(b"x" * n_bytes)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return write


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# -------------------------------------------------------------------------------------------------
# check_outputs: before any work
# -------------------------------------------------------------------------------------------------

def test_outputs_are_returned_as_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = check_outputs({"--out": "figure.png", "--json": "numbers.json"})
    assert paths == {"--out": tmp_path / "figure.png", "--json": tmp_path / "numbers.json"}
    assert all(p.is_absolute() for p in paths.values())


def test_an_output_that_is_the_input_is_refused_even_with_force(tmp_path, monkeypatch, one_sentence):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"jpeg bytes")
    link = tmp_path / "alias.jpg"
    link.symlink_to(photo)
    monkeypatch.chdir(tmp_path)
    for given in ("photo.jpg", str(photo), "./sub/../photo.jpg", "alias.jpg"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(ValueError) as excinfo:
            check_outputs({"--json": given}, inputs=[photo], force=True)
        one_sentence(excinfo, "--json", "photo.jpg", "input")
    assert photo.read_bytes() == b"jpeg bytes"


def test_two_outputs_naming_one_file_are_refused(tmp_path, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        check_outputs({"--out": tmp_path / "a.png", "--json": tmp_path / "." / "a.png"}, force=True)
    one_sentence(excinfo, "--json", "a.png", "--out")


def test_an_existing_output_needs_force_and_the_error_names_file_and_option(tmp_path, one_sentence):
    old = tmp_path / "figure.png"
    old.write_bytes(b"an earlier figure")
    with pytest.raises(ValueError) as excinfo:
        check_outputs({"--out": old})
    one_sentence(excinfo, str(old), "already exists", "--force")
    assert check_outputs({"--out": old}, force=True) == {"--out": old}
    assert old.read_bytes() == b"an earlier figure"


@pytest.mark.parametrize("case, says", [("folder", "is a folder"), ("missing folder", "does not exist")])
def test_outputs_that_cannot_be_files_are_refused(tmp_path, case, says, one_sentence):
    path = tmp_path if case == "folder" else tmp_path / "no" / "such" / "figure.png"
    with pytest.raises(ValueError) as excinfo:
        check_outputs({"--out": path})
    one_sentence(excinfo, "--out", says)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_an_output_in_a_read_only_folder_is_refused(tmp_path, one_sentence):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(ValueError) as excinfo:
            check_outputs({"--json": folder / "n.json"})
        one_sentence(excinfo, "--json", "not writable")
    finally:
        folder.chmod(stat.S_IRWXU)


# -------------------------------------------------------------------------------------------------
# Atomic writes: the old file or nothing, never a truncated file
# -------------------------------------------------------------------------------------------------

def test_a_full_disk_leaves_the_old_file_unchanged_and_no_temporary(tmp_path, one_sentence):
    path = tmp_path / "figure.png"
    path.write_bytes(b"the old figure")
    with pytest.raises(OSError) as excinfo:
        write_atomic(path, _disk_full_after(1000))
    one_sentence(excinfo, str(path), "No space left", "unchanged")
    assert path.read_bytes() == b"the old figure"
    assert _leftovers(tmp_path, {"figure.png"}) == []


def test_a_full_disk_on_a_new_file_leaves_nothing(tmp_path, one_sentence):
    path = tmp_path / "numbers.json"
    with pytest.raises(OSError) as excinfo:
        write_atomic(path, _disk_full_after(10))
    one_sentence(excinfo, str(path), "no file was left")
    assert list(tmp_path.iterdir()) == []


def test_a_failing_fsync_is_reported_like_a_full_disk(tmp_path, monkeypatch, one_sentence):
    path = tmp_path / "t.csv"
    path.write_text("old\n")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as excinfo:
        write_text_atomic(path, "new\n" * 1000)
    one_sentence(excinfo, str(path))
    assert path.read_text() == "old\n"
    assert _leftovers(tmp_path, {"t.csv"}) == []


def test_atomic_write_replaces_the_content_and_keeps_the_permissions(tmp_path):
    path = tmp_path / "n.json"
    path.write_text("old")
    path.chmod(0o640)
    assert write_text_atomic(path, "new") == path
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_new_file_gets_the_usual_permissions_not_the_temporary_files(tmp_path):
    mask = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "new.txt", "x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o644


def test_pending_files_change_nothing_when_the_second_file_fails(tmp_path):
    figure, numbers = tmp_path / "f.png", tmp_path / "n.json"
    figure.write_bytes(b"old figure")
    with pytest.raises(OSError):
        with PendingFiles() as files:
            files.write_bytes(figure, b"new figure")
            files.write(numbers, _disk_full_after(5))
            files.commit()
    assert figure.read_bytes() == b"old figure"
    assert _leftovers(tmp_path, {"f.png"}) == []


def test_pending_files_commit_together(tmp_path):
    with PendingFiles() as files:
        files.write_bytes(tmp_path / "a", b"1")
        files.write_text(tmp_path / "b", "2")
        assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == []
        files.commit()
    assert (tmp_path / "a").read_bytes() == b"1" and (tmp_path / "b").read_text() == "2"
    assert _leftovers(tmp_path, {"a", "b"}) == []


@pytest.fixture
def python_sigint():
    """SIGINT as an interactive run has it: Python's handler, not blocked. A test run started in the
    background by a non-interactive shell (``cmd &``, as CI scripts may do) inherits SIGINT *ignored*, and
    Python then installs no handler of its own; ``signals_deferred`` rightly honours an ignored SIGINT, so
    the test sets the state it means to test."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    yield
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_during_a_commit_is_held_back_until_the_file_is_in_place(tmp_path, python_sigint):
    path = tmp_path / "t.csv"
    with pytest.raises(KeyboardInterrupt):
        with signals_deferred():
            # raise_signal delivers to this (the main) thread at once; os.kill may let the process pick
            # another thread (TensorFlow's), and the handler would then run only after the block, by chance.
            signal.raise_signal(signal.SIGINT)
            write_text_atomic(path, "complete\n")
            reached_the_end_of_the_block = True
    assert reached_the_end_of_the_block
    assert path.read_text() == "complete\n"
