"""One line per epoch in the console and the run's log file, whether or not the output is a terminal.

Lightning's progress bar draws on a terminal and shows nothing useful in a file (nohup, SLURM, ``make demo >
log``): a 9-minute demo printed nothing between the model summary and the end. This callback logs, through
Python logging (so Hydra's handlers put it in ``<run dir>/train.log`` too), after every training epoch:

    epoch 3/90  train/loss 4.812  train/acc 0.052  val/loss 4.503  val/acc 0.081  kernels/split 0.094  lr 0.01
        7m12s            (on one line)

The values are the epoch's own (Lightning's epoch aggregates), so the line is written when they exist: at
the start of the next epoch and at the end of training. Rank 0 only.
"""

from __future__ import annotations

import logging
import time

import lightning as L

from src.metric_names import VAL_ACC

log = logging.getLogger(__name__)

# In the order shown; a key the run does not log (no validation this epoch, no kernel monitor) is left out.
SHOWN = {
    "train/loss_epoch": "train/loss",
    "train/acc": "train/acc",
    "val/loss": "val/loss",
    VAL_ACC: VAL_ACC,
    "kernels/split": "kernels/split",
    "lr": "lr",
}


class EpochLine(L.Callback):
    """Logs the line of the module docstring after each training epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.started: float | None = None
        self.pending: int | None = None  # the epoch whose line is due

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer)
        self.started = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.pending = trainer.current_epoch

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer)

    def _flush(self, trainer: L.Trainer) -> None:
        if self.pending is None or not trainer.is_global_zero:
            return
        log.info(epoch_line(self.pending, trainer.max_epochs, trainer.callback_metrics, self.started))
        self.pending = None


def epoch_line(epoch: int, max_epochs: int | None, metrics: dict, started: float | None) -> str:
    """``epoch <k>/<max>  key value ...  <duration>`` for the 0-based ``epoch`` just finished."""
    total = f"/{max_epochs}" if max_epochs and max_epochs > 0 else ""
    parts = [f"epoch {epoch + 1}{total}"]
    for key, name in SHOWN.items():
        if key in metrics:
            parts.append(f"{name} {float(metrics[key]):.4g}")
    if started is not None:
        parts.append(duration(time.monotonic() - started))
    return "  ".join(parts)


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
