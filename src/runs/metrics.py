"""The numbers a run logged, read back from Lightning's CSV log: the one reader of ``metrics.csv``.

Every logger config keeps a CSV log (``conf/logger/csv.yaml``, included by ``wandb`` and ``tensorboard``):
``<run>/csv/version_N/metrics.csv``, one row per ``log_metrics`` call, one column per metric ever logged (an
empty cell where a row has none).
Each process writes its own ``version_N``, so a run that was stopped and resumed has several; read alone,
the newest would hold only the epochs since the resume. :func:`read_metrics` reads them all, in the order
their processes wrote them, and merges them by ``(epoch, step)``: a row a resumed process wrote again
(the same epoch and step, when it went back to the last checkpoint) is one row, its later values winning.

The sweep summary (:mod:`src.runs.sweeps`), the Figure 3 report and the recipe curves
(:mod:`src.reports`) read a run through this module.
"""

from __future__ import annotations

import csv
from collections.abc import Hashable
from pathlib import Path

from src.runs.folders import METRICS_GLOB

__all__ = ["has_metrics", "metrics_files", "read_metrics"]


def has_metrics(run: Path) -> bool:
    """Whether the run has a CSV log (``csv/version_*/metrics.csv``): the filter the reports put on top of
    :func:`src.runs.folders.is_run_dir`."""
    return any(p.is_file() for p in run.glob(METRICS_GLOB))


def _version(path: Path) -> int:
    return int(path.parent.name.rpartition("_")[2] or 0)


def metrics_files(run_dir: Path) -> list[Path]:
    """The run's ``csv/version_*/metrics.csv``, in the order its processes wrote them (``version_10`` after
    ``version_9``)."""
    return sorted(run_dir.glob(METRICS_GLOB), key=_version)


def _numbers(row: dict[str | None, str | None]) -> dict[str, float]:
    """The row's numbers: empty cells and cells that are not numbers left out."""
    out = {}
    for key, text in row.items():
        if not key or not text or not isinstance(text, str):
            continue
        try:
            out[key] = float(text)
        except ValueError:
            continue
    return out


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    """Every row the run logged, merged over its ``version_*`` (module docstring), as numbers.

    Rows are in the order first written; a row with the ``epoch`` and ``step`` of an earlier one is merged
    into it (later values win); a row without a ``step`` stands alone. Empty when there is no CSV log.
    """
    merged: dict[Hashable, dict[str, float]] = {}
    for path in metrics_files(run_dir):
        with path.open(newline="") as file:
            for index, row in enumerate(csv.DictReader(file)):
                values = _numbers(row)
                key = (values.get("epoch"), values["step"]) if "step" in values else (path, index)
                merged.setdefault(key, {}).update(values)
    return list(merged.values())
