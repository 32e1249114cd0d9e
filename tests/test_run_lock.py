"""One process writes a run folder at a time (``hold_run_folder``, ``src/runs/folders.py``; #27)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from src.runs.folders import RUN_LOCK, hold_run_folder
from src.runs.overrides import run_dir_argument
from tests.conftest import ROOT

HOLDER = """
import sys
from src.runs.folders import hold_run_folder
with hold_run_folder(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
"""


def hold_in_another_process(run: Path) -> subprocess.Popen:
    """A process holding ``run``'s lock until its stdin closes, returned once it holds it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


def test_a_second_run_into_a_held_folder_is_refused_naming_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(name, raising=False)
    run = tmp_path / "run"
    holder = hold_in_another_process(run)
    try:
        assert (run / RUN_LOCK).read_text() == f"{holder.pid}\n"
        refused = f"{run} is being written by another run \\(process {holder.pid},"
        with pytest.raises(SystemExit, match=refused), hold_run_folder(run):
            pass
        monkeypatch.setenv("LOCAL_RANK", "1")  # a DDP child of that run, started with the same run folder
        with hold_run_folder(run):
            pass
        monkeypatch.delenv("LOCAL_RANK")
    finally:
        holder.communicate("\n", timeout=60)
    assert not (run / RUN_LOCK).exists()  # released, and no lock file left behind
    with hold_run_folder(run), hold_run_folder(run):  # free again; re-entrant in one process
        assert (run / RUN_LOCK).is_file()
    assert not run.exists()  # the folder it made for the lock, left empty, is gone


def test_the_run_folder_a_command_line_names() -> None:
    assert run_dir_argument(["seed=1", "hydra.run.dir=/a/b", "hydra.run.dir=/c"]) == Path("/c")
    assert run_dir_argument(["seed=1"]) is None
    assert run_dir_argument(["-m", "hydra.run.dir=/c"]) is None
    assert run_dir_argument(["hydra.run.dir=/o/${now:%H}"]) is None
    with hold_run_folder(None):
        pass


def test_train_py_refuses_a_second_run_into_a_held_folder_before_writing(tmp_path: Path) -> None:
    from tests.conftest import run_env
    from tests.test_resume import SMALL_NET
    from tests.test_train import TINY_DATA

    run = tmp_path / "run"
    holder = hold_in_another_process(run)
    quick = [*TINY_DATA, *SMALL_NET, "trainer.fast_dev_run=true", "logger=csv", f"data.root={tmp_path / 's'}"]
    command = [sys.executable, str(ROOT / "src" / "train.py"), f"hydra.run.dir={run}", *quick]
    try:
        result = subprocess.run(
            [*command, f"paths.data_dir={tmp_path / 'data'}"],
            cwd=tmp_path, env=run_env(tmp_path), capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        holder.communicate("\n", timeout=60)
    assert result.returncode == 1, result.stderr[-3000:]
    refused = f"error: {run} is being written by another run (process {holder.pid},"
    assert result.stderr.strip().startswith(refused), result.stderr[-3000:]
    assert not (run / ".hydra").exists()  # Hydra wrote nothing into the first run's folder
