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
import sys
import time
from pathlib import Path

import lightning
import torch

from bench.common import Row
from bench.data import data_rows
from bench.models import model_rows

ROOT = Path(__file__).resolve().parents[1]


def measure(quick: bool) -> tuple[list[Row], dict[str, str]]:
    rows, step_rate = model_rows(quick)
    rows += data_rows(quick, step_rate)
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
