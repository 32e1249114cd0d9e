"""End-to-end runs of ``python src/train.py`` through the command line, as a user types it."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import torch
from PIL import Image

from src.loggers.wandb_records import read_config, wait_until_finished

TINY_GENERATED = ["data.source.train_per_class=12", "data.source.test_per_class=4"]
TINY_RUN = [
    "data.val_fraction=0.25",
    "data.batch_size=8",
    "data.num_workers=0",
    "data.cache_workers=0",
    "trainer=cpu",
    "trainer.log_every_n_steps=1",
    "callbacks.progress_bar=null",
    "trainer.enable_progress_bar=false",
]
TINY_DATA = TINY_GENERATED + TINY_RUN


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
    # Output to a pipe, not a terminal: still one line for the epoch, in the console and in train.log.
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("epoch 1/1  train/loss ")]
    assert "val/acc " in line and "kernels/split " in line
    log = (run_dir(tmp_path) / "train.log").read_text()
    assert line in log and "GPU available" in log


@pytest.mark.slow
@pytest.mark.long
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
    assert config["model"]["layers"] == "paper" and config["model"]["conv_widths"] is None  # the table's
    assert config["optimized_metric"] == "val/acc_best" and config["data"]["root"].endswith("synthetic")
    assert (out / ".hydra" / "config.yaml").is_file()


@pytest.mark.slow
@pytest.mark.long
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
    # The default schedule: section 5's 0.01 at batch 128, scaled to batch 8, rising linearly over a warm-up
    # of 250 steps or a quarter of the run (conf/scheduler/warmup_plateau.yaml): 18 training images at batch
    # 8 for 2 epochs are 6 steps, a quarter of them 1. Each step's rate is logged once, as applied.
    assert (
        "warm-up: 1 step (25 % of this run's 6 steps; scheduler.warmup_steps=250 is the cap)" in result.stdout
    )
    rate, warmup = 0.01 * 8 / 128, 1
    logged = [(int(r["step"]), float(r["lr"])) for r in rows if r["lr"]]
    assert len(logged) >= 4
    for step, lr in logged:
        assert lr == pytest.approx(rate * min(1.0, (step + 1) / warmup), rel=1e-5), (step, lr)


@pytest.mark.slow
def test_missing_data_root_names_the_path_and_layout(tmp_path: Path, train_cli) -> None:
    missing = tmp_path / "no_such_dataset"
    result = train_cli("data=catsdogs", f"data.root={missing}")  # the default logger: W&B, offline
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith(f"error: data.root={missing}: it has no train/ folder; expected ")
    assert "cat.0.jpg" in line  # the expected layout
    assert "wandb" not in result.stdout.lower()  # found before any logger started
    assert not (tmp_path / "outputs" / "train" / "runs").exists() or not any(
        (tmp_path / "outputs" / "train" / "runs").iterdir()
    )  # no empty run folder left for ckpt_path=last to find


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


def write_bad_file_dataset(root: Path) -> set[str]:
    """Good images and every bad-file kind the data pipeline handles; returns the undecodable ones' names."""
    for split, count in (("train", 10), ("test", 2)):
        for cls, colour in (("cat", (200, 60, 40)), ("dog", (40, 80, 200))):
            (root / split / cls).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (300, 260), colour).save(root / split / cls / f"good{i}.jpg")
    train = root / "train"
    buffer = io.BytesIO()
    Image.new("RGB", (300, 300), (1, 2, 3)).save(buffer, "JPEG")
    (train / "cat" / "empty.jpg").write_bytes(b"")
    (train / "cat" / "truncated.jpg").write_bytes(buffer.getvalue()[:200])
    (train / "cat" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" + b"\0" * 500)
    (train / "dog" / "notes.jpg").write_text("not an image")
    Image.new("CMYK", (280, 260), (0, 100, 200, 0)).save(train / "dog" / "cmyk.jpg")
    Image.new("L", (260, 300), 90).save(train / "dog" / "grey.png")
    Image.new("P", (270, 270), 3).save(train / "cat" / "palette.png")
    palette = Image.new("P", (270, 270), 3)
    palette.info["transparency"] = 3
    palette.save(train / "cat" / "palette_transparent.png")
    Image.new("RGBA", (300, 280), (10, 200, 10, 128)).save(train / "dog" / "rgba.png")
    Image.new("RGB", (100, 80), (120, 120, 0)).save(train / "cat" / "small.jpg")
    Image.new("RGB", (9000, 6000), (30, 30, 30)).save(train / "dog" / "huge.jpg", quality=50)
    return {"empty.jpg", "truncated.jpg", "Thumbs.db", "notes.jpg"}


@pytest.mark.slow
def test_bad_files_are_reported_and_training_goes_on(tmp_path: Path, train_cli) -> None:
    undecodable = write_bad_file_dataset(tmp_path / "odd")
    result = train_cli(
        *TINY_RUN, "data=folders", f"data.root={tmp_path / 'odd'}", "data.num_classes=2",
        "trainer.fast_dev_run=true", "logger=csv",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    train_folder = (tmp_path / "odd" / "train").as_posix()
    reports = (tmp_path / "data" / "cache").glob("*/skipped.tsv")
    train_report = next(p for p in reports if train_folder in p.read_text())
    rows = [line.split("\t") for line in train_report.read_text().splitlines()[1:]]
    assert {Path(path).name for path, _reason in rows} == undecodable
    assert all(reason.strip() for _path, reason in rows)
    assert "4 skipped" in result.stdout
