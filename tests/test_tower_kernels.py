"""The tower-kernel callback: kernel pictures and colour scores in W&B and CSV runs (section 6.1, fig. 3)."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from src.analysis.colour import stats_for_model_kernels
from src.callbacks.tower_kernels import TowerKernelMonitor
from src.loggers.wandb_records import (
    find_offline_runs,
    image_files,
    metric_series,
    read_history,
    wait_until_finished,
)
from src.models.alexnet import AlexNet
from tests.test_train import TINY_DATA, run_dir

SCALARS = (
    "kernels/tower0/colour_mean",
    "kernels/tower1/colour_mean",
    "kernels/tower0/colour_fraction",
    "kernels/split",
)


def grey_and_colour_towers(net: AlexNet) -> None:
    """Tower 0's conv1 kernels made grey (equal channels), tower 1's opponent colour (channels sum to 0)."""
    with torch.no_grad():
        weight = net.layer("conv1").weight
        half = weight.shape[0] // 2
        weight[:half] = weight[:half, :1].expand(-1, 3, -1, -1).clone()
        weight[half:] -= weight[half:].mean(dim=1, keepdim=True)


def test_split_is_near_its_maximum_on_hand_built_towers_and_near_zero_when_fresh() -> None:
    torch.manual_seed(0)
    net = AlexNet(num_classes=2, towers=2)
    fresh = stats_for_model_kernels(net.tower_kernels("conv1"))
    assert fresh.split < 0.35 and abs(fresh.means[0] - 2 / 3) < 0.03  # random kernels: 2/3 off the grey axis
    grey_and_colour_towers(net)
    built = stats_for_model_kernels(net.tower_kernels("conv1"))
    assert built.split > 0.99 and built.means[0] < 1e-6 and built.means[1] > 0.99
    assert built.fractions == (0.0, 1.0)


def test_one_tower_is_measured_over_two_fixed_halves() -> None:
    torch.manual_seed(0)
    net = AlexNet(num_classes=2, towers=1)
    grey_and_colour_towers(net)  # first 48 grey, last 48 colour
    stats = stats_for_model_kernels(net.tower_kernels("conv1"))
    assert stats.halves and len(stats.scores) == 2 and stats.split > 0.99


def pixel_spread(path: Path) -> float:
    image = np.asarray(Image.open(path))
    assert image.dtype == np.uint8
    return float(image.std())


@pytest.mark.slow
@pytest.mark.long
def test_wandb_run_holds_tower_images_and_scalars_for_every_validation_epoch(
    tmp_path: Path, train_cli
) -> None:
    result = train_cli(
        *TINY_DATA, f"data.root={tmp_path / 'synthetic'}", "trainer.max_epochs=2", "logger=wandb"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (wandb_run,) = find_offline_runs(run_dir(tmp_path))
    wait_until_finished(wandb_run)
    history = read_history(wandb_run)
    val_steps = [step for step, _ in metric_series(history, "val/acc")]
    assert len(val_steps) == 2  # two validation epochs
    for key in SCALARS:
        steps = [step for step, _ in metric_series(history, key)]
        assert steps == [0, *val_steps], key  # before training, then after every validation epoch
    means = [value for _, value in metric_series(history, "kernels/tower0/colour_mean")]
    assert all(0.0 <= m <= 1.0 for m in means)
    for tower in (0, 1):
        pictures = image_files(wandb_run, f"kernels/tower{tower}")
        assert len(pictures) == 3
        assert all(pixel_spread(p) > 20 for p in pictures)  # uint8 and not blank (float images turn black)
    assert len(image_files(wandb_run, "kernels/figure3")) == 3
    assert list((wandb_run / "files" / "media").rglob("animation*.gif"))
    assert list((wandb_run / "files" / "media").rglob("final_scores*.table.json"))


@pytest.mark.slow
@pytest.mark.long
def test_csv_run_writes_pngs_and_scalars(tmp_path: Path, train_cli) -> None:
    result = train_cli(
        *TINY_DATA, f"data.root={tmp_path / 'synthetic'}", "trainer.max_epochs=2", "logger=csv"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = run_dir(tmp_path)
    rows = list(csv.DictReader((out / "csv" / "version_0" / "metrics.csv").open()))
    split_steps = sorted(int(r["step"]) for r in rows if r.get("kernels/split"))
    val_steps = sorted(int(r["step"]) for r in rows if r.get("val/acc"))
    assert split_steps == [0, *val_steps] and len(val_steps) == 2
    kernels = out / "kernels"
    for epochs_done in (0, 1, 2):
        for name in ("tower0", "tower1", "figure3"):
            assert pixel_spread(kernels / f"epoch_{epochs_done:03d}_{name}.png") > 20
    with Image.open(kernels / "animation.gif") as gif:
        assert gif.n_frames == 3
    scores = list(csv.DictReader((kernels / "final_scores.csv").open()))
    assert len(scores) == 96 and {r["tower"] for r in scores} == {"0", "1"}
    assert pixel_spread(kernels / "histogram.png") > 20
    for epochs_done in (0, 1, 2):
        with np.load(kernels / f"epoch_{epochs_done:03d}_weights.npz") as weights:
            assert weights["conv1"].shape[:2] == (96, 3) and weights["conv2"].shape[0] == 256
    change_steps = sorted(int(r["step"]) for r in rows if r.get("kernels/change/split"))
    assert change_steps == val_steps  # the learned change exists from the first epoch on


def test_callback_logs_only_on_rank_zero(tmp_path: Path) -> None:
    """On other ranks the callback writes and logs nothing."""
    logged: list[dict] = []
    logger = SimpleNamespace(log_metrics=lambda metrics, step: logged.append(metrics))
    trainer = SimpleNamespace(
        is_global_zero=False, loggers=[logger], global_step=0, current_epoch=0, default_root_dir=str(tmp_path)
    )
    module = SimpleNamespace(net=AlexNet(num_classes=2))
    TowerKernelMonitor().on_train_start(trainer, module)
    assert logged == [] and not (tmp_path / "kernels").exists()
    trainer.is_global_zero = True
    TowerKernelMonitor().on_train_start(trainer, module)
    assert set(SCALARS) <= set(logged[0]) and len(list((tmp_path / "kernels").glob("epoch_000_*.png"))) == 3


def test_the_learned_change_is_scored_apart_from_the_kernels(tmp_path: Path) -> None:
    """A grey/colour split added on top of random kernels shows in the change's split, which does not see
    the initial kernels; the weights of every snapshot are written for later measures."""
    torch.manual_seed(0)
    net = AlexNet(num_classes=2, towers=2)
    logged: dict[str, float] = {}
    trainer = SimpleNamespace(
        is_global_zero=True,
        loggers=[],
        global_step=0,
        current_epoch=0,
        default_root_dir=str(tmp_path),
        sanity_checking=False,
    )
    module = SimpleNamespace(net=net, log_dict=lambda metrics, **_: logged.update(metrics))
    monitor = TowerKernelMonitor()
    monitor.on_train_start(trainer, module)
    initial = net.layer("conv1").weight.detach().clone()
    with torch.no_grad():  # the learned change: tower 0 grey, tower 1 opponent colour, 0.1x the start
        change = torch.randn_like(initial) * 0.001
        change[:48] = change[:48, :1].expand(-1, 3, -1, -1).clone()
        change[48:] -= change[48:].mean(dim=1, keepdim=True)
        net.layer("conv1").weight += change
    monitor.on_validation_epoch_end(trainer, module)
    assert logged["kernels/change/split"] > 0.99
    assert logged["kernels/split"] < 0.6  # hidden under the random start in the kernels themselves
    with np.load(tmp_path / "kernels" / "epoch_001_weights.npz") as weights:
        np.testing.assert_allclose(weights["conv1"], (initial + change).numpy(), rtol=1e-6)
    resumed = TowerKernelMonitor()  # a resumed run reads its initial kernels back from epoch_000's file
    trainer.global_step = 10
    resumed.on_train_start(trainer, module)
    assert resumed.initial is not None and torch.equal(torch.cat(resumed.initial), initial)
