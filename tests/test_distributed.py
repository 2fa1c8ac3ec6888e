"""The study on a local Ray cluster writes the same rows as the serial runner."""
from __future__ import annotations

import csv

import pytest

from xai_helpers import study

pytest.importorskip("ray")

#: A cheap configuration: every column of the study, few steps.
SETTINGS = study.StudySettings(eps_grid_pixels=(2.0,), ig_steps=4, deletion_steps=2, intervention_random_masks=2,
                               pgd_steps=1, study_eps_pixels=2.0, road_photos=0)


def _rows(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    for row in rows:
        row.pop("seconds")  # wall time, the one column that may differ
    return rows


def test_four_photos_on_a_local_two_cpu_ray_cluster_give_the_serial_rows(tmp_path, mobilenet):
    serial = study.run_study(4, tmp_path / "serial.csv", SETTINGS, batch_size=2, sanity_photos=0, progress=False)
    distributed = study.run_study(4, tmp_path / "ray.csv", SETTINGS, batch_size=2, sanity_photos=0,
                                  progress=False, use_ray=True, ray_workers=2)
    serial_rows, ray_rows = _rows(serial), _rows(distributed)
    assert len(serial_rows) == 4
    assert ray_rows == serial_rows  # the same cells, to the byte, in the same (study) order
