"""The photos a study can run on besides the ImageNet sample photos: a folder, with an optional labels file.

A folder's photo is known by its file name *and* the sha256 of its bytes (``StudyPhoto.key``): a resumed
study matches its rows by that key, so a photo added to the folder is analysed, a photo whose bytes changed
is noticed, and a row never moves to another photo when the sorted file list shifts. Its random draws are
seeded from the hash too, so its row does not depend on which other files the folder holds.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from xai_helpers.classifier.labels import read_csv_rows, resolve_class


@dataclass(frozen=True)
class StudyPhoto:
    """One photo of a study that is not an ImageNet sample photo (``folder_photos``)."""

    index: int  #: position in the folder's sorted file list in this run (the study's order)
    path: str
    label: int | None  #: true class index, or None: then the model's own top-1 is attacked and explained
    sha256: str = ""  #: of the file's bytes ("" when they could not be read)
    error: str | None = None  #: why the file could not be read (its row then records this, nothing else)

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def key(self) -> tuple[str, str]:
        """The photo's identity in a table: (file name, sha256 of its bytes)."""
        return self.name, self.sha256

    @property
    def seed_id(self) -> int:
        """What this photo's random draws are seeded with: 1,000,000 + the first 28 bits of its sha256
        (sample photos use their class index 0..999), so its row is the same whatever else the folder holds."""
        return 1_000_000 + (int(self.sha256[:7], 16) if self.sha256 else self.index)


#: Photo files a folder source takes (by suffix, case-insensitive).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
#: A file larger than this is not hashed or read (no photo the study can decode is near it: ``data.MAX_PIXELS``
#: at 4 bytes a pixel is ~716 MB); its row records why.
MAX_PHOTO_BYTES = 2 ** 31
#: The photo source of the ImageNet sample photos, as a table's header records it.
SAMPLE_SOURCE = "sample photos (ImageNet sample images, seeded study order)"


def file_sha256(path: str | Path) -> str:
    """Return the sha256 (hex) of the file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2 ** 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_source(folder: str | Path) -> str:
    """Return the photo source a table of ``folder``'s photos records: ``folder <absolute path>``."""
    return f"folder {Path(folder).expanduser().resolve()}"


def photo_list_sha256(photos: list[StudyPhoto]) -> str:
    """Return the sha256 of the folder's file list (a ``name<TAB>sha256`` line a photo), for the header."""
    text = "".join(f"{p.name}\t{p.sha256}\n" for p in photos)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _hash_or_error(path: Path) -> tuple[str, str | None]:
    """Return (sha256, None) of a readable file, or ("", why it cannot be read) in one sentence."""
    try:
        size = path.stat().st_size
        if size > MAX_PHOTO_BYTES:
            return "", f"{path} is {size:,} bytes, larger than any photo the study reads ({MAX_PHOTO_BYTES:,})."
        return file_sha256(path), None
    except OSError as err:
        return "", f"{path} could not be read ({err.strerror or err})."


def folder_photos(folder: str | Path, labels: str | Path | None = None) -> list[StudyPhoto]:
    """Return the photos of ``folder`` (sorted by file name) with their classes from an optional labels CSV.

    The CSV has two columns, file name and class (a Keras class name, a WNID or an index 0-999), with or
    without a header line, in UTF-8 (a byte-order mark is fine); photos it does not list are unlabelled.
    Each photo carries the sha256 of its bytes (``StudyPhoto.key``); a file that cannot be read (no
    permission, larger than ``MAX_PHOTO_BYTES``) is listed with its ``error`` instead, so that the study
    records it as a skipped row and goes on. Raises ``FileNotFoundError`` for a missing folder or CSV and
    ``ValueError`` for an empty folder, a CSV that is not UTF-8 text, an unknown class, a photo listed twice
    (both lines named) or a file the CSV names that the folder lacks.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"No folder of photos at {folder}.")
    # (a link that leads nowhere or round in a loop is listed too: its row records why it cannot be read)
    files = sorted(p for p in folder.iterdir()
                   if (p.is_file() or p.is_symlink()) and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder} holds no photos (files ending in {', '.join(IMAGE_SUFFIXES)}).")
    classes: dict[str, int] = {}
    if labels is not None:
        labels = Path(labels)
        lines: dict[str, int] = {}
        for number, cells in read_csv_rows(labels):
            if not cells or (number == 1 and cells[0].strip().lower() in ("file", "filename", "photo")):
                continue
            if len(cells) != 2:
                raise ValueError(f"{labels}, line {number}: expected 'file,class', got {len(cells)} cells.")
            name = cells[0].strip()
            if name in lines:
                raise ValueError(f"{labels}, line {number} repeats the photo {name!r} of line {lines[name]}; "
                                 f"keep one of the two lines.")
            lines[name] = number
            try:
                classes[name] = resolve_class(cells[1].strip(), what="its class")
            except ValueError as err:
                raise ValueError(f"{labels}, line {number}: {err}") from None
        missing = sorted(set(classes) - {p.name for p in files})
        if missing:
            raise ValueError(f"{labels} names {len(missing)} photo(s) that {folder} lacks, e.g. {missing[0]!r}.")
    return [StudyPhoto(i, str(p), classes.get(p.name), *_hash_or_error(p)) for i, p in enumerate(files)]


__all__ = ["IMAGE_SUFFIXES", "MAX_PHOTO_BYTES", "SAMPLE_SOURCE", "StudyPhoto", "file_sha256", "folder_photos",
           "folder_source", "photo_list_sha256"]
