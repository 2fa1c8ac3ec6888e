"""Class names: Keras's ImageNet labels, a labels file's, and names as people write them (a class name, a
WNID or an index) resolved to an index. Shared by the model loader, the command line (``--target-class``),
the study's labels files and the chapters.
"""
from __future__ import annotations

import codecs
import difflib
import functools
import io
import os
import re
from pathlib import Path

from xai_helpers.classifier.data import cached_get_file
from xai_helpers.classifier.file_names import check_name_length

CLASS_INDEX_FILE = "imagenet_class_index.json"
CLASS_INDEX_ORIGIN = "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json"
CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"


def read_text_file(path: Path) -> str:
    """Return the text of a small UTF-8 file (a labels CSV), a leading byte-order mark (as spreadsheets
    write "CSV UTF-8") dropped. Raises ``FileNotFoundError`` for a missing file and ``ValueError`` ("<file>:
    not UTF-8 text (line N) ...") for a binary, UTF-16 or Latin-1 file, naming the first bad line."""
    check_name_length(path)
    if not path.is_file():
        raise FileNotFoundError(f"No labels file at {path}.")
    data = path.read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ValueError(f"{path}: not UTF-8 text (line 1: it is UTF-16); save it as UTF-8 (\"CSV UTF-8\" in a "
                         f"spreadsheet).")
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        text = data.decode("utf-8")
        bad = len(data)
    except UnicodeDecodeError as err:
        text, bad = None, err.start
    nul = data.find(b"\0", 0, bad)
    if nul >= 0:  # (valid UTF-8, but no text file holds one)
        line = data[:nul].count(b"\n") + 1
        raise ValueError(f"{path}: not UTF-8 text (line {line} holds a NUL byte: a binary file?); give a CSV "
                         f"text file.")
    if text is None:
        line = data[:bad].count(b"\n") + 1
        raise ValueError(f"{path}: not UTF-8 text (line {line} has the byte {data[bad]:#04x}, as Latin-1 or a "
                         f"binary file would); save it as UTF-8 (\"CSV UTF-8\" in a spreadsheet).")
    return text


def csv_records(lines, path: str | os.PathLike, first: int = 0, hint: str = "", strict: bool = False):
    """Yield ``(index of the record's first line, number of its last line, cells)`` of CSV ``lines``.

    A quoted cell may span lines, so a record's first and last lines can differ. A CSV error is
    ``ValueError`` naming ``path`` and the bad record's first line (``first`` is the number of lines
    of the file before ``lines``), then ``hint``."""
    import csv

    reader = csv.reader(lines, strict=strict)
    start = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise ValueError(f"{path}, line {first + start + 1}: not valid CSV ({err})"
                             f"{hint}.") from None
        yield start, reader.line_num, cells
        start = reader.line_num


def read_csv_rows(path: Path):
    """Yield ``(line number, cells)`` of the UTF-8 CSV file ``path`` (``read_text_file``); a CSV error is
    ``ValueError`` naming the file and line."""
    for _, last, cells in csv_records(io.StringIO(read_text_file(path), newline=""), path):
        yield last, cells


def _read_labels(path: Path) -> tuple[tuple[str, str], ...]:
    """Return ``(wnid, name)`` per class from a CSV/text file (see ``load_model``)."""
    rows = [row for _, row in read_csv_rows(path) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError(f"The labels file {path} is empty.")
    header = [cell.strip().lower() for cell in rows[0]]
    name_col = next((header.index(k) for k in ("name", "label", "class_name", "class") if k in header), None)
    wnid_col = header.index("wnid") if "wnid" in header else None
    if name_col is not None:
        rows = rows[1:]
    else:
        name_col = -1
    return tuple(((row[wnid_col].strip() if wnid_col is not None else ""), row[name_col].strip())
                 for row in rows)


@functools.lru_cache(maxsize=1)
def class_labels() -> tuple[tuple[str, str], ...]:
    """Return the 1000 ImageNet ``(wnid, name)`` pairs in class-index order (Keras's label file)."""
    import json

    path = cached_get_file(CLASS_INDEX_FILE, CLASS_INDEX_ORIGIN, "models", file_hash=CLASS_INDEX_MD5)
    with open(path) as f:
        index = json.load(f)
    return tuple((index[str(i)][0], index[str(i)][1]) for i in range(len(index)))


def resolve_class(text: str, what: str = "--target-class") -> int:
    """Return the ImageNet class index named by ``text``: a class name, a WNID or an index 0-999.

    Names match Keras's labels ignoring case and treating spaces, '_' and '-' alike ('komodo dragon' =
    'Komodo_dragon'). Raises ``ValueError`` (one sentence starting with ``what``, where the class was given,
    with close matches) for an unknown or ambiguous name ('crane' is both a bird and a machine: give its WNID
    or index).
    """
    from xai_helpers.classifier.data import normalise_class_name
    labels = class_labels()
    text = str(text).strip()
    if re.fullmatch(r"[+-]?\d+", text):
        index = int(text)
        if not 0 <= index < len(labels):
            raise ValueError(f"{what}: a class index must be in [0, {len(labels) - 1}], got {index}.")
        return index
    if re.fullmatch(r"n\d{8}", text):
        hits = [i for i, (wnid, _) in enumerate(labels) if wnid == text]
        if not hits:
            raise ValueError(f"{what}: no ImageNet class has the WNID {text}.")
        return hits[0]
    key = normalise_class_name(text)
    names = [normalise_class_name(name) for _, name in labels]
    hits = [i for i, name in enumerate(names) if name == key]
    if len(hits) > 1:
        raise ValueError(f"{what}: {text!r} is ambiguous in ImageNet: give one of the indices "
                         + ", ".join(f"{i} ({labels[i][0]})" for i in hits) + ".")
    if not hits:
        close = difflib.get_close_matches(key, sorted(set(names)), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else \
            " (use a Keras ImageNet class name such as 'Komodo_dragon', a WNID or an index 0-999)."
        raise ValueError(f"{what}: no ImageNet class is named {text!r}{hint}")
    return hits[0]


__all__ = ["class_labels", "csv_records", "read_csv_rows", "read_text_file", "resolve_class"]
