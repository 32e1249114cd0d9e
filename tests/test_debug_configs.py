"""What a Lightning + Hydra user reaches for: Trainer keys without ``+``, ``debug=...``, ``conf/local/``,
``--help``, and a console without Lightning's noise."""

from __future__ import annotations

import csv
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig
from PIL import Image

from src.callbacks.model_summary import forward_flops
from src.callbacks.preemption import PreemptionCheckpoint
from src.models.alexnet import AlexNet
from src.train import build_callbacks, build_trainer
from tests.conftest import CONF, ROOT, compose_train, run_env
from tests.test_train import TINY_DATA, TINY_RUN

DEBUG_RUNS = ("fdr", "limit", "overfit", "profiler")
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
DATA = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))
FOLDERS = ["data.root=/somewhere", "data.num_classes=3"]  # data=base and folders have no default dataset
# A narrow net (same towers and layers): a debug run's checks, not its speed, are under test.
NARROW = ["model.conv_widths=[24,48,48,48,48]", "model.fc_width=64"]
# What Lightning or torch print that is not ours (src/utils/console.py), and what we fixed at the source.
NOISE = ("LeafSpec", "💡 Tip", "Total FLOPs: 0", "sync_dist=True")
# debug=overfit's last train/loss_epoch on 12 built-in images, batch 8: 2.3e-05 measured (0.65 before)
OVERFIT_LOSS = 0.05


# --- Trainer arguments -------------------------------------------------------------------------------------


def test_trainer_config_keys_are_trainer_arguments() -> None:
    cfg = compose_train([], Path("/tmp/unused"))
    arguments = set(inspect.signature(L.Trainer.__init__).parameters)
    keys = set(cfg.trainer) - {"_target_"}
    assert keys <= arguments
    for common in ("limit_train_batches", "limit_val_batches", "limit_test_batches", "overfit_batches"):
        assert common in keys
    assert {"num_sanity_val_steps", "profiler", "max_time", "val_check_interval", "gradient_clip_val"} <= keys


def test_trainer_keys_override_as_lightning_writes_them(tmp_path: Path) -> None:
    overrides = [
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=0.5",
        "trainer.limit_test_batches=3",
        "trainer.overfit_batches=1",
        "trainer.num_sanity_val_steps=0",
    ]
    cfg = compose_train(overrides, tmp_path)
    assert cfg.trainer.limit_train_batches == 2 and cfg.trainer.limit_val_batches == 0.5
    assert cfg.trainer.overfit_batches == 1 and cfg.trainer.num_sanity_val_steps == 0
    default = compose_train([], tmp_path).trainer  # Lightning's own defaults where we set none
    trainer, _ = build_trainer(default, default_root_dir=str(tmp_path), logger=False)
    assert trainer.limit_train_batches == 1.0 and trainer.num_sanity_val_steps == 2


# --- debug=... ----------------------------------------------------------------------------------------------


def assert_debug_config(cfg, option: str) -> None:
    assert cfg.task_name == "debug" and list(cfg.logger) == ["csv"]  # nothing goes to W&B
    assert cfg.trainer.accelerator == "cpu" and cfg.trainer.devices == 1 and cfg.trainer.strategy == "auto"
    assert cfg.data.num_workers == 0
    expected = {
        "fdr": {"fast_dev_run": True},
        "limit": {"max_epochs": 3, "limit_train_batches": 4, "limit_val_batches": 2},
        "overfit": {"overfit_batches": 2, "max_epochs": 30},
        "profiler": {"profiler": "simple", "limit_train_batches": 10},
    }[option]
    assert {k: cfg.trainer[k] for k in expected} == expected


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("option", DEBUG_RUNS)
def test_debug_composes_with_every_model(option: str, model: str, tmp_path: Path) -> None:
    cfg = compose_train([f"debug={option}", f"model={model}"], tmp_path)
    assert_debug_config(cfg, option)
    assert cfg.hydra.runtime.choices.model == model and cfg.hydra.runtime.choices.data == "synthetic"


# Each dataset with one of the debug options in turn: they differ only in trainer keys, which no data
# config sets.
DATA_DEBUG = [(data, DEBUG_RUNS[i % len(DEBUG_RUNS)]) for i, data in enumerate(DATA)]


@pytest.mark.parametrize(("data", "option"), DATA_DEBUG)
def test_debug_composes_with_every_dataset(data: str, option: str, tmp_path: Path) -> None:
    extra = FOLDERS if data in ("base", "folders") else []
    cfg = compose_train([f"debug={option}", f"data={data}", *extra], tmp_path)
    assert_debug_config(cfg, option)
    assert cfg.hydra.runtime.choices.data == data and cfg.data.batch_size == 16


