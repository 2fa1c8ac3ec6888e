"""The study's tables: atomic writes, honest reading (file and line of every problem), honest resuming.

The runner's bookkeeping is driven here with a fast, deterministic fake of the per-photo analysis
(``fake_study``), so that resuming, refusing and keeping rows are tested in milliseconds; the real
analysis is exercised by ``test_interrupts.py`` and the chapters.
"""
from __future__ import annotations

import dataclasses
import errno
import os

import numpy as np
import pytest

from xai_helpers.study import runner as study
from xai_helpers.study import table
from xai_helpers.study.runner import RunOptions
from xai_helpers.study.settings import StudySettings, photo_order

HEADER = ["# xai_helpers study table (per photo)", "# photos: 3", "# weights_sha256: " + "a" * 64,
          "# xai_helpers_version: 0.1.0", "# settings_key: abc123"]
ROWS = [{"class_index": 7, "name": "tabby, cat", "p": 0.25, "maps": 1.5},
        {"class_index": 3, "name": "whiptail", "p": float("nan")},  # no "maps": an empty cell
        {"class_index": 11, "name": "x", "p": 1e-7, "maps": 2.0}]


def _write(path, rows=ROWS, header=HEADER):
    return table.write_table(path, header, rows)


def _line_of(path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


# -------------------------------------------------------------------------------------------------
# Writing and reading
# -------------------------------------------------------------------------------------------------

def test_table_round_trip_keeps_text_cells_and_leaves_missing_cells_empty(tmp_path):
    path = _write(tmp_path / "t.csv")
    loaded = table.load_table(path)
    assert loaded.columns == ["class_index", "name", "p", "maps"]
    assert loaded.rows[0] == {"class_index": "7", "name": "tabby, cat", "p": "0.25", "maps": "1.5"}
    assert loaded.rows[1] == {"class_index": "3", "name": "whiptail", "p": "nan"}
    assert loaded.lines == [8, 9, 10]  # 5 header lines, the checksum line, the column line
    assert "3,whiptail,nan,\n" in path.read_text()


def test_rewriting_resumed_rows_changes_no_byte_and_never_writes_nan_for_an_empty_cell(tmp_path):
    first = _write(tmp_path / "t.csv").read_bytes()
    again = _write(tmp_path / "t.csv", table.load_table(tmp_path / "t.csv").rows).read_bytes()
    assert again == first
    meta, rows = table.read_table(tmp_path / "t.csv")
    assert np.isnan(rows[1]["maps"]) and rows[0]["maps"] == 1.5


def test_read_table_still_gives_floats_and_nan_for_empty_cells(tmp_path):
    meta, rows = table.read_table(_write(tmp_path / "t.csv"))
    assert meta["settings_key"] == "abc123" and meta["table"] == "per photo"
    assert len(meta[table.CHECKSUM_KEY]) == 64
    assert rows[0]["class_index"] == 7.0 and rows[0]["name"] == "tabby, cat"
    assert np.isnan(rows[1]["maps"])


def test_the_committed_study_tables_read_cleanly():
    from xai_helpers.chapters.paths import RESULTS_DIR

    for name in ("study.csv", "study_sanity.csv"):
        if (RESULTS_DIR / name).is_file():
            meta, rows = table.read_table(RESULTS_DIR / name)
            assert len(rows) == int(meta["photos"]) * (4 if "sanity" in name else 1)


def test_a_table_write_that_fails_leaves_the_previous_table(tmp_path, monkeypatch, one_sentence):
    path = _write(tmp_path / "t.csv")
    before = path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as excinfo:
        _write(path, ROWS * 1 + [{"class_index": 99, "name": "new"}])
    one_sentence(excinfo, str(path))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


# -------------------------------------------------------------------------------------------------
# Damaged tables: file and line named, nothing dropped
# -------------------------------------------------------------------------------------------------

def test_a_table_cut_mid_row_names_the_file_and_the_line(tmp_path, one_sentence):
    path = _write(tmp_path / "t.csv")
    data = path.read_bytes()
    path.write_bytes(data[:data.index(b"11,x") + 6])  # the last row cut after two cells
    with pytest.raises(ValueError) as excinfo:
        table.load_table(path)
    one_sentence(excinfo, str(path), "line 10", "cells")


def test_a_repeated_photo_names_both_lines(tmp_path, one_sentence):
    path = tmp_path / "t.csv"
    _write(path, ROWS + [{"class_index": 3, "name": "again", "p": 0.5}])
    with pytest.raises(ValueError) as excinfo:
        table.load_table(path)
    one_sentence(excinfo, str(path), "line 11", "line 9", "class_index 3")


def test_sanity_rows_repeat_a_photo_once_per_stage_but_not_a_stage(tmp_path, one_sentence):
    rows = [{"class_index": 1, "stage": s, "gc_spearman": 0.1} for s in ("logits", "+Conv_1")]
    assert len(table.load_table(_write(tmp_path / "s.csv", rows)).rows) == 2
    _write(tmp_path / "s.csv", rows + rows[:1])
    with pytest.raises(ValueError) as excinfo:
        table.load_table(tmp_path / "s.csv")
    one_sentence(excinfo, "line 10", "repeats line 8")


def test_an_edited_row_is_caught_by_the_checksum_line(tmp_path, one_sentence):
    path = _write(tmp_path / "t.csv")
    path.write_text(path.read_text().replace("0.25", "0.95"))
    with pytest.raises(ValueError) as excinfo:
        table.load_table(path)
    one_sentence(excinfo, str(path), "checksum", f"line {_line_of(path, table.CHECKSUM_KEY)}")
    # Deleting the checksum line does not make the edit acceptable: a table without it is refused too.
    lines = path.read_text().splitlines(True)
    path.write_text("".join(line for line in lines if table.CHECKSUM_KEY not in line))
    with pytest.raises(ValueError, match=table.CHECKSUM_KEY):
        table.load_table(path)


def test_a_class_index_that_is_not_an_index_is_reported(tmp_path, one_sentence):
    path = _write(tmp_path / "t.csv")
    path.write_text(path.read_text().replace("\n11,x", "\nNone,x"))
    with pytest.raises(ValueError) as excinfo:
        table.load_table(path)
    one_sentence(excinfo, str(path), "line 10", "class_index")


# -------------------------------------------------------------------------------------------------
# Resuming: same settings, weights and version, or one sentence
# -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, words", [("settings_key", "zzz999", "other settings"),
                                               ("weights_sha256", "b" * 64, "other weights"),
                                               ("xai_helpers_version", "0.0.9", "other xai_helpers version"),
                                               ("table", "sanity check", "other kind of table")])
