"""The hooks and CI files a public project of this kind ships: pre-commit and a GitHub Actions workflow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT


def test_pre_commit_runs_ruff_and_the_notebook_check(tmp_path: Path) -> None:
    config = ROOT / ".pre-commit-config.yaml"
    pre_commit = Path(sys.executable).parent / "pre-commit"
    result = subprocess.run([str(pre_commit), "validate-config", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    repos = yaml.safe_load(config.read_text())["repos"]
    hooks = {hook["id"]: hook for repo in repos for hook in repo["hooks"]}
    assert hooks["ruff-check"]["entry"].startswith(".venv/bin/ruff check")
    assert hooks["ruff-format"]["entry"].startswith(".venv/bin/ruff format")
    notebook_check = hooks["notebook-outputs"]["entry"]
    assert "tests/test_notebook.py::test_committed_notebook_has_no_outputs" in notebook_check
    test_file, test_name = notebook_check.split()[-1].split("::")
    assert f"def {test_name}(" in (ROOT / test_file).read_text()


def test_github_workflow_runs_make_test_on_push() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "test.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert "push" in triggers and "pull_request" in triggers
    steps = workflow["jobs"]["test"]["steps"]
    assert [step.get("run") for step in steps[-2:]] == ["make test", "make test-long"]
    ci_commands = [
        line.split(" make ", 1)[1]
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.startswith("timeout ") and " make " in line
    ]
    assert ci_commands == ["test", "test-long"]  # the same commands as here, each with a deadline


def test_every_test_has_a_timeout_and_make_test_checks_the_format() -> None:
    import tomllib

    pytest_options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert 0 < int(pytest_options["timeout"]) <= 900
    recipe = (ROOT / "Makefile").read_text().split("\ntest:")[1].split("\n\n")[0]
    assert "ruff check" in recipe and "ruff format --check" in recipe


def test_make_test_leaves_out_exactly_the_long_runs_and_make_test_long_runs_them() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert '-m pytest -m "not long" $(PYTEST_ARGS)' in makefile.split("\ntest:")[1].split("\n\n")[0]
    assert "-m pytest -m long $(PYTEST_ARGS)" in makefile.split("\ntest-long:")[1].split("\n\n")[0]
