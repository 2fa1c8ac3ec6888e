"""Where the repository's committed data lives, found through the package rather than the working folder.

The study tables (``results/study.csv``, ``results/study_sanity.csv``) sit in the repository next to the
``xai_helpers`` package, which is installed editable (``pip install -e .``). A chapter or script that reads
them through ``results_path`` works from any folder: a notebook opened in ``book/``, a copy run elsewhere,
or a test.
"""
from __future__ import annotations

from pathlib import Path

#: The repository's ``results/`` folder: a sibling of the ``xai_helpers`` package folder.
RESULTS_DIR = Path(__file__).resolve().parents[2] / "results"


def results_path(name: str) -> Path:
    """Return the absolute path of ``name`` (e.g. ``"study.csv"``) in the repository's ``results/`` folder.

    Raises ``FileNotFoundError`` (one sentence, naming the folder and the command that writes the table)
    when the file is not there, e.g. for a non-editable install that has no ``results/`` folder.
    """
    path = RESULTS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{name} is not in {RESULTS_DIR} (the results/ folder next to the xai_helpers package); use a "
            f"clone of the repository with `pip install -e .`, or write it with `python -m xai_helpers study`.")
    return path


__all__ = ["RESULTS_DIR", "results_path"]
