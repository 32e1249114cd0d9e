"""Checkpoints written whole or not at all: beside their final name, then renamed into place.

Lightning 2.6's own writer (``lightning.fabric.utilities.cloud_io._atomic_save``) writes to a temporary file
in the system's temp folder and, when that lies on another file system than the run folder, *copies* it
over the target. A full disk, or a SIGKILL during the copy, then leaves a truncated ``last.ckpt`` (or
``epoch_NNN.ckpt``) under its real name, and the next ``ckpt_path=last`` fails on a corrupted file.
``AtomicCheckpointIO`` serialises the checkpoint straight into a temporary file in the target's folder and
renames it over the target only once it is whole and on disk (``src/utils/atomic.py``), as the data cache
and ``wandb_run_id.txt`` are written. ``src/train.py`` gives it to the Trainer, so every checkpoint goes
through it: ``ModelCheckpoint``'s, ``PreemptionCheckpoint``'s and ``trainer.save_checkpoint``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO

from src.utils.atomic import replacing


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
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path, fsync=True) as handle:
            torch.save(checkpoint, handle)
