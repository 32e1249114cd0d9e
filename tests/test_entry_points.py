"""The entry points start as scripts (``python src/train.py``) with nothing but the editable install that
``make install`` makes: no ``sys.path`` edits, and the repository's root known in one place."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from src.runs.paths import CONF_DIR, REPO_ROOT
from tests.conftest import run_env

PATH_EDIT = "sys.path." + "insert"  # spelled in two so that this file does not find itself


def test_the_root_is_the_folder_holding_src_and_conf() -> None:
    assert (REPO_ROOT / "src" / "train.py").is_file() and CONF_DIR == REPO_ROOT / "conf"
    assert (CONF_DIR / "train.yaml").is_file()


def test_no_script_edits_sys_path() -> None:
    scripts = [*(REPO_ROOT / "src").rglob("*.py"), *(REPO_ROOT / "bench").glob("*.py")]
    scripts += Path(__file__).parent.glob("*.py")
    edits = [str(path.relative_to(REPO_ROOT)) for path in sorted(scripts) if PATH_EDIT in path.read_text()]
    assert edits == []
    assert PATH_EDIT not in (REPO_ROOT / "notebooks" / "kernels.ipynb").read_text()


@pytest.mark.slow
def test_prepare_starts_as_a_script_and_its_log_file_holds_what_it_said(tmp_path: Path) -> None:
    """``python src/prepare.py`` from another folder, with ``src`` from the editable install alone (no
    ``PYTHONPATH``): its lines are printed and written to its run's ``prepare.log``."""
    env = {k: v for k, v in run_env(tmp_path).items() if k != "PYTHONPATH"}
    paths = [f"paths.log_dir={tmp_path / 'outputs'}", f"paths.data_dir={tmp_path / 'data'}"]
    tiny = ["data=synthetic", "data.source.train_per_class=3", "data.source.test_per_class=2"]
    command = [sys.executable, str(REPO_ROOT / "src" / "prepare.py"), *paths, *tiny]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    test_folder = tmp_path / "data" / "synthetic" / "test"
    said = [f"test: 4 files in 2 classes, {test_folder}", "ready: python src/train.py data=synthetic"]
    assert all(line in result.stdout for line in said), result.stdout
    (log,) = (tmp_path / "outputs" / "prepare" / "runs").glob("*/prepare.log")
    assert all(line in log.read_text() for line in said), log.read_text()
