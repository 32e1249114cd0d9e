"""Checkpoint writes that fail (``src/runs/checkpoint_io.py``), without a real full disk: ``torch.save``
writes through ``FailingWrites``, whose writes fail after a few bytes, as a full disk's do. torch then
raises its own ``RuntimeError: ... unexpected pos ...`` with the ``OSError`` chained inside, as it did on
the full disk of issue #15. And the mode of what ``src/utils/atomic.py`` writes: the umask's, as the rest
of a run's files, not the private 0600 of ``tempfile.mkstemp``.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, BinaryIO

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel

from src.runs.checkpoint_io import AtomicCheckpointIO, CheckpointWriteError, exit_when_write_fails
from src.utils import atomic
from src.utils.atomic import current_umask, write_atomic
from tests.helpers.trainers import quiet_trainer


class FailingWrites(io.RawIOBase):
    """A handle that writes the first ``budget`` bytes to ``handle``, then calls ``fail`` (which raises, or
    sends a signal whose handler raises) before each further write."""

    def __init__(self, handle: BinaryIO, budget: int, fail: Callable[[], None]) -> None:
        super().__init__()
        self.handle, self.budget, self.fail = handle, budget, fail

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.budget <= 0:
            self.fail()
        chunk = bytes(data)[: max(self.budget, 0)] if self.budget > 0 else bytes(data)
        self.budget -= len(chunk)
        return self.handle.write(chunk)


def fail_saves(monkeypatch: pytest.MonkeyPatch, fail: Callable[[], None], from_call: int = 1) -> None:
    """From the ``from_call``-th ``torch.save`` on, the file fails after 1000 bytes (``FailingWrites``)."""
    real_save = torch.save
    calls: list[int] = []

    def save(obj: object, handle: BinaryIO, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) >= from_call:
            handle = FailingWrites(handle, 1000, fail)  # type: ignore[assignment]
        real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def disk_full() -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


class KeepLastCheckpoint(L.Callback):
    """At the start of each epoch, the bytes of ``last.ckpt`` as the previous epoch left it."""

    def __init__(self) -> None:
        self.kept: dict[int, bytes] = {}

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        last = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        if last.is_file():
            self.kept[trainer.current_epoch] = last.read_bytes()


def fit_with_checkpoints(run: Path, epochs: int, *callbacks: L.Callback) -> L.Trainer:
    """A tiny fit writing ``<run>/checkpoints/last.ckpt`` after each of its 2-step epochs (as train.py)."""
    last = ModelCheckpoint(dirpath=run / "checkpoints", filename="last", enable_version_counter=False)
    trainer = quiet_trainer(
        2 * epochs,
        max_epochs=epochs,
        limit_train_batches=2,
        limit_val_batches=0,
        enable_checkpointing=True,
        callbacks=[last, *callbacks],
        plugins=[AtomicCheckpointIO()],
        default_root_dir=run,
    )
    trainer.fit(BoringModel())
    return trainer


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_how_to_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    fail_saves(monkeypatch, disk_full, from_call=2)  # epoch 0's last.ckpt is written, epoch 1's is not
    closed: list[int] = []
    trainer = SimpleNamespace(is_global_zero=True)
    keep = KeepLastCheckpoint()
    with pytest.raises(SystemExit) as stopped, exit_when_write_fails(trainer, run, closed.append):
        fit_with_checkpoints(run, 2, keep)
    assert stopped.value.code == 1 and closed == [1]
    err = capsys.readouterr().err
    message = (
        f"error: could not write the checkpoint {last}: No space left on device (\\d+ MB free there; a "
        f"checkpoint of this run takes 0.00 MB). Kept, whole: the previous {last} (epoch 0, step 2). To go "
        "on: free space on that disk (a checkpoint is written beside the one it replaces, so it needs room "
        f"for both), then resume: python src/train.py hydra.run.dir={run} ckpt_path=last"
    )
    assert re.fullmatch(re.escape(message).replace(re.escape("\\d+"), r"\d+"), err.splitlines()[-1]), err
    assert [p.name for p in last.parent.iterdir()] == ["last.ckpt"]  # no temporary file left
    assert last.read_bytes() == keep.kept[1]  # epoch 0's, byte for byte
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert (saved["epoch"], saved["global_step"]) == (0, 2)


def test_a_failed_first_write_says_there_is_nothing_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    fail_saves(monkeypatch, disk_full)
    run = tmp_path / "run"
    target = run / "checkpoints" / "epoch_000.ckpt"
    with pytest.raises(CheckpointWriteError) as failed:
        AtomicCheckpointIO().save_checkpoint({"weights": torch.zeros(1000)}, target)
    assert "unexpected pos" in str(failed.value.__context__)  # torch's error, the OSError inside it
    assert failed.value.cause.errno == errno.ENOSPC and failed.value.path == target
    assert list(target.parent.iterdir()) == []  # nothing under the name, no temporary file
    closed: list[int] = []
    with (
        pytest.raises(SystemExit),
        exit_when_write_fails(SimpleNamespace(is_global_zero=True), run, closed.append),
    ):
        raise failed.value
    assert (
        "No checkpoint of this run is kept, so there is nothing to resume. To go on: free space on that "
        in (capsys.readouterr().err)
    )


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    """Set the process's umask for the test; the one it had comes back after."""
    kept = os.umask(0o022)
    os.umask(kept)
    try:
        yield os.umask
    finally:
        os.umask(kept)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_mode_the_umask_gives(
    mask: int, mode: int, umask: Callable[[int], None], tmp_path: Path
) -> None:
    """As ``open(path, "w")`` would: not the private 0600 of the temporary file they are written as."""
    umask(mask)
    assert current_umask() == mask
    summary = write_atomic(tmp_path / "summary.json", "{}\n")
    checkpoint = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"weights": torch.zeros(10)}, checkpoint)
    checkpoint.chmod(0o600)  # replaced: the new file's mode, not the old one's
    AtomicCheckpointIO().save_checkpoint({"weights": torch.ones(10)}, checkpoint)
    for path in (summary, checkpoint):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["last.ckpt"]


def test_the_umask_is_read_without_changing_it_with_or_without_proc(
    umask: Callable[[int], None], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    umask(0o027)
    assert current_umask() == 0o027
    monkeypatch.setattr(atomic, "PROC_STATUS", tmp_path / "no such file")  # not Linux: os.umask, and back
    assert current_umask() == 0o027
    assert os.umask(0o027) == 0o027  # what it was before, still
