"""The book's chapters are MyST markdown notebooks (book/X.md, the source of truth) paired with a committed
book/X.ipynb without outputs, which nbmake executes. These tests keep each pair in sync.

Regenerate a pair with ``jupytext --update --to ipynb book/X.md`` (or ``make sync`` for all).
"""
from __future__ import annotations

import json
from pathlib import Path

import jupytext
import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"


def _front_matter(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return ""
    end = text.find("\n---", 3)
    return text[3:end] if end > 0 else ""


def _is_notebook_md(path: Path) -> bool:
    return "jupytext:" in _front_matter(path)


CHAPTERS = sorted(p for p in BOOK.glob("*.md") if _is_notebook_md(p))
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))


def _cells(notebook) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_has_a_paired_ipynb_with_the_same_cells(chapter):
    paired = chapter.with_suffix(".ipynb")
    assert paired.is_file(), (f"{paired.name} is missing; "
                              f"run: jupytext --update --to ipynb book/{chapter.name}")
    from_md = _cells(jupytext.read(chapter))
    from_ipynb = _cells(jupytext.read(paired))
    assert from_ipynb == from_md, (f"{paired.name} is out of date with {chapter.name}; "
                                   f"run: jupytext --update --to ipynb book/{chapter.name}")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_declares_the_python3_kernel(chapter):
    kernelspec = jupytext.read(chapter).metadata.get("kernelspec", {})
    assert kernelspec.get("name") == "python3", f"{chapter.name} has no python3 kernelspec"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_ipynb_has_no_outputs(notebook):
    data = json.loads(notebook.read_text(encoding="utf-8"))
    for index, cell in enumerate(data["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs", []) == [], f"{notebook.name} cell {index} has outputs"
            assert cell.get("execution_count") is None, f"{notebook.name} cell {index} was executed"


def test_every_ipynb_in_the_book_has_its_markdown_source():
    orphans = [p.name for p in NOTEBOOKS if p.with_suffix(".md") not in CHAPTERS]
    assert not orphans, f"notebooks without a jupytext .md source: {orphans}"
