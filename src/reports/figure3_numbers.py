"""The Figure 3 report's numbers: the columns and rows of its CSVs, the mean and sd over seeds, and how a
number is written in its tables."""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path

from src.metric_names import TEST_ACC, VAL_ACC
from src.reports.figure3_runs import AUC, LOW_FREQ, SPLIT, SPLIT_P, Run, tower_keys


def tower_groups(runs: Sequence[Run]) -> int:
    """Tower columns to write: the most ``kernels/tower{t}`` groups any run logged."""
    logged = {
        t for run in runs for values in run.epochs.values() for t in range(8) if tower_keys(t)[0] in values
    }
    return max(logged, default=-1) + 1


def epoch_columns(groups: int) -> list[str]:
    towers = [key for t in range(groups) for key in tower_keys(t)]
    return ["run", "towers", "seed", "epoch", VAL_ACC, SPLIT, AUC, SPLIT_P, *towers, LOW_FREQ]


def run_columns(groups: int) -> list[str]:
    towers = [key for t in range(groups) for key in tower_keys(t)]
    return [
        *("run", "towers", "seed", "status", "epochs", "fit_s", "job_s", VAL_ACC, TEST_ACC),
        *(SPLIT, AUC, SPLIT_P, *towers, LOW_FREQ, "halfway", "path"),
    ]


def _relative(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` (``runs/t1_s0``, ``../../0``), the same on every machine; absolute
    where there is no relative path (another drive)."""
    try:
        return Path(os.path.relpath(path.resolve(), folder.resolve())).as_posix()
    except ValueError:
        return str(path)


def run_row(run: Run, folder: Path) -> dict[str, object]:
    """The run's row of ``runs.csv``, written to ``folder``."""
    return run.final | {
        "run": run.label,
        "towers": run.towers,
        "seed": run.seed,
        "status": run.status,
        "epochs": run.last_epoch,
        "fit_s": run.fit_s,
        "job_s": run.job_s,
        "halfway": run.halfway,
        "path": _relative(run.path, folder),
    }


def csv_text(columns: Sequence[str], rows: Iterable[dict[str, object]]) -> str:
    """A plain CSV: the header row, then the rows (no comment line: readers take the first row as header)."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return text.getvalue()


def mean_and_sd(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the values present (sd None below two values)."""
    present = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not present:
        return None, None
    return statistics.fmean(present), statistics.stdev(present) if len(present) > 1 else None


def fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:.2g}" if 0 < abs(value) < 10**-digits else f"{value:.{digits}f}"
    return str(value)


def minutes(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 60
