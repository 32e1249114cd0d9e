"""Network speed: training-step images/s of the AlexNet variants, measured one after the other."""

from __future__ import annotations

import torch

from bench.common import Row, training_step_rate
from src.models.alexnet import AlexNet

CPU_BATCH = 32


def model_rows(quick: bool) -> tuple[list[Row], float]:
    """Rows for the network benchmarks, and the two-tower fp32 step rate (img/s) the data rows compare to."""
    repeats = 3 if quick else 5
    batch = CPU_BATCH
    torch.manual_seed(0)
    step = training_step_rate(AlexNet(num_classes=2, towers=2), batch, repeats)
    rows = [Row(f"training step, two towers, fp32, batch {batch}", step, "img/s")]
    return rows, step
