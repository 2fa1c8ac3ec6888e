"""results_path finds the committed tables through the package, from any working folder."""
from __future__ import annotations

import os

import pytest

import xai_helpers as xh


def test_results_path_finds_the_study_table_from_another_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = xh.results_path("study.csv")
    assert path.is_absolute() and path.is_file() and path.parent.name == "results"
    assert os.path.samefile(path.parent.parent / "xai_helpers", os.path.dirname(xh.__file__))


def test_results_path_names_the_folder_when_a_table_is_missing(one_sentence):
    with pytest.raises(FileNotFoundError) as excinfo:
        xh.results_path("no_such_table.csv")
    one_sentence(excinfo, "no_such_table.csv", "results")
