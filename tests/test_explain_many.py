"""``explain`` on several photos or a folder: a figure and a JSON each in --out-dir, and one index page."""
from __future__ import annotations

import json
import shutil

import pytest

import xai_helpers as xh
from xai_helpers.cli.main import main


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(xh.sample_image("whiptail"), folder / "lizard.jpg")
    shutil.copy(xh.sample_image("tabby"), folder / "cat.png.jpg")
    (folder / "broken.jpg").write_bytes(b"not a photo")
    return folder


def test_a_folder_is_explained_photo_by_photo_into_out_dir_with_an_index_page(photos, tmp_path, capsys, mobilenet):
    out_dir = tmp_path / "explained"
    code = main(["explain", str(photos), "--steps", "2", "--quiet", "--out-dir", str(out_dir)], prog="x")
    captured = capsys.readouterr()
    assert code == 2  # one photo could not be read: named, and the others explained
    assert "broken.jpg is not a readable image" in captured.err and "[3/3]" in captured.err
    assert sorted(p.name for p in out_dir.iterdir()) == ["cat.png.json", "cat.png_explained.png", "index.html",
                                                         "lizard.json", "lizard_explained.png"]
    report = json.loads((out_dir / "lizard.json").read_text())
    assert report["figure"] == str(out_dir / "lizard_explained.png") and "eps = 1 pixel level" in \
        report["attack"]["description"]
    page = (out_dir / "index.html").read_text()
    assert "2 of 3 photos explained" in page and "src='lizard_explained.png'" in page
    assert "broken.jpg" in page and "not explained" in page
    # run again: the outputs exist, so it is refused without --force (nothing replaced) ...
    assert main(["explain", str(photos), "--quiet", "--out-dir", str(out_dir)], prog="x") == 2
    assert "index.html" in capsys.readouterr().err


def test_several_photos_refuse_out_and_json(photos, tmp_path, capsys):
    code = main(["explain", str(photos / "lizard.jpg"), str(photos / "cat.png.jpg"), "--out", "a.png"], prog="x")
    assert code == 2 and "--out-dir" in capsys.readouterr().err


def test_the_top_level_help_shows_explains_options(capsys):
    with pytest.raises(SystemExit):
        main(["--help"], prog="x")
    text = capsys.readouterr().out
    assert "x explain (the default command)" in text and "--eps" in text and "--out-dir" in text
