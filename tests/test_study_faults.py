"""Studies that lose nothing: folder rows keyed by the photo itself, unreadable photos as rows, Ray faults.

The runner's bookkeeping is exercised with the real ``analyse_batch`` (its photo reading and error rows)
around a fast fake of the analysis proper (``study_rows._analyse``) and no model; the real analysis runs in
``test_study_images`` (resume after a change) and ``test_distributed`` (a killed Ray worker).
"""
from __future__ import annotations

import os
import shutil
import signal
import time

import pytest

import xai_helpers as xh
from xai_helpers.cli.main import main
from xai_helpers.study import rows as study_rows
from xai_helpers.study import runner as study
from xai_helpers.study import table
from xai_helpers.study.distributed import WorkerLost
from xai_helpers.study.photos import SAMPLE_SOURCE, StudyPhoto
from xai_helpers.study.runner import RunOptions
from xai_helpers.study.settings import StudySettings

SETTINGS = StudySettings()


def _fake_analysis(model, records, xs, keys, settings):
    """One row a photo from what was read of it (its pixels' mean) and its seed: cheap and deterministic."""
    rows = []
    for record, x in zip(records, xs):
        photo = record.photo
        row = ({"file": photo.name, "sha256": photo.sha256, "status": "ok"} if isinstance(photo, StudyPhoto)
               else {"class_index": photo.class_index, "status": "ok"})
        rows.append({**row, "pixel_mean": float(x.mean()), "seed_id": record.seed_id})
    return rows


@pytest.fixture(autouse=True)
def fast_analysis(monkeypatch):
    import xai_helpers.classifier.loading

    monkeypatch.setattr(study_rows, "_analyse", _fake_analysis)
    monkeypatch.setattr(study_rows, "input_shape", lambda model: (64, 64, 3))
    monkeypatch.setattr(xai_helpers.classifier.loading, "load_model", lambda *args, **kwargs: None)


