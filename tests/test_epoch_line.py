"""The per-epoch console line (src/callbacks/epoch_line.py)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch

from src.callbacks.epoch_line import EpochLine, duration, epoch_line


def test_the_line_shows_the_epochs_values_in_a_fixed_order_and_leaves_out_missing_ones() -> None:
    metrics = {"val/acc": torch.tensor(0.08123), "train/loss_epoch": torch.tensor(4.8123), "lr": 0.01}
    assert epoch_line(2, 90, metrics, None) == "epoch 3/90  train/loss 4.812  val/acc 0.08123  lr 0.01"
    assert epoch_line(0, -1, {}, None) == "epoch 1"  # max_epochs=-1 (a max_steps run): no total


@pytest.mark.parametrize(("seconds", "shown"), [(7.4, "0m07s"), (432, "7m12s"), (3 * 3600 + 125, "3h02m")])
def test_durations_read_as_minutes_or_hours(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown


def test_each_epoch_is_logged_once_when_its_values_exist_and_only_on_rank_zero(caplog) -> None:
    trainer = SimpleNamespace(is_global_zero=True, current_epoch=0, max_epochs=2, callback_metrics={})
    callback = EpochLine()
    with caplog.at_level(logging.INFO, logger="src.callbacks.epoch_line"):
        callback.on_train_epoch_start(trainer, None)
        callback.on_train_epoch_end(trainer, None)
        trainer.callback_metrics = {"val/acc": 0.5}
        trainer.current_epoch = 1
        callback.on_train_epoch_start(trainer, None)  # epoch 1's line, now that its values are in
        callback.on_train_epoch_end(trainer, None)
        callback.on_train_end(trainer, None)
        callback.on_train_end(trainer, None)  # nothing pending: no second line
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split("  ")[:2] for line in lines] == [
        ["epoch 1/2", "val/acc 0.5"],
        ["epoch 2/2", "val/acc 0.5"],
    ]
    trainer.is_global_zero = False
    caplog.clear()
    callback.on_train_epoch_end(trainer, None)
    callback.on_train_end(trainer, None)
    assert caplog.records == []
