"""``make bench``: training-step and data-pipeline speed in one process, written to docs/benchmarks.md.

Every comparison is a ratio of figures measured one after the other in this process: these machines are
noisy, so absolute numbers from different runs do not compare. Each figure is the median of ``--repeats``
timed runs after warm-up.

    python -m bench.run [--quick] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from src.data.cache import build_cache
from src.data.layouts import find_labelled_images
from src.data.synthetic import generate_dataset
from src.data.views import CachedViews
from src.models.alexnet import AlexNet

ROOT = Path(__file__).resolve().parents[1]


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


def loader_rate(dataset: CachedViews, batch: int, workers: int, repeats: int, batches: int) -> float:
    """uint8 images per second delivered by a shuffled DataLoader over cached views."""
    loader = DataLoader(
        dataset, batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0
    )

    def run() -> int:
        count = 0
        for i, (images, _) in enumerate(loader):
            count += len(images)
            if i + 1 == batches:
                break
        return count

    return median_rate(run, repeats)


def measure(quick: bool) -> tuple[list[Row], dict[str, str]]:
    repeats = 3 if quick else 5
    per_class = 250 if quick else 1000
    batch = 32
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = generate_dataset(Path(tmp) / "synthetic", per_class, 0, seed=0)
        files = find_labelled_images(data / "train", "kaggle")

        start = time.perf_counter()
        cache = build_cache(files, Path(tmp) / "cache", workers=os.cpu_count(), progress=False)
        build_seconds = time.perf_counter() - start
        rows.append(Row("cache build (decode + resize, all cores)", len(cache) / build_seconds, "img/s"))

        start = time.perf_counter()
        build_cache(files, Path(tmp) / "cache", progress=False)
        rows.append(Row("cache reuse (fingerprint + open)", 1000 * (time.perf_counter() - start), "ms"))

        step = training_step_rate(AlexNet(num_classes=2, towers=2), batch, repeats)
        rows.append(Row(f"training step, two towers, fp32, batch {batch}", step, "img/s"))

        views = CachedViews(cache, np.arange(len(cache)), "random", 224)
        for workers in (0, 1):
            rate = loader_rate(views, batch, workers, repeats, batches=20)
            rows.append(
                Row(
                    f"cache loader, random views, {workers} workers",
                    rate,
                    "img/s",
                    f"{rate / step:.0f}x step",
                )
            )

        epoch_seconds = len(cache) / step
        rows.append(
            Row(
                f"cache build time / one training epoch ({len(cache)} images)",
                build_seconds / epoch_seconds,
                "ratio",
                f"{build_seconds:.1f} s vs {epoch_seconds:.0f} s",
            )
        )
    machine = {
        "command": "make bench" + (" ARGS=--quick" if quick else ""),
        "cpu": platform.processor() or platform.machine(),
        "cores": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    return rows, machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def table(rows: list[Row]) -> str:
    lines = ["| measurement | value | unit | note |", "|---|---:|---|---|"]
    lines += [f"| {r.name} | {r.value:,.2f} | {r.unit} | {r.note} |" for r in rows]
    return "\n".join(lines)


def write_markdown(path: Path, rows: list[Row], machine: dict[str, str]) -> None:
    machine = machine | {"cpu": cpu_model()}
    text = [
        "# Benchmarks",
        "",
        "Written by `make bench` (bench/run.py); the latest figures replace the previous ones. Ratios are",
        "measured in one process, one after the other: compare ratios, not absolute figures across runs.",
        "",
        "Machine: " + ", ".join(f"{k}: {v}" for k, v in machine.items()),
        "",
        table(rows),
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(text))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats (a smoke test)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    rows, machine = measure(args.quick)
    print(table(rows))
    write_markdown(args.out, rows, machine)
    print(f"written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