@pytest.fixture
def folder(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, cls in (("a_cat.jpg", "tabby"), ("b_lizard.jpg", "whiptail"), ("c_car.jpg", "sports_car")):
        shutil.copy(xh.sample_image(cls), photos / name)
    return photos


def _run(n, out, photos=None, **kwargs):
    return study.run_study(n, out, SETTINGS, RunOptions(batch_size=2, sanity_photos=0, progress=False, images=photos, **kwargs))


def _cells(path):
    """Rows without the columns that say when and where they were made."""
    return [{k: v for k, v in r.items() if k not in ("seconds", "ran_on")} for r in table.load_table(path).rows]


def test_a_photo_added_in_front_is_analysed_and_no_row_moves_to_another_photo(folder, tmp_path):
    out = _run(2, tmp_path / "t.csv", folder)
    before = {r["file"]: r for r in table.load_table(out).rows}
    shutil.copy(xh.sample_image("goldfish"), folder / "00new.jpg")
    _run(3, out, folder)  # the first 3 of the sorted folder: the new photo, a_cat, b_lizard
    rows = table.load_table(out).rows
    assert [r["file"] for r in rows] == ["00new.jpg", "a_cat.jpg", "b_lizard.jpg"]
    assert rows[1:] == [before["a_cat.jpg"], before["b_lizard.jpg"]]  # kept to the cell
    # and every row is what a fresh run on today's folder gives (seeds come from the bytes, not the position)
    assert _cells(out) == _cells(_run(3, tmp_path / "fresh.csv", folder))
    assert table.load_table(out).meta["photo_files"].startswith("4 files, list sha256 ")


def test_a_photo_whose_bytes_changed_is_refused_naming_it(folder, tmp_path, capsys):
    out = _run(3, tmp_path / "t.csv", folder)
    before = out.read_bytes()
    shutil.copy(xh.sample_image("goldfish"), folder / "c_car.jpg")
    code = main(["study", "--images", str(folder), "--photos", "3", "--out", str(out), "--quiet",
                 "--sanity-photos", "0"], prog="x")
    err = capsys.readouterr().err
    assert code == 2 and "1 photo(s) whose bytes changed" in err and "(c_car.jpg)" in err
    assert err.count("\n") == 1 and out.read_bytes() == before
    # --force-new keeps the old table aside and starts anew
    assert main(["study", "--images", str(folder), "--photos", "3", "--out", str(out), "--quiet", "--force-new",
                 "--sanity-photos", "0"], prog="x") == 0
    assert (tmp_path / "t.old.csv").read_bytes() == before


def test_rows_of_photos_removed_from_the_folder_are_kept(folder, tmp_path):
    out = _run(3, tmp_path / "t.csv", folder)
    (folder / "a_cat.jpg").unlink()
    shutil.copy(xh.sample_image("goldfish"), folder / "d_fish.jpg")
    _run(3, out, folder)  # b_lizard, c_car kept; d_fish new; a_cat's row kept after the folder's photos
    assert [r["file"] for r in table.load_table(out).rows] == ["b_lizard.jpg", "c_car.jpg", "d_fish.jpg",
                                                               "a_cat.jpg"]


def test_a_table_of_other_photos_is_not_resumed(folder, tmp_path, one_sentence):
    sample_table = _run(2, tmp_path / "sample.csv")
    assert table.load_table(sample_table).meta["photo_source"].startswith("sample photos")
    with pytest.raises(ValueError) as excinfo:
        _run(2, sample_table, folder)
    one_sentence(excinfo, "other photos", "sample photos", f"folder {folder.resolve()}")
    folder_table = _run(2, tmp_path / "folder.csv", folder)
    with pytest.raises(ValueError) as excinfo:
        _run(2, folder_table)
    one_sentence(excinfo, "other photos")
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    with pytest.raises(ValueError) as excinfo:
        _run(2, folder_table, other)
    one_sentence(excinfo, "other photos", str(other.resolve()))


def test_a_folder_table_keyed_by_position_is_not_resumed(folder, tmp_path, one_sentence):
    """Tables made before photos were keyed by content (photo_index, no photo_source line): refused."""
    out = _run(2, tmp_path / "t.csv", folder)
    made = table.load_table(out)
    header = [line for line in out.read_text().splitlines() if line.startswith("#")
              and not line.startswith(("# photo_", f"# {table.CHECKSUM_KEY}"))]
    rows = [{"photo_index": i, **{k: v for k, v in r.items() if k != "sha256"}} for i, r in enumerate(made.rows)]
    table.write_table(out, header, rows)
    with pytest.raises(ValueError) as excinfo:
        _run(2, out, folder)
    one_sentence(excinfo, "rows keyed by position")


@pytest.fixture
def bad_photos(folder):
    """The folder with three files that are not photos: a link to /etc/passwd, a 1 GB sparse file, an
    empty file, each named .jpg."""
    (folder / "d_passwd.jpg").symlink_to("/etc/passwd")
    with open(folder / "e_sparse.jpg", "wb") as f:
        f.truncate(2 ** 30)
    (folder / "f_empty.jpg").write_bytes(b"")
    return folder


def test_unreadable_photos_become_rows_with_their_error_and_the_study_goes_on(bad_photos, tmp_path, capsys):
    out = tmp_path / "t.csv"
    start = time.perf_counter()
    code = main(["study", "--images", str(bad_photos), "--out", str(out), "--quiet",   # (every photo: 6)
                 "--sanity-photos", "0", "--batch-size", "4"], prog="x")
    err = capsys.readouterr().err
    assert code == 0, err
    assert "x study: 3 photo(s) could not be read and were skipped" in err and "status 'error'" in err
    assert time.perf_counter() - start < 60
    rows = {r["file"]: r for r in table.load_table(out).rows}
    assert [rows[name]["status"] for name in sorted(rows)] == ["ok"] * 3 + ["error"] * 3
    assert "d_passwd.jpg is not a readable image" in rows["d_passwd.jpg"]["error"]
    assert "e_sparse.jpg is not a readable image" in rows["e_sparse.jpg"]["error"]
    assert "f_empty.jpg is empty (0 bytes)" in rows["f_empty.jpg"]["error"]
    assert "pixel_mean" not in rows["d_passwd.jpg"] and "pixel_mean" in rows["c_car.jpg"]
    kept, skipped = table.analysed_rows(table.read_table(out)[1])
    assert skipped == 3 and sorted(r["file"] for r in kept) == ["a_cat.jpg", "b_lizard.jpg", "c_car.jpg"]
    # --strict: the same rows, and exit status 2
    assert main(["study", "--images", str(bad_photos), "--photos", "6", "--out", str(out), "--quiet", "--strict",
                 "--sanity-photos", "0"], prog="x") == 2
    # A photo that could not be read is tried again on resume: fixed, its row becomes a real one.
    (bad_photos / "f_empty.jpg").write_bytes((bad_photos / "a_cat.jpg").read_bytes())
    capsys.readouterr()
    code = main(["study", "--images", str(bad_photos), "--photos", "6", "--out", str(out), "--quiet",
                 "--sanity-photos", "0"], prog="x")
    assert code == 0, capsys.readouterr().err
    rows = {r["file"]: r for r in table.load_table(out).rows}
    assert rows["f_empty.jpg"]["status"] == "ok" and len(rows) == 6


def test_a_photo_the_folder_cannot_open_is_a_row_too(folder, tmp_path, monkeypatch):
    from xai_helpers.study import photos as study_photos

    monkeypatch.setattr(study_photos, "MAX_PHOTO_BYTES", 1000)  # every photo "too large": listed with its error, never read
    out = _run(2, tmp_path / "t.csv", folder)
    rows = table.load_table(out).rows
    assert {r["status"] for r in rows} == {"error"} and "larger than any photo the study reads" in rows[0]["error"]


def test_ray_workers_that_keep_dying_end_the_study_with_its_rows_kept_and_exit_1(tmp_path, monkeypatch, capsys):
    import xai_helpers.study.distributed as distributed

    def dying_shards(shards, analyse, load, address=None, workers=None):
        yield shards[0], analyse(load(), shards[0]), 1.0
        raise WorkerLost(shards[1:], "WorkerCrashedError")

    monkeypatch.setattr(distributed, "ray_shards", dying_shards)
    out = tmp_path / "t.csv"
    code = main(["study", "--photos", "6", "--batch-size", "2", "--ray", "--out", str(out), "--quiet",
                 "--sanity-photos", "0"], prog="x")
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and err.count("\n") == 1
    assert "a Ray worker died on 2 batch(es) (4 photo(s)) 3 times in a row" in err
    assert f"2 rows kept in {out}" in err and len(table.load_table(out).rows) == 2
    # the same command resumes: the two finished photos are kept and the other four analysed
    monkeypatch.undo()
    monkeypatch.setattr(study_rows, "_analyse", _fake_analysis)
    monkeypatch.setattr(study_rows, "input_shape", lambda model: (64, 64, 3))
    import xai_helpers.classifier.loading
    monkeypatch.setattr(xai_helpers.classifier.loading, "load_model", lambda *args, **kwargs: None)
    assert main(["study", "--photos", "6", "--batch-size", "2", "--out", str(out), "--quiet",
                 "--sanity-photos", "0"], prog="x") == 0
    assert len(table.load_table(out).rows) == 6


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1", "nonsense"])
def test_an_unreachable_ray_address_fails_within_30_s_in_one_sentence(address, tmp_path, capsys):
    pytest.importorskip("ray")
    start = time.perf_counter()
    code = main(["study", "--photos", "2", "--ray", address, "--out", str(tmp_path / "t.csv"), "--quiet",
                 "--sanity-photos", "0"], prog="x")
    err = capsys.readouterr().err
    assert code == 2 and time.perf_counter() - start < 30
    assert address in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "t.csv").exists()