def test_debug_wins_over_an_experiment_and_the_command_line_over_debug(tmp_path: Path) -> None:
    cfg = compose_train(["experiment=paper", "debug=limit"], tmp_path)
    assert cfg.model.init == "paper" and cfg.trainer.max_epochs == 3 and cfg.trainer.accelerator == "cpu"
    overrides = ["debug=limit", "trainer.max_epochs=5", "logger=wandb", "data.batch_size=4"]
    cfg = compose_train(overrides, tmp_path)
    assert cfg.trainer.max_epochs == 5 and list(cfg.logger) == ["wandb", "csv"] and cfg.data.batch_size == 4


def write_folder_dataset(root: Path, classes: int = 3, per_class: int = 6) -> None:
    """``<root>/{train,test}/<class>/*.jpg``: a dataset in the folder-per-class layout (data=folders)."""
    for split, count in (("train", per_class), ("test", 2)):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (280, 260), (40 + 70 * c, 20 * i, 200 - 60 * c)).save(folder / f"{i}.jpg")


def csv_rows(run: Path) -> list[dict[str, str]]:
    with (run / "csv" / "version_0" / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def debug_run_dir(tmp_path: Path) -> Path:
    (run,) = (tmp_path / "outputs" / "debug" / "runs").iterdir()
    return run


@pytest.mark.slow
@pytest.mark.parametrize(
    "option", ["fdr", pytest.param("overfit", marks=pytest.mark.long), "profiler"]
)  # overfit: 30 epochs at the paper's widths, about 4 minutes on 2 cores
def test_debug_runs_on_synthetic_data(option: str, tmp_path: Path, train_cli) -> None:
    # overfit: 2 validation batches of 8, and the paper's widths: the narrow net does not fit even 12 images
    # in the 60 steps (train/loss 0.69 -> 0.50, train/acc 0.5)
    extra = {"overfit": ["data.val_fraction=0.5"]}.get(option, NARROW)
    result = train_cli(f"debug={option}", *TINY_DATA, *extra, f"data.root={tmp_path / 'synthetic'}")
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "final:" in result.stdout and str(debug_run_dir(tmp_path)) in result.stdout
    assert not [noise for noise in NOISE if noise in output], output[-3000:]
    assert "Total FLOPs:" in output and not list(debug_run_dir(tmp_path).glob("wandb"))
    run = debug_run_dir(tmp_path)
    assert not list(run.rglob("*.ckpt"))  # "no checkpoints", Lightning's own default one included
    if option == "fdr":
        assert "fast_dev_run" in output and "test/acc=" in result.stdout
    if option == "overfit":
        rows = csv_rows(run)
        assert "test/acc=" not in result.stdout and max(int(r["epoch"]) for r in rows) == 29
        assert sorted({int(r["epoch"]) for r in rows if r["val/acc"]}) == [9, 19, 29]
        epochs = {int(r["epoch"]): r for r in rows if r["train/loss_epoch"]}
        assert float(epochs[0]["train/loss_epoch"]) > 0.6  # ln 2 = 0.69: it starts from chance ...
        assert float(epochs[29]["train/loss_epoch"]) < OVERFIT_LOSS and float(epochs[29]["train/acc"]) == 1.0
        assert "enabled train dataloader shuffling" not in output  # its batches are fixed, of both classes
    if option == "profiler":
        assert "FIT Profiler Report" in output and "run_training_batch" in output
        assert "save_checkpoint" not in output  # no checkpoint writing in what it measures


@pytest.mark.parametrize("option", ["overfit", "profiler"])
def test_debug_runs_that_save_nothing_have_no_checkpoint_callbacks(option: str, tmp_path: Path) -> None:
    """Not Lightning's default ModelCheckpoint, not ours, not the SIGTERM / Ctrl-C one (455 MB each)."""
    cfg = compose_train([f"debug={option}"], tmp_path)
    writers = [cb for cb in build_callbacks(cfg) if isinstance(cb, (ModelCheckpoint, PreemptionCheckpoint))]
    assert writers == [] and cfg.trainer.enable_checkpointing is False


def test_debug_limit_writes_checkpoints_only_when_asked(tmp_path: Path) -> None:
    """A limited run (trainer.limit_train_batches): the callbacks are there, saving nothing (455 MB each
    otherwise); callbacks.last_checkpoint.save_top_k=1 asks for last.ckpt and the best epoch's weights."""
    for overrides, kept in (([], 0), (["callbacks.last_checkpoint.save_top_k=1"], 1)):
        limit = compose_train(["debug=limit", *overrides], tmp_path)
        savers = [cb for cb in build_callbacks(limit) if isinstance(cb, ModelCheckpoint)]
        assert [cb.save_top_k for cb in savers] == [kept, kept]


@pytest.mark.slow
def test_debug_limit_runs_on_a_folder_per_class_dataset(tmp_path: Path, train_cli) -> None:
    write_folder_dataset(tmp_path / "photos")
    result = train_cli(
        "debug=limit", "data=folders", f"data.root={tmp_path / 'photos'}", "data.num_classes=3",
        "data.val_fraction=0.34", "data.batch_size=4", *TINY_RUN, *NARROW,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run = debug_run_dir(tmp_path)
    rows = csv_rows(run)
    assert sorted({int(r["epoch"]) for r in rows if r["val/acc"]}) == [0, 1, 2]  # 3 epochs
    assert not list(run.rglob("*.ckpt"))  # a limited run keeps no checkpoint (none asked for)
    assert "test/acc=" in result.stdout  # 2 test batches of the 6 test photos, on the weights it has
    assert not [noise for noise in NOISE if noise in result.stdout + result.stderr]


# --- conf/local/, --help, FLOPs ---------------------------------------------------------------------------


def compose_with_local(tmp_path: Path, local: str, overrides: list[str]) -> DictConfig:
    """``conf/train.yaml`` composed from a copy of ``conf/`` whose ``local/default.yaml`` holds ``local``."""
    conf = tmp_path / "conf"
    shutil.rmtree(conf, ignore_errors=True)
    shutil.copytree(CONF, conf)
    (conf / "local" / "default.yaml").write_text(local)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def test_local_config_sets_this_machines_paths_and_is_ignored_by_git(tmp_path: Path) -> None:
    mine = "# @package _global_\npaths:\n  data_dir: /scratch/data\n  log_dir: /scratch/outputs\n"
    cfg = compose_with_local(tmp_path, mine, ["experiment=demo"])
    assert cfg.paths.data_dir == "/scratch/data" and cfg.paths.log_dir == "/scratch/outputs"
    assert cfg.data.cache_dir == "/scratch/data/cache" and "demo" in cfg.tags
    copied = compose_with_local(tmp_path, (CONF / "local" / "default.yaml.example").read_text(), [])
    assert copied.paths.log_dir.endswith("/outputs")  # the tracked example, copied as it is, sets nothing
    ignored = subprocess.run(["git", "check-ignore", "-q", "conf/local/default.yaml"], cwd=ROOT)
    tracked = subprocess.run(["git", "check-ignore", "-q", "conf/local/default.yaml.example"], cwd=ROOT)
    assert ignored.returncode == 0 and tracked.returncode == 1


# src/train.py's own --help, without its imports of torch and Lightning (seconds): a bare app on conf/.
HELP_APP = f"""
import sys, hydra
sys.argv = ["src/train.py", "--help"]
hydra.main(version_base="1.3", config_path={str(CONF)!r}, config_name="train")(lambda cfg: None)()
"""


def test_help_lists_groups_keys_and_the_readme(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", HELP_APP], cwd=tmp_path, env=run_env(tmp_path), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout
    groups_section = text.split("== Config groups", 1)[1].split("==", 2)[1]
    groups = dict(line.split(": ", 1) for line in groups_section.splitlines() if ": " in line)
    # Only options a run can pick: not the settings every debug run includes (conf/debug_common.yaml), not
    # the example of a machine's conf/local/default.yaml (listed only where that machine's own file exists).
    assert groups["debug"] == "fdr, limit, overfit, profiler"
    assert groups.get("local", "default") == "default"
    assert groups["logger"].startswith("csv, tensorboard, wandb")
    lr = " ".join(text.split("optimizer.lr=0.01", 1)[1].split("trainer.max_epochs=", 1)[0].split())
    assert "the rate at batch 128" in lr and "scaled linearly with the batch" in lr
    assert "warm-up over scheduler.warmup_steps=250 steps" in lr
    assert "model: " in text and "two_tower" in text and "experiment: " in text and "demo" in text
    for key in ("data.root=", "optimizer.lr=", "trainer.max_epochs=", "trainer.devices=", "ckpt_path=last"):
        assert key in text
    assert "README.md" in text and "Debug and logging" in text
    assert "resume the run started last (an error if it saved no last.ckpt)" in text  # resume.py's rule
    assert "== Config ==" not in text  # not the whole composed config: --cfg job prints that


def test_summary_flops_are_the_nets_forward_pass_over_one_image() -> None:
    net = AlexNet(num_classes=1000, towers=2)
    assert forward_flops(net, 224) == 2 * 724_406_816  # 724.4 M multiply-adds (../shared/ENVIRONMENT.md)
    assert next(net.parameters()).device.type == "cpu"  # counted on a meta twin, the net untouched
