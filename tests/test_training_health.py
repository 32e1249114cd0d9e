"""The training-health callback (per-layer norms, dead units, dead-run stop), warm-up and batch-scaled lr."""

from __future__ import annotations

import csv
import functools
import re
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from src.callbacks.training_health import DIED_FILE, TrainingDiedError, TrainingHealth
from src.config.compose import build_module, compose_config, constant_rate_module
from src.models.alexnet import AlexNet
from src.models.classifier import TowerClassifier
from tests.helpers.trainers import quiet_trainer

SMALL = {"conv_widths": (16, 32, 48, 48, 32), "fc_width": 64}
SIZE = 67


def batches(n: int = 64, batch_size: int = 16, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.randn(n, 3, SIZE, SIZE, generator=generator) + (labels.float() * 2 - 1).view(-1, 1, 1, 1)
    return DataLoader(TensorDataset(images, labels), batch_size=batch_size, shuffle=False)


def sgd(lr: float) -> functools.partial:
    return functools.partial(torch.optim.SGD, lr=lr, momentum=0.9)


def module(lr: float = 0.01, **options: object) -> TowerClassifier:
    torch.manual_seed(0)
    return constant_rate_module(AlexNet(2, towers=2, **SMALL), sgd(lr), **options)


def csv_rows(folder: Path) -> list[dict[str, str]]:
    with open(next(folder.rglob("metrics.csv"))) as file:
        return list(csv.DictReader(file))


def test_per_layer_norms_reach_the_csv_at_the_interval(tmp_path: Path) -> None:
    health = TrainingHealth(every_n_steps=2)
    logger = CSVLogger(tmp_path, name="csv")
    quiet_trainer(5, callbacks=[health], logger=logger, default_root_dir=tmp_path).fit(
        module(), train_dataloaders=batches()
    )
    rows = [r for r in csv_rows(tmp_path) if r.get("health/conv1/grad_norm")]
    assert [int(r["step"]) for r in rows] == [0, 2, 4]
    for row in rows:
        for layer in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
            grad, weight = float(row[f"health/{layer}/grad_norm"]), float(row[f"health/{layer}/weight_norm"])
            assert grad > 0 and weight > 0
            assert float(row[f"health/{layer}/update_ratio"]) == pytest.approx(0.01 * grad / weight, rel=1e-5)
        for layer in ("conv1", "conv5", "fc6", "fc7"):
            assert 0.0 <= float(row[f"health/{layer}/dead_units"]) <= 1.0
        assert float(row["health/logit_spread"]) > 0


def test_a_non_finite_loss_stops_the_run_at_that_step(tmp_path: Path) -> None:
    health = TrainingHealth(every_n_steps=0)
    trainer = quiet_trainer(50, callbacks=[health], default_root_dir=tmp_path)
    with pytest.raises(TrainingDiedError, match=r"step \d+, epoch \d+ \(lr 1e\+06\).*loss is (nan|inf)"):
        trainer.fit(module(lr=1e6), train_dataloaders=batches())
    assert trainer.global_step < 50
    assert "what to try" in (tmp_path / DIED_FILE).read_text()


def test_the_died_message_names_the_warmed_up_rate_the_last_step_used(tmp_path: Path) -> None:
    """In a warm-up the groups hold the scheduled rate between steps; step k (from 1) used k/warmup of it."""
    trainer = quiet_trainer(50, callbacks=[TrainingHealth(every_n_steps=0)], default_root_dir=tmp_path)
    with pytest.raises(TrainingDiedError) as died:
        trainer.fit(module(lr=1e6, warmup_steps=250), train_dataloaders=batches())
    step, lr = re.search(r"step (\d+), epoch \d+ \(lr ([0-9.e+]+)\)", str(died.value)).groups()
    assert float(lr) == pytest.approx(1e6 * int(step) / 250, rel=1e-2) and float(lr) < 1e6


def test_an_output_that_ignores_the_input_stops_the_run(tmp_path: Path) -> None:
    dead = module(lr=0.0)  # nothing moves: the net stays dead
    with torch.no_grad():  # every fc7 unit below zero for every input: the logits are fc8's bias
        dead.net.classifier.fc7.weight.zero_()
        dead.net.classifier.fc7.bias.fill_(-1.0)
    health = TrainingHealth(every_n_steps=1, patience=3)
    logger = CSVLogger(tmp_path, name="csv")
    trainer = quiet_trainer(50, callbacks=[health], logger=logger, default_root_dir=tmp_path)
    with pytest.raises(TrainingDiedError, match="no longer depends on its input"):
        trainer.fit(dead, train_dataloaders=batches(n=256))
    assert trainer.global_step == 2  # checks at steps 0, 1, 2: the third in a row stops it
    rows = csv_rows(tmp_path)
    assert any(r.get("health/dead") == "1.0" for r in rows)
    assert all(float(r["health/fc7/dead_units"]) == 1.0 for r in rows if r.get("health/fc7/dead_units"))


def test_a_living_run_is_not_stopped(tmp_path: Path) -> None:
    """He's initialisation everywhere: its logits vary from the first step, so even a detector that stops at
    the first narrow check (patience 1) leaves the run alone. (The default's conv1 at N(0, 0.01) starts with
    nearly equal logits, which the configured patience of 8 checks lets grow.)"""
    health = TrainingHealth(every_n_steps=1, patience=1)
    torch.manual_seed(0)
    net = AlexNet(2, towers=2, init="kaiming", **SMALL)
    living = constant_rate_module(net, sgd(0.01))
    quiet_trainer(4, callbacks=[health], default_root_dir=tmp_path).fit(living, train_dataloaders=batches())
    assert health.constant_checks == 0 and not (tmp_path / DIED_FILE).exists()


class LearningRates(L.Callback):
    """The rate each optimiser step used."""

    def __init__(self) -> None:
        self.used: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.used.append(optimizer.param_groups[0]["lr"])


def test_warmup_rises_linearly_then_leaves_the_scheduled_rate_alone(tmp_path: Path) -> None:
    rates = LearningRates()
    trained = module(lr=0.1, warmup_steps=4)
    trainer = quiet_trainer(6, callbacks=[rates], default_root_dir=tmp_path)
    trainer.fit(trained, train_dataloaders=batches(n=96))
    assert rates.used == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1)  # what checkpoints keep


class Batch64(L.LightningDataModule):
    batch_size = 64

    def train_dataloader(self) -> DataLoader:
        return batches(n=64, batch_size=64)


def test_the_rate_scales_with_the_batch(tmp_path: Path) -> None:
    """optimizer.lr is the rate at scheduler.lr_batch; data.batch_size=64 trains at half of it."""
    torch.manual_seed(0)
    cfg = compose_config(["scheduler=constant", "scheduler.lr_batch=128", "data.batch_size=64"])
    trained = build_module(cfg, net=AlexNet(2, towers=2, **SMALL))
    trainer = quiet_trainer(1, default_root_dir=tmp_path)
    trainer.fit(trained, datamodule=Batch64())
    assert cfg.optimizer.lr == 0.01
    assert [g["lr"] for g in trainer.optimizers[0].param_groups] == pytest.approx([0.005, 0.005])
