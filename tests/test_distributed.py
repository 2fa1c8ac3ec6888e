"""The study on a local Ray cluster: the serial runner's rows, through a killed worker and a stopped driver."""
from __future__ import annotations

import csv
import functools
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from xai_helpers.study import rows as study_rows
from xai_helpers.study import runner as study
from xai_helpers.study import table
from xai_helpers.study.runner import RunOptions
from xai_helpers.study.settings import StudySettings

ray = pytest.importorskip("ray")

#: A cheap configuration: every column of the study, few steps.
SETTINGS = StudySettings(eps_grid_pixels=(2.0,), ig_steps=4, deletion_steps=2, intervention_random_masks=2,
                         pgd_steps=1, study_eps_pixels=2.0, road_photos=0, jf_step_levels=1.0, jf_max_levels=4.0,
                         smoothgrad_samples=2)


@pytest.fixture(autouse=True, scope="module")
def _pickled_by_value():
    """The functions below run on Ray workers, which cannot import this test module: send them whole."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def ray_cluster():
    """One local 2-CPU cluster for this module's in-process tests (``ray_shards`` uses a running cluster and
    leaves it running; starting one costs 10-20 s on 2 cores)."""
    from xai_helpers.study.distributed import _runtime_env

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env=_runtime_env(),
             configure_logging=False)
    yield
    ray.shutdown()


def _rows(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    for row in rows:
        row.pop("seconds")  # wall time, the one column that may differ
    return rows


def _dies_on_its_first_shard(marker, model, shard, settings):
    """The real analysis, but the first worker to get here is killed (SIGKILL) in the middle of its shard."""
    from xai_helpers.study import rows as study_rows

    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))  # exactly one worker wins this
        os.kill(os.getpid(), signal.SIGKILL)
    except FileExistsError:
        pass
    return study_rows.analyse_batch(model, shard, settings)


def test_two_photos_on_a_two_cpu_ray_cluster_give_the_serial_rows_though_a_worker_is_killed(
        tmp_path, tiny_study_model, monkeypatch, ray_cluster):
    # Two one-photo shards on two workers: one worker is killed in its shard, which Ray runs again (the
    # rows' order and bytes are the point; more photos would only repeat the same analysis). The real
    # analysis on the tiny study model: each worker loads its own copy, as with MobileNetV2, in seconds.
    serial = study.run_study(2, tmp_path / "serial.csv", SETTINGS, RunOptions(batch_size=1, sanity_photos=0, progress=False, model=tiny_study_model))
    monkeypatch.setattr(study_rows, "analyse_batch", functools.partial(_dies_on_its_first_shard, str(tmp_path / "k")))
    distributed = study.run_study(2, tmp_path / "ray.csv", SETTINGS, RunOptions(batch_size=1, sanity_photos=0, progress=False, use_ray=True, ray_workers=2, model=tiny_study_model))
    assert (tmp_path / "k").exists()  # a worker was killed, and Ray ran its shard again
    serial_rows, ray_rows = _rows(serial), _rows(distributed)
    assert len(serial_rows) == 2
    assert ray_rows == serial_rows  # the same cells, to the byte, in the same (study) order


def _always_dies(model, shard):
    if shard[0] == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return [{"class_index": c} for c in shard]


def test_a_shard_whose_worker_keeps_dying_is_set_aside_and_the_others_are_kept(ray_cluster):
    from xai_helpers.study.distributed import RAY_RETRIES, WorkerLost, ray_shards

    finished = []
    with pytest.raises(WorkerLost) as excinfo:
        for shard, rows, _ in ray_shards([[0], [1], [2], [3]], _always_dies, lambda: None, workers=2):
            finished.append(shard[0])
    assert sorted(finished) == [0, 2, 3] and excinfo.value.lost == [[1]]
    assert f"{RAY_RETRIES + 1} times in a row" in str(excinfo.value)


RUNNER = textwrap.dedent('''
    import sys, time
    import xai_helpers.study.rows as study_rows, xai_helpers.study.settings as study_settings
    from xai_helpers.cli import main as cli

    def analyse_batch(model, class_indices, settings):
        time.sleep(1.0)
        return [{"class_index": int(c), "status": "ok", "value": int(c) / 7} for c in class_indices]

    def load(self):
        return None

    study_rows.analyse_batch = analyse_batch
    study_settings.ModelSpec.load = load   # (sent to the workers by value, like the analysis)
    print("ready", flush=True)
    sys.argv = ["study", "study", *sys.argv[1:]]
    sys.exit(cli.main(prog="study"))
''')


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_stop_a_ray_study_with_exit_130_and_its_rows_kept(stop, tmp_path):
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    out = tmp_path / "study.csv"
    proc = subprocess.Popen([sys.executable, str(runner), "--photos", "40", "--batch-size", "1", "--ray",
                             "--ray-workers", "2", "--sanity-photos", "0", "--quiet", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 300
    while not out.exists() and proc.poll() is None and time.monotonic() < deadline:  # until the first rows
        time.sleep(0.2)
    # The signal is sent only once rows exist and the study is still running. (The child starts with SIGINT
    # as at a terminal: conftest's _sigint_as_at_a_terminal.)
    assert out.exists() and proc.poll() is None, "the study wrote no rows within 300 s, or ended before the signal"
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=120)
    kept = len(table.load_table(out).rows)
    assert proc.returncode == 130, err
    assert f"interrupted, {kept} rows kept in {out}" in err and "Traceback" not in err
    assert "SIGTERM received" not in err and 1 <= kept < 40
