"""src/reports/recipe_curves.py: per-epoch curves from runs' CSV logs, a resumed run's versions joined."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.helpers.runs import write_metrics

COMMAND = [sys.executable, "-m", "src.reports.recipe_curves"]
HEADER = ["epoch", "step", "train/loss_epoch", "val/acc", "kernels/low_freq"]


def curves(out: Path) -> dict[str, list[tuple[int, float]]]:
    runs: dict[str, list[tuple[int, float]]] = {}
    with (out / "curves.csv").open(newline="") as file:
        for row in csv.DictReader(file):
            runs.setdefault(row["run"], []).append((int(row["epoch"]), float(row["val_acc"])))
    return runs


def test_a_resumed_run_reads_every_version_and_keep_holds_earlier_runs(tmp_path: Path) -> None:
    resumed = tmp_path / "resumed"
    write_metrics(resumed, 0, HEADER, [[0, 10, 2.3, 0.2, 0.17], [1, 20, 2.0, 0.3, 0.2]])
    # the process stopped during epoch 2 and a later one went on (Lightning's next csv version)
    write_metrics(resumed, 1, HEADER, [[2, 30, 1.8, 0.4, 0.3], [3, 40, 1.6, 0.5, 0.35]])
    out = tmp_path / "out"
    out.mkdir()
    (out / "curves.csv").write_text(
        "run,epoch,train_loss,val_acc,low_freq\ngone,0,2.4000,0.1000,0.1700\nresumed,0,9.0,0.9,0.9\n"
    )
    done = subprocess.run(
        [*COMMAND, "--out", str(out), "--keep", f"resumed={resumed}"],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # the run whose folder is gone stays first; the re-given label is replaced, with all 4 epochs
    assert curves(out) == {"gone": [(0, 0.1)], "resumed": [(0, 0.2), (1, 0.3), (2, 0.4), (3, 0.5)]}
    table = (out / "curves.md").read_text()
    assert "| gone | 2.40 / 0.100 |  |  |  |" in table
    assert "| resumed | 2.30 / 0.200 | 2.00 / 0.300 | 1.80 / 0.400 | 1.60 / 0.500 |" in table


def test_a_folder_without_a_csv_log_is_named(tmp_path: Path) -> None:
    done = subprocess.run(
        [*COMMAND, "--out", str(tmp_path / "out"), f"x={tmp_path}"],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode != 0 and f"{tmp_path}: no csv/version_*/metrics.csv" in done.stderr
