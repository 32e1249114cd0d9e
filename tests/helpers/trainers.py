"""Trainers for tests that drive a LightningModule by hand; also imported by
tests/helpers/towers_fit_worker.py, which runs as a script (its own folder on the path)."""

from __future__ import annotations

import lightning as L


def quiet_trainer(max_steps: int, **options: object) -> L.Trainer:
    """A CPU Trainer for a few test steps: no logger, checkpoints, progress bar, summary or sanity check."""
    quiet = dict(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    return L.Trainer(max_steps=max_steps, **(quiet | options))
