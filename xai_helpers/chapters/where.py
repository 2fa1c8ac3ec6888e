"""Where the attack acts, from a study table: the measurements of the book's chapter *Where the attack acts*.

For every attack of the table, over the photos it fooled:

* ``first_order``: the share of the attack's margin change kept by the top 10% of pixels of the attack
  attribution, of its 7 x 7 coarsening, of the clean photo's first-order maps of the margin (vanilla gradient,
  gradient x input, SmoothGrad), of Grad-CAM's and IG's maps, of moved copies of the attribution's top pixels
  (the shape-matched control) and of random pixels; and how much the attribution's top pixels overlap the
  gradient's;
* ``location``: where pixel sets lie. For the attribution's top pixels, the smallest flipping region and the
  adversarial class's evidence (Grad-CAM, IG): the share on the photo's edges (chance: the edges' 10% of the
  photo), and, on photos with an object mask, the share on the object minus the object's share of the photo
  (chance: 0); for the attribution, the share inside the true class's evidence on the photo (chance 10%);
* ``object_interventions``: the perturbation kept only on the object, only on the background, and removed
  from each (sufficient, necessary), beside moved copies of the object mask;
* ``by_margin``: sufficiency and necessity of the attribution's top pixels by quartile of the attack's
  overshoot, the adversarial margin ``log(p_adv / p_true)``.

Every comparison with chance is a paired difference (photo by photo) with a bootstrap interval and a t-test,
and the tests of one network form one family, Holm-corrected (``location_family``).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from xai_helpers.chapters.study_tables import StudyBook, column, median, median_ci, share_ci, triple
from xai_helpers.study import columns as col
from xai_helpers.study.summary import family_verdicts, paired_difference

#: Rankings compared in ``first_order``, with their names in tables.
RANKINGS = {"attack": "attack attribution", "attack7": "attribution, 7 x 7", "grad": "vanilla gradient",
            "gradinput": "gradient x input", "smoothgrad": "SmoothGrad", "gc_clean": "Grad-CAM (photo)",
            "ig_clean": "IG (photo)"}
#: Pixel sets located in ``location``, with their names in tables.
PIXEL_SETS = {"attack": "attribution's top 10%", "flip": "smallest flipping region",
              "gcadv": "Grad-CAM of the new class", "igadv": "IG of the new class"}
#: The share of a photo that counts as its edges (``location.EDGE_FRACTION``).
EDGE_SHARE = 0.10


def first_order(book: StudyBook) -> pd.DataFrame:
    """Per attack and ranking: the median share kept by its top 10% (with its interval) and the photos."""
    records = []
    for a, title in book.attacks.items():
        fooled = book.fooled[a]
        for name, label in {**RANKINGS, "moved": "moved copies of the attribution's top",
                            "random_median": "random pixels"}.items():
            kept_name = col.kept_moved(a, "attack") if name == "moved" else col.kept(a, name)
            centre, low, high = median_ci(column(fooled, kept_name))
            records.append({"attack": title, "ranking": label, "kept": centre, "low": low, "high": high,
                            "photos": int(np.isfinite(column(fooled, kept_name)).sum())})
    return pd.DataFrame(records)


def gradient_overlap(book: StudyBook) -> dict[str, tuple[float, float, float]]:
    """Per attack: the median top-10% IoU of the attack attribution and the vanilla gradient (chance ~0.05)."""
    return {a: median_ci(column(book.fooled[a], col.overlap(a, "grad"))) for a in book.attacks}


def location_tests(book: StudyBook) -> dict[tuple[str, str, str], dict]:
    """The family of location tests of one table: ``{(attack, pixels, region): paired_difference}``, the
    share inside the region minus chance (the region's share of the photo)."""
    tests = {}
    for a in book.attacks:
        fooled = book.fooled[a]
        area = column(fooled, "object_share")
        for pixels in PIXEL_SETS:
            tests[(a, pixels, "edges")] = paired_difference(column(fooled, col.located(a, pixels, "edges")),
                                                            np.full(len(fooled), EDGE_SHARE))
            on_object = column(fooled, col.located(a, pixels, "object"))
            tests[(a, pixels, "object")] = paired_difference(on_object, np.where(np.isfinite(on_object), area, np.nan))
        for method in ("gc", "ig"):
            tests[(a, "attack", f"{method}clean")] = paired_difference(
                column(fooled, col.located(a, "attack", f"{method}clean")), np.full(len(fooled), 0.10))
    return tests


def location(book: StudyBook) -> pd.DataFrame:
    """``location_tests`` as a table, each with its Holm-corrected verdict within the table's family."""
    tests = location_tests(book)
    verdicts = family_verdicts({k: v for k, v in tests.items() if v["n"] >= 2} or
                               {next(iter(tests)): tests[next(iter(tests))]})
    records = []
    for (a, pixels, region), t in tests.items():
        v = verdicts.get((a, pixels, region), {"direction": 0, "p_adjusted": float("nan")})
        records.append({"attack": book.attacks[a], "pixels": PIXEL_SETS[pixels], "region": region,
                        "above chance": t["mean"], "low": t["ci_low"], "high": t["ci_high"], "photos": t["n"],
                        "verdict": {1: "more than chance", -1: "less than chance"}.get(v["direction"],
                                                                                        "not told from chance"),
                        "p (Holm)": v["p_adjusted"]})
    return pd.DataFrame(records)


#: How ``where_answer`` words each region under each verdict of ``location``.
REGION_WORDS = {"object": {"more than chance": "more on the object than its area predicts",
                           "less than chance": "less on the object than its area predicts",
                           "not told from chance": "on the object neither more nor less than its area predicts"},
                "edges": {"more than chance": "more on edges than chance",
                          "less than chance": "less on edges than chance",
                          "not told from chance": "on edges neither more nor less than chance"},
                "igclean": {"more than chance": "more on the true class's evidence than chance",
                            "less than chance": "less on the true class's evidence than chance",
                            "not told from chance": "on the true class's evidence neither more nor less than chance"}}


def where_answer(book: StudyBook) -> pd.DataFrame:
    """One sentence per attack: where the attack attribution's top 10% of pixels lie (object, edges, the
    clean photo's IG evidence), each region with its Holm verdict and its mean above chance [95% interval]
    (``where``), and the verdicts alone, for prose (``verdicts``)."""
    frame = location(book)
    frame = frame[frame.pixels == PIXEL_SETS["attack"]].set_index(["attack", "region"])
    records = []
    for title in book.attacks.values():
        parts, verdicts = [], []
        for region, words in REGION_WORDS.items():
            r = frame.loc[(title, region)]
            if r.photos:
                verdicts.append(words[r.verdict])
                parts.append(f"{words[r.verdict]} "
                             f"({triple((r['above chance'], r.low, r.high), '+.2f')} against chance, {r.photos} photos)")
        sentence = "; ".join(parts)
        records.append({"attack": title, "where": sentence[:1].upper() + sentence[1:] + ".",
                        "verdicts": ", ".join(verdicts[:-1]) + " and " + verdicts[-1] if len(verdicts) > 1
                        else "".join(verdicts)})
    return pd.DataFrame(records)


def object_interventions(book: StudyBook) -> pd.DataFrame:
    """Per attack, on photos with an object mask: the shares kept on the object, on the background and by
    moved copies of the object, and how often each region alone is sufficient or necessary."""
    records = []
    for a, title in book.attacks.items():
        fooled = book.fooled[a]
        has = fooled[np.isfinite(column(fooled, col.kept(a, "object")))]
        if not len(has):
            continue
        record = {"attack": title, "photos": len(has), "object area": float(np.median(column(has, "object_share")))}
        for region in ("object", "background"):
            record[f"kept: {region}"] = median(column(has, col.kept(a, region)))
            record[f"sufficient: {region}"] = share_ci(column(has, col.verdict(a, "sufficient", region)) == 1)[0]
            record[f"necessary: {region}"] = share_ci(column(has, col.verdict(a, "necessary", region)) == 1)[0]
        record["kept: moved object"] = median(column(has, col.kept_moved(a, "object")))
        records.append(record)
    columns = ["attack", "photos", "object area"] + [f"{k}: {r}" for r in ("object", "background")
                                                     for k in ("kept", "sufficient", "necessary")]
    return pd.DataFrame(records, columns=columns + ["kept: moved object"])


def adversarial_margin(book: StudyBook, a: str) -> np.ndarray:
    """Each fooled photo's overshoot, ``log(p_adv / p_true)`` of attack ``a``'s image."""
    fooled = book.fooled[a]
    return np.log(column(fooled, col.attacked(a, "p_top1")) / column(fooled, col.attacked(a, "p_true")))


def by_margin(book: StudyBook, a: str, ranking: str = "attack") -> pd.DataFrame:
    """Sufficiency and necessity of ``ranking``'s top 10% by quartile of the adversarial margin."""
    fooled = book.fooled[a]
    margin = adversarial_margin(book, a)
    edges = np.nanpercentile(margin, [0, 25, 50, 75, 100]) if len(fooled) else np.zeros(5)
    records = []
    for q in range(4):
        inside = (margin >= edges[q]) & ((margin <= edges[q + 1]) if q == 3 else (margin < edges[q + 1]))
        part = fooled[inside]
        records.append({"quartile": q + 1, "margin from": edges[q], "to": edges[q + 1], "photos": len(part),
                        "sufficient": float((column(part, col.verdict(a, "sufficient", ranking)) == 1).mean())
                        if len(part) else float("nan"),
                        "necessary": float((column(part, col.verdict(a, "necessary", ranking)) == 1).mean())
                        if len(part) else float("nan")})
    return pd.DataFrame(records)


def class_share_controls(book: StudyBook, method: str = "gc") -> dict[str, tuple[float, float, float]]:
    """How much overlap with the photo's map a map of the *photo itself* loses when it explains another class:
    the adversarial class (per attack), the runner-up class and a seeded random class; median 1 - IoU."""
    correct = book.correct
    out = {name: median_ci(1 - column(correct, col.compared(method, pair, "top_iou")))
           for name, pair in (("runner-up class", "cleanrunnerup"), ("random class", "cleanrandom"))}
    for a, title in book.attacks.items():
        out[f"{title}'s class"] = median_ci(1 - column(book.fooled[a], col.compared(method, f"clean{a}", "top_iou")))
    return out


def common_photos(*books: StudyBook) -> list[StudyBook]:
    """The tables restricted to the photos (classes) every one of them holds, in the first one's order."""
    shared = set.intersection(*({int(r["class_index"]) for r in b.rows} for b in books))
    return [dataclasses.replace(b, rows=[r for r in b.rows if int(r["class_index"]) in shared]) for b in books]


def preprocessing_check(books: dict[str, StudyBook], attack: str = "fgsm") -> tuple[pd.DataFrame, list[str]]:
    """The headline findings of tables that differ only in how a photo became the input (``settings.resize``),
    on the photos they share: accuracy, the attacks' success, the share the attribution's top 10% keeps,
    and where those pixels lie (object and edges, above chance). Returns the table (one column per table,
    ``value [low, high]``) and the findings whose 95% intervals do not overlap between the tables."""
    return _compared(dict(zip(books, common_photos(*books.values()))), attack)


def network_check(books: dict[str, StudyBook], attack: str = "fgsm") -> tuple[pd.DataFrame, list[str]]:
    """``preprocessing_check``'s findings for tables of different networks, like for like: on the photos
    every table holds and every network classifies correctly (so accuracy is left out)."""
    shared = dict(zip(books, common_photos(*books.values())))
    correct = set.intersection(*(set(b.correct.class_index.astype(int)) for b in shared.values()))
    both = {name: dataclasses.replace(b, rows=[r for r in b.rows if int(r["class_index"]) in correct])
            for name, b in shared.items()}
    return _compared(both, attack, accuracy=False)


def _compared(books: dict[str, StudyBook], attack: str, accuracy: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """The findings of ``_headline_numbers`` per table, side by side, and those whose intervals do not overlap."""
    numbers = {name: _headline_numbers(book, attack) for name, book in books.items()}
    findings = [f for f in next(iter(numbers.values())) if accuracy or not f.startswith("top-1")]
    frame = pd.DataFrame({"finding": ["photos", *findings]} |
                         {name: [f"{len(books[name].table)}"] + [_interval(v[f], "%" if "(%" in f else "")
                                                                 for f in findings]
                          for name, v in numbers.items()})
    differ = [f for f in findings if max(v[f][1] for v in numbers.values()) > min(v[f][2] for v in numbers.values())]
    return frame, differ


def _headline_numbers(book: StudyBook, attack: str) -> dict[str, tuple[float, float, float]]:
    """``preprocessing_check``'s findings of one table: (centre, low, high) each; "(%" in a name marks a share."""
    tests = location_tests(book)
    return {"top-1 accuracy (%)": share_ci(book.table.clean_correct == 1),
            **{f"{title} fools (% of the correct)": share_ci(book.correct[f"{a}_fooled"] == 1)
               for a, title in book.attacks.items() if a in ("fgsm", "pgd", "jf")},
            "attribution's top 10% keeps": median_ci(column(book.fooled[attack], col.kept(attack, "attack"))),
            "its share on the object, above the object's area": _mean_ci(tests[(attack, "attack", "object")]),
            "its share on edges, above their 10%": _mean_ci(tests[(attack, "attack", "edges")])}


def _mean_ci(test: dict) -> tuple[float, float, float]:
    return test["mean"], test["ci_low"], test["ci_high"]


def _interval(centre_low_high, kind: str = "") -> str:
    """``triple`` of a finding: a share in %, a difference signed when it can be negative, else 2 decimals."""
    signed = min(centre_low_high[0], centre_low_high[1]) < 0
    return triple(centre_low_high, ".0%" if kind == "%" else "+.2f" if signed else ".2f")


__all__ = ["EDGE_SHARE", "PIXEL_SETS", "RANKINGS", "REGION_WORDS", "adversarial_margin", "by_margin",
           "class_share_controls", "common_photos", "first_order", "gradient_overlap", "location", "location_tests",
           "network_check", "object_interventions", "preprocessing_check", "where_answer"]