def test_a_table_made_otherwise_is_not_resumed(tmp_path, key, value, words, one_sentence):
    made = table.load_table(_write(tmp_path / "t.csv"))
    table.check_resumable(made, HEADER)  # the same: fine
    if key == "table":
        other = [f"# xai_helpers study table ({value})"] + HEADER[1:]
    else:
        other = [line if not line.startswith(f"# {key}:") else f"# {key}: {value}" for line in HEADER]
    with pytest.raises(ValueError) as excinfo:
        table.check_resumable(made, other)
    one_sentence(excinfo, str(made.path), words, "--force-new")


def test_set_aside_finds_a_free_name(tmp_path):
    for n, expected in enumerate(["t.old.csv", "t.old2.csv", "t.old3.csv"]):
        (tmp_path / "t.csv").write_text(str(n))
        assert table.set_aside(tmp_path / "t.csv").name == expected
        assert not (tmp_path / "t.csv").exists()
    assert (tmp_path / "t.old2.csv").read_text() == "1"


# -------------------------------------------------------------------------------------------------
# The runner's bookkeeping, with a fast fake analysis
# -------------------------------------------------------------------------------------------------

def fake_rows(class_indices, settings) -> list[dict]:
    """Deterministic rows like the study's: misclassified photos (every third) lack the map columns."""
    rows = []
    for c in class_indices:
        c = int(c)
        row = {"class_index": c, "wnid": f"n{c:08d}", "name": f"class {c}", "clean_correct": int(c % 3 != 0),
               "clean_p_true": (c % 97) / 97 + 1e-9, "ig_steps": settings.ig_steps}
        if c % 3:
            row["gc_advadv_spearman"] = float("nan") if c % 5 == 0 else c / 1000.0
        rows.append(row)
    return rows


