"""The ``logger`` config group (``conf/logger/``): the loggers a run writes to, built and closed.

A W&B entry is built by ``src/loggers/wandb_run.py`` (online or offline, the run's id, its name and group);
any other entry (CSV, TensorBoard) is Hydra's plain ``instantiate``.
"""

from __future__ import annotations

from collections.abc import Iterable

import hydra
import torch
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from src.loggers.wandb_run import finish_wandb, is_wandb, wandb_logger


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """The ``logger`` group's loggers, in the config's order."""
    loggers_cfg = {name: c for name, c in (cfg.get("logger") or {}).items() if c}
    return [
        wandb_logger(c, cfg.paths.output_dir) if is_wandb(c) else hydra.utils.instantiate(c)
        for c in loggers_cfg.values()
    ]


def finish(loggers: Iterable[Logger], exit_code: int | None = None) -> None:
    """End the W&B run (each multirun job must be its own run) and the process group (clean DDP exit)."""
    finish_wandb(loggers, exit_code)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
