"""The warm-up fits the run it is in (issue 28; conf/scheduler/warmup_plateau.yaml).

The rule: ``W = min(warmup_steps, floor(warmup_fraction x the run's optimiser steps))``, 250 steps or a
quarter of a shorter run by default, so that a short run on a small dataset reaches its full rate early, while
Imagenette-sized runs (Figure 3) keep their 250 steps. ``warmup_fraction=null`` takes ``warmup_steps`` as
given and warns when it covers more than a quarter of the run.
"""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

import hydra
import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from src.data.datamodule import split_by_source
from src.models.classifier import WARMUP_KEY, fitted_warmup
from src.train import build_module
from tests.conftest import compose_train
from tests.helpers.trainers import quiet_trainer
from tests.test_training_health import LearningRates, batches, module

IMAGENETTE_TRAIN_PER_CLASS = (963, 955, 993, 858, 941, 956, 961, 931, 951, 960)  # 9,469 images, train/


def training_images(per_class: tuple[int, ...], val_fraction: float = 0.1) -> int:
    """The images left for training after the datamodule's validation split (data.val_fraction)."""
    labels = [label for label, count in enumerate(per_class) for _ in range(count)]
    return len(split_by_source(labels, val_fraction, seed=0)[0])


def run_steps(images: int, batch: int, epochs: int) -> int:
    """Optimiser steps of a run: the last, partial batch of an epoch is a step too (no drop_last)."""
    return math.ceil(images / batch) * epochs


def peak_rate(rate: float, warmup: int, steps: int) -> float:
    """The highest rate of a run of ``steps`` steps (step k, from 0, uses (k + 1) / warmup of ``rate``)."""
    return rate * min(1.0, steps / warmup) if warmup else rate


def default_schedule(tmp_path: Path, *overrides: str) -> tuple[int, float, float, int]:
    """(warmup_steps, warmup_fraction, optimizer.lr, scheduler.lr_batch) of the composed configuration."""
    cfg = compose_train(list(overrides), tmp_path)
    return cfg.scheduler.warmup_steps, cfg.scheduler.warmup_fraction, cfg.optimizer.lr, cfg.scheduler.lr_batch


def test_imagenette_runs_keep_their_250_steps_and_small_runs_reach_their_peak(tmp_path: Path) -> None:
    warmup, fraction, lr, lr_batch = default_schedule(tmp_path / "defaults")
    assert (warmup, fraction, lr, lr_batch) == (250, 0.25, 0.01, 128)

    # Figure 3 (conf/experiment/figure3.yaml): Imagenette's 8,522 training images at batch 64, 10 epochs.
    figure3 = compose_train(["experiment=figure3", "data=imagenette"], tmp_path / "figure3")
    images = training_images(IMAGENETTE_TRAIN_PER_CLASS)
    steps = run_steps(images, figure3.data.batch_size, figure3.trainer.max_epochs)
    assert (images, figure3.data.batch_size, steps) == (8522, 64, 1340)
    chosen = fitted_warmup(figure3.scheduler.warmup_steps, figure3.scheduler.warmup_fraction, steps)
    assert chosen == 250  # as the archived runs warmed up
    assert peak_rate(0.01 * 64 / 128, chosen, steps) == pytest.approx(0.005)

    # 2,000 photographs (1,800 after the validation split), 12 epochs.
    images = training_images((1000, 1000))
    assert images == 1800
    expected = {32: (684, 171, 0.0025), 128: (180, 45, 0.01)}  # batch: steps, warm-up, peak rate
    for batch, (steps, warmup_chosen, peak) in expected.items():
        assert run_steps(images, batch, 12) == steps
        assert fitted_warmup(warmup, fraction, steps) == warmup_chosen == math.floor(0.25 * steps)
        assert peak_rate(lr * batch / lr_batch, warmup_chosen, steps) == pytest.approx(peak)
    # Before: 250 steps whatever the run; at batch 128 the run ended at 72 % of its rate.
    assert fitted_warmup(warmup, None, 180) == 250
    assert peak_rate(0.01, 250, 180) == pytest.approx(0.0072)

    # experiment=demo's own 40 steps (one epoch of 1,440 images at batch 32) fit its 4 epochs (180 steps).
    demo = compose_train(["experiment=demo"], tmp_path / "demo")
    steps = run_steps(training_images((800, 800)), demo.data.batch_size, demo.trainer.max_epochs)
    assert steps == 180
    assert fitted_warmup(demo.scheduler.warmup_steps, demo.scheduler.warmup_fraction, steps) == 40


