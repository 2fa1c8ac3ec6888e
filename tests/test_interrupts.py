"""Ctrl-C, SIGTERM and kills during the study: a message and exit 130, never a crash, never a lost row.

The runner's bookkeeping is exercised in subprocesses with a fast, deterministic fake of the per-photo
analysis (``RUNNER``: the real command line, ``xai_helpers.cli.main``, with ``rows.analyse_batch``,
``sanity_check`` and ``load_model`` replaced), so that signals land at random points (seeded) of many runs
within seconds; one short real run checks the same on the real analysis (of the tiny study model).
"""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from xai_helpers.study import table
from xai_helpers.study.settings import StudySettings

RUNNER = textwrap.dedent('''
    import sys, time
    import xai_helpers.classifier.loading, xai_helpers.study.rows, xai_helpers.study.sanity
    from xai_helpers.cli import main as cli

    DELAY = float(sys.argv[1])

    def analyse_batch(model, class_indices, settings):
        rows = []
        for c in class_indices:
            time.sleep(DELAY)
            c = int(c)
            row = {"class_index": c, "wnid": f"n{c:08d}", "name": f"class, {c}",
                   "clean_correct": int(c % 3 != 0), "clean_p_true": (c % 97) / 97 + 1e-9}
            if c % 3:
                row["gc_advadv_spearman"] = float("nan") if c % 5 == 0 else c / 1000.0
            rows.append(row)
        return rows

    def sanity_check(model, chosen, settings, progress=False):
        time.sleep(DELAY)
        return [{"class_index": c, "stage": "logits", "gc_spearman": 0.5} for c in chosen]

    def load_model(*args, **kwargs):
        print("ready", flush=True)  # the study has started: its table is read, its batches come next
        return None

    xai_helpers.study.rows.analyse_batch = analyse_batch
    xai_helpers.study.sanity.sanity_check = sanity_check
    xai_helpers.classifier.loading.load_model = load_model
    sys.argv = ["study", "study", *sys.argv[2:]]
    sys.exit(cli.main(prog="study"))  # as the command line runs it (argv from sys.argv)
''')

PHOTOS, BATCH, DELAY = 12, 2, 0.04


def _start(runner, out, *extra, delay=DELAY):
    args = [sys.executable, str(runner), str(delay), "--photos", str(PHOTOS), "--batch-size", str(BATCH),
            "--sanity-photos", "2", "--quiet", "--out", str(out), *extra]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def _rows(path):
    """The table's rows, without the per-photo timing (the one column that differs between runs)."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in table.load_table(path).rows]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    path = tmp_path_factory.mktemp("runner") / "fake_study.py"
    path.write_text(RUNNER)
    return path


@pytest.fixture(scope="module")
def reference(runner, tmp_path_factory):
    """The rows of an uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "study.csv"
    proc = _start(runner, out)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert f"wrote {out}" in stdout
    return _rows(out)


def test_the_fake_study_writes_every_photo_once(reference):
    assert len(reference) == PHOTOS
    assert len({r["class_index"] for r in reference}) == PHOTOS


def test_ctrl_c_and_sigterm_at_random_points_end_with_a_message_and_exit_130(runner, reference, tmp_path):
    rng = np.random.default_rng(0)
    out = tmp_path / "study.csv"
    outcomes = []
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGINT, signal.SIGTERM):
        proc = _start(runner, out)
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
        assert "Traceback" not in stderr and "Segmentation" not in stderr, stderr
        assert proc.returncode in (0, 130), (proc.returncode, stderr)
        kept = len(_rows(out)) if out.exists() else 0
        if proc.returncode == 130:
            lines = stderr.strip().splitlines()
            assert f"interrupted, {kept} rows kept in {out}" in lines[-1], stderr
        outcomes.append(proc.returncode)
        assert _rows(out) == reference[:kept] if out.exists() else kept == 0
    assert 130 in outcomes


def test_kills_at_random_points_over_several_runs_keep_exactly_the_rows_of_an_uninterrupted_run(
        runner, reference, tmp_path):
    rng = np.random.default_rng(2024)
    out = tmp_path / "study.csv"
    killed = 0
    for _ in range(8):
        proc = _start(runner, out)
        time.sleep(rng.uniform(0.0, 0.35))
        proc.kill()  # SIGKILL: no handler runs, as with a power cut or the OOM killer
        proc.communicate(timeout=60)
        killed += proc.returncode == -signal.SIGKILL
        if out.exists():
            # Whatever the kill hit (a batch, the table's write, the rename), the table is whole.
            kept = _rows(out)
            assert kept == reference[:len(kept)]
        leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".study")]
        for name in leftovers:  # a kill between mkstemp and rename can leave a hidden temporary
            assert name.endswith(".tmp")
    assert killed >= 4
    proc = _start(runner, out)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert _rows(out) == reference


def test_a_real_short_study_interrupted_and_resumed_keeps_its_rows(tmp_path, tiny_study_model):
    """The real analysis (of the tiny study model) on 3 photos with cheap settings: Ctrl-C once the first row
    is written, then resume."""

    cheap = {"ig_steps": 4, "eps_grid_pixels": (2.0,), "study_eps_pixels": 2.0, "pgd_steps": 1,
             "deletion_steps": 2, "intervention_random_masks": 1, "road_photos": 0, "jf_step_levels": 1.0,
             "jf_max_levels": 4.0, "smoothgrad_samples": 2}
    fields = {f.name for f in dataclasses.fields(StudySettings)}
    settings = {k: v for k, v in cheap.items() if k in fields}
    script = tmp_path / "real_study.py"
    script.write_text(textwrap.dedent(f'''
        import dataclasses, sys
        import xai_helpers.study.runner as study
        from xai_helpers.cli import main as cli
        Settings = study.StudySettings
        study.StudySettings = lambda: dataclasses.replace(Settings(), **{settings!r})
        sys.argv = ["study", "study", "--photos", "3", "--batch-size", "1", "--sanity-photos", "0",
                    "--model", {tiny_study_model.name!r}, "--out", sys.argv[1]]
        sys.exit(cli.main(prog="study"))
    '''))
    out = tmp_path / "real.csv"
    proc = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 400
    while not out.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert "Traceback" not in stderr, stderr
    assert proc.returncode in (0, 130), stderr
    kept = table.load_table(out).rows
    if proc.returncode == 130:
        assert f"interrupted, {len(kept)} rows kept in {out}" in stderr
        assert "retracing" not in stderr
    proc = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "retracing" not in proc.stderr and "WARNING" not in proc.stderr, proc.stderr
    resumed = table.load_table(out).rows
    assert len(resumed) == 3
    assert resumed[:len(kept)] == kept  # the kept rows, cell for cell (empty cells still empty)
    assert os.path.getsize(out) > 0
