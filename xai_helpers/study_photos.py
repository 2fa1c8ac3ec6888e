"""The photos a study can run on besides the ImageNet sample photos: a folder, with an optional labels file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .labels import read_csv_rows, resolve_class


@dataclass(frozen=True)
class StudyPhoto:
    """One photo of a study that is not an ImageNet sample photo (``folder_photos``)."""

    index: int  #: the row's identity: position in the folder's sorted file list
    path: str
    label: int | None  #: true class index, or None: then the model's own top-1 is attacked and explained

    @property
    def seed_id(self) -> int:
        """What this photo's random draws are seeded with (sample photos use their class index 0..999)."""
        return 1_000_000 + self.index


#: Photo files a folder source takes (by suffix, case-insensitive).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def folder_photos(folder: str | Path, labels: str | Path | None = None) -> list[StudyPhoto]:
    """Return the photos of ``folder`` (sorted by file name) with their classes from an optional labels CSV.

    The CSV has two columns, file name and class (a Keras class name, a WNID or an index 0-999), with or
    without a header line, in UTF-8 (a byte-order mark is fine); photos it does not list are unlabelled.
    Raises ``FileNotFoundError`` for a missing folder or CSV and ``ValueError`` for an empty folder, a CSV
    that is not UTF-8 text, an unknown class, a photo listed twice (both lines named) or a file the CSV
    names that the folder lacks.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"No folder of photos at {folder}.")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
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
                classes[name] = resolve_class(cells[1].strip())
            except ValueError as err:
                raise ValueError(f"{labels}, line {number}: {str(err).removeprefix('--target-class: ')}") \
                    from None
        missing = sorted(set(classes) - {p.name for p in files})
        if missing:
            raise ValueError(f"{labels} names {len(missing)} photo(s) that {folder} lacks, e.g. {missing[0]!r}.")
    return [StudyPhoto(i, str(p), classes.get(p.name)) for i, p in enumerate(files)]


__all__ = ["IMAGE_SUFFIXES", "StudyPhoto", "folder_photos"]
