"""Progress lines for the build's log (``buildlog.note``): on the terminal's file descriptor, never raising."""
from __future__ import annotations

import io
import re
import sys

from xai_helpers.chapters.buildlog import note


def test_a_note_goes_to_the_terminal_with_a_timestamp(capfd):
    note("study: re-analysing 6 photos")
    err = capfd.readouterr().err
    assert re.fullmatch(r"  \[\d\d:\d\d:\d\d\] study: re-analysing 6 photos\n", err)


def test_without_a_terminal_a_note_is_dropped_silently(monkeypatch, capfd):
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # fileno() raises io.UnsupportedOperation
    note("nowhere to go")
    assert sys.stderr.getvalue() == "" and capfd.readouterr().err == ""


def test_a_note_from_a_chapter_run_by_nbmake_reaches_the_log_and_not_the_notebook(tmp_path):
    """As ``make`` runs a chapter: ``pytest --nbmake -s`` (ipykernel then leaves fd 2 uncaptured)."""
    import json
    import subprocess

    import jupytext

    notebook = jupytext.reads("```{code-cell} ipython3\nfrom xai_helpers.chapters.buildlog import note\n"
                              "note('chapter: a long cell starts')\n```\n", fmt="md:myst")
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "chapter.ipynb"
    jupytext.write(notebook, path)
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-s", "--nbmake",
                          "--overwrite", str(path)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"\[\d\d:\d\d:\d\d\] chapter: a long cell starts", run.stdout + run.stderr)
    outputs = json.loads(path.read_text())["cells"][0]["outputs"]
    assert outputs == []
