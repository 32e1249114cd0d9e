"""Trains a small two-tower net for a few SGD steps with Lightning, on one process or with
``TowerParallelStrategy`` on two CPU processes, and saves checkpoints (for ``tests/test_towers_strategy.py``).

    python tests/towers_fit_worker.py single|towers|single_from_towers <out dir>

An epoch is 2 batches. Both modes see the same fixed batches in the same order (no shuffling, no
augmentation) and dropout is off, so their weights and SGD momentum must agree after each step. Each also
resumes from its own checkpoint:

- ``<out>/<mode>_2.ckpt`` after 2 steps;
- ``<out>/<mode>_4.ckpt`` after 4 steps, resumed from ``<mode>_2.ckpt`` in a new fit;
- ``single_from_towers``: ``<out>/single_from_towers_4.ckpt``, one process resumed from ``towers_2.ckpt``.

Lightning starts rank 1 by running this script again, so both fits happen on both ranks. ``src`` comes from
the editable install (``make install``), ``trainers`` from this script's own folder (tests/helpers/).
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset
from trainers import quiet_trainer  # run as a script: its own folder, tests/helpers/, is importable

from src.config.compose import constant_rate_module
from src.models.alexnet import AlexNet
from src.models.classifier import TowerClassifier
from src.strategies.towers import TowerParallelStrategy

WIDTHS = (16, 32, 48, 48, 32)  # divisible by 2 towers; small enough for a quick CPU run
FC_WIDTH = 64
IMAGE = 67
BATCH = 8


def batches() -> DataLoader:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(2 * BATCH, 3, IMAGE, IMAGE, generator=generator)
    labels = torch.randint(0, 3, (2 * BATCH,), generator=generator)
    return DataLoader(TensorDataset(images, labels), batch_size=BATCH, shuffle=False)


def module(seed: int = 0) -> TowerClassifier:
    torch.manual_seed(seed)
    net = AlexNet(3, towers=2, conv_widths=WIDTHS, fc_width=FC_WIDTH, dropout=0.0)
    optimizer = partial(torch.optim.SGD, lr=0.05, momentum=0.9, weight_decay=5e-4)
    return constant_rate_module(net, optimizer)


def trainer(mode: str, steps: int) -> L.Trainer:
    parallel = {"devices": 2, "strategy": TowerParallelStrategy()} if mode == "towers" else {"devices": 1}
    # Lightning would shuffle the training batches under a strategy: keep the loader's fixed order.
    return quiet_trainer(steps, use_distributed_sampler=False, **parallel)


def resume(mode: str, checkpoint: Path, out: Path) -> None:
    """A fresh module (other weights until ``checkpoint`` is loaded) trained on from it to step 4."""
    second = trainer(mode, 4)
    second.fit(module(seed=123), train_dataloaders=batches(), ckpt_path=checkpoint, weights_only=False)
    second.save_checkpoint(out, weights_only=False)  # every rank: the gather is collective


def main(mode: str, out: Path) -> None:
    if mode == "single_from_towers":  # the towers' checkpoint goes on on one device
        resume("single", out / "towers_2.ckpt", out / "single_from_towers_4.ckpt")
        return
    first = trainer(mode, 2)
    first.fit(module(), train_dataloaders=batches())
    first.save_checkpoint(out / f"{mode}_2.ckpt", weights_only=False)
    resume(mode, out / f"{mode}_2.ckpt", out / f"{mode}_4.ckpt")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