@pytest.fixture
def fake_study(monkeypatch):
    """The study runner with the analysis, the model and the sanity check replaced by fast fakes."""
    calls = []

    def analyse_batch(model, class_indices, settings):
        calls.append(list(class_indices))
        return fake_rows(class_indices, settings)

    monkeypatch.setattr("xai_helpers.study.rows.analyse_batch", analyse_batch)
    monkeypatch.setattr("xai_helpers.study.sanity.sanity_check", lambda model, chosen, settings, progress=False: [
        {"class_index": c, "stage": "logits"} for c in chosen])
    monkeypatch.setattr("xai_helpers.classifier.loading.load_model", lambda *a, **k: None)
    return calls


def _cells(path):
    return [{k: v for k, v in row.items() if k not in ("seconds", "ran_on")} for row in table.load_table(path).rows]


def test_resuming_adds_only_the_missing_photos_and_keeps_the_rest_byte_for_byte(tmp_path, fake_study):
    out = tmp_path / "s.csv"
    study.run_study(4, out, options=RunOptions(batch_size=2, sanity_photos=0, progress=False))
    first = out.read_text().splitlines()
    study.run_study(6, out, options=RunOptions(batch_size=2, sanity_photos=0, progress=False))
    assert [len(c) for c in fake_study] == [2, 2, 2]  # 4 photos, then only the 2 new ones
    after = out.read_text().splitlines()
    old_rows = [line for line in first if not line.startswith("#")][1:]
    assert all(line in after for line in old_rows)
    assert _cells(out) == [{k: table.format_cell(v) for k, v in r.items() if k != "seconds"}
                           for r in fake_rows(photo_order()[:6], StudySettings())]
    # Resuming with fewer photos keeps every row (nothing is dropped) and analyses nothing.
    study.run_study(2, out, options=RunOptions(batch_size=2, sanity_photos=0, progress=False))
    assert len(table.load_table(out).rows) == 6 and len(fake_study) == 3


def test_resuming_with_other_settings_is_refused_and_the_table_kept(tmp_path, fake_study, one_sentence):
    out = tmp_path / "s.csv"
    study.run_study(3, out, options=RunOptions(batch_size=3, sanity_photos=0, progress=False))
    before = out.read_bytes()
    other = dataclasses.replace(StudySettings(), ig_steps=8)
    with pytest.raises(ValueError) as excinfo:
        study.run_study(3, out, other, RunOptions(sanity_photos=0, progress=False))
    one_sentence(excinfo, str(out), "other settings", "--force-new")
    assert out.read_bytes() == before and len(fake_study) == 1


def test_force_new_keeps_the_old_table_beside_the_new_one(tmp_path, fake_study, capsys):
    out = tmp_path / "s.csv"
    study.run_study(3, out, options=RunOptions(batch_size=3, sanity_photos=1, progress=False))
    before = out.read_bytes()
    other = dataclasses.replace(StudySettings(), ig_steps=8)
    study.run_study(2, out, other, RunOptions(sanity_photos=1, progress=False, force_new=True))
    assert (tmp_path / "s.old.csv").read_bytes() == before
    assert (tmp_path / "s_sanity.old.csv").exists()
    assert str(tmp_path / "s.old.csv") in capsys.readouterr().err
    assert [r["ig_steps"] for r in table.load_table(out).rows] == ["8", "8"]


def test_a_damaged_table_is_not_resumed_and_not_overwritten(tmp_path, fake_study, one_sentence):
    out = tmp_path / "s.csv"
    study.run_study(3, out, options=RunOptions(batch_size=3, sanity_photos=0, progress=False))
    text = out.read_text()
    out.write_text(text + text.splitlines()[-1] + "\n")  # the last row twice
    with pytest.raises(ValueError) as excinfo:
        study.run_study(5, out, options=RunOptions(sanity_photos=0, progress=False))
    one_sentence(excinfo, str(out), "repeats")
    assert out.read_text() == text + text.splitlines()[-1] + "\n"


def test_the_study_table_and_its_sanity_table_cannot_be_a_folder(tmp_path, fake_study, one_sentence):
    (tmp_path / "s_sanity.csv").mkdir()
    with pytest.raises(ValueError) as excinfo:
        study.run_study(2, tmp_path / "s.csv", options=RunOptions(sanity_photos=1, progress=False))
    one_sentence(excinfo, "s_sanity.csv", "folder")
    assert fake_study == []  # refused before any work
