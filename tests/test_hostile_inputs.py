"""Hostile inputs (issue 20, "Lose nothing, part two"): outputs that are not regular files, two runs writing
one file, a locked study table, spreadsheet formulas in text cells, labels files that are not UTF-8, PNG
text bombs, animations, names too long for the file system, damaged model files and file names that look
like model names. Every case is a tiny file made in ``tmp_path``; only the model-name cases import Keras.
"""
from __future__ import annotations

import csv
import io
import os
import socket
import stat
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin, features

import xai_helpers as xh
from xai_helpers.classifier import labels as labels_module
from xai_helpers.study import locks, table
from xai_helpers.study.locks import TableLocked, table_lock
from xai_helpers.study.outputs import PendingFiles, check_outputs, write_text_atomic
from xai_helpers.study.photos import folder_photos

LONG_NAME = "a" * 300 + ".png"


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def _dead_pid() -> int:
    """The PID of a process that has just ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# -------------------------------------------------------------------------------------------------
# A. Outputs: only regular files are replaced
# -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("force", [False, True])
def test_dev_null_is_never_replaced_even_with_force(force, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        check_outputs({"--json": "/dev/null"}, force=force)
    one_sentence(excinfo, "--json", "/dev/null", "character device", "not a regular file")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_fifo_a_socket_and_a_link_to_a_fifo_are_refused_with_force(tmp_path, monkeypatch, one_sentence):
    monkeypatch.chdir(tmp_path)  # (a socket's path must be short: bind a relative name)
    os.mkfifo("pipe")
    Path("to_pipe").symlink_to("pipe")
    server = socket.socket(socket.AF_UNIX)
    server.bind("s.sock")
    try:
        for name, says in (("pipe", "FIFO"), ("to_pipe", "FIFO"), ("s.sock", "socket")):
            with pytest.raises(ValueError) as excinfo:
                check_outputs({"--out": name}, force=True)
            one_sentence(excinfo, "--out", name, says, "--force")
    finally:
        server.close()
    assert stat.S_ISFIFO(os.stat("pipe").st_mode)


def test_a_folder_is_refused_with_force(tmp_path, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        check_outputs({"--out": tmp_path}, force=True)
    one_sentence(excinfo, "--out", "is a folder")


@pytest.mark.parametrize("given", ["/proc/x.png", "/proc/self/x.json", "/sys/x.csv", "/sys"])
def test_paths_under_proc_and_sys_are_refused_before_any_work(given, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        check_outputs({"--out": given}, force=True)
    one_sentence(excinfo, "--out", given, given.split("/")[1], "pseudo-files")


def test_a_link_into_proc_is_refused_too(tmp_path, one_sentence):
    (tmp_path / "proc_link").symlink_to("/proc")
    with pytest.raises(ValueError) as excinfo:
        check_outputs({"--out": tmp_path / "proc_link" / "x.png"})
    one_sentence(excinfo, "--out", "/proc")


def test_a_target_that_became_a_fifo_before_the_commit_is_left_alone(tmp_path, one_sentence):
    path = tmp_path / "numbers.json"
    check_outputs({"--json": path}, force=True)
    with PendingFiles() as files:
        files.write_text(path, "{}\n")
        os.mkfifo(path)  # (between the check and the commit)
        with pytest.raises(OSError) as excinfo:
            files.commit()
    one_sentence(excinfo, str(path), "FIFO", "left as it is")
    assert stat.S_ISFIFO(os.stat(path).st_mode)
    assert _leftovers(tmp_path, {"numbers.json"}) == []


# -------------------------------------------------------------------------------------------------
# A. Two runs writing one file: the second fails, the first's file stays
# -------------------------------------------------------------------------------------------------

def test_a_file_that_appeared_meanwhile_is_not_replaced_without_force(tmp_path, one_sentence):
    path = tmp_path / "figure.png"
    assert check_outputs({"--out": path}) == {"--out": path}  # (free when this run checked)
    with PendingFiles(replace=False) as files:
        files.write_bytes(path, b"the second run's figure")
        path.write_bytes(b"the first run's figure")  # another run finished meanwhile
        with pytest.raises(OSError) as excinfo:
            files.commit()
    one_sentence(excinfo, str(path), "appeared", "left as it is")
    assert path.read_bytes() == b"the first run's figure"
    assert _leftovers(tmp_path, {"figure.png"}) == []


def test_a_free_name_is_taken_without_force_with_its_permissions(tmp_path):
    path = tmp_path / "n.json"
    mask = os.umask(0o022)
    try:
        assert write_text_atomic(path, "new\n", replace=False) == path
    finally:
        os.umask(mask)
    assert path.read_text() == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert _leftovers(tmp_path, {"n.json"}) == []


def test_without_hard_links_the_name_is_still_taken_only_if_free(tmp_path, monkeypatch, one_sentence):
    def no_links(source, target, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    free, taken = tmp_path / "free.txt", tmp_path / "taken.txt"
    write_text_atomic(free, "mine\n", replace=False)
    assert free.read_text() == "mine\n"
    with PendingFiles(replace=False) as files:
        files.write_text(taken, "mine\n")
        taken.write_text("theirs\n")
        with pytest.raises(OSError) as excinfo:
            files.commit()
    one_sentence(excinfo, str(taken), "appeared")
    assert taken.read_text() == "theirs\n"
    assert _leftovers(tmp_path, {"free.txt", "taken.txt"}) == []


def test_with_force_an_existing_regular_file_is_still_replaced(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("old\n")
    write_text_atomic(path, "new\n")
    assert path.read_text() == "new\n"


def test_set_aside_never_replaces_an_old_copy_that_appeared_meanwhile(tmp_path, monkeypatch):
    path, old = tmp_path / "t.csv", tmp_path / "t.old.csv"
    path.write_text("current\n")
    exists = Path.exists

    def appears(self):  # the free name is taken right after set_aside looked at it
        free = exists(self)
        if self == old and not free:
            old.write_text("someone else's\n")
        return free

    monkeypatch.setattr(Path, "exists", appears)
    assert table.set_aside(path) == tmp_path / "t.old2.csv"
    assert old.read_text() == "someone else's\n"
    assert (tmp_path / "t.old2.csv").read_text() == "current\n"
    assert not path.exists()


# -------------------------------------------------------------------------------------------------
# A. Missing folders: checked, not created, until the file is written
# -------------------------------------------------------------------------------------------------

def test_check_outputs_creates_no_folder(tmp_path, one_sentence):
    path = tmp_path / "new" / "deeper" / "t.csv"
    with pytest.raises(ValueError) as excinfo:
        check_outputs({"--out": path})
    one_sentence(excinfo, "--out", "does not exist")
    assert check_outputs({"--out": path}, make_folders=True) == {"--out": path}
    assert list(tmp_path.iterdir()) == []


def test_a_folder_path_through_a_file_is_refused(tmp_path, one_sentence):
    (tmp_path / "notes.txt").write_text("a file")
    for make_folders in (False, True):
        with pytest.raises(ValueError) as excinfo:
            check_outputs({"--out": tmp_path / "notes.txt" / "sub" / "t.csv"}, make_folders=make_folders)
        one_sentence(excinfo, "--out", "notes.txt", "is not a folder")


def test_the_writer_makes_the_folders_and_a_discarded_write_removes_them(tmp_path):
    path = tmp_path / "new" / "deeper" / "t.csv"
    with PendingFiles(make_folders=True) as files:
        files.write_text(path, "x\n")
        assert (tmp_path / "new" / "deeper").is_dir()
    assert list(tmp_path.iterdir()) == []  # discarded: nothing left, not even the folders
    assert write_text_atomic(path, "x\n", make_folders=True) == path
    assert path.read_text() == "x\n"


def test_without_make_folders_the_writer_creates_no_folder(tmp_path, one_sentence):
    with pytest.raises(OSError) as excinfo:
        write_text_atomic(tmp_path / "new" / "t.csv", "x\n")
    one_sentence(excinfo, "t.csv", "no file was left")
    assert list(tmp_path.iterdir()) == []


def test_write_table_can_make_its_folder(tmp_path):
    path = tmp_path / "results" / "t.csv"
    table.write_table(path, ["# h: 1"], [{"class_index": 1}], make_folders=True)
    assert table.load_table(path).rows == [{"class_index": "1"}]


# -------------------------------------------------------------------------------------------------
# A. A study table is locked while a run writes it
# -------------------------------------------------------------------------------------------------

def test_the_lock_holds_the_pid_and_is_removed_afterwards(tmp_path):
    path = tmp_path / "t.csv"
    with table_lock(path) as lock:
        assert lock == tmp_path / "t.csv.lock"
        assert lock.read_text().strip() == str(os.getpid())
    assert list(tmp_path.iterdir()) == []


def test_a_second_lock_of_the_same_table_names_the_file_and_the_holder(tmp_path, one_sentence):
    path = tmp_path / "t.csv"
    with table_lock(path):
        with pytest.raises(TableLocked) as excinfo:
            with table_lock(path):
                pytest.fail("the table was locked twice")
        one_sentence(excinfo, str(path), f"process {os.getpid()}", "t.csv.lock")
        assert isinstance(excinfo.value, OSError)  # (the command line: exit status 2, this sentence)
    with table_lock(path):  # released: free again
        pass


def test_a_lock_held_by_another_process_is_refused(tmp_path, one_sentence):
    path = tmp_path / "t.csv"
    code = ("import sys\nfrom xai_helpers.study.locks import table_lock\nwith table_lock(sys.argv[1]):\n"
            "    print('locked', flush=True)\n    sys.stdin.readline()\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(TableLocked) as excinfo:
            with table_lock(path):
                pytest.fail("the table was locked twice")
        one_sentence(excinfo, str(path), f"process {holder.pid}")
    finally:
        holder.communicate("\n", timeout=30)
    assert holder.returncode == 0
    with table_lock(path):  # the holder ended: free again
        pass


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    path = tmp_path / "t.csv"
    lock = tmp_path / "t.csv.lock"
    lock.write_text(f"{_dead_pid()}\n")
    with table_lock(path):
        assert lock.read_text().strip() == str(os.getpid())
    assert not lock.exists()


def test_the_lock_is_released_when_the_block_fails(tmp_path):
    path = tmp_path / "t.csv"
    with pytest.raises(RuntimeError):
        with table_lock(path):
            raise RuntimeError("the study failed")
    assert not (tmp_path / "t.csv.lock").exists()


def test_without_flock_a_live_pid_holds_and_a_dead_one_is_taken_over(tmp_path, monkeypatch, one_sentence):
    monkeypatch.setattr(locks, "fcntl", None)
    path, lock = tmp_path / "t.csv", tmp_path / "t.csv.lock"
    with table_lock(path):
        assert lock.read_text().strip() == str(os.getpid())
        with pytest.raises(TableLocked) as excinfo:
            with table_lock(path):
                pytest.fail("the table was locked twice")
        one_sentence(excinfo, str(path), f"process {os.getpid()}")
    assert not lock.exists()
    lock.write_text(f"{_dead_pid()}\n")
    with table_lock(path):
        assert lock.read_text().strip() == str(os.getpid())
    assert not lock.exists()


def test_a_lock_can_make_the_tables_folder_and_removes_it_if_left_empty(tmp_path):
    path = tmp_path / "new" / "t.csv"
    with table_lock(path, make_folders=True):
        assert (tmp_path / "new").is_dir()
    assert list(tmp_path.iterdir()) == []
    with table_lock(path, make_folders=True):
        table.write_table(path, ["# h: 1"], [{"class_index": 1}])
    assert path.is_file() and _leftovers(tmp_path / "new", {"t.csv"}) == []


def test_a_lock_in_a_missing_folder_is_one_sentence(tmp_path, one_sentence):
    with pytest.raises(OSError) as excinfo:
        with table_lock(tmp_path / "no" / "t.csv"):
            pass
    one_sentence(excinfo, "t.csv", "Could not lock")


# -------------------------------------------------------------------------------------------------
# B. CSV injection: formulas are quoted, and read back as the text they were
# -------------------------------------------------------------------------------------------------

HYPERLINK = '=HYPERLINK("http://evil.example","click").jpg'


def test_a_formula_file_name_is_quoted_in_the_file_and_read_back_as_it_was(tmp_path):
    path = tmp_path / "t.csv"
    table.write_table(path, ["# h: 1"], [{"photo_index": 0, "file": HYPERLINK}])
    text = path.read_text()
    assert '"\'=HYPERLINK(""http://evil.example"",""click"").jpg"' in text
    assert table.load_table(path).rows[0]["file"] == HYPERLINK
    assert table.read_table(path)[1][0]["file"] == HYPERLINK


@pytest.mark.parametrize("text", ["=1+2", "+1+2", "-1+2", "@SUM(A1)", "\tTAB", "\rCR", "-", "'=already",
                                  "''two", "'plain", "'", "a\nb", "plain"])
def test_every_text_round_trips(tmp_path, text):
    path = tmp_path / "t.csv"
    table.write_table(path, ["# h: 1"], [{"photo_index": 0, "file": text, "n": 1}])
    body = path.read_bytes().decode("utf-8").split("\n", 2)[2]  # (below the header lines)
    written = list(csv.reader(io.StringIO(body, newline="")))[1][1]
    quoted = text[0] in "=+-@\t\r" or text in ("'=already", "''two")
    assert written == ("'" + text if quoted else text)
    assert table.load_table(path).rows[0]["file"] == text
    assert table.read_table(path)[1][0]["file"] == text


def test_negative_numbers_are_numbers_not_text(tmp_path):
    path = tmp_path / "t.csv"
    rows = [{"photo_index": 0, "delta": -0.5, "count": -3, "resumed": "-0.5", "small": "-1e-05", "inf": "-inf"}]
    table.write_table(path, ["# h: 1"], rows)
    assert path.read_text().splitlines()[-1] == "0,-0.5,-3,-0.5,-1e-05,-inf"
    row = table.read_table(path)[1][0]
    assert row["delta"] == -0.5 and row["count"] == -3 and row["resumed"] == -0.5 and row["inf"] == -np.inf


def test_rewriting_loaded_rows_with_formulas_changes_no_byte(tmp_path):
    path = tmp_path / "t.csv"
    table.write_table(path, ["# h: 1"], [{"photo_index": 0, "file": HYPERLINK, "x": -0.25},
                                         {"photo_index": 1, "file": "\rodd", "x": 1.5}])
    before = path.read_bytes()
    loaded = table.load_table(path)
    table.write_table(path, ["# h: 1"], loaded.rows)
    assert path.read_bytes() == before


# -------------------------------------------------------------------------------------------------
# C. Labels files: UTF-8 (with or without a BOM), nothing else, each photo once
# -------------------------------------------------------------------------------------------------

@pytest.fixture
def few_classes(monkeypatch):
    """Three ImageNet-like classes, so that resolving a class name needs no Keras."""
    monkeypatch.setattr(labels_module, "class_labels",
                        lambda: (("n01440764", "tench"), ("n01443537", "goldfish"), ("n01685808", "whiptail")))


@pytest.fixture
def photo_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (40, 40)).save(folder / name)
    return folder


def test_a_labels_file_with_a_byte_order_mark_is_read_with_its_header(tmp_path, photo_folder, few_classes):
    labels = tmp_path / "labels.csv"
    labels.write_bytes("\ufefffile,class\r\na.png,whiptail\r\nb.png,1\r\n".encode("utf-8"))
    photos = folder_photos(photo_folder, labels)
    assert [p.label for p in photos] == [2, 1]


@pytest.mark.parametrize("content, line", [("file,class\na.png,caf\xe9\n".encode("latin-1"), 2),
                                           (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 1),
                                           (b"file,class\na.png,tench\n\0\0binary", 3),
                                           ("file,class\n".encode("utf-16"), 1)])
def test_a_labels_file_that_is_not_utf8_text_names_the_file_and_line(tmp_path, photo_folder, few_classes,
                                                                      content, line, one_sentence):
    labels = tmp_path / "labels.csv"
    labels.write_bytes(content)
    with pytest.raises(ValueError) as excinfo:
        folder_photos(photo_folder, labels)
    one_sentence(excinfo, f"{labels}: not UTF-8 text (line {line}")


def test_a_photo_listed_twice_names_both_lines(tmp_path, photo_folder, few_classes, one_sentence):
    labels = tmp_path / "labels.csv"
    labels.write_text("file,class\na.png,whiptail\nb.png,tench\n a.png ,whiptail\n")
    with pytest.raises(ValueError) as excinfo:
        folder_photos(photo_folder, labels)
    one_sentence(excinfo, str(labels), "line 4", "line 2", "a.png")


def test_a_model_labels_file_with_a_bom_keeps_its_header(tmp_path):
    path = tmp_path / "classes.csv"
    path.write_bytes("\ufeffwnid,name\nn1,cat\nn2,dog\n".encode("utf-8"))
    assert labels_module._read_labels(path) == (("n1", "cat"), ("n2", "dog"))


def test_a_model_labels_file_in_latin1_names_the_file_and_line(tmp_path, one_sentence):
    path = tmp_path / "classes.csv"
    path.write_bytes("name\ncat\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError) as excinfo:
        labels_module._read_labels(path)
    one_sentence(excinfo, f"{path}: not UTF-8 text (line 3")


# -------------------------------------------------------------------------------------------------
# C. Photos: text bombs, animations, names too long
# -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk", ["zTXt", "iTXt"])
def test_a_png_with_a_huge_compressed_text_chunk_names_the_file(tmp_path, chunk, one_sentence):
    info = PngImagePlugin.PngInfo()
    text = "a" * (2 * PngImagePlugin.MAX_TEXT_CHUNK)
    if chunk == "zTXt":
        info.add_text("comment", text, zip=True)
    else:
        info.add_itxt("comment", text, zip=True)
    path = tmp_path / "bomb.png"
    Image.new("RGB", (40, 40)).save(path, pnginfo=info)
    assert path.stat().st_size < 20_000  # (a few kB on disk)
    with pytest.raises(ValueError) as excinfo:
        xh.load_image(path)
    one_sentence(excinfo, str(path), "not a readable image")


def _frames():
    return [Image.new("RGB", (40, 40), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]


@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_an_animation_gives_its_first_frame_and_says_so(tmp_path, suffix):
    if suffix == ".webp" and not features.check("webp"):
        pytest.skip("Pillow without WebP")
    path = tmp_path / f"moving{suffix}"
    first, *rest = _frames()
    first.save(path, save_all=True, append_images=rest, **({"lossless": True} if suffix == ".webp" else {}))
    with pytest.warns(UserWarning) as record:
        x = xh.load_image(path)
    messages = [str(w.message) for w in record]
    assert any(f"moving{suffix}" in m and "3 frames" in m and "frame 1 of 3" in m for m in messages), messages
    assert all(m.count(".") >= 1 and "\n" not in m for m in messages)
    np.testing.assert_allclose(x[..., 0], 1.0, atol=0.02)  # red: the first frame
    np.testing.assert_allclose(x[..., 1:], -1.0, atol=0.02)


def test_a_still_gif_loads_without_a_warning(tmp_path):
    path = tmp_path / "still.gif"
    _frames()[1].save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xh.load_image(path)


def test_a_file_name_too_long_is_said_so_for_a_photo(tmp_path, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        xh.load_image(tmp_path / LONG_NAME)
    message = one_sentence(excinfo, "file name too long", str(tmp_path), "...")
    assert "a" * 100 not in message  # a shortened form of the name


def test_a_file_name_too_long_is_said_so_for_an_output(tmp_path, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        check_outputs({"--out": tmp_path / LONG_NAME})
    message = one_sentence(excinfo, "--out", "file name too long", "...")
    assert "a" * 100 not in message
    with pytest.raises(OSError) as excinfo:
        write_text_atomic(tmp_path / LONG_NAME, "x")
    message = one_sentence(excinfo, "file name too long")
    assert "a" * 100 not in message
    assert list(tmp_path.iterdir()) == []


def test_a_long_but_allowed_name_is_written_its_temporary_name_kept_short(tmp_path):
    path = tmp_path / ("b" * 250 + ".png")
    assert write_text_atomic(path, "x") == path
    assert path.read_text() == "x"


def test_a_labels_file_name_too_long_is_said_so(tmp_path, photo_folder, one_sentence):
    with pytest.raises(ValueError) as excinfo:
        folder_photos(photo_folder, tmp_path / ("l" * 300 + ".csv"))
    one_sentence(excinfo, "file name too long")


# -------------------------------------------------------------------------------------------------
# C. Model files and model names
# -------------------------------------------------------------------------------------------------

def _fake_keras_file(path: Path) -> Path:
    """A zip archive shaped like a .keras file (config.json, metadata.json, weights), ~40 kB."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", '{"keras_version": "3"}')
        archive.writestr("config.json", '{"class_name": "Functional"}')
        archive.writestr("model.weights.h5", np.random.default_rng(0).bytes(40_000))
    return path


