"""``make bench``: training-step and data-pipeline speed in one run, written to docs/benchmarks.md.

Every comparison is a ratio of figures measured one after the other in this run: these machines are noisy,
so absolute numbers from different runs do not compare. Each figure is the median of the repeats after
warm-up. The parts: the network (``bench/models.py``: the convolution ceiling, the steps as shares of it, LRN,
the profile), the data pipeline (``bench/data.py``) and, with ``--data DIR``, real epochs of the photographs
in ``DIR`` (``bench/epoch.py``, in a child process that keeps freed memory as training does). The GPU check's
section of the file (``make gpu-check``) is kept as it is.

    python -m bench.run [--quick] [--data DIR [--cache-dir DIR]] [--only models,data,epoch] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import lightning
import torch

from bench.common import Row, get_section, table, write_text_atomic
from bench.data import data_rows
from bench.epoch import DEFAULT_CACHE, epoch_rows, skipped_rows
from bench.gpu_check import SECTION as GPU_SECTION
from bench.models import model_rows, precisions

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("models", "data", "epoch")
FALLBACK_STEP = 50.0  # img/s for the data rows' ratios when the models part is not run (--only)


def measure(
    quick: bool, data: Path | None, cache_dir: Path, parts: tuple[str, ...], command: str
) -> tuple[list[Row], dict[str, str]]:
    rows: list[Row] = []
    step_rate = FALLBACK_STEP
    if "models" in parts:
        model_table, step_rate = model_rows(quick)
        rows += model_table
    if "data" in parts:
        rows += data_rows(quick, step_rate)
    if "epoch" in parts:
        rows += real_epoch_rows(data, cache_dir, quick)
    machine = {
        "command": command,
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


def real_epoch_rows(data: Path | None, cache_dir: Path, quick: bool) -> list[Row]:
    """bench/epoch.py in a child process per precision; a row saying why when there is no data folder."""
    if data is None:
        return skipped_rows('no data folder given (make bench ARGS="--data DIR")')
    if not (data / "train").is_dir():
        return skipped_rows(f"{data} has no train/ folder")
    rows = []
    for precision in precisions():
        command = [sys.executable, "-m", "bench.epoch", "--data", str(data), "--cache-dir", str(cache_dir)]
        command += ["--precision", "32-true" if precision == "fp32" else "bf16-mixed"]
        command += ["--quick"] if quick else []
        out = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True, cwd=ROOT)
        rows += epoch_rows(json.loads(out.stdout.strip().splitlines()[-1]))
    if "bf16" not in precisions():
        rows += skipped_rows("bf16: this CPU has no bf16 arithmetic (oneDNN emulates it, ~18x slower)")
    return rows


BEFORE = (
    "Before (issue #18, the 2026-11-22 run on a 2-core AVX-512-bf16 CPU, batch 32, against conv3's forward "
    "alone): the fp32 step at 63 % and the bf16 step at 53 % of their convolution ceilings; no real-epoch, "
    "batch-128 or validation figures."
)


def closing_note(rows: list[Row]) -> list[str]:
    """The summary that closes the CPU part: issue #18's figures from this run, and the figures before."""
    lines = [f"- {r.summary}" for r in rows if r.summary]
    if not lines:
        return []
    return ["## Summary (issue #18)", "", "This run:", "", *lines, "", BEFORE, ""]


def write_markdown(path: Path, rows: list[Row], machine: dict[str, str]) -> None:
    """The CPU figures replace the file's, the GPU check's section (if any) stays at the end."""
    machine = machine | {"cpu": cpu_model()}
    gpu = get_section(path.read_text(), GPU_SECTION) if path.exists() else None
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
    text += closing_note(rows)
    if gpu is not None:
        text += [gpu, ""]
    write_text_atomic(path, "\n".join(text))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats (a smoke test)")
    parser.add_argument("--data", type=Path, help="a folder with train/ (class folders): the real-epoch rows")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="the datamodule's cache_dir")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {PARTS}")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    parts = tuple(p.strip() for p in args.only.split(",") if p.strip())
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"--only: unknown parts {sorted(unknown)}; choose from {PARTS}")
    data = args.data.expanduser() if args.data else None
    given = " ".join(argv if argv is not None else sys.argv[1:])
    command = f'make bench ARGS="{given}"' if given else "make bench"
    rows, machine = measure(args.quick, data, args.cache_dir.expanduser(), parts, command)
    print(table(rows))
    write_markdown(args.out, rows, machine)
    print(f"written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
