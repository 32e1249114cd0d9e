"""What a resumed run needs while it trains (``src/runs/resume.py`` says what resuming means).

``CommitRunConfig`` (added by ``src/train.py``): when training starts, a resumed run's new configuration
replaces the run's own. ``CatchUpEpochSchedulers`` (``conf/callbacks/default.yaml``): the epoch-wise scheduler
step Lightning skips when it resumes from an end-of-epoch checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

from src.runs.resume import commit_run_config
from src.utils.console import say


class CommitRunConfig(L.Callback):
    """When training starts (the checkpoint is loaded, the data set up), rank 0 commits a resumed run's new
    configuration (``commit_run_config``): a resume that fails before that changes nothing in the run."""

    def __init__(self, output_dir: str | Path) -> None:
        super().__init__()
        self.output_dir = Path(output_dir)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            commit_run_config(self.output_dir)


class CatchUpEpochSchedulers(L.Callback):
    """After resuming from an end-of-epoch checkpoint, take the epoch-wise scheduler step Lightning skips.

    Lightning saves such a checkpoint (``on_validation_end`` / ``on_train_epoch_end``) before it steps the
    epoch's schedulers, and on resume it does not step them for that epoch. A scheduler stepped once per
    epoch has ``last_epoch`` equal to the epochs done; one found a step behind gets the step here, in
    ``on_train_start``. A ``ReduceLROnPlateau`` needs the metric it watches: this callback keeps it in the
    checkpoint (its ``state_dict``). Checkpoints taken mid-epoch (``PreemptionCheckpoint``) are already level.
    """

    def __init__(self) -> None:
        super().__init__()
        self.trainer: L.Trainer | None = None
        self.saved_metrics: dict[str, float] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        """The metrics the plateau schedulers watch, as they are when a checkpoint is written."""
        trainer = self.trainer
        if trainer is None:
            return {"metrics": {}}
        monitors = {c.monitor for c in trainer.lr_scheduler_configs if c.reduce_on_plateau and c.monitor}
        metrics = trainer.callback_metrics
        return {"metrics": {k: float(metrics[k]) for k in monitors if k in metrics}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.saved_metrics = dict(state_dict.get("metrics", {}))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.ckpt_path is None:
            return
        for config in trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            behind = getattr(scheduler, "last_epoch", None) == trainer.current_epoch - 1
            if config.interval != "epoch" or config.frequency != 1 or not behind:
                continue
            metric = None
            if config.reduce_on_plateau:
                metric = self.saved_metrics.get(str(config.monitor))
                if metric is None:
                    say(f"resume: no {config.monitor} in the checkpoint: the scheduler stays a step behind")
                    continue
            pl_module.lr_scheduler_step(scheduler, metric)
            say(
                f"resume: took the scheduler step of epoch {trainer.current_epoch - 1}, which Lightning skips"
            )
