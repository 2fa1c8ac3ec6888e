"""The PDF of the book (``make pdf``, _build/latex/book.pdf): it exists, every chapter of the table of contents
is in its outline, and no cross-reference was left unresolved (LaTeX prints ``??`` for those).

Run after ``make pdf`` (``make test`` does both). Without a built PDF the tests skip, unless
``XAI_REQUIRE_PDF=1`` (set by ``.ci/run``), when they fail.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PDF = Path(os.environ.get("XAI_BOOK_PDF", ROOT / "_build" / "latex" / "book.pdf"))
REQUIRED = os.environ.get("XAI_REQUIRE_PDF") == "1"


def _chapter_titles() -> list[str]:
    """The first heading of every file in _toc.yml (root, then each part's chapters)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    titles = []
    for name in files:
        text = (ROOT / f"{name}.md").read_text(encoding="utf-8")
        titles.append(re.search(r"^# (.+)$", text, flags=re.MULTILINE).group(1).strip())
    return titles


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\u2019", "'")).strip().lower()


@pytest.fixture(scope="module")
def reader():
    if not PDF.is_file():
        if REQUIRED:
            pytest.fail(f"{PDF} was not built; run make pdf (it needs XeLaTeX).")
        pytest.skip(f"{PDF} not built (make pdf)")
    from pypdf import PdfReader

    return PdfReader(PDF)


def _outline_titles(outline) -> list[str]:
    titles = []
    for item in outline:
        if isinstance(item, list):
            titles += _outline_titles(item)
        else:
            titles.append(item.title)
    return titles


def test_every_chapter_is_in_the_pdf(reader):
    outline = {_normalise(t) for t in _outline_titles(reader.outline)}
    root, *chapters = _chapter_titles()
    # The root page (the introduction) is the PDF's title page; its sections are in the outline.
    first_page = _normalise(reader.pages[0].extract_text() or "")
    assert _normalise(root) in first_page or _normalise(str(reader.metadata.title or "")) == _normalise(root)
    missing = [t for t in chapters if _normalise(t) not in outline]
    assert not missing, f"chapters missing from the PDF's outline: {missing}"
    assert len(reader.pages) > 20


def test_no_reference_is_left_unresolved(reader):
    unresolved = [i + 1 for i, page in enumerate(reader.pages) if "??" in (page.extract_text() or "")]
    assert not unresolved, f"'??' (an unresolved reference) on PDF pages {unresolved}"


def test_the_figures_and_tables_are_in_the_pdf(reader):
    images = sum(len(page.images) for page in reader.pages)
    text = " ".join(page.extract_text() or "" for page in reader.pages)
    assert images >= 15, images  # the chapters' glued figures
    assert len(re.findall(r"Table \d+", text)) >= 10
