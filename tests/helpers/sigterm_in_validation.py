"""A test-only callback for ``tests/test_defaults_e2e.py``, put into ``python src/train.py`` from the command
line (``+callbacks.sigterm._target_=tests.helpers.sigterm_in_validation.SigtermInLastValidation``).

It sends SIGTERM to its own process at the first batch of the last epoch's validation (never the sanity
check), as a cluster's preemption notice could land, and records in the run folder what it saw, so the test
waits for an event, not for time:

    <run>/sigterm_sent              "<epoch> <global step> <validation batches of the epoch>", at the signal
    <run>/validation_after_sigterm  each validation batch that ended after the signal, one index a line
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import lightning as L

SIGNALLED = "sigterm_sent"
VALIDATED = "validation_after_sigterm"


class SigtermInLastValidation(L.Callback):
    """SIGTERM to this process at the start of the last epoch's first validation batch."""

    def on_validation_batch_start(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        last_epoch = trainer.current_epoch == trainer.max_epochs - 1
        if trainer.sanity_checking or not last_epoch or batch_idx != 0:
            return
        run = Path(trainer.default_root_dir)
        batches = int(trainer.num_val_batches[0])
        (run / SIGNALLED).write_text(f"{trainer.current_epoch} {trainer.global_step} {batches}\n")
        os.kill(os.getpid(), signal.SIGTERM)

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        run = Path(trainer.default_root_dir)
        if not trainer.sanity_checking and (run / SIGNALLED).exists():
            with open(run / VALIDATED, "a") as file:
                file.write(f"{batch_idx}\n")
