"""Bookkeeping for the chapters, so that their visible code cells show the analysis: many glued numbers in one
call, and a results table as a captioned MyST table that scrolls inside its own box on a narrow screen."""
from __future__ import annotations

from collections.abc import Mapping

#: How a results table's numbers are written, by the kind of column (a share, a count, anything else).
_FORMATS = {"float": "{:.2f}", "int": "{:d}"}


def glue_all(values: Mapping[str, object]) -> None:
    """Glue every ``name: value`` for ``{glue:text}`` in the prose (nothing is displayed in the cell); NumPy
    scalars are glued as the plain Python numbers the text formats read."""
    from myst_nb import glue

    for name, value in values.items():
        if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:   # a NumPy scalar: its plain Python number
            value = value.item()
        glue(name, value, display=False)


def _cell(value, fmt: str | None) -> str:
    if fmt is not None:
        return "-" if value != value else fmt.format(value)   # (NaN: no photos)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "-" if value != value else f"{value:.2f}"
    return str(value).replace("|", "/")


def table(frame, caption: str, name: str, formats: Mapping[str, str] | None = None):
    """A ``pandas.DataFrame`` as a numbered MyST table with ``caption`` and label ``name`` (``{numref}``);
    ``formats`` maps a column to a format string (default: 2 decimals for numbers)."""
    from IPython.display import Markdown

    formats = formats or {}
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = ["| " + " | ".join(_cell(v, formats.get(c)) for c, v in zip(frame.columns, row)) + " |"
            for row in frame.itertuples(index=False)]
    return Markdown(f":::{{table}} {caption}\n:name: {name}\n\n" + "\n".join([header, rule, *rows]) + "\n:::")


__all__ = ["glue_all", "table"]