def test_error_rows_are_counted_apart(tmp_path):
    rows = [{"status": "ok", "x": 1.0}, {"status": "error", "error": "e"}, {"x": 2.0}]
    kept, skipped = table.analysed_rows(rows)
    assert skipped == 1 and kept == [rows[0], rows[2]]


def test_the_sample_photos_header_names_its_source(tmp_path):
    out = _run(2, tmp_path / "t.csv")
    assert table.load_table(out).meta["photo_source"] == SAMPLE_SOURCE
    assert "photo_files" not in table.load_table(out).meta
    assert os.path.getsize(out) > 0


def test_a_ray_address_where_something_else_answers_fails_within_30_s(tmp_path, capsys):
    """A port that takes the connection but is no Ray cluster (here an HTTP server): Ray's own handshake,
    in a child process, is given up after its time limit, in one sentence naming the address."""
    pytest.importorskip("ray")
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"127.0.0.1:{server.server_address[1]}"
    try:
        start = time.perf_counter()
        code = main(["study", "--photos", "2", "--ray", address, "--out", str(tmp_path / "t.csv"), "--quiet",
                     "--sanity-photos", "0"], prog="x")
        err = capsys.readouterr().err
    finally:
        server.shutdown()
    assert code == 2 and time.perf_counter() - start < 30, err
    assert address in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "t.csv").exists() and not (tmp_path / "t.csv.lock").exists()


