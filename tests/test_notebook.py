"""``notebooks/kernels.ipynb``: committed without outputs, and it runs top to bottom, with its documented
command, on runs that kept their logs and pictures but no checkpoint."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient import NotebookClient
from PIL import Image

from tests.conftest import ROOT
from tests.test_figure3_report import fake_run

NOTEBOOK = ROOT / "notebooks" / "kernels.ipynb"
TEST_KERNEL = "alexnet-towers-test"
# jupyter_client starts a kernel spec whose argv[0] is one of these with sys.executable instead.
PYTHON_NAMES = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
#: A sweep's jobs: folder -> (towers, seed, final split, final low_freq, tower-0 colour fraction, test/acc),
#: as tests/test_figure3_report.py's fake runs take them (logged through Lightning's CSVLogger).
JOBS = {
    "0": (4, 1, 0.40, 0.5, 0.3, 0.6),
    "1": (1, 0, 0.10, 0.5, 0.6, 0.7),
    "2": (2, 1, 0.70, 0.5, 0.2, 0.8),
    "3": (4, 0, 0.30, 0.5, 0.3, 0.6),
    "4": (2, 0, 0.50, 0.5, 0.4, 0.8),
    "5": (1, 1, 0.20, 0.5, 0.6, 0.7),
}
SHOWN = "2"  # the run the notebook looks at: two towers, seed 1, split 0.7 at the end


def kernel_for_this_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernel name that runs ``sys.executable`` (the venv's python, with torch and the project's deps).

    The ``python3`` spec is used when it already does; otherwise a spec for ``sys.executable`` is written to a
    temporary prefix and put first on ``JUPYTER_PATH``.
    """
    try:
        argv0 = KernelSpecManager().get_kernel_spec("python3").argv[0]
    except NoSuchKernel:
        argv0 = ""
    if argv0 in PYTHON_NAMES or (argv0 and Path(argv0).resolve() == Path(sys.executable).resolve()):
        return "python3"
    from ipykernel.kernelspec import install

    prefix = tmp_path / "jupyter-prefix"
    install(kernel_name=TEST_KERNEL, prefix=str(prefix))
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    return TEST_KERNEL


def execute(notebook_path: Path, kernel_name: str) -> nbformat.NotebookNode:
    nb = nbformat.read(notebook_path, as_version=4)
    client = NotebookClient(
        nb, kernel_name=kernel_name, timeout=300, resources={"metadata": {"path": str(notebook_path.parent)}}
    )
    client.execute()
    return nb


def outputs(nb: nbformat.NotebookNode) -> list[dict[str, Any]]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def stdout(nb: nbformat.NotebookNode) -> str:
    return "".join(o["text"] for o in outputs(nb) if o["output_type"] == "stream" and o["name"] == "stdout")


def assert_reference_shown(text: str) -> None:
    """CaffeNet's numbers (src/analysis/reference_kernels.py) and their zero-level table were printed."""
    reference = text[text.index("CaffeNet, the reference:") :]
    assert "tower 1: mean colour score 0.740" in reference and "split = 0.917" in reference
    assert "| -0.03 |" in reference and "| +0.03 |" in reference


@pytest.fixture
def jupyter_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernel for this python, with IPython's profile folder kept out of HOME."""
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.delenv("KERNELS_RUN", raising=False)
    monkeypatch.delenv("KERNELS_SWEEP", raising=False)
    return kernel_for_this_python(tmp_path, monkeypatch)


def make_sweep(folder: Path) -> dict[str, Path]:
    """A sweep folder of logged runs without checkpoints; the shown run also has its end-of-training
    histogram picture."""
    runs = {job: folder / job for job in JOBS}
    for job, values in JOBS.items():
        fake_run(runs[job], *values)
    Image.fromarray(np.full((30, 50, 3), 200, np.uint8)).save(runs[SHOWN] / "kernels" / "histogram.png")
    return runs


def images(nb: nbformat.NotebookNode) -> list[dict[str, Any]]:
    return [o for o in outputs(nb) if o["output_type"] == "display_data" and "image/png" in o["data"]]


