"""The split study's numbers that need no trained run: the fresh-net bands of docs/split-study.md.

    python -m src.reports.split_study bands --out docs/split-study/fresh_bands.csv [--seeds 200]

For each arm's tower count (1: the control, 2: arms A and B, 4: arm E) and each measure (the colour split,
the frequency split and, for one tower, Distill's singular-vector separation: ``src/analysis/branches.py``),
the mean, standard deviation, 99th percentile and maximum over untrained 64-pixel nets, seeds 0..seeds-1.
The decision rule compares each trained run's final value with its arm's 99th percentile. Writes only where
``--out`` says.
"""

from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from src.analysis.branches import fresh_bands
from src.utils.atomic import write_atomic

LAYERS = "small64"
ARM_TOWERS = (1, 2, 4)
BAND_COLUMNS = ("towers", "measure", "nets", "mean", "sd", "p99", "max")


def band_rows(seeds: int) -> list[dict[str, object]]:
    """One row per tower count and measure (see the module docstring)."""
    rows: list[dict[str, object]] = []
    for towers in ARM_TOWERS:
        for measure, values in fresh_bands(LAYERS, towers, seeds).items():
            v = np.asarray(values, dtype=np.float64)
            rows.append(
                {
                    "towers": towers,
                    "measure": measure,
                    "nets": len(v),
                    "mean": round(float(v.mean()), 4),
                    "sd": round(float(v.std(ddof=1)), 4),
                    "p99": round(float(np.percentile(v, 99)), 4),
                    "max": round(float(v.max()), 4),
                }
            )
    return rows


def write_bands(path: Path, seeds: int) -> list[dict[str, object]]:
    rows = band_rows(seeds)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=BAND_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text.getvalue())
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    bands = commands.add_parser("bands", help="the fresh-net bands, as a CSV")
    bands.add_argument("--out", type=Path, required=True, help="the CSV to write")
    bands.add_argument("--seeds", type=int, default=200, help="untrained nets per tower count (default 200)")
    args = parser.parse_args(argv)
    rows = write_bands(args.out, args.seeds)
    for row in rows:
        print(", ".join(f"{key} {row[key]}" for key in BAND_COLUMNS))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
