"""Shared pieces of the benchmarks: a table row, timers that interleave the variants, autocast."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


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


def interleaved_rates(runs: dict[str, Callable[[], int]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median items per second of each of ``runs``, timed in turn (A, B, C, A, B, C, ...).

    The machines these run on are shared and noisy: a variant timed alone, a minute after another, may see a
    different load. Taking turns exposes every variant to the same load, so their ratios hold.
    """
    for run in runs.values():
        for _ in range(warmup):
            run()
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            sync()
            start = time.perf_counter()
            items = run()
            sync()
            rates[name].append(items / (time.perf_counter() - start))
    return {name: statistics.median(r) for name, r in rates.items()}


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Lightning's ``bf16-mixed``: autocast to bf16 around forward and loss; ``32-true``: nothing."""
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "32-true":
        return contextlib.nullcontext()
    raise ValueError(f"precision {precision!r}: choose 32-true or bf16-mixed")
