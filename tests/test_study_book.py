"""The study chapters' shared loader (``study_book``): the committed table, its subsets and its formatting."""
from __future__ import annotations

import numpy as np
import pytest

from xai_helpers.chapters import study_tables as study_book


@pytest.fixture(scope="module")
def book():
    return study_book.load_study("study.csv", sanity=None)


def test_the_subsets_are_the_correct_photos_and_those_each_attack_fools(book):
    table = book.table
    assert len(table) == len(book.rows) and book.n_skipped == 0
    assert (book.correct.clean_correct == 1).all()
    assert len(book.correct) == int((table.clean_correct == 1).sum())
    for attack, fooled in book.fooled.items():
        assert set(fooled.index) <= set(book.correct.index)
        assert (fooled[f"{attack}_fooled"] == 1).all()
    assert book.settings.key() == book.meta["settings_key"]  # read from the header, checked against its key


def test_glue_values_are_the_counts_and_settings_the_chapters_quote(book):
    values = book.glue_values()
    assert values["n_photos"] == len(book.table) and values["n_correct"] == len(book.correct)
    assert values["n_fooled_fgsm"] == len(book.fooled["fgsm"])
    assert values["deletion_half"] * 2 == book.settings.deletion_steps
    assert values["n_skipped"] == "every photo could be read"


def test_interval_and_share_formatting():
    assert study_book.interval({"mean": 0.1234, "ci_low": -0.01, "ci_high": 0.25}) == "+0.123 [-0.010, +0.250]"
    assert study_book.interval({"auc": 0.5, "ci_low": 0.4, "ci_high": 0.6}, ".2f") == "+0.50 [+0.40, +0.60]"
    share, low, high = study_book.share_ci([True] * 10)
    assert share == 1.0 and 0.6 < low < 1.0 and high == pytest.approx(1.0)  # Wilson: no collapse at 100%
    with pytest.raises(ValueError, match="at least one"):
        study_book.share_ci(np.array([], dtype=bool))


def test_median_reads_only_finite_values_and_agrees_with_median_ci():
    values = [3.0, np.nan, 1.0, np.inf, 2.0]
    assert study_book.median(values) == 2.0 == study_book.median_ci(values)[0]
    assert np.isnan(study_book.median([np.nan, np.nan]))


def test_a_table_given_by_path_is_read_from_there(tmp_path, book):
    from xai_helpers.chapters.paths import results_path

    copy = tmp_path / "copy.csv"
    copy.write_bytes(results_path("study.csv").read_bytes())
    other = study_book.load_study(copy)
    assert len(other.table) == len(book.table)


def test_the_second_network_s_table_reads_without_a_sanity_table_and_names_its_attacks():
    v1 = study_book.load_study("study_mobilenet_v1.csv", sanity=None)
    assert v1.sanity.empty and "MobileNet" in v1.model_name
    assert list(v1.attacks) == ["fgsm", "pgd", "tpgd", "jf"]   # FGSM, PGD, targeted and just-flipping PGD
    assert list(study_book.load_study("study.csv", sanity=None).attacks) == ["fgsm", "pgd", "tpgd", "jf"]
    assert (v1.fooled["tpgd"].tpgd_fooled == 1).all()


def test_a_table_without_targeted_columns_names_only_the_untargeted_attacks(book):
    # A table without some attacks' columns reads, and its chapters see only the attacks it holds.
    untargeted = [{k: v for k, v in row.items() if not k.startswith(("tpgd_", "jf_"))} for row in book.rows]
    earlier = study_book.StudyBook(book.meta, untargeted, book.n_skipped, {}, [])
    assert list(earlier.attacks) == ["fgsm", "pgd"]
    assert set(earlier.fooled) == {"fgsm", "pgd"}


def test_class_share_is_the_control_s_lost_overlap_over_the_attacked_map_s(book):
    f = book.fooled["fgsm"]
    expected = (1 - f.gc_cleanfgsm_top_iou.median()) / (1 - f.gc_fgsmadv_top_iou.median())
    assert book.class_share("fgsm", "gc") == pytest.approx(expected)
    assert 0 < book.class_share("pgd", "ig") < 2


def test_class_share_interval_brackets_the_estimate_and_is_seeded(book):
    low, high = book.class_share_interval("fgsm", "ig", n_boot=200, seed=1)
    assert low <= book.class_share("fgsm", "ig") <= high
    assert (low, high) == book.class_share_interval("fgsm", "ig", n_boot=200, seed=1)
