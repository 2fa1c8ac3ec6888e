"""Peak resident memory of ``python -m xai_helpers explain`` over a folder of 1, 10 and 50 photos.

Each run is a fresh process (the command line as a user runs it) on a folder of sample photos (every 20th of
the 1000, so 50 different classes), with IG at 16 steps (IG evaluates its path in chunks, so its peak does not
depend on the steps); the peak is the child's ``ru_maxrss``. Flat memory means the 50-photo peak is within a
few tens of MB of the 10-photo peak (the first photos also load what later ones use once).

    ../.venv/bin/python explain_memory.py [--photos 1 10 50]

Summary line: ``explain_memory peak_mb_1=... peak_mb_10=... peak_mb_50=... growth_mb_per_photo=...``
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MEASURE = ("import json, resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
           "print(json.dumps({'peak_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "
           "'returncode': r.returncode}))")


def peak_mb(folder: Path, out: Path) -> tuple[float, float]:
    """(peak resident MB, seconds) of one explain run over ``folder``."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "xai_helpers", "explain", str(folder), "--steps", "16", "--quiet",
               "--out-dir", str(out)]
    proc = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["returncode"] != 0:
        raise SystemExit(f"explain exited with {result['returncode']}: {proc.stderr[-500:]}")
    return result["peak_mb"], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, nargs="+", default=[1, 10, 50])
    args = parser.parse_args()
    from xai_helpers.classifier.data import sample_image

    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.photos:
            folder = Path(tmp) / f"photos{n}"
            folder.mkdir()
            for k in range(n):
                shutil.copy(sample_image(20 * k), folder)
            peaks[n], seconds = peak_mb(folder, Path(tmp) / f"out{n}")
            print(f"{n:3d} photos: peak {peaks[n]:7.0f} MB  ({seconds:.0f} s)", flush=True)
    # Growth between the two largest folders: the first photos also load what later photos use once (the
    # segmentation network loads at the first photo whose class has a PASCAL category).
    first, last = sorted(peaks)[-2:] if len(peaks) > 1 else (min(peaks), min(peaks))
    growth = (peaks[last] - peaks[first]) / (last - first) if last > first else float("nan")
    print("explain_memory " + " ".join(f"peak_mb_{n}={p:.0f}" for n, p in peaks.items())
          + f" growth_mb_per_photo={growth:.1f}")


if __name__ == "__main__":
    main()
