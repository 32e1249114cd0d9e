"""Faults a new user meets, end to end through ``python src/train.py``: a loss that stops being finite, a
disk that fills up while a checkpoint is written, settings that cannot work.

``FaultAtEpoch`` starts the fault at the beginning of epoch 1, after keeping a copy of epoch 0's
``last.ckpt``: whatever happens next, that file must still be there, byte for byte.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import pytest
import torch

from src.callbacks.training_health import DIED_EXIT_CODE
from tests.conftest import ROOT
from tests.test_resume import run_train, the_run_dir

FAULT = "TEST_FAULT"  # nan | disk_full
KEPT = "last_ckpt_before_the_fault"  # FaultAtEpoch's copy of epoch 0's last.ckpt, in the run folder
SHIM = ROOT / "tests" / "helpers" / "disk_full.c"


class FaultAtEpoch(L.Callback):
    """At the start of epoch 1: copy ``checkpoints/last.ckpt`` (epoch 0's) to ``<run>/<KEPT>``, then

    - ``$TEST_FAULT=nan``: set the learning rate to 1e6, so that the loss of the next steps is not finite;
    - ``$TEST_FAULT=disk_full``: the disk of ``checkpoints/`` is full from now on
      (``tests/helpers/disk_full.c``, loaded with LD_PRELOAD, fails the writes there with ENOSPC once its few
      free bytes are used).
    """

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch != 1:
            return
        run = Path(trainer.default_root_dir)
        shutil.copyfile(run / "checkpoints" / "last.ckpt", run / KEPT)
        if os.environ[FAULT] == "nan":
            for group in trainer.optimizers[0].param_groups:
                group["lr"] = 1e6
        else:
            os.environ["TEST_DISK_FULL_DIR"] = str(run / "checkpoints")


def run_with_fault(
    tmp_path: Path, fault: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    fault_callback = "+callbacks.fault._target_=tests.test_faults.FaultAtEpoch"
    return run_train(
        tmp_path, "trainer.max_epochs=3", "logger=csv", fault_callback, env={FAULT: fault} | (env or {})
    )


@pytest.fixture(scope="module")
def disk_full_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("no C compiler to build tests/helpers/disk_full.c")
    library = tmp_path_factory.mktemp("shim") / "disk_full.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(library), str(SHIM), "-ldl"], check=True)
    return library


@pytest.fixture
def other_filesystem_temp(tmp_path: Path) -> Iterator[dict[str, str]]:
    """TMPDIR on another file system than the runs when there is one (/dev/shm), as on the machine where the
    fault was found: Lightning's own writer stages a checkpoint there, then copies it into the run folder."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        yield {}
        return
    staging = shm / f"alexnet-towers-test-{os.getpid()}-{tmp_path.name}"
    staging.mkdir()
    yield {"TMPDIR": str(staging)}
    shutil.rmtree(staging, ignore_errors=True)


@pytest.mark.slow
def test_a_full_disk_never_truncates_a_checkpoint(
    tmp_path: Path, disk_full_library: Path, other_filesystem_temp: dict[str, str]
) -> None:
    env = {"LD_PRELOAD": str(disk_full_library), "TEST_DISK_FULL_FREE": "100000"} | other_filesystem_temp
    result = run_with_fault(tmp_path, "disk_full", env)
    assert result.returncode == 1 and "No space left on device" in result.stderr, result.stderr[-3000:]
    checkpoints = the_run_dir(tmp_path) / "checkpoints"
    # One message, no traceback: what was not written, what is kept, how to go on.
    assert "Traceback" not in result.stderr and "unexpected pos" not in result.stderr, result.stderr[-3000:]
    assert "error: could not write the checkpoint " in result.stderr
    kept = f"Kept, whole: the previous {checkpoints / 'last.ckpt'} (epoch 0, step 3)"
    assert kept in result.stderr, result.stderr[-3000:]
    resume = f"then resume: python src/train.py hydra.run.dir={checkpoints.parent} ckpt_path=last"
    assert resume in result.stderr
    assert (checkpoints / "last.ckpt").read_bytes() == (checkpoints.parent / KEPT).read_bytes()
    for path in checkpoints.iterdir():  # no truncated checkpoint, no half-written temporary file left
        assert path.suffix == ".ckpt" and not path.name.startswith("."), path
        torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.slow
def test_a_loss_that_is_not_finite_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    result = run_with_fault(tmp_path, "nan")
    assert result.returncode == DIED_EXIT_CODE, result.stderr[-3000:]
    assert "training died at step" in result.stderr and ", epoch 1 (lr " in result.stderr
    assert "the training loss is" in result.stderr
    assert "final:" not in result.stdout and "val/acc=1.0000" not in result.stdout  # no number reported
    run = the_run_dir(tmp_path)
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == (run / KEPT).read_bytes()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("data.crop_size=32", "data.crop_size=32 is too small for this network: its convolutions and "
         "poolings need at least 63x63 pixels"),
        ("data.batch_size=abc", "error: data.batch_size=abc: expected an integer >= 1"),
    ],
)  # fmt: skip
def test_settings_that_cannot_work_stop_before_any_data_is_read(
    tmp_path: Path, setting: str, message: str
) -> None:
    result = run_train(tmp_path, setting)
    assert result.returncode != 0 and message in result.stderr, result.stderr[-3000:]
    assert not (tmp_path / "synthetic").exists()  # the data was not even generated
    runs = tmp_path / "outputs" / "train" / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # nor a run folder that ckpt_path=last would find
