"""Run the book's chapters (and, with --unit, the unit tests) as a pool of jobs, for ``make book`` and ``make test``.

Each chapter runs once, as a notebook under nbmake (``pytest --nbmake``), into a copy of the book in
``_executed/`` that keeps its outputs; the HTML and the PDF are then built from those executed notebooks
(``execute_notebooks: off`` there), so nothing runs twice. A chapter runs again only when its ``.md``, the
package or a results table it reads is newer than its executed notebook; a chapter that fails leaves none.

The pool runs ``--jobs`` jobs at a time (default: one per core): the unit tests first, then the chapters,
slowest first (``SLOW_FIRST``), so that no long job is left running alone at the end. Each job's
TensorFlow gets ``cores / jobs`` threads (an explicit ``TF_NUM_INTRAOP_THREADS`` wins). Every line a job
prints starts with ``[name]``, a line every 30 s says which jobs are still running, and each job's time is
printed when it ends. Exit status: 0 when every job passed, 1 otherwise (after the running jobs end).

    python tools/book_jobs.py [--jobs N] [--unit] [CHAPTER ...]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXECUTED = ROOT / "_executed"
#: Chapters that take longest, started first (the rest follow in file-name order).
SLOW_FIRST = ("study_methods", "explainers", "interventions", "explaining", "softmax_vs_logits", "answer", "pixels",
              "attack")
#: What a chapter's results depend on besides its own .md: the package and the tables it reads.
INPUTS = ("xai_helpers/**/*.py", "results/*.csv")
#: Files the executed copy of the book needs besides the chapters.
BOOK_FILES = ("_toc.yml", "book/references.bib", "book/_static", "book/_templates")
HEARTBEAT_S = 30
UNIT = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tests", "--ignore=tests/test_browser.py",
        "--ignore=tests/test_pdf.py", "--ignore=tests/test_book_text.py"]
NBMAKE = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "-s", "--nbmake",
          "--nbmake-timeout=900", "--overwrite", "--durations=1", "-o", "testpaths="]


def chapters() -> list[str]:
    """The book's executable chapters (``book/*.md`` with a jupytext header), slowest first."""
    names = sorted(p.stem for p in (ROOT / "book").glob("*.md") if p.read_text().startswith("---\njupytext:"))
    return [n for n in SLOW_FIRST if n in names] + [n for n in names if n not in SLOW_FIRST]


def stale(chapter: str) -> bool:
    """Whether ``chapter`` must run: no executed notebook, or one older than its .md or an input."""
    done = EXECUTED / "book" / f"{chapter}.ipynb"
    if not done.is_file():
        return True
    newest = max([(ROOT / "book" / f"{chapter}.md").stat().st_mtime] +
                 [p.stat().st_mtime for pattern in INPUTS for p in ROOT.glob(pattern)])
    return done.stat().st_mtime < newest


def prepare() -> None:
    """Lay out ``_executed/``: the table of contents, the bibliography, static files and a configuration
    that builds from the executed notebooks without running them again."""
    (EXECUTED / "book").mkdir(parents=True, exist_ok=True)
    for name in BOOK_FILES:
        source, target = ROOT / name, EXECUTED / name
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    for page in (ROOT / "book").glob("*.md"):   # the pages that are not notebooks (glossary, usage, ...)
        if not page.read_text().startswith("---\njupytext:"):
            shutil.copy2(page, EXECUTED / "book" / page.name)
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    config["exclude_patterns"] = [p for p in config["exclude_patterns"] if p != "book/*.ipynb"]
    (EXECUTED / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))