def test_the_rule_at_its_edges() -> None:
    assert fitted_warmup(250, 0.25, 999) == 249 and fitted_warmup(250, 0.25, 1000) == 250
    assert fitted_warmup(250, 0.25, 3) == 0  # a quarter of 3 steps is under one: no warm-up
    assert fitted_warmup(250, 0.25, float("inf")) == 250  # a run of unknown length: the steps as given
    assert fitted_warmup(0, 0.25, 1000) == 0
    assert fitted_warmup(400, None, 100) == 400


@pytest.mark.parametrize(
    ("trainer_options", "steps"),
    [
        ({"max_epochs": 3}, 12),  # 4 batches an epoch
        ({"max_epochs": 3, "max_steps": 5}, 5),
        ({"max_epochs": 3, "limit_train_batches": 2}, 6),
        ({"max_epochs": 3, "accumulate_grad_batches": 4}, 3),
    ],
)
def test_the_runs_length_counts_its_optimiser_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], trainer_options: dict, steps: int
) -> None:
    rates = LearningRates()
    trained = module(lr=0.1, warmup_steps=100, warmup_fraction=0.5)
    options = {k: v for k, v in trainer_options.items() if k != "max_steps"}
    max_steps = trainer_options.get("max_steps", -1)
    trainer = quiet_trainer(max_steps, callbacks=[rates], default_root_dir=tmp_path, **options)
    trainer.fit(trained, train_dataloaders=batches(n=64, batch_size=16))
    warmup = steps // 2
    assert trained.chosen_warmup == warmup
    assert f"warm-up: {warmup} step" in capsys.readouterr().out
    assert rates.used == pytest.approx([0.1 * min(1.0, (k + 1) / warmup) for k in range(steps)])


def test_an_explicit_warmup_longer_than_a_quarter_of_the_run_is_kept_and_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rates = LearningRates()
    trained = module(lr=0.1, warmup_steps=10, warmup_fraction=None)
    trainer = quiet_trainer(-1, max_epochs=2, callbacks=[rates], default_root_dir=tmp_path)
    with pytest.warns(UserWarning) as caught:
        trainer.fit(trained, train_dataloaders=batches(n=64, batch_size=16))
    (warning,) = [str(w.message) for w in caught if "warmup_steps" in str(w.message)]
    assert warning == (
        "scheduler.warmup_steps=10 covers 125 % of this run's 8 steps (more than 25 %): the rate is still "
        "rising when the run ends, at 0.08 of 0.1; scheduler.warmup_fraction=0.25 fits the warm-up to the run"
    )
    assert "warm-up: 10 steps (scheduler.warmup_steps, as given" in capsys.readouterr().out
    assert trained.chosen_warmup == 10 and max(rates.used) == pytest.approx(0.08)


