"""Shared fixtures: the project root, a composed Hydra config, and runs of ``src/train.py``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from src.runs.paths import CONF_DIR, REPO_ROOT  # importing it registers ${project_root:} (conf/paths/)

ROOT = REPO_ROOT
CONF = CONF_DIR


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


def run_env(home: Path) -> dict[str, str]:
    """The environment of a training subprocess: no W&B key, a private HOME, no GPU, and the repository on
    ``PYTHONPATH`` so that a run can load a test's own callback (``+callbacks.x._target_=tests.<module>.<X>``:
    the editable install makes ``src`` importable, not ``tests``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    python_path = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env |= {"HOME": str(home), "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1", "PYTHONPATH": python_path}
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
