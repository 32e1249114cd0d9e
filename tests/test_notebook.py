"""``notebooks/kernels.ipynb``: committed without outputs, and it runs top to bottom on hand-built runs."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient import NotebookClient

from tests.test_runs import (
    HAND_BUILT,
    JOBS,
    make_grey_and_opponent,
    make_net,
    make_sweep,
    write_run,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "kernels.ipynb"
TEST_KERNEL = "alexnet-towers-test"
# jupyter_client starts a kernel spec whose argv[0] is one of these with sys.executable instead.
PYTHON_NAMES = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}


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


def test_committed_notebook_has_no_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert 'os.environ.get("KERNELS_RUN")' in code[0].source
    assert 'os.environ.get("KERNELS_SWEEP")' in code[0].source


@pytest.mark.slow
def test_notebook_runs_on_a_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jupyter_env: str) -> None:
    runs = make_sweep(tmp_path / "sweep")
    monkeypatch.setenv("KERNELS_RUN", str(runs[HAND_BUILT]))
    monkeypatch.setenv("KERNELS_SWEEP", str(tmp_path / "sweep"))

    nb = execute(NOTEBOOK, jupyter_env)

    assert not [o for o in outputs(nb) if o["output_type"] == "error"]
    text = stdout(nb)
    assert f"run:        {runs[HAND_BUILT]}" in text
    split = re.search(r"split = ([0-9.]+)", text)
    assert split is not None and float(split.group(1)) > 0.99
    sweep_table = text[text.index("| run |") :]  # after the reference's zero-level table
    rows = [
        line for line in sweep_table.splitlines() if line.startswith("| ") and not line.startswith("| run")
    ]
    assert [row.split("|")[1].strip() for row in rows] == [str(JOBS[key]) for key in sorted(JOBS)]
    images = [o for o in outputs(nb) if o["output_type"] == "display_data" and "image/png" in o["data"]]
    assert len(images) == 4  # kernels, histogram, the reference's kernels, split against towers
    assert_reference_shown(text)


@pytest.mark.slow
def test_notebook_skips_the_comparison_without_a_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jupyter_env: str
) -> None:
    # A stand-in repository whose outputs/ holds one run and no sweep: the defaults are used for both.
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    (repo / "src").symlink_to(ROOT / "src")
    shutil.copy(NOTEBOOK, repo / "notebooks" / NOTEBOOK.name)
    run = repo / "outputs" / "train" / "runs" / "2026-01-01_00-00-00"
    write_run(run, make_grey_and_opponent(make_net(2, 0)), seed=0)

    nb = execute(repo / "notebooks" / NOTEBOOK.name, jupyter_env)

    text = stdout(nb)
    assert f"run:        {run}" in text
    assert "sweep:      None" in text and "skipping the comparison" in text
    assert float(re.search(r"split = ([0-9.]+)", text).group(1)) > 0.99  # type: ignore[union-attr]
    images = [o for o in outputs(nb) if o["output_type"] == "display_data" and "image/png" in o["data"]]
    assert len(images) == 3  # kernels, histogram and the reference's kernels
    assert_reference_shown(text)
