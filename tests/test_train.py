"""End-to-end runs of ``python src/train.py`` through the command line, as a user types it."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from src.utils.wandb_offline import read_config, wait_until_finished

TINY_DATA = [
    "data.generate.train_per_class=12",
    "data.generate.test_per_class=4",
    "data.val_fraction=0.25",
    "data.batch_size=8",
    "data.num_workers=0",
    "trainer=cpu",
    "trainer.log_every_n_steps=1",
    "callbacks.progress_bar=null",
    "+trainer.enable_progress_bar=false",
]


def run_dir(tmp_path: Path) -> Path:
    (found,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    return found


@pytest.mark.slow
def test_fast_dev_run_through_the_command_line(tmp_path: Path, train_cli) -> None:
    result = train_cli(
        *TINY_DATA, f"data.root={tmp_path / 'synthetic'}", "logger=csv", "trainer.fast_dev_run=true"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "final:" in result.stdout and "test/acc=" in result.stdout
    assert len(list((tmp_path / "synthetic" / "train").glob("*.jpg"))) == 24


@pytest.mark.slow
def test_one_epoch_writes_checkpoints_and_wandb_offline_files(tmp_path: Path, train_cli) -> None:
    result = train_cli(
        *TINY_DATA, f"data.root={tmp_path / 'synthetic'}", "trainer.max_epochs=1", "logger=wandb"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = run_dir(tmp_path)
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert (out / "checkpoints" / "epoch_000.ckpt").is_file()
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["epoch"] == 0 and "net.features.conv1.weight" in checkpoint["state_dict"]
    assert checkpoint["state_dict"]["net.features.conv1.weight"].shape == (96, 3, 11, 11)
    # No API key in the test's environment: W&B went offline by itself and said where its files are.
    (wandb_run,) = (out / "wandb").glob("offline-run-*")
    assert list(wandb_run.glob("run-*.wandb")), "no W&B record log"
    assert "logging offline" in result.stdout and f"wandb sync {wandb_run}" in result.stdout
    config = read_config(wait_until_finished(wandb_run))  # the full resolved Hydra config
    assert config["model"]["conv_widths"] == [96, 256, 384, 384, 256]
    assert config["optimized_metric"] == "val/acc_best" and config["data"]["root"].endswith("synthetic")
    assert (out / ".hydra" / "config.yaml").is_file()


@pytest.mark.slow
def test_csv_logger_records_the_metrics(tmp_path: Path, train_cli) -> None:
    result = train_cli(
        *TINY_DATA, f"data.root={tmp_path / 'synthetic'}", "trainer.max_epochs=2", "logger=csv"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics,) = run_dir(tmp_path).glob("csv/version_0/metrics.csv")
    rows = list(csv.DictReader(metrics.open()))
    keys = set(rows[0])
    assert {"train/loss_step", "train/acc", "val/loss", "val/acc", "val/acc_best", "lr", "test/acc"} <= keys
    val_epochs = sorted({int(r["epoch"]) for r in rows if r["val/acc"]})
    assert val_epochs == [0, 1]
    assert float(next(r["lr"] for r in rows if r["lr"])) == pytest.approx(0.01)


@pytest.mark.slow
def test_missing_data_root_names_the_path_and_layout(tmp_path: Path, train_cli) -> None:
    missing = tmp_path / "no_such_dataset"
    result = train_cli("data=catsdogs", f"data.root={missing}", "logger=csv")
    assert result.returncode != 0
    assert f"image folder {missing / 'train'} does not exist" in result.stderr
    assert "cat.0.jpg" in result.stderr  # the expected layout


@pytest.mark.slow
def test_empty_data_folder_names_the_path_and_layout(tmp_path: Path, train_cli) -> None:
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "train" / "Thumbs.db").write_bytes(b"\0")
    result = train_cli("data=folders", f"data.root={empty}", "data.num_classes=2", "logger=csv")
    assert result.returncode != 0
    assert f"no images found in {empty / 'train'}" in result.stderr
    assert "<class>/" in result.stderr


def test_unknown_model_lists_the_valid_ones(tmp_path: Path, train_cli) -> None:
    result = train_cli("model=five_tower")
    assert result.returncode != 0
    assert "Could not find 'model/five_tower'" in result.stderr
    for name in ("one_tower", "two_tower", "three_tower", "four_tower"):
        assert name in result.stderr


def test_towers_that_do_not_divide_the_widths_name_the_layer(tmp_path: Path, train_cli) -> None:
    result = train_cli("model.towers=3", "logger=csv", f"data.root={tmp_path / 'synthetic'}", *TINY_DATA)
    assert result.returncode != 0
    assert "conv2 has 256 units, which 3 towers cannot share equally" in result.stderr
