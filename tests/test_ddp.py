"""Two-process DDP on the CPU (gloo), through ``python src/train.py``: one run folder, one W&B run, one data
cache, checkpoints written once, metrics synchronised across the ranks, a clean exit, the global batch split
over the devices, and SIGTERM handled by both ranks at the same batch.

Lightning starts rank 1 by re-running the command line with ``hydra.run.dir=<rank 0's folder>``; both ranks
write to the captured stdout.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from src.callbacks.preemption import PREEMPTED_EXIT_CODE
from src.data.datamodule import ImageDataModule
from src.loggers.wandb_records import find_offline_runs, read_history, wait_until_finished
from src.loggers.wandb_run import RUN_ID_FILE
from src.models.classifier import TowerClassifier, network_from_checkpoint
from tests.test_resume import (
    EVENT_TIMEOUT,
    assert_each_epoch_once,
    checkpoint,
    merged_history,
    run_train,
    signal_first_batch,
    start_paced_run,
    the_run_dir,
)

DDP = ["trainer.devices=2", "trainer.accelerator=cpu", "trainer.strategy=ddp"]


def full_validation_accuracy(tmp_path: Path, ckpt: Path) -> float:
    """val/acc of ``ckpt`` over the whole validation split, in this one process (10-view averaging)."""
    datamodule = ImageDataModule(
        root=tmp_path / "synthetic",
        num_classes=2,
        layout="kaggle",
        cache_dir=tmp_path / "data" / "cache",
        val_fraction=0.25,
        batch_size=8,
        num_workers=0,
        cache_workers=0,
        val_views="ten",
    )  # fmt: skip  (as TINY_DATA and conf/data/synthetic.yaml)
    datamodule.setup("fit")
    module = TowerClassifier.for_evaluation(network_from_checkpoint(checkpoint(ckpt), ckpt)).eval()
    correct = total = 0
    with torch.no_grad():
        for batch in datamodule.val_dataloader():
            images, labels = datamodule.on_after_batch_transfer(batch, 0)
            _, probabilities = module._step((images, labels))
            correct += int((probabilities.argmax(-1) == labels).sum())
            total += len(labels)
    assert total == 6
    return correct / total


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_writes_one_run(tmp_path: Path) -> None:
    result = run_train(tmp_path, *DDP, "trainer.max_epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Starting with 2 processes" in output and "distributed_backend=gloo" in output

    # One Hydra folder: rank 1 wrote into rank 0's (its log is train_ddp_process_1.log), nothing else.
    run = the_run_dir(tmp_path)  # the only folder under outputs/train/runs/
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["train"]
    assert [p.name for p in (tmp_path / "outputs" / "train").iterdir()] == ["runs"]
    assert not [p for p in tmp_path.rglob("*ddp_process*") if p.is_dir()]
    assert (run / "train_ddp_process_1.log").is_file()
    assert not (tmp_path / "lightning_logs").exists() and not (tmp_path / "wandb").exists()

    # Checkpoints once, no partial files; one W&B run, the id kept in the run folder.
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch_000.ckpt", "last.ckpt"]
    (wandb_run,) = find_offline_runs(run)
    assert wandb_run.name.endswith("-" + (run / RUN_ID_FILE).read_text().strip())

    # The data generated and cached once (prepare_data on rank 0 only), the batch split and said once.
    assert output.count("wrote 32 images") == 1 and output.count("cached 24 images") == 1
    assert output.count("batch: 8 global = 2 devices x 4") == 1
    assert "batch:" not in output.replace("batch: 8 global = 2 devices x 4", "")

    # val/acc is over both ranks' halves of the validation split: the accuracy of the whole split.
    history = read_history(wait_until_finished(wandb_run))
    (logged,) = [row["val/acc"] for row in history if "val/acc" in row]
    assert logged == pytest.approx(full_validation_accuracy(tmp_path, run / "checkpoints" / "last.ckpt"))


@pytest.mark.slow
def test_global_batch_that_does_not_split_names_both_numbers(tmp_path: Path) -> None:
    result = run_train(tmp_path, *DDP, "data.batch_size=7", "trainer.max_epochs=1")
    assert result.returncode != 0
    assert "data.batch_size=7 (the global batch) does not divide by 2 devices = 2" in result.stderr
    assert "Starting with 2 processes" not in result.stdout + result.stderr  # it stopped before launching


@pytest.mark.slow
@pytest.mark.long
def test_ddp_sigterm_to_rank_0_stops_both_ranks_and_the_run_resumes(tmp_path: Path) -> None:
    process = start_paced_run(tmp_path, *DDP)
    run = the_run_dir(tmp_path)
    signal_first_batch(process, run, signal.SIGTERM)  # rank 0 only: rank 1 learns of it at the batch end
    stdout, stderr = process.communicate(timeout=EVENT_TIMEOUT)
    assert process.returncode == PREEMPTED_EXIT_CODE, stderr[-3000:]
    assert "terminated with code" not in stdout + stderr  # rank 1 ended cleanly (exit 0)
    saved = checkpoint(run / "checkpoints" / "last.ckpt")
    assert saved["epoch"] == 0 and saved["global_step"] == 1  # 3 batches of 4 per rank and epoch
    (first,) = find_offline_runs(run)
    wait_until_finished(first)

    resumed = run_train(tmp_path, "ckpt_path=last")  # the saved overrides bring DDP back
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Starting with 2 processes" in resumed.stdout + resumed.stderr
    assert the_run_dir(tmp_path) == run
    final = checkpoint(run / "checkpoints" / "last.ckpt")
    assert (final["epoch"], final["global_step"]) == (1, 6)
    assert_each_epoch_once(merged_history(run, finished=2), epochs=2, steps_per_epoch=3)
