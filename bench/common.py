"""Shared pieces of the benchmarks: a table row, timers that interleave the variants, a training step."""

from __future__ import annotations

import contextlib
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


def training_step(
    net: torch.nn.Module,
    batch: int,
    steps: int = 3,
    precision: str = "32-true",
    channels_last: bool = False,
    device: torch.device | str = "cpu",
    num_classes: int | None = None,
    fused_sgd: bool = False,
) -> Callable[[], int]:
    """A function that runs ``steps`` training steps (forward, backward, SGD) and returns the images seen.

    Random 224x224 inputs, SGD with the paper's momentum and weight decay (section 5), as the Trainer does it:
    autocast around forward and loss for ``bf16-mixed``, fp32 weights and gradients.
    """
    device = torch.device(device)
    net = net.to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        net.parameters(), lr=0.001, momentum=0.9, weight_decay=5e-4, fused=fused_sgd or None
    )
    images = torch.randn(batch, 3, 224, 224, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, num_classes or net.num_classes, (batch,), device=device)
    net.train()

    def run() -> int:
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, precision):
                loss = F.cross_entropy(net(images), labels)
            loss.backward()
            optimizer.step()
        return steps * batch

    return run


def training_step_rate(net: torch.nn.Module, batch: int, repeats: int, steps: int = 3) -> float:
    """Images per second of forward + backward + SGD step on random 224x224 inputs."""
    return median_rate(training_step(net, batch, steps), repeats)
