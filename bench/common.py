"""Shared pieces of the benchmarks: a table row and the median-rate timer."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Row:
    name: str
    value: float
    unit: str
    note: str = ""


def median_rate(run: Callable[[], int], repeats: int, warmup: int = 1) -> float:
    """Median items per second of ``run`` (which returns how many items it processed)."""
    for _ in range(warmup):
        run()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        items = run()
        rates.append(items / (time.perf_counter() - start))
    return statistics.median(rates)


def training_step_rate(net: torch.nn.Module, batch: int, repeats: int, steps: int = 3) -> float:
    """Images per second of forward + backward + SGD step on random 224x224 inputs."""
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9, weight_decay=5e-4)
    images = torch.randn(batch, 3, 224, 224)
    labels = torch.randint(0, net.num_classes, (batch,))
    net.train()

    def run() -> int:
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(net(images), labels).backward()
            optimizer.step()
        return steps * batch

    return median_rate(run, repeats)
