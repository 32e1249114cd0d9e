"""Shared pieces of the benchmarks: a table row, the members of the net family the bench runs, timers that
interleave the variants, autocast, and the markdown table and sections of docs/benchmarks.md."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from src.runs.paths import CONF_DIR


@dataclass
class Row:
    name: str
    value: float
    unit: str
    note: str = ""
    summary: str = ""  # a line for the closing summary of docs/benchmarks.md (issue #18's figures)


@dataclass(frozen=True)
class BenchNet:
    """A member of the net family as the bench runs it: its layer table (``model.layers``) and the data recipe
    it is trained on, whose cached image side and crop side (``conf/data/<data>.yaml``) the real-epoch rows
    and the step rows use, so that the bench and training cannot disagree on them.

    ``epoch`` overrides ``bench.epoch.EpochSettings`` fields: a net whose step is quick times more batches,
    so that each timed stretch stays long enough (seconds, not a fraction of one) for a shared machine's
    noise to average out.
    """

    layers: str
    data: str  # conf/data/<data>.yaml
    num_classes: int  # of the step rows: the recipe's classes (the demo's 2 for the paper's net)
    datasets: tuple[str, ...] = ()  # prepared.json "dataset" names whose folders this net is for
    epoch: dict[str, Any] = field(default_factory=dict)

    def data_config(self, key: str) -> int:
        """``key`` of ``conf/data/<data>.yaml``, or of ``base.yaml`` (every recipe's defaults) when unset."""
        for name in (self.data, "base"):
            value = (yaml.safe_load((CONF_DIR / "data" / f"{name}.yaml").read_text()) or {}).get(key)
            if value is not None:
                return int(value)
        raise KeyError(f"conf/data/{self.data}.yaml and base.yaml set no {key}")

    @property
    def image_size(self) -> int:
        """The cached square's side (section 2's 256 for the paper's net)."""
        return self.data_config("image_size")

    @property
    def crop_size(self) -> int:
        """The random crop's side (section 4.1's 224): the layer table's ``input_size`` (a test checks)."""
        return self.data_config("crop_size")

    @property
    def label(self) -> str:
        """How rows name the net: ``small64 net, 56-pixel crops``."""
        return f"{self.layers} net, {self.crop_size}-pixel crops"


NETS = {
    "paper": BenchNet("paper", "base", num_classes=2),  # the demo's two classes (conf/experiment/demo.yaml)
    "small64": BenchNet(
        "small64",
        "tiny_imagenet",
        num_classes=200,
        datasets=("tiny_imagenet",),
        # A step is many times quicker than the paper net's (docs/benchmarks.md), so more batches are timed.
        epoch={"timed_batches": 16, "step_repeats": 8, "val_timed_batches": {"centre": 4, "ten": 2}},
    ),
}


def net_for_data(root: Path) -> str:
    """The member a data folder is for: the one whose ``datasets`` name the dataset of the folder's
    ``prepared.json`` (``src/datasets/recipes.py`` writes it), else the paper's net. Running the paper's net
    on Tiny ImageNet would build a 256-pixel cache of 100,000 64-pixel photographs (about 20 GB: 256 x 256 x 3
    bytes each) by mistake."""
    try:
        dataset = json.loads((root / "prepared.json").read_text()).get("dataset")
    except (OSError, ValueError):
        return "paper"
    return next((name for name, net in NETS.items() if dataset in net.datasets), "paper")


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


def section_names(text: str) -> list[str]:
    """The names of ``text``'s sections, in the order they appear."""
    return re.findall(r"<!-- (.+?): start -->", text)


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
