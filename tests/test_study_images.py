"""The study on a folder of photos (``study --images DIR [--labels CSV]``)."""
from __future__ import annotations

import shutil

import pytest

import xai_helpers as xh
from xai_helpers.cli.main import main
from xai_helpers.study import runner as study
from xai_helpers.study.photos import file_sha256, folder_photos
from xai_helpers.study.runner import RunOptions
from xai_helpers.study.settings import StudySettings
from xai_helpers.study.table import load_table

SETTINGS = StudySettings(eps_grid_pixels=(2.0,), ig_steps=4, deletion_steps=2, intervention_random_masks=2,
                         pgd_steps=1, study_eps_pixels=2.0, road_photos=0, jf_step_levels=1.0, jf_max_levels=4.0,
                         smoothgrad_samples=2)


@pytest.fixture
def folder(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, cls in (("b_lizard.jpg", "whiptail"), ("a_cat.jpg", "tabby"), ("c_car.jpg", "sports_car")):
        shutil.copy(xh.sample_image(cls), photos / name)
    (photos / "notes.txt").write_text("not a photo")
    labels = tmp_path / "labels.csv"
    labels.write_text("file,class\nb_lizard.jpg,whiptail\na_cat.jpg,n02123045\n")  # c_car.jpg unlabelled
    return photos, labels


def test_folder_photos_are_sorted_by_name_and_labelled_from_the_csv(folder):
    photos, labels = folder
    found = folder_photos(photos, labels)
    assert [p.path.rsplit("/", 1)[1] for p in found] == ["a_cat.jpg", "b_lizard.jpg", "c_car.jpg"]
    assert [p.label for p in found] == [281, 41, None]
    assert [p.index for p in found] == [0, 1, 2]


def test_a_folder_study_keys_rows_by_photo_and_resumes(folder, tmp_path, tiny_study_model):
    # (the real analysis of the tiny study model: the point is which rows are kept, not their numbers)
    photos, labels = folder
    out = study.run_study(2, tmp_path / "folder.csv", SETTINGS, RunOptions(batch_size=2, sanity_photos=0, progress=False, images=photos, labels=labels, model=tiny_study_model))
    rows = load_table(out).rows
    assert [r["file"] for r in rows] == ["a_cat.jpg", "b_lizard.jpg"]
    assert rows[0]["sha256"] == file_sha256(photos / "a_cat.jpg")
    assert rows[1]["class_index"] == "41" and {r["status"] for r in rows} == {"ok"}
    assert load_table(out).meta["photo_source"] == f"folder {photos.resolve()}"
    first = {r["file"]: r for r in rows}
    # A photo added in front of the others: --photos 3 is the first 3 of the sorted folder, so the new photo
    # and the two already analysed; their rows are kept to the cell, the new one analysed (a real run).
    shutil.copy(xh.sample_image("sports_car"), photos / "00new.jpg")
    study.run_study(3, out, SETTINGS, RunOptions(batch_size=2, sanity_photos=0, progress=False, images=photos,
                                                labels=labels, model=tiny_study_model))
    rows = load_table(out).rows
    assert [r["file"] for r in rows] == ["00new.jpg", "a_cat.jpg", "b_lizard.jpg"]
    assert all(r == first[r["file"]] for r in rows[1:])
    assert "class_index" not in rows[0] and "clean_correct" not in rows[0] and "fgsm_top1" in rows[0]  # unlabelled
    before = out.read_text()
    study.run_study(3, out, SETTINGS, RunOptions(batch_size=2, sanity_photos=0, progress=False, images=photos,
                                                labels=labels, model=tiny_study_model))
    assert out.read_text() == before  # resumed: nothing recomputed, nothing lost
    # A photo whose bytes changed: the table no longer describes the folder, and resuming says which file.
    shutil.copy(xh.sample_image("tabby"), photos / "b_lizard.jpg")
    with pytest.raises(ValueError, match=r"1 photo\(s\) whose bytes changed .*\(b_lizard\.jpg\)"):
        study.run_study(3, out, SETTINGS, RunOptions(batch_size=2, sanity_photos=0, progress=False, images=photos,
                                                    labels=labels, model=tiny_study_model))
    assert out.read_text() == before


@pytest.mark.parametrize("labels_text, words", [("a_cat.jpg,no such animal\n", "line 1"),
                                                ("z.jpg,tabby\n", "z.jpg"), ("a_cat.jpg\n", "file,class")])
def test_bad_labels_are_named_with_file_and_line(folder, tmp_path, labels_text, words, one_sentence):
    photos, _ = folder
    bad = tmp_path / "bad.csv"
    bad.write_text(labels_text)
    with pytest.raises(ValueError) as excinfo:
        folder_photos(photos, bad)
    assert words in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_missing_or_empty_folders_are_refused(tmp_path, one_sentence):
    with pytest.raises(FileNotFoundError) as excinfo:
        folder_photos(tmp_path / "nowhere")
    one_sentence(excinfo, "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError) as excinfo:
        folder_photos(tmp_path / "empty")
    one_sentence(excinfo, "no photos")


def test_the_command_line_refuses_more_photos_than_the_folder_has(folder, tmp_path, capsys):
    photos, labels = folder
    code = main(["study", "--images", str(photos), "--labels", str(labels), "--photos", "5",
                 "--out", str(tmp_path / "t.csv")], prog="x")
    assert code == 2 and "--photos must be in [1, 3]" in capsys.readouterr().err
