"""``explain`` on several photos or a folder: a figure and a JSON each in --out-dir, unique names, resumable,
and one index page whose links cannot script."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import xai_helpers as xh
from xai_helpers.cli.explain import output_names, safe_name, shown
from xai_helpers.cli.index_page import index_page, local_url, visible
from xai_helpers.cli.main import main

FAST = ["--steps", "2", "--eps", "1", "--quiet"]


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(xh.sample_image("whiptail"), folder / "lizard.jpg")
    shutil.copy(xh.sample_image("tabby"), folder / "cat.png.jpg")
    (folder / "broken.jpg").write_bytes(b"not a photo")
    return folder


def test_a_folder_is_explained_photo_by_photo_then_resumed(photos, tmp_path, capsys, mobilenet):
    out_dir = tmp_path / "explained"
    code = main(["explain", str(photos), *FAST, "--out-dir", str(out_dir)], prog="x")
    captured = capsys.readouterr()
    assert code == 2  # one photo could not be read: named, and the others explained
    assert "broken.jpg is not a readable image" in captured.err and "[3/3]" in captured.err
    assert sorted(p.name for p in out_dir.iterdir()) == ["cat.png.json", "cat.png_explained.png", "index.html",
                                                         "lizard.json", "lizard_explained.png"]
    report = json.loads((out_dir / "lizard.json").read_text())
    assert report["figure"] == str(out_dir / "lizard_explained.png") and "eps = 1 pixel level" in \
        report["attack"]["description"]
    assert report["photo_sha256"] and report["settings"]["steps"] == 2
    page = (out_dir / "index.html").read_text()
    assert "2 of 3 photos explained" in page and "src='./lizard_explained.png'" in page
    assert "href='./lizard.json'" in page and "broken.jpg" in page and "not explained" in page
    # the same command again keeps the finished photos (same bytes, same settings) and tries the rest
    before = (out_dir / "lizard_explained.png").stat().st_mtime_ns
    assert main(["explain", str(photos), *FAST, "--out-dir", str(out_dir)], prog="x") == 2
    err = capsys.readouterr().err
    assert err.count("(kept: explained before with these settings)") == 2
    assert (out_dir / "lizard_explained.png").stat().st_mtime_ns == before
    assert (out_dir / "index.html").read_text().count("<article") == 3


def test_two_photos_of_one_name_in_two_folders_get_two_names(tmp_path):
    a, b = tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg"
    c, d = tmp_path / "p" / "q" / "x.jpg", tmp_path / "r" / "q" / "x.jpg"
    names = output_names([a, b, c, d, tmp_path / "index.jpg"])
    assert len(set(names)) == 5 and names[:2] == ["a_x", "b_x"]
    assert names[2].startswith("q_x_") and names[3].startswith("q_x_") and names[4] != "index"


@pytest.mark.parametrize("name", ["javascript:document.title='PWNED3';x", "100%#?.x", "new\nline",
                                  "<img src=x onerror=alert(1)>", "evil\u202egnp.exe", "..hidden", ""])
def test_output_names_are_safe_file_and_url_parts(name):
    safe = safe_name(name)
    assert safe and not safe.startswith(".") and all(c.isalnum() or c in "._-" for c in safe)


def test_printed_paths_show_controls_and_bidirectional_marks():
    assert shown(Path("/tmp/evil\u202egnp.exe\nwrote x")) == "/tmp/evil\\u202egnp.exe\\u000awrote x"


def _report(name: str) -> dict:
    return {"attack": {"succeeded": True}, "eps": {"levels": 1.0},
            "clean": {"top5": [{"name": name, "probability": 0.9}]},
            "adversarial": {"top5": [{"name": "<b>x</b>", "probability": 0.5}]},
            "interventions": {"attribution": {"top_share": 0.83}}}


HOSTILE = ["javascript:document.title='PWNED3';x.jpg", "100%#?.jpg", "a\nb.jpg", "<img src=x onerror=alert(1)>.jpg",
           "evil\u202egnp.jpg"]


def test_the_index_page_encodes_every_link_and_escapes_every_name():
    entries = [{"photo": name, "figure": f"{safe_name(Path(name).stem)}_explained.png",
                "json": f"{safe_name(Path(name).stem)}.json", "report": _report(name)} for name in HOSTILE]
    page = index_page(entries + [{"photo": "<script>x</script>.jpg", "error": "<b>bad</b>"}], "5 photos")
    assert "<script>x" not in page and "<img src=x" not in page and "href='javascript" not in page
    assert "\u202e" not in page and "\\u202e" in page and "carry 83% of the attack" in page
    for entry in entries:
        assert f"href='{local_url(entry['figure'])}'" in page
    assert local_url("100%#?.png") == "./100%25%23%3F.png" and visible("a\nb") == "a\\u000ab"