@pytest.mark.parametrize("cut", ["half", "end", "first byte"])
def test_a_truncated_keras_file_is_not_a_complete_model_file(tmp_path, cut, one_sentence):
    whole = _fake_keras_file(tmp_path / "whole.keras").read_bytes()
    path = tmp_path / "model.keras"
    path.write_bytes({"half": whole[:len(whole) // 2], "end": whole[:-10], "first byte": whole[:1]}[cut])
    with pytest.raises(ValueError) as excinfo:
        xh.load_model(str(path))
    message = one_sentence(excinfo, str(path), "is not a complete Keras model file")
    assert "File not found" not in message


@pytest.mark.parametrize("case, says", [("no config", "config.json"), ("empty", "empty"),
                                        ("not hdf5", "HDF5")])
def test_other_damaged_model_files_are_one_sentence(tmp_path, case, says, one_sentence):
    if case == "no config":
        path = tmp_path / "model.keras"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("metadata.json", "{}")
    elif case == "empty":
        path = tmp_path / "model.keras"
        path.write_bytes(b"")
    else:
        path = tmp_path / "model.h5"
        path.write_bytes(b"not an HDF5 file at all" * 10)
    with pytest.raises(ValueError) as excinfo:
        xh.load_model(str(path))
    one_sentence(excinfo, str(path), says)


@pytest.fixture
def recorded_loads(monkeypatch):
    """Replace the two loaders behind ``load_model`` with recorders (no model is built)."""
    from xai_helpers.classifier import loading as model

    calls = []
    monkeypatch.setattr(model, "_load_application", lambda *args: calls.append(("application",) + args))
    monkeypatch.setattr(model, "_load_file", lambda *args: calls.append(("file",) + args))
    return calls


def test_a_file_named_like_the_default_model_does_not_change_load_model(tmp_path, monkeypatch, recorded_loads):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "MobileNetV2").write_text("not a model")
    xh.load_model()
    xh.load_model("MobileNetV2")
    xh.load_model("mobilenetv2")
    assert [call[:2] for call in recorded_loads] == [("application", "MobileNetV2")] * 3
    xh.load_model("./MobileNetV2")  # a path: the file
    assert recorded_loads[-1][:2] == ("file", str(tmp_path / "MobileNetV2"))


def test_an_unknown_name_that_is_a_file_here_says_how_to_load_the_file(tmp_path, monkeypatch, recorded_loads,
                                                                     one_sentence):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mymodel").write_text("a model without a suffix")
    with pytest.raises(ValueError) as excinfo:
        xh.load_model("mymodel")
    one_sentence(excinfo, "Unknown model 'mymodel'", "./mymodel")
    assert recorded_loads == []


def test_a_truncated_h5_model_file_is_not_a_complete_model_file(tmp_path, one_sentence):
    h5py = pytest.importorskip("h5py")
    whole = tmp_path / "whole.h5"
    with h5py.File(whole, "w") as f:
        f.create_dataset("weights", data=np.arange(5000, dtype=np.float32))
    path = tmp_path / "model.h5"
    path.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    with pytest.raises(ValueError) as excinfo:
        xh.load_model(str(path))
    one_sentence(excinfo, str(path), "is not a complete Keras model file")


# ---- issue "lose nothing, part three": locks, temporaries and tables that own only their files ----

def _sample_table(path: Path) -> Path:
    header = ["# xai_helpers study table (per photo)", "# photos: 2", "# settings_key: k"]
    return table.write_table(path, header, [{"class_index": 3, "value": 0.5}, {"class_index": 7, "value": -1.0}])


def test_a_lock_file_that_is_a_link_to_a_victim_is_refused_and_the_victim_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "t.csv.lock").symlink_to(victim)
    with pytest.raises(TableLocked, match="t.csv.lock is a symbolic link, not a lock file"):
        with table_lock(tmp_path / "t.csv"):
            pass
    assert victim.read_text() == "precious" and (tmp_path / "t.csv.lock").is_symlink()


@pytest.mark.parametrize("kind", ["fifo", "other file"])
def test_a_lock_file_that_is_no_lock_is_refused_in_one_sentence(tmp_path, kind, one_sentence):
    lock = tmp_path / "t.csv.lock"
    if kind == "fifo":
        os.mkfifo(lock)
    else:
        lock.write_text("my notes, not a PID\n")
    with pytest.raises(TableLocked) as excinfo:
        with table_lock(tmp_path / "t.csv"):
            pass
    one_sentence(excinfo, str(lock), "not a lock file")
    assert kind == "fifo" or lock.read_text() == "my notes, not a PID\n"


def test_a_temporary_left_by_a_killed_run_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "t.csv"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".t.csv.pid{dead}.abc123.tmp"
    stale.write_text("half")
    mine = tmp_path / f".t.csv.pid{os.getpid()}.def456.tmp"   # (this process's: it may still be writing)
    mine.write_text("busy")
    other = tmp_path / ".other.pid1.xyz.tmp"
    other.write_text("not ours")
    write_text_atomic(target, "done")
    assert target.read_text() == "done" and not stale.exists() and mine.exists() and other.exists()


def test_a_table_without_its_column_line_or_checksum_line_is_refused_and_nothing_dropped(tmp_path):
    path = _sample_table(tmp_path / "t.csv")
    lines = path.read_text().splitlines()
    cut = [line for line in lines if not line.startswith("# rows_sha256") and not line.startswith("class_index")]
    path.write_text("\n".join(cut) + "\n")
    before = path.read_bytes()
    with pytest.raises(ValueError, match="no '# rows_sha256:' line"):
        table.load_table(path)
    no_columns = [line for line in lines if not line.startswith("class_index")]
    path.write_text("\n".join(no_columns) + "\n")
    with pytest.raises(ValueError, match="the column line .* is missing"):
        table.load_table(path)
    assert before != path.read_bytes()   # (each damaged file is left as it is: only read)


def test_a_crlf_table_is_read_and_an_empty_or_oversized_one_is_named(tmp_path):
    path = _sample_table(tmp_path / "t.csv")
    rows = table.load_table(path).rows
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert table.load_table(path).rows == rows
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="is empty .0 bytes."):
        table.load_table(empty)
    big = tmp_path / "big.csv"
    with open(big, "wb") as f:
        f.write(b"# xai_helpers study table (per photo)\n# photos: 1\n")
        f.truncate(200 * 2 ** 20)   # sparse: 200 MB that are not there
    with pytest.raises(ValueError, match="far more than its header's 1 photos allow"):
        table.load_table(big)


def test_a_photo_link_in_a_loop_becomes_an_error_row(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "ok.jpg").write_bytes(Path(xh.sample_image("tabby")).read_bytes())
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    photos = {p.name: p for p in folder_photos(folder)}
    assert set(photos) == {"ok.jpg", "loop.jpg"}
    assert photos["loop.jpg"].error and "could not be read" in photos["loop.jpg"].error and photos["ok.jpg"].error is None


def test_a_labels_file_s_bad_class_is_named_as_the_labels_file_s(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(Path(xh.sample_image("tabby")).read_bytes())
    (tmp_path / "labels.csv").write_text("a.jpg,1000\n")
    with pytest.raises(ValueError, match=r"labels.csv, line 1: its class: a class index must be in \[0, 999\]"):
        folder_photos(folder, tmp_path / "labels.csv")
