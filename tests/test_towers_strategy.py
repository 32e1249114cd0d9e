"""``trainer=towers`` (``src/strategies/towers.py``): one tower per process through Lightning, on two CPU
processes (gloo).

- With the same weights and batches (dropout off), two tower processes and one process holding the grouped
  net take the same SGD steps: weights and momentum agree after 2 steps, and again after both resume from
  their checkpoints for 2 more, and after one process resumes from the towers' checkpoint
  (``tests/helpers/towers_fit_worker.py``).
- ``python src/train.py trainer=towers`` trains an epoch on the generated data end to end; its checkpoint is
  the grouped ``AlexNet``'s. Every tower trains on the same augmented batch: each rank draws its own random
  crops and PCA lighting (the torch seed is offset by the rank), so only the broadcast of rank 0's batch makes
  them equal (``RecordTrainingBatches``).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from src.models.classifier import load_network
from tests.conftest import run_env
from tests.test_ddp import full_validation_accuracy
from tests.test_resume import ROOT, SMALL_NET, checkpoint, the_run_dir
from tests.test_train import TINY_DATA

WORKER = Path(__file__).parent / "helpers" / "towers_fit_worker.py"
# Largest relative difference between the towers' and the grouped net's weights and momentum: 8.1e-7
# measured (float32 sums in another order), over 2 steps, 4 steps, and the resume on one device. The README
# quotes the same bound.
TOLERANCE = 2e-6
TOWERS = [arg for arg in TINY_DATA if arg != "trainer=cpu"] + ["trainer=towers", "trainer.accelerator=cpu"]


class RecordTrainingBatches(L.Callback):
    """Appends a hash of each training batch as the model receives it to ``<run>/batches_rank<r>.txt``."""

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx
    ) -> None:
        images, labels = batch
        digest = hashlib.sha1(
            images.detach().cpu().float().numpy().tobytes() + labels.cpu().numpy().tobytes()
        )
        with open(Path(trainer.default_root_dir) / f"batches_rank{trainer.global_rank}.txt", "a") as log:
            log.write(f"{trainer.global_step} {digest.hexdigest()}\n")


def run_towers(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``python src/train.py trainer=towers`` on the tiny generated set with the small net (121 K weights)."""
    paths = [f"paths.log_dir={tmp_path / 'outputs'}", f"paths.data_dir={tmp_path / 'data'}"]
    command = [sys.executable, str(ROOT / "src" / "train.py"), *paths, *TOWERS, *SMALL_NET]
    command += [f"data.root={tmp_path / 'synthetic'}", *args]
    return subprocess.run(
        command, cwd=tmp_path, env=run_env(tmp_path), capture_output=True, text=True, timeout=300
    )


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))


def run_worker(mode: str, out: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(WORKER), mode, str(out)], cwd=out, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_two_tower_processes_train_and_resume_as_one_grouped_net(tmp_path: Path) -> None:
    for mode in ("single", "towers", "single_from_towers"):
        run_worker(mode, tmp_path)
    for single_name, towers_name, steps in [
        ("single_2", "towers_2", 2),
        ("single_4", "towers_4", 4),
        ("single_4", "single_from_towers_4", 4),  # the towers' checkpoint resumed on one device
    ]:
        single = checkpoint(tmp_path / f"{single_name}.ckpt")
        towers = checkpoint(tmp_path / f"{towers_name}.ckpt")
        assert towers["global_step"] == single["global_step"] == steps
        # The towers' checkpoint holds the grouped net: both towers' conv1 kernels, fc8 once.
        assert towers["state_dict"]["net.features.conv1.weight"].shape == (16, 3, 11, 11)
        assert towers["state_dict"]["net.classifier.fc8.weight"].shape == (3, 64)
        assert towers["state_dict"].keys() == single["state_dict"].keys()
        for name, tensor in single["state_dict"].items():
            if name.startswith("net."):
                assert relative_difference(tensor, towers["state_dict"][name]) < TOLERANCE, (steps, name)
        momentum = [s["optimizer_states"][0]["state"] for s in (single, towers)]
        assert momentum[0].keys() == momentum[1].keys() and len(momentum[0]) == 16  # 8 layers x (w, b)
        for index, entry in momentum[0].items():
            difference = relative_difference(entry["momentum_buffer"], momentum[1][index]["momentum_buffer"])
            assert difference < TOLERANCE, (steps, index)
    # The resumed steps moved the weights: the comparison after them is not the one after 2 steps again.
    before = checkpoint(tmp_path / "towers_2.ckpt")["state_dict"]["net.features.conv1.weight"]
    after = checkpoint(tmp_path / "towers_4.ckpt")["state_dict"]["net.features.conv1.weight"]
    assert relative_difference(before, after) > 1e-3


@pytest.mark.slow
@pytest.mark.long
def test_towers_trains_an_epoch_through_train_py(tmp_path: Path) -> None:
    record = "+callbacks.record._target_=tests.test_towers_strategy.RecordTrainingBatches"
    result = run_towers(tmp_path, "trainer.max_epochs=1", record)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Starting with 2 processes" in output and "distributed_backend=gloo" in output
    assert "batch: 8 global, the same 8 images on each of 2 towers" in output
    assert "final:" in result.stdout and "test/acc=" in result.stdout

    run = the_run_dir(tmp_path)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch_000.ckpt", "last.ckpt"]
    # Both towers trained on rank 0's augmented batches (random crops and PCA lighting are on: TINY_DATA).
    seen = [(run / f"batches_rank{rank}.txt").read_text().splitlines() for rank in (0, 1)]
    assert len(seen[0]) == 3 and seen[0] == seen[1]
    net = load_network(run / "checkpoints" / "last.ckpt")  # the grouped AlexNet, as from one device
    assert net.towers == 2 and net.layer("conv1").weight.shape == (16, 3, 11, 11)
    assert net.layer("fc6").weight.shape == (64, 32 * 6 * 6)
    # The kernel monitor gathered both towers' conv1 kernels (each rank holds one).
    assert (run / "kernels" / "epoch_001_figure3.png").is_file()
    assert (run / "kernels" / "epoch_001_tower1.png").is_file()
    # The gathered weights are those the towers validated with: one process gets the logged accuracy back.
    logged = float(re.search(r"^final: val/acc=([0-9.]+)", result.stdout, re.MULTILINE).group(1))
    assert full_validation_accuracy(tmp_path, run / "checkpoints" / "last.ckpt") == pytest.approx(logged)


def test_towers_needs_one_device_per_tower(tmp_path: Path) -> None:
    result = run_towers(tmp_path, "trainer.devices=1", "trainer.max_epochs=1")
    assert result.returncode != 0
    assert "model.towers=2 needs trainer.devices=2" in result.stderr
