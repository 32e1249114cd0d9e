"""Run folders as the tests need them: a logger's ``csv/version_N/metrics.csv``, written by hand."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path


def write_metrics(
    run: Path, version: int, header: Sequence[str], rows: Sequence[Sequence[object] | Mapping[str, object]]
) -> Path:
    """Write one process's ``<run>/csv/version_<version>/metrics.csv`` (rows as lists in ``header``'s order,
    or as dicts whose missing keys are left empty, as Lightning's CSV logger leaves them); its path."""
    folder = run / "csv" / f"version_{version}"
    folder.mkdir(parents=True)
    path = folder / "metrics.csv"
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        for row in rows:
            writer.writerow([row.get(key, "") for key in header] if isinstance(row, Mapping) else row)
    return path
