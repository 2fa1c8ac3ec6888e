"""``make lab`` anywhere: LAB_ARGS reach JupyterLab, root is allowed only when root, a chapter opens as a notebook.

The server is started through the Makefile on loopback with a token, asked for a chapter's MyST ``.md`` as a
notebook through the contents API (jupytext's contents manager), and stopped.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_lab_serves_a_chapter_as_a_notebook_on_loopback_with_lab_args(tmp_path):
    if not (ROOT / ".venv" / "bin" / "jupyter").exists():
        pytest.skip("needs the project's environment (.venv), which make test creates")
    port, token = _free_port(), secrets.token_hex(16)
    args = f"--no-browser --ip 127.0.0.1 --port {port} --IdentityProvider.token={token}"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(["make", "-s", "lab", f"LAB_ARGS={args}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api/contents/attack.md?type=notebook&content=1"
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    try:
        deadline, answer = time.monotonic() + 120, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    answer = json.load(response)
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        assert answer is not None, proc.stdout.read() if proc.poll() is not None else "no answer in 120 s"
        assert answer["type"] == "notebook" and answer["name"] == "attack.md"
        cells = answer["content"]["cells"]
        assert any(c["cell_type"] == "code" for c in cells) and any(c["cell_type"] == "markdown" for c in cells)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
    assert "Use --allow-root to bypass" not in output  # (it answered, so as root it was allowed)


def test_make_lab_allows_root_only_as_root():
    dry = subprocess.run(["make", "-n", "-s", "lab", "LAB_ARGS=--port 1"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    command = next(line for line in dry.splitlines() if "jupyter lab" in line)
    assert command.endswith("--port 1 book/")
    assert ("--allow-root" in command) == (os.geteuid() == 0)