def test_committed_notebook_has_no_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert 'os.environ.get("KERNELS_RUN")' in code[0].source
    assert 'os.environ.get("KERNELS_SWEEP")' in code[0].source


def test_the_notebook_reads_logs_not_checkpoints() -> None:
    source = NOTEBOOK.read_text()
    assert "load_network" not in source and "summarise_run" not in source and ".ckpt" not in source
    assert "nbconvert" not in source  # not installed by make install
    assert ".venv/bin/jupyter execute notebooks/kernels.ipynb" in source


@pytest.mark.slow
def test_notebook_runs_on_a_sweep_without_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jupyter_env: str
) -> None:
    runs = make_sweep(tmp_path / "sweep")
    assert not list(tmp_path.rglob("*.ckpt"))
    monkeypatch.setenv("KERNELS_RUN", str(runs[SHOWN]))
    monkeypatch.setenv("KERNELS_SWEEP", str(tmp_path / "sweep"))

    nb = execute(NOTEBOOK, jupyter_env)

    assert not [o for o in outputs(nb) if o["output_type"] == "error"]
    text = stdout(nb)
    assert f"run:        {runs[SHOWN]}" in text
    assert "towers:     2, seed 1, 3 epochs scored, status: tested" in text
    assert "kernels/epoch_000_figure3.png: after 0 epochs" in text
    assert "kernels/epoch_003_figure3.png: after 3 epochs" in text
    assert "split = 0.700 (AUC 0.850, mean gap 0.070, p = 0.01)" in text  # the last logged scores
    assert "tower 0: mean colour score 0.600, 20% of its kernels above" in text
    assert "val/acc 0.500  test/acc 0.800" in text
    assert re.search(r"split: +0\.050 +0\.267 +0\.483 +0\.700", text)  # epoch by epoch
    sweep_table = text[text.index("| run |") :]  # after the reference's zero-level table
    rows = [
        line for line in sweep_table.splitlines() if line.startswith("| ") and not line.startswith("| run")
    ]
    in_order = sorted(JOBS, key=lambda job: JOBS[job][:2])  # by towers, then seed
    assert [row.split("|")[1].strip() for row in rows] == in_order
    assert [row.split("|")[5].strip() for row in rows] == [f"{JOBS[job][2]:.3f}" for job in in_order]
    # the first and last kernel pictures, the histogram, the reference's kernels, split against towers
    assert len(images(nb)) == 5
    assert_reference_shown(text)


@pytest.mark.slow
def test_the_documented_command_runs_with_the_default_run_and_no_sweep(
    tmp_path: Path, jupyter_env: str
) -> None:
    # A stand-in repository whose outputs/ holds one logged run and no sweep: the defaults are used for both.
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    # A copy, not a link: the notebook finds the repository from src/'s own place (src/runs/paths.py), and
    # PYTHONPATH puts this copy ahead of the editable install's finder, which maps src to ROOT/src.
    shutil.copytree(ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(NOTEBOOK, repo / "notebooks" / NOTEBOOK.name)
    run = repo / "outputs" / "train" / "runs" / "2026-01-01_00-00-00"
    fake_run(run, 2, 0, 0.9, 0.5, 0.1, 0.9)
    command = [str(Path(sys.executable).parent / "jupyter"), "execute", "notebooks/kernels.ipynb"]
    command += [f"--output={repo / 'outputs' / 'kernels'}"]  # as documented: --output=$PWD/outputs/kernels
    if jupyter_env != "python3":  # this python's kernel, where the python3 spec is another python's
        command += [f"--kernel_name={jupyter_env}"]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    nb = nbformat.read(repo / "outputs" / "kernels.ipynb", as_version=4)
    text = stdout(nb)
    assert f"run:        {run}" in text
    assert "sweep:      None" in text and "skipping the comparison" in text
    assert "split = 0.900" in text and "no kernels/histogram.png: it is drawn when training ends" in text
    assert len(images(nb)) == 3  # the first and last kernel pictures and the reference's kernels
    assert_reference_shown(text)
