"""The headline numbers of a study table, as the book's answer chapter states them and ``study`` prints them.

One function (``headline``) computes them from a ``StudyBook``; ``summary_text`` prints them and
``summary_html`` renders them as a page, so the summary of one's own table (``python -m xai_helpers report
TABLE``, or the end of a ``study`` run) and the book's chapters say the same thing with the same code.

Per attack (among the photos it fooled): the median share of its margin change that the attack
attribution's top 10% of pixels keep, beside seeded random pixels and beside moved copies of the same top
pixels (same shape and area); where those pixels lie: the share on the photo's edges against the edges'
10% of the photo, and, on photos with an object mask, on the object against the object's share of the
photo (an enrichment, 1 = chance). Intervals: Wilson for proportions, seeded percentile bootstrap for medians.
"""
from __future__ import annotations

from html import escape

import numpy as np

from xai_helpers.chapters.study_tables import StudyBook, column, median_ci, share_ci, triple
from xai_helpers.study import columns as col


def headline(book: StudyBook) -> dict:
    """The table's headline numbers: ``photos``, ``accuracy`` (share, low, high) and, per attack of the table,
    ``success`` (share, low, high, fooled), ``kept_attack``, ``kept_random``, ``kept_moved`` (median, low,
    high), ``on_edges`` (median share of the top pixels on the edges, low, high), ``object_enrichment``
    (median share on the object over the object's share, low, high, photos) and, for the just-flipping
    attack, ``levels`` (median budget in pixel levels, low, high)."""
    correct = book.correct
    labelled = "clean_correct" in book.table and book.table.clean_correct.notna().any()
    out = {"photos": len(book.table), "model": book.model_name,
           "accuracy": share_ci(book.table.clean_correct.dropna() == 1) if labelled else (float("nan"),) * 3,
           "attacks": {}}
    for a, title in book.attacks.items():
        fooled = book.fooled[a]
        numbers = {"title": title, "success": (*share_ci(correct[col.attacked(a, "fooled")] == 1), len(fooled)),
                   "kept_attack": median_ci(column(fooled, col.kept(a, "attack"))),
                   "kept_random": median_ci(column(fooled, col.kept(a, "random_median"))),
                   "kept_moved": median_ci(column(fooled, col.kept_moved(a, "attack"))),
                   "on_edges": median_ci(column(fooled, col.located(a, "attack", "edges")))}
        on_object = column(fooled, col.located(a, "attack", "object"))
        area = column(fooled, "object_share")
        has = np.isfinite(on_object) & (area > 0)
        numbers["object_enrichment"] = (*median_ci(on_object[has] / area[has]), int(has.sum()))
        if a == "jf":
            numbers["levels"] = median_ci(column(fooled, col.attacked("jf", "levels")))
        out["attacks"][a] = numbers
    return out


def summary_lines(book: StudyBook) -> list[str]:
    """The summary as lines of text (what ``study`` prints at its end)."""
    h = headline(book)
    labelled = np.isfinite(h["accuracy"][0])
    lines = [f"{h['photos']} photos, {h['model']}; " + (f"accuracy {triple(h['accuracy'], '.1%')}" if labelled else
             "no labels: each photo is attacked and explained for the model's own top-1 class")]
    among = "of the correct photos" if labelled else "of the photos"
    for a, n in h["attacks"].items():
        lines.append(f"{n['title']}: fooled {n['success'][3]} ({triple(n['success'], '.1%')} {among})")
        lines.append(f"  its top 10% of pixels keep {triple(n['kept_attack'], '.2f')} of its effect (random pixels "
                     f"{triple(n['kept_random'], '.2f')}, moved copies {triple(n['kept_moved'], '.2f')})")
        lines.append(f"  on the edges: {triple(n['on_edges'], '.0%')} of those pixels (edges are 10% of a photo)")
        if n["object_enrichment"][3]:
            lines.append(f"  on the object: {triple(n['object_enrichment'], '.2f')} x its area "
                         f"({n['object_enrichment'][3]} photos with an object mask; 1 = chance)")
        if "levels" in n:
            lines.append(f"  smallest budget that flips the label: {triple(n['levels'], '.3g')} pixel levels")
    return lines


def summary_text(book: StudyBook) -> str:
    return "\n".join(summary_lines(book))


def summary_html(book: StudyBook, title: str) -> str:
    """The summary as a self-contained HTML page (no network, no script)."""
    items = "".join(f"<li>{escape(line.strip())}</li>" if line.startswith("  ") else
                    f"</ul><h2>{escape(line)}</h2><ul>" for line in summary_lines(book)[1:])
    first = escape(summary_lines(book)[0])
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{escape(title)}</title><style>body{{font-family:system-ui,sans-serif;margin:1rem;"
            f"max-width:60rem}}</style></head><body><h1>{escape(title)}</h1><p>{first}</p><ul>{items}</ul>"
            "<p>Medians over the photos each attack fooled, with 95% seeded bootstrap intervals; proportions "
            "with Wilson intervals. The book's study chapters explain each number.</p></body></html>\n")


__all__ = ["headline", "summary_html", "summary_lines", "summary_text"]
