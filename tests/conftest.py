"""Shared fixtures: the project root, a composed Hydra config, and runs of ``src/train.py``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import src.runs.paths  # noqa: F401  (registers ${project_root:}, which conf/paths/default.yaml reads)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def compose_train(overrides: list[str], output_dir: Path) -> DictConfig:
    """``conf/train.yaml`` with ``overrides``, as ``src/train.py`` would see it, writing to ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.data_dir = str(output_dir / "data")
    return cfg


def quiet_trainer(max_steps: int, **options: object) -> L.Trainer:
    """A CPU Trainer for a few test steps: no logger, checkpoints, progress bar, summary or sanity check."""
    quiet = dict(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    return L.Trainer(max_steps=max_steps, **(quiet | options))


def run_env(home: Path) -> dict[str, str]:
    """The environment of a training subprocess: no W&B key, a private HOME, no GPU."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env |= {"HOME": str(home), "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}
    return env


def script_runner(script: str, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python src/<script> ARGS`` with outputs and data under ``tmp_path``; return the process."""

    def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        paths = [f"paths.log_dir={tmp_path / 'outputs'}", f"paths.data_dir={tmp_path / 'data'}"]
        command = [sys.executable, str(ROOT / "src" / script), *paths, *args]
        return subprocess.run(
            command, cwd=tmp_path, env=run_env(tmp_path), capture_output=True, text=True, timeout=timeout
        )

    return run


@pytest.fixture
def train_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``python src/train.py ARGS`` (see ``script_runner``)."""
    return script_runner("train.py", tmp_path)


@pytest.fixture
def eval_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``python src/eval.py ARGS`` (see ``script_runner``)."""
    return script_runner("eval.py", tmp_path)