def _handshake_child(address: str) -> int | None:
    """The pid of a process running Ray's handshake with ``address`` (``distributed._HANDSHAKE``), if any."""
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        if "ray.init(address=" in command and address in command:
            return int(entry)
    return None


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the handshake's child process in /proc")
def test_sigterm_during_ray_s_handshake_ends_the_study_and_its_child(tmp_path):
    """A cluster address that takes the connection and then says nothing keeps Ray's handshake waiting;
    SIGTERM (Ctrl-C takes the same path: both raise ``KeyboardInterrupt``) must then end the study at once
    (exit 130, the interrupt's message, no lock left) and the handshake's child process with it."""
    pytest.importorskip("ray")
    import socket
    import subprocess
    import sys

    silent = socket.create_server(("127.0.0.1", 0))   # accepts (the backlog), never answers
    address = f"127.0.0.1:{silent.getsockname()[1]}"
    out = tmp_path / "t.csv"
    proc = subprocess.Popen([sys.executable, "-m", "xai_helpers", "study", "--photos", "2", "--ray", address,
                             "--out", str(out), "--quiet", "--sanity-photos", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, child = time.time() + 60, None
        while child is None and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
            child = _handshake_child(address)
        assert child is not None, proc.communicate(timeout=60)
        time.sleep(1.0)   # (the child is importing Ray or waiting on the silent port)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        silent.close()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err, err
    if os.path.exists(f"/proc/{child}"):   # (at most a zombie, waiting for init to reap it)
        with open(f"/proc/{child}/stat") as stat:
            assert "Z" in stat.read().split()[2]
    assert not (tmp_path / "t.csv.lock").exists()


def test_a_folder_study_asked_for_a_sanity_check_says_there_is_none_and_runs(folder, tmp_path, capsys):
    """The sanity check randomises the model on sample photos chosen by class: a folder's photos have none
    (the default --sanity-photos 20 used to stop a folder study at its end, 'need at least one array')."""
    out = study.run_study(3, tmp_path / "t.csv", SETTINGS, RunOptions(batch_size=2, sanity_photos=20, images=folder))
    assert "no sanity table: it runs on the sample photos, and this study's photos are a folder's" in \
        capsys.readouterr().err
    assert len(table.load_table(out).rows) == 3 and not (tmp_path / "t_sanity.csv").exists()
