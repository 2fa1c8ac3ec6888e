"""Draw the README's picture from the study tables: where each attack's most effective pixels lie, on both
networks (the book's chapter *Where the attack acts* draws the same numbers). No photo's pixels are in it.

    python tools/readme_figure.py [--out book/_static/readme_where.png]
"""
from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "book" / "_static" / "readme_where.png")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from xai_helpers.chapters.study_tables import load_study
    from xai_helpers.chapters.where import location

    books = {"MobileNetV2": load_study("study.csv", sanity=None),
             "MobileNet v1": load_study("study_mobilenet_v1.csv", sanity=None)}
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.1), constrained_layout=True, sharey=True)
    for ax, region, label in zip(axes, ("object", "edges"), ("on the object (minus its area)",
                                                             "on edges (minus their 10%)")):
        for k, (name, book) in enumerate(books.items()):
            frame = location(book)
            part = frame[(frame.region == region) & (frame.pixels == "attribution's top 10%")]
            y = np.arange(len(part)) + 0.18 * (k - 0.5)
            centre = part["above chance"].to_numpy()
            ax.errorbar(centre, y, xerr=[centre - part.low.to_numpy(), part.high.to_numpy() - centre],
                        fmt="o" if k == 0 else "s", capsize=3, label=f"{name} ({len(book.table)} photos)")
            ax.set_yticks(np.arange(len(part)), part.attack)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_xlabel(f"share of the attack's top 10% of pixels\n{label}", fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncol=2)
    fig.suptitle("Where an adversarial attack acts: its most effective pixels, against chance", fontsize=10)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
