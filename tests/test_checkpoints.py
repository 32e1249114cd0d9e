"""What a run keeps on disk (conf/callbacks/default.yaml): ``last.ckpt`` whole, to resume; the best epoch as
weights only, which the final test loads; nothing for a run that limits its training batches unless asked."""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from src.runs.checkpoint_io import AtomicCheckpointIO
from src.train import build_callbacks
from tests.conftest import compose_train
from tests.test_debug_configs import NARROW
from tests.test_train import TINY_DATA, TINY_GENERATED, run_dir

#: The validation accuracy the scripted module logs per epoch: epoch 1 is the best, epoch 2 the last.
VAL_ACC = [0.5, 0.9, 0.2, 0.3]


class Scripted(L.LightningModule):
    """A linear layer whose ``val/acc`` follows ``VAL_ACC``; the test records the weights it runs with."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)
        self.tested_with: torch.Tensor | None = None

    def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch: list[torch.Tensor], _: int) -> None:
        self.log("val/acc", VAL_ACC[self.current_epoch])

    def test_step(self, batch: list[torch.Tensor], _: int) -> None:
        self.tested_with = self.layer.weight.detach().clone()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.randn(8, 4, generator=torch.Generator().manual_seed(0))), 4)

    val_dataloader = test_dataloader = train_dataloader


def checkpoint_callbacks(overrides: list[str], output_dir: Path) -> list[ModelCheckpoint]:
    """The run's ``ModelCheckpoint`` callbacks as ``src/train.py`` builds them from the config."""
    cfg = compose_train(overrides, output_dir)
    return [cb for cb in build_callbacks(cfg) if isinstance(cb, ModelCheckpoint)]


def fit(callbacks: list[ModelCheckpoint], root: Path, epochs: int, **options: object) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=list(callbacks),
        plugins=[AtomicCheckpointIO()],
        default_root_dir=root,
        **options,
    )


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.parametrize(
    ("overrides", "last", "best"),
    [
        ([], 1, 1),  # a run over every batch: both
        (["trainer.limit_train_batches=2"], 0, 0),  # a limited run: none
        (["+trainer.limit_train_batches=0.5"], 0, 0),  # a share of the batches, as sweeps write it
        (["debug=limit"], 0, 0),
        (["debug=limit", "callbacks.last_checkpoint.save_top_k=1"], 1, 1),  # asked: both
        # the best alone (weights only: nothing to resume from)
        (["trainer.limit_train_batches=2", "callbacks.model_checkpoint.save_top_k=1"], 0, 1),
    ],
)
def test_which_checkpoints_a_run_keeps(overrides: list[str], last: int, best: int, tmp_path: Path) -> None:
    by_name = {cb.filename: cb for cb in checkpoint_callbacks(overrides, tmp_path)}
    assert by_name.keys() == {"last", "epoch_{epoch:03d}"}
    assert (by_name["last"].save_top_k, by_name["epoch_{epoch:03d}"].save_top_k) == (last, best)
    assert by_name["epoch_{epoch:03d}"].save_weights_only and not by_name["last"].save_weights_only
    assert by_name["epoch_{epoch:03d}"].monitor == "val/acc" and by_name["last"].monitor is None


def test_the_test_loads_the_weights_only_best_and_a_resume_the_whole_last(tmp_path: Path) -> None:
    callbacks = checkpoint_callbacks([], tmp_path)
    trainer = fit(callbacks, tmp_path, epochs=3)
    module = Scripted()
    trainer.fit(module)
    folder = tmp_path / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["epoch_001.ckpt", "last.ckpt"]
    best, last = load(folder / "epoch_001.ckpt"), load(folder / "last.ckpt")
    assert "optimizer_states" not in best and "lr_schedulers" not in best and "callbacks" not in best
    assert best["epoch"] == 1 and last["epoch"] == 2
    assert len(last["optimizer_states"]) == 1 and last["optimizer_states"][0]["state"]  # the momentum
    assert (folder / "epoch_001.ckpt").stat().st_size < (folder / "last.ckpt").stat().st_size
    assert not torch.equal(best["state_dict"]["layer.weight"], last["state_dict"]["layer.weight"])

    # The final test as src/train.py runs it: the first checkpoint callback's best file.
    assert trainer.checkpoint_callback.best_model_path == str(folder / "epoch_001.ckpt")
    trainer.test(module, ckpt_path=trainer.checkpoint_callback.best_model_path, weights_only=False)
    assert torch.equal(module.tested_with, best["state_dict"]["layer.weight"])

    # ckpt_path=last goes on from last.ckpt, momentum and all ...
    resumed = fit(checkpoint_callbacks([], tmp_path), tmp_path, epochs=4)
    resumed.fit(Scripted(), ckpt_path=folder / "last.ckpt", weights_only=False)
    assert (resumed.current_epoch, resumed.global_step) == (4, 4 * 2)
    assert load(folder / "last.ckpt")["epoch"] == 3
    # ... and the weights-only best cannot stand in for it: Lightning says why.
    with pytest.raises(KeyError, match="save_weights_only"):
        fit(checkpoint_callbacks([], tmp_path), tmp_path, epochs=5).fit(
            Scripted(), ckpt_path=folder / "epoch_001.ckpt", weights_only=False
        )


def test_a_limited_run_writes_no_checkpoint_and_tests_its_own_weights(tmp_path: Path) -> None:
    callbacks = checkpoint_callbacks(["trainer.limit_train_batches=1"], tmp_path)
    trainer = fit(callbacks, tmp_path, epochs=2, limit_train_batches=1)
    module = Scripted()
    trainer.fit(module)
    assert not (tmp_path / "checkpoints").exists() or not list((tmp_path / "checkpoints").iterdir())
    assert trainer.checkpoint_callback.best_model_path == ""  # src/train.py then tests the weights it has
    trainer.test(module, ckpt_path=None)
    assert torch.equal(module.tested_with, module.layer.weight)


@pytest.mark.slow
def test_a_run_keeps_last_whole_and_the_best_as_weights_that_eval_reads(
    tmp_path: Path, train_cli, eval_cli
) -> None:
    data = f"data.root={tmp_path / 'synthetic'}"
    trained = train_cli(*TINY_DATA, *NARROW, data, "trainer.max_epochs=2", "logger=csv")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "test/acc=" in trained.stdout
    folder = run_dir(tmp_path) / "checkpoints"
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 2 and names[1] == "last.ckpt" and re.fullmatch(r"epoch_00[01]\.ckpt", names[0])
    best, last = load(folder / names[0]), load(folder / "last.ckpt")
    assert "optimizer_states" not in best and "optimizer_states" in last
    assert best["net_config"] == last["net_config"]  # what load_network and src/eval.py rebuild the net from
    evaluated = eval_cli(f"ckpt_path={folder / names[0]}", data, *TINY_GENERATED, "trainer=cpu")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert f"{names[0]}: trained on {tmp_path / 'synthetic'} (classes ['cat', 'dog'])" in evaluated.stdout
    assert "test/ten_crop_acc = " in evaluated.stdout
