"""The book's length and density, read from the built HTML as a reader meets it.

- The main text (the introduction and every part but "Further checks") is at most ``MAIN_WORDS`` words of
  prose: code, tables, maths, figure and table references and citations are not counted.
- No paragraph of any chapter carries more than ``NUMBERS_PER_PARAGRAPH`` numbers (glued values and literal
  numbers alike; figure and table numbers in references and citation years are not counted): the rest belong
  in the chapter's captioned tables.
- No chapter's source is longer than ``CHAPTER_LINES`` lines.

The test reads the book that ``make book`` (or ``make test``) wrote to ``_build/html`` (``XAI_BOOK_HTML``
points it elsewhere). Without a built book it is skipped, unless ``XAI_REQUIRE_BROWSER=1`` (set by
``.ci/run``), when it fails.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK_HTML = Path(os.environ.get("XAI_BOOK_HTML", ROOT / "_build" / "html")).resolve()
REQUIRE = os.environ.get("XAI_REQUIRE_BROWSER") == "1"
MAIN_WORDS = 12_000
NUMBERS_PER_PARAGRAPH = 6
CHAPTER_LINES = 400
#: The part of the table of contents that is not main text.
APPENDIX_CAPTION = "Further checks"

WORD = re.compile(r"[A-Za-z][A-Za-z'\u2019-]*")
#: A number as a reader counts one: 3, -0.25, 1,000, 54.4%, +0.34 (not the 2 of "MobileNetV2" or "v1").
NUMBER = re.compile(r"(?<![\w.])[-\u2212+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?(?![\w.]\w)(?!\w)")
#: What is not prose: code cells and their outputs, tables, maths, references (figure/table numbers,
#: citations), permalinks.
NOT_PROSE = ("div.cell_input", "span.caption-number", "div.cell_output pre", "div.highlight", "table", "script", "style", ".math",
             "a.reference", "a.headerlink", "span.eqno")


def _toc() -> tuple[list[str], list[str]]:
    """(main-text chapters, appendix chapters) as file names without suffix, in the table of contents' order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    main, appendix = [toc["root"]], []
    for part in toc["parts"]:
        names = [c["file"] for c in part["chapters"]]
        (appendix if part["caption"] == APPENDIX_CAPTION else main).extend(names)
    return main, appendix


MAIN, APPENDIX = _toc()


def _article(name: str):
    """The chapter's article element with everything that is not prose removed."""
    from bs4 import BeautifulSoup

    page = BOOK_HTML / f"{name}.html"
    if not page.is_file():
        if REQUIRE:
            pytest.fail(f"{page} was not built; run make book.")
        pytest.skip(f"{page} not built (make book)")
    article = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser").find("article")
    for element in article.select(", ".join(NOT_PROSE)):
        element.decompose()
    return article


def _numbers(text: str) -> list[str]:
    return NUMBER.findall(text)


def test_the_counter_counts_what_a_reader_counts():
    assert _numbers("FGSM flips 88% of 34 photos at -0.25 (1,000 classes), +0.34 [0.27, 0.42]") == \
        ["88%", "34", "-0.25", "1,000", "+0.34", "0.27", "0.42"]
    assert _numbers("MobileNetV2 and MobileNet v1 0.75/192, top-10% pixels") == ["0.75", "192", "10%"]
    assert WORD.findall("The model's top five, at one level (Fig. 3)") == \
        ["The", "model's", "top", "five", "at", "one", "level", "Fig"]


def test_the_main_text_is_at_most_twelve_thousand_words():
    words = {name: len(WORD.findall(_article(name).get_text(" "))) for name in MAIN}
    assert sum(words.values()) <= MAIN_WORDS, f"main text {sum(words.values())} words > {MAIN_WORDS}: {words}"


@pytest.mark.parametrize("name", MAIN + APPENDIX)
def test_no_paragraph_carries_more_than_six_numbers(name):
    dense = []
    for paragraph in _article(name).find_all("p"):
        text = " ".join(paragraph.get_text(" ").split())
        if len(_numbers(text)) > NUMBERS_PER_PARAGRAPH:
            dense.append(f"{len(_numbers(text))} numbers: {text[:90]}...")
    assert not dense, f"{name}: paragraphs with more than {NUMBERS_PER_PARAGRAPH} numbers:\n" + "\n".join(dense)


@pytest.mark.parametrize("name", MAIN + APPENDIX)
def test_no_chapter_is_longer_than_four_hundred_lines(name):
    lines = len((ROOT / f"{name}.md").read_text(encoding="utf-8").splitlines())
    assert lines <= CHAPTER_LINES, f"{name}.md has {lines} lines > {CHAPTER_LINES}"