def _environment(jobs: int) -> dict:
    threads = str(max(1, (os.cpu_count() or 2) // jobs))
    env = dict(os.environ)
    env.setdefault("TF_NUM_INTRAOP_THREADS", threads)
    env.setdefault("TF_NUM_INTEROP_THREADS", threads)
    return env


def _chapter_command(chapter: str) -> tuple[list[str], Path]:
    notebook = EXECUTED / "book" / f"{chapter}.ipynb"
    subprocess.run([sys.executable, "-m", "jupytext", "--quiet", "--to", "ipynb", "--output", str(notebook),
                    str(ROOT / "book" / f"{chapter}.md")], check=True)
    return NBMAKE + [str(notebook)], notebook


REPORT = EXECUTED / "execution.json"


def write_report(times: dict[str, tuple[float, bool]]) -> None:
    """Record each chapter's last run (seconds, passed) in ``_executed/execution.json`` and write the book's
    execution report page, ``_executed/book/execution.md``, from it."""
    import json

    runs = json.loads(REPORT.read_text()) if REPORT.is_file() else {}
    runs.update({name: {"seconds": round(seconds, 1), "passed": ok, "when": time.strftime("%Y-%m-%d %H:%M")}
                 for name, (seconds, ok) in times.items()})
    REPORT.write_text(json.dumps(runs, indent=1))
    lines = ["# Execution report", "",
             "How each chapter ran in the build that made this book: every chapter is a notebook run once under "
             "nbmake, in parallel jobs (`tools/book_jobs.py`), before the HTML and the PDF are built from the "
             "executed notebooks.", "", "| chapter | run time (s) | status | when |", "| --- | --- | --- | --- |"]
    lines += [f"| {name} | {run['seconds']:.0f} | {'passed' if run['passed'] else 'FAILED'} | {run['when']} |"
              for name, run in sorted(runs.items()) if name in chapters()]
    (EXECUTED / "book" / "execution.md").write_text("\n".join(lines) + "\n")


class Pool:
    """Jobs run ``size`` at a time; their lines prefixed, a heartbeat every ``HEARTBEAT_S``."""

    def __init__(self, size: int):
        self.size, self.running, self.failed, self.lock = size, {}, [], threading.Lock()
        self.times: dict[str, tuple[float, bool]] = {}

    def say(self, line: str) -> None:
        with self.lock:
            print(line, flush=True)

    def run(self, name: str, command: list[str], env: dict, on_failure=None) -> None:
        start = time.time()
        with self.lock:
            self.running[name] = start
        self.say(f"== {name} started ==")
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, errors="replace")
        for line in process.stdout:
            self.say(f"  [{name}] {line.rstrip()}")
        ok = process.wait() == 0
        with self.lock:
            del self.running[name]
            self.times[name] = (time.time() - start, ok)
            if not ok:
                self.failed.append(name)
        if not ok and on_failure is not None:
            on_failure()
        self.say(f"== {name} {'ran' if ok else 'FAILED'} in {time.time() - start:.0f} s ==")

    def heartbeat(self, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_S):
            with self.lock:
                busy = ", ".join(f"{n} ({time.time() - t:.0f} s)" for n, t in self.running.items())
            if busy:
                self.say(f"== still running: {busy} ==")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="jobs at a time (default: cores)")
    parser.add_argument("--unit", action="store_true", help="run the unit tests as the first job")
    parser.add_argument("chapter", nargs="*", help="chapters to run (default: every chapter that changed)")
    args = parser.parse_args(argv)
    prepare()
    todo = args.chapter or [c for c in chapters() if stale(c)]
    pool = Pool(max(1, args.jobs))
    env = _environment(pool.size)
    print(f"== {'unit tests and ' if args.unit else ''}{len(todo)} chapter(s), {pool.size} at a time ==", flush=True)

    def chapter_job(chapter: str) -> None:
        command, notebook = _chapter_command(chapter)
        pool.run(chapter, command, env, on_failure=lambda: notebook.unlink(missing_ok=True))

    jobs = ([lambda: pool.run("unit tests", UNIT, env)] if args.unit else []) + \
        [lambda c=c: chapter_job(c) for c in todo]
    stop = threading.Event()
    threading.Thread(target=pool.heartbeat, args=(stop,), daemon=True).start()
    free = threading.Semaphore(pool.size)

    def guarded(job) -> None:
        try:
            job()
        except Exception as error:   # (a chapter that cannot even be converted fails, the others go on)
            pool.say(f"== FAILED to start: {error} ==")
            pool.failed.append(str(error))
        finally:
            free.release()

    def start(job) -> threading.Thread:
        free.acquire()
        thread = threading.Thread(target=guarded, args=(job,))
        thread.start()
        return thread

    for thread in [start(job) for job in jobs]:
        thread.join()
    stop.set()
    write_report({name: run for name, run in pool.times.items() if name != "unit tests"})
    if pool.failed:
        print(f"== FAILED: {', '.join(pool.failed)} ==", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
