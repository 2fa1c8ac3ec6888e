"""The study's result tables: CSV under '# key: value' provenance lines, written atomically, read honestly.

A table is::

    # xai_helpers study table (per photo)
    # photos: 300
    # weights_sha256: ...            (the weights the numbers were computed with)
    # xai_helpers_version: 0.1.0
    # settings_key: 55659553ccbe     (StudySettings.key(): every setting that changes a number)
    # settings: {...}
    # rows_sha256: ...               (sha256 of everything below the comment lines, as written)
    class_index,wnid,name,...
    459,n02892767,brassiere,...

``write_table`` writes the whole file to a temporary file, flushes it to disk and renames it over the old
one (``outputs.write_atomic``), so a kill or a full disk leaves the previous table, never a cut one.
``load_table`` checks a table before anyone builds on it and names the file and line of any problem: a
row with the wrong number of cells, a row whose ``class_index`` is not an index, a row that repeats
another's photo (and stage), rows that no longer match the checksum line. ``check_resumable`` refuses, in
one sentence, to extend a table made with other settings, weights or package version. Resumed rows keep
their cells' text exactly (an empty cell stays empty; a number is not re-rounded).

CSV injection (OWASP): a spreadsheet runs a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return as a formula, so a photo named ``=HYPERLINK("http://evil.example","click").jpg`` could
act when the table is opened. Such text cells (not numbers: ``-0.5`` stays a number) are written with a
leading single quote, which spreadsheets show as plain text and hide; ``load_table`` removes it again,
so every text reads back exactly as it was (a text that itself starts with a quote before one of those
characters gets a second quote).
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xai_helpers.classifier.file_names import absolute
from xai_helpers.classifier.labels import csv_records
from xai_helpers.study.outputs import _move_if_absent, write_text_atomic
from xai_helpers.study.photos import SAMPLE_SOURCE

if TYPE_CHECKING:  # pragma: no cover
    from xai_helpers.study.settings import StudySettings

#: Header key of the checksum line (sha256 of the column line and the rows, as written).
CHECKSUM_KEY = "rows_sha256"
#: The first comment line of every study table: ``# xai_helpers study table (<kind>)``.
TITLE = "xai_helpers study table"
#: Header keys that must match for a table to be resumed, with the words the refusal uses.
RESUME_KEYS = (("table", "kind of table"), ("photo_source", "photos"), ("settings_key", "settings"),
               ("weights_sha256", "weights"), ("xai_helpers_version", "xai_helpers version"))
#: Columns that identify a row: a per-photo table has one row per class_index, the sanity table one per
#: (class_index, stage); a table of a folder's photos (``study --images``) one per file (with its sha256;
#: tables made before photos were keyed by content: one per photo_index).
KEY_COLUMNS = ("class_index", "stage")
#: What ``check_resumable`` takes a table's photo source to be when its header predates the line.
_LEGACY_SOURCES = {False: SAMPLE_SOURCE,
                   True: "a folder, rows keyed by position (a table made before photos were keyed by content)"}


def table_header(settings: StudySettings, n_photos: int, kind: str,
                 extra: dict[str, object] | None = None, model=None) -> list[str]:
    """Return the '# key: value' lines that open a result CSV (provenance of its numbers).

    ``extra`` adds settings particular to one table (e.g. the sanity check's IG steps); ``model`` is the
    loaded classifier whose weights and options are recorded (default: ``load_model()``'s MobileNetV2).
    """
    from xai_helpers import __version__
    from xai_helpers.classifier.provenance import weights_fingerprint

    fp = weights_fingerprint(model)
    return [f"# {TITLE} ({kind})", f"# photos: {n_photos}",
            f"# weights_sha256: {fp['sha256']}", f"# weights_source: {fp['source']}",
            *([f"# model: {fp['model']} (alpha {fp.get('alpha')}, size {fp.get('size')})"] if "model" in fp else []),
            f"# xai_helpers_version: {__version__}", f"# settings_key: {settings.key()}",
            f"# settings: {asdict(settings)}"] + [f"# {k}: {v}" for k, v in (extra or {}).items()]


def header_meta(header: Sequence[str]) -> dict[str, str]:
    """Return the ``{key: value}`` of header lines (the title line gives ``table``: its kind)."""
    meta: dict[str, str] = {}
    for line in header:
        if line.startswith(f"# {TITLE} (") and line.endswith(")"):
            meta["table"] = line[len(f"# {TITLE} ("):-1]
        elif line.startswith("# ") and ": " in line:
            key, value = line[2:].split(": ", 1)
            meta[key] = value
    return meta


@dataclass
class Table:
    """A checked table: its header, columns and rows as the cells' text (empty cells left out)."""

    path: Path
    meta: dict[str, str]
    columns: list[str]
    rows: list[dict[str, str]]
    lines: list[int]  #: the file line (1-based) of each row


#: First characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: A number as a cell holds it ("-0.5", "1e-05", "nan", "-inf"): never quoted as text.
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity|nan)", re.IGNORECASE)


def escape_text(text: str) -> str:
    """Return a text cell as written: with a leading single quote when a spreadsheet would run it as a
    formula (it starts with one of ``FORMULA_STARTS`` and is not a number) or when ``unescape_text`` would
    remove a quote of its own; ``unescape_text(escape_text(t)) == t`` for every text."""
    if text.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(text):
        return "'" + text
    if unescape_text(text) != text:
        return "'" + text
    return text


def unescape_text(cell: str) -> str:
    """Return the text a cell was written from: without the single quote ``escape_text`` put before it."""
    if len(cell) > 1 and cell[0] == "'" and cell[1:].startswith(FORMULA_STARTS + ("'",)):
        return cell[1:]
    return cell


def format_cell(value: object) -> str:
    """Return a cell's text: floats with 6 significant digits (NaN as "nan"), text as it is, but with a
    leading single quote where a spreadsheet would take it for a formula (``escape_text``)."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    return escape_text(str(value))


def _body(rows: Sequence[Mapping[str, object]]) -> str:
    columns: list[str] = []
    seen: set[str] = set()
    for row in rows:
        for k in row:
            if k not in seen:
                seen.add(k)
                columns.append(k)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, restval="", lineterminator="\n")
    # With "\n" line ends the csv module leaves a cell holding a carriage return unquoted, which no reader
    # then reads back: such rows are written by a writer ending lines with "\r\n" (which quotes it), "\n" put
    # back afterwards. Every other row is written exactly as before.
    quoting = io.StringIO()
    quoting_writer = csv.DictWriter(quoting, fieldnames=columns, restval="", lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        cells = {k: format_cell(v) for k, v in row.items()}
        if any("\r" in cell for cell in cells.values()):
            quoting.seek(0)
            quoting.truncate()
            quoting_writer.writerow(cells)
            out.write(quoting.getvalue()[:-2] + "\n")
        else:
            writer.writerow(cells)
    return out.getvalue()


def _checksum(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def write_table(path: str | os.PathLike, header: Sequence[str], rows: Sequence[Mapping[str, object]],
                make_folders: bool = False) -> Path:
    """Write ``rows`` as CSV under the ``header`` lines and a checksum line, atomically; return the path.

    Columns are the union of the rows' keys in first-seen order; a key a row lacks is an empty cell.
    Cells: ``format_cell`` (floats to 6 significant digits; text, e.g. a resumed row's, unchanged but for
    the quote that keeps a spreadsheet from running it). ``make_folders``: create missing folders (when the
    file is written; ``outputs.PendingFiles``).
    """
    body = _body(rows)
    lines = [line for line in header if not line.startswith(f"# {CHECKSUM_KEY}:")]
    lines.append(f"# {CHECKSUM_KEY}: {_checksum(body)}")
    return write_text_atomic(path, "\n".join(lines) + "\n" + body, make_folders=make_folders)


def load_table(path: str | os.PathLike) -> Table:
    """Return the table at ``path`` after checking every row; raise ``ValueError`` naming file and line.

    Checked, before any row is read: the file is not empty nor far larger than its header's photo count
    allows, and it has its ``rows_sha256`` line and its column line. Then: each row has as
    many cells as the column line; ``class_index`` is a whole number >= 0; no two rows share their key
    (``class_index``, plus ``stage`` where there is one); and the rows are the ones written (the checksum).
    CRLF line ends are read as LF. ``FileNotFoundError`` if there is no file.
    Text cells come back as they were given to ``write_table`` (``unescape_text``).
    """
    path = absolute(path)
    if not path.is_file():
        raise FileNotFoundError(f"No table at {path}.")
    _check_size(path)
    try:
        text = path.read_bytes().decode("utf-8").replace("\r\n", "\n")   # (a table saved with CRLF line ends)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a study table (byte {err.start} is not UTF-8 text).") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    header, first = [], 0
    while first < len(lines) and lines[first].startswith("#"):
        header.append(lines[first])
        first += 1
    meta = header_meta(header)
    body_lines = lines[first:]
    _check_header(path, meta, body_lines, first)
    checksum_line = next(i for i, line in enumerate(header, 1) if line.startswith(f"# {CHECKSUM_KEY}:"))
    columns: list[str] = []
    rows: list[dict[str, str]] = []
    numbers: list[int] = []
    keys: dict[tuple, int] = {}
    for offset, cells in _rows(body_lines, path, first):
        number = first + offset + 1
        if not columns and offset == 0:
            columns = cells
            continue
        if not any(cells) and len(cells) <= 1:
            raise ValueError(f"{path}, line {number}: an empty line inside the table; the file was damaged "
                             f"or edited.")
        if len(cells) != len(columns):
            raise ValueError(f"{path}, line {number}: {len(cells)} cells where the column line has "
                             f"{len(columns)}; the row was cut short or edited.")
        row = {k: unescape_text(v) for k, v in zip(columns, cells) if v != ""}
        if "class_index" in columns and not _is_folder_table(columns):  # (a folder's photos may lack a class)
            value = row.get("class_index", "")
            if not value.isdigit():
                raise ValueError(f"{path}, line {number}: class_index {value!r} is not a class index; the "
                                 f"row was damaged or edited.")
        key_columns = (("file",) if "sha256" in columns else ("photo_index",)) if _is_folder_table(columns) \
            else KEY_COLUMNS
        key = tuple(row.get(k, "") for k in key_columns if k in columns)
        if key and key in keys:
            what = ", ".join(f"{k} {row.get(k, '')}" for k in key_columns if k in columns)
            raise ValueError(f"{path}, line {number} repeats line {keys[key]} ({what}); remove one of the "
                             f"two rows.")
        if key:
            keys[key] = number
        rows.append(row)
        numbers.append(number)
    body = "\n".join(body_lines) + ("\n" if body_lines else "")
    if _checksum(body) != meta[CHECKSUM_KEY]:
        raise ValueError(f"{path}: the rows do not match the checksum on line {checksum_line}, so a cell was "
                         f"changed after the table was written; restore the table from a copy, or pass "
                         f"--force-new to start a new table and keep this one.")
    return Table(path, meta, columns, rows, numbers)


#: Bytes a table may hold per photo its header counts (a row of the study is about 10 KB), and beyond them.
MAX_BYTES_PER_PHOTO, MAX_HEADER_BYTES = 256 * 1024, 1024 * 1024


def _check_size(path: Path) -> None:
    """Refuse at once, before reading it, a table far larger than the photos its header counts allow."""
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path} is empty (0 bytes), not a study table; delete it, or pass --force-new to "
                         f"start a new table and keep it.")
    with open(path, "rb") as f:
        start = f.read(MAX_HEADER_BYTES)
    found = re.search(rb"^# photos: (\d{1,9})$", start, re.MULTILINE)
    photos = int(found.group(1)) if found else 0
    allowed = MAX_HEADER_BYTES + (photos + 1) * MAX_BYTES_PER_PHOTO * 20   # (the sanity table: a row per stage)
    if size > allowed:
        raise ValueError(f"{path} holds {size} bytes, far more than its header's {photos} photos allow "
                         f"({allowed}); it is not a study table or was damaged.")


#: The first column of a table's column line: a sample photo's class, or a folder photo's file name.
FIRST_COLUMNS = ("class_index", "file", "photo_index")


def _check_header(path: Path, meta: dict[str, str], body_lines: Sequence[str], first: int) -> None:
    """Refuse a table whose header or column line is missing, naming the file: nothing is read as rows."""
    if CHECKSUM_KEY not in meta:
        raise ValueError(f"{path} has no '# {CHECKSUM_KEY}:' line, so its rows cannot be checked (its header was "
                         f"damaged or edited); restore it from a copy, or pass --force-new to start a new table "
                         f"and keep this one.")
    if all(line == "" for line in body_lines):   # (a table of no rows yet: no column line either)
        return
    if body_lines[0].split(",", 1)[0] not in FIRST_COLUMNS:
        raise ValueError(f"{path}, line {first + 1}: the column line (starting with one of "
                         f"{', '.join(FIRST_COLUMNS)}) is missing; the table was damaged or edited, and nothing "
                         f"was read from it.")


def _is_folder_table(columns: Sequence[str]) -> bool:
    """Whether a table's rows are a folder's photos (``study --images``) rather than the sample photos."""
    return "photo_index" in columns or "sha256" in columns


def analysed_rows(rows: Sequence[Mapping[str, object]]) -> tuple[list, int]:
    """Return (the rows of photos that were analysed, the number skipped): a row whose ``status`` is
    ``error`` (a photo that could not be read; its ``error`` cell says why) is left out and counted."""
    kept = [row for row in rows if row.get("status", "ok") != "error"]
    return kept, len(rows) - len(kept)


def _rows(lines: Sequence[str], path: Path, first: int):
    """Yield (index of the row's first line, cells) of CSV ``lines`` (a quoted cell may span lines)."""
    records = csv_records((line + "\n" for line in lines), path, first,  # (a quoted cell keeps its "\n")
                          hint="; the row was damaged or edited", strict=True)
    for start, _, cells in records:
        yield start, cells


def read_table(path: str | os.PathLike) -> tuple[dict[str, str], list[dict[str, float | str]]]:
    """Return (header metadata, rows) of a study CSV; numeric cells become floats, empty cells NaN.

    The table is checked first (``load_table``): a damaged, duplicated or altered row raises
    ``ValueError`` naming the file and line, rather than being dropped or read as something else.
    """
    table = load_table(path)
    return table.meta, [{k: _number(row.get(k, "")) for k in table.columns} for row in table.rows]


def _number(text: str) -> float | str:
    if text == "":
        return float("nan")  # a column that does not apply to this photo (e.g. maps of a missed photo)
    try:
        return float(text)
    except ValueError:
        return text


def check_resumable(table: Table, header: Sequence[str], force_option: str = "--force-new") -> None:
    """Raise ``ValueError`` (one sentence) unless ``table`` was made like the table ``header`` describes.

    Compared: the kind of table, the photo source (sample photos, or which folder), ``settings_key``,
    ``weights_sha256`` and ``xai_helpers_version``.
    """
    expected = header_meta(header)
    for key, words in RESUME_KEYS:
        old, new = table.meta.get(key), expected.get(key)
        if key == "photo_source":  # (headers before the line: the sample photos, or a folder by position)
            if old is None and table.meta.get("table") == "per photo":
                old = _LEGACY_SOURCES[_is_folder_table(table.columns)]
            if new is None and expected.get("table") == "per photo":
                new = SAMPLE_SOURCE
        if old != new:
            shown = {k: (v[:12] if v and key == "weights_sha256" else v)
                     for k, v in (("old", old), ("new", new))}
            raise ValueError(f"{table.path} was made with other {words} ({shown['old'] or 'none recorded'} "
                             f"there, {shown['new']} now), so it cannot be resumed; run with the same "
                             f"{words}, or pass {force_option} to start a new table and keep this one.")


def set_aside(path: str | os.PathLike) -> Path:
    """Rename ``path`` to the first free ``<stem>.old.csv``, ``<stem>.old2.csv``, ...; return the new path.

    A name is taken only if it is still free when the file is moved (``outputs._move_if_absent``): an old
    copy that appeared meanwhile is never replaced.
    """
    path = absolute(path)
    for n in range(1, 10_000):
        target = path.with_name(f"{path.stem}.old{'' if n == 1 else n}{path.suffix}")
        if target.exists() or target.is_symlink():
            continue
        try:
            _move_if_absent(path, target)
        except FileExistsError:
            continue
        return target
    raise OSError(f"Could not set {path} aside: too many old copies beside it.")


__all__ = ["CHECKSUM_KEY", "FORMULA_STARTS", "Table", "analysed_rows", "check_resumable", "escape_text",
           "format_cell", "header_meta", "load_table", "read_table", "set_aside", "table_header", "unescape_text",
           "write_table"]