@pytest.mark.parametrize(("warmup_steps", "fraction"), [(2, None), (10, 0.25)])
def test_no_warning_for_a_short_or_fitted_warmup(
    tmp_path: Path, warmup_steps: int, fraction: float | None
) -> None:
    trained = module(lr=0.1, warmup_steps=warmup_steps, warmup_fraction=fraction)
    trainer = quiet_trainer(-1, max_epochs=2, default_root_dir=tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(trained, train_dataloaders=batches(n=64, batch_size=16))
    assert not [w for w in caught if "warmup_steps" in str(w.message)]
    assert trained.chosen_warmup == 2  # as given, or a quarter of the run's 8 steps


class StopAfterFirstEpoch(L.Callback):
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.should_stop = True


def test_a_resumed_run_keeps_its_warmup_when_it_is_made_longer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = module(lr=0.1, warmup_steps=100, warmup_fraction=0.5)
    trainer = quiet_trainer(-1, max_epochs=4, callbacks=[StopAfterFirstEpoch()], default_root_dir=tmp_path)
    trainer.fit(first, train_dataloaders=batches(n=64, batch_size=16))
    assert (trainer.global_step, first.chosen_warmup) == (4, 8)  # half of 4 epochs x 4 steps
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    capsys.readouterr()

    # ckpt_path=last trainer.max_epochs=8: 32 steps would give 16; the run keeps 8 and goes on rising.
    rates = LearningRates()
    resumed = module(lr=0.1, warmup_steps=100, warmup_fraction=0.5)
    trainer = quiet_trainer(-1, max_epochs=8, callbacks=[rates], default_root_dir=tmp_path)
    trainer.fit(
        resumed,
        train_dataloaders=batches(n=64, batch_size=16),
        ckpt_path=tmp_path / "last.ckpt",
        weights_only=False,  # the hparams hold the optimiser's partial
    )
    assert resumed.chosen_warmup == 8
    assert "warm-up: 8 steps, as this run chose when it started" in capsys.readouterr().out
    assert rates.used[:5] == pytest.approx([0.1 * k / 8 for k in (5, 6, 7, 8, 8)])
    trainer.save_checkpoint(tmp_path / "final.ckpt")
    assert torch.load(tmp_path / "final.ckpt", weights_only=False)[WARMUP_KEY] == 8


# -- a small generated dataset through the project's datamodule, as src/train.py builds the run ------------

SMALL_RUN = [
    "data.source.train_per_class=160",  # 320 images, 288 after the validation split: 3 batches of 128
    "data.source.test_per_class=2",
    "+data.source.image_size=72",
    "data.image_size=72",
    "data.crop_size=64",
    "data.batch_size=128",
    "data.num_workers=0",
    "data.cache_workers=0",
    "model.conv_widths=[8,16,16,16,16]",
    "model.fc_width=32",
]
EPOCHS = 4  # 12 steps


def logged_rates(tmp_path: Path, data: Path, *overrides: str) -> list[float]:
    """Each step's logged ``lr`` in a run on the small generated set in ``data``, the default schedule."""
    cfg = compose_train([*SMALL_RUN, *overrides], tmp_path)
    L.seed_everything(cfg.seed)
    datamodule = hydra.utils.instantiate(
        cfg.data, root=str(data / "synthetic"), cache_dir=str(data / "cache")
    )
    trainer = quiet_trainer(
        -1,
        max_epochs=EPOCHS,
        logger=CSVLogger(tmp_path, name="csv"),
        log_every_n_steps=1,
        precision="32-true",
    )
    trainer.fit(build_module(cfg), datamodule=datamodule)
    with open(next(tmp_path.rglob("metrics.csv"))) as file:
        return [float(row["lr"]) for row in csv.DictReader(file) if row.get("lr")]


@pytest.mark.slow
def test_a_small_dataset_at_batch_128_reaches_its_peak_rate_within_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rates = logged_rates(tmp_path / "after", tmp_path / "data")
    printed = capsys.readouterr().out
    assert "warm-up: 3 steps (25 % of this run's 12 steps; scheduler.warmup_steps=250 is the cap)" in printed
    assert len(rates) == 12
    assert rates[:3] == pytest.approx([0.01 / 3, 0.02 / 3, 0.01])  # 0.01 at batch 128 (scheduler.lr_batch)
    assert rates[2:] == pytest.approx([0.01] * 10)  # the full rate for 10 of the 12 steps

    # Before (scheduler.warmup_fraction=null: the fixed 250 steps): the run ends at 12/250 of the rate.
    with pytest.warns(UserWarning, match="covers 2083 % of this run's 12 steps"):
        before = logged_rates(tmp_path / "before", tmp_path / "data", "scheduler.warmup_fraction=null")
    assert max(before) == pytest.approx(0.01 * 12 / 250)
