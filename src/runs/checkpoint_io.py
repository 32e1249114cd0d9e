"""Checkpoints written whole or not at all: beside their final name, then renamed into place.

Lightning 2.6's own writer (``lightning.fabric.utilities.cloud_io._atomic_save``) writes to a temporary file
in the system's temp folder and, when that lies on another file system than the run folder, *copies* it
over the target. A full disk, or a SIGKILL during the copy, then leaves a truncated ``last.ckpt`` (or
``epoch_NNN.ckpt``) under its real name, and the next ``ckpt_path=last`` fails on a corrupted file.
``AtomicCheckpointIO`` serialises the checkpoint straight into a temporary file in the target's folder and
renames it over the target only once it is whole and on disk (``src/utils/atomic.py``), as the data cache
and ``wandb_run_id.txt`` are written. ``src/train.py`` gives it to the Trainer, so every checkpoint goes
through it: ``ModelCheckpoint``'s, ``PreemptionCheckpoint``'s and ``trainer.save_checkpoint``.

Writing beside the old file needs room for a second copy (~455 MB for the two-tower net). A write that
fails (a full disk: ``torch.save`` reports it as ``RuntimeError: ... unexpected pos ...``, the
``OSError`` only chained inside) raises ``CheckpointWriteError``; ``exit_when_write_fails`` turns it into
one message naming the checkpoint not written, the one kept, the free space and how to go on, and exit
code 1.
"""

from __future__ import annotations

import errno
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO

from src.runs.folders import last_checkpoint, run_checkpoint
from src.utils.atomic import replacing
from src.utils.exits import ERROR_EXIT_CODE, exit_on_error

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class CheckpointWriteError(RuntimeError):
    """A checkpoint that could not be written; whatever file had its name is as it was, no temporary file
    is left. ``cause``: the ``OSError`` the write met (``No space left on device``)."""

    def __init__(self, path: Path, cause: OSError) -> None:
        super().__init__(f"could not write the checkpoint {path}: {cause.strerror or cause}")
        self.path = path
        self.cause = cause


def write_failure(error: BaseException) -> BaseException | None:
    """What made a checkpoint write fail, under the ``RuntimeError`` (``unexpected pos ...``) that
    ``torch.save`` raises in its place: an ``OSError``, or an interruption (Ctrl-C, ``SystemExit``), which
    must not become a write error; ``None`` for any other error."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) or not isinstance(current, Exception):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves replace the target atomically (see the module docstring)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if "://" in str(path):  # a URL (s3://...): no rename there; Lightning's own writer
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint takes no storage_options")
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with replacing(path, fsync=True) as handle:
                torch.save(checkpoint, handle)
        except BaseException as error:
            failure = write_failure(error)
            if isinstance(failure, OSError):
                raise CheckpointWriteError(path, failure) from failure
            if failure is not None and failure is not error:
                raise failure from None  # a Ctrl-C during the write, which torch turned into a RuntimeError
            raise


def failed_write_message(failed: CheckpointWriteError, run: Path) -> str:
    """Which checkpoint was not written and why (with the free space on a full disk), which one of ``run``
    is kept, and the command that goes on."""
    full = failed.cause.errno in DISK_FULL
    try:
        kept: Path | None = run_checkpoint(run)
    except FileNotFoundError:
        kept = None
    message = str(failed)
    if full:
        folder = next(p for p in (failed.path, *failed.path.parents) if p.exists())
        size = f"; a checkpoint of this run takes {_megabytes(kept.stat().st_size)}" if kept else ""
        message += f" ({_megabytes(shutil.disk_usage(folder).free)} free there{size})"
    fix = (
        "free space on that disk (a checkpoint is written beside the one it replaces, so it needs room for "
        "both)"
        if full
        else "fix the cause"
    )
    if kept is None:
        return (
            f"{message}. No checkpoint of this run is kept, so there is nothing to resume. To go on: {fix}, "
            "then run the command again"
        )
    previous = "the previous " if kept == failed.path else ""
    resume = "last" if kept == last_checkpoint(run) else str(kept)
    return (
        f"{message}. Kept, whole: {previous}{kept}{_saved_at(kept)}. To go on: {fix}, then resume: "
        f"python src/train.py hydra.run.dir={run} ckpt_path={resume}"
    )


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.0f} MB" if size >= 1e6 else f"{size / 1e6:.2f} MB"


def _saved_at(checkpoint: Path) -> str:
    """`` (epoch E, step S)`` of a checkpoint, read without its tensors; its file time if it cannot be."""
    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)
        return f" (epoch {int(saved['epoch'])}, step {int(saved['global_step'])})"
    except Exception:
        return f" (written {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(checkpoint.stat().st_mtime))})"


def exit_when_write_fails(
    trainer: L.Trainer, output_dir: str | Path, close: Callable[[int], None]
) -> AbstractContextManager[None]:
    """After a ``CheckpointWriteError`` in the block: say what was not written, what is kept and how to go
    on (``failed_write_message``), ``close`` the loggers, exit with ``ERROR_EXIT_CODE`` (1), with no
    traceback."""

    def describe(failed: CheckpointWriteError) -> str:
        return failed_write_message(failed, Path(output_dir))

    return exit_on_error(CheckpointWriteError, ERROR_EXIT_CODE, trainer, close, describe)
