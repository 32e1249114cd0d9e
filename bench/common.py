"""Shared pieces of the benchmarks: a table row, timers that interleave the variants, autocast, and the
markdown table and sections of docs/benchmarks.md."""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class Row:
    name: str
    value: float
    unit: str
    note: str = ""
    summary: str = ""  # a line for the closing summary of docs/benchmarks.md (issue #18's figures)


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


def table(rows: list[Row]) -> str:
    """The rows as a markdown table; a row whose value is NaN (not measured) shows its note only."""
    lines = ["| measurement | value | unit | note |", "|---|---:|---|---|"]
    for r in rows:
        value = "-" if math.isnan(r.value) else f"{r.value:,.2f}"
        lines.append(f"| {r.name} | {value} | {r.unit} | {r.note} |")
    return "\n".join(lines)


def section_marks(name: str) -> tuple[str, str]:
    """The HTML comments around a section of docs/benchmarks.md that one command owns."""
    return f"<!-- {name}: start -->", f"<!-- {name}: end -->"


def get_section(text: str, name: str) -> str | None:
    """Section ``name`` of ``text``, marks included, or None when ``text`` has none."""
    start, end = section_marks(name)
    first, last = text.find(start), text.find(end)
    if first < 0 or last < first:
        return None
    return text[first : last + len(end)]


def put_section(text: str, name: str, body: str) -> str:
    """``text`` with section ``name`` replaced by ``body`` (marks added), or with it appended."""
    start, end = section_marks(name)
    section = f"{start}\n{body.strip()}\n{end}"
    old = get_section(text, name)
    if old is not None:
        return text.replace(old, section)
    return f"{text.rstrip()}\n\n{section}\n" if text.strip() else f"{section}\n"


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
