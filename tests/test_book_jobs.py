"""tools/book_jobs.py: which chapters run (the stale ones, slowest first), and a pool that reports failures."""
from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("book_jobs", ROOT / "tools" / "book_jobs.py")
book_jobs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(book_jobs)


def test_every_chapter_is_found_once_and_the_slow_ones_come_first():
    names = book_jobs.chapters()
    assert len(names) == len(set(names)) and names
    assert all((ROOT / "book" / f"{n}.md").is_file() for n in names)
    slow = [n for n in book_jobs.SLOW_FIRST if n in names]
    assert names[:len(slow)] == slow


def test_a_chapter_is_stale_without_its_executed_notebook_or_when_an_input_is_newer(tmp_path, monkeypatch):
    monkeypatch.setattr(book_jobs, "EXECUTED", tmp_path)
    chapter = book_jobs.chapters()[0]
    assert book_jobs.stale(chapter)
    done = tmp_path / "book" / f"{chapter}.ipynb"
    done.parent.mkdir(parents=True)
    done.write_text("{}")
    future = time.time() + 3600
    os.utime(done, (future, future))
    assert not book_jobs.stale(chapter)
    os.utime(done, (0, 0))
    assert book_jobs.stale(chapter)


def test_the_pool_prefixes_lines_and_reports_a_failing_job(capsys):
    pool = book_jobs.Pool(2)
    failed = []
    pool.run("good", [sys.executable, "-c", "print('hello')"], dict(os.environ))
    pool.run("bad", [sys.executable, "-c", "import sys; print('oops'); sys.exit(3)"], dict(os.environ),
             on_failure=lambda: failed.append(True))
    out = capsys.readouterr().out
    assert "  [good] hello" in out and "== good ran in" in out
    assert "  [bad] oops" in out and "== bad FAILED in" in out
    assert pool.failed == ["bad"] and failed == [True]
