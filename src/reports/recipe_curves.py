"""Per-epoch curves of training runs, as one CSV and one markdown table (docs/training-defaults.md).

    python -m src.reports.recipe_curves --out docs/recipes [--keep] LABEL=RUN_DIR [LABEL=RUN_DIR ...]

Reads each run's ``csv/version_*/metrics.csv`` (``logger=csv``; a resumed run's versions in order, later
values win) and writes ``<out>/curves.csv`` (one row per run and epoch: mean training loss, validation
accuracy, conv1's low-frequency share) and ``<out>/curves.md`` (train loss / val acc per epoch, one row per
run). A run that stopped because it died (``DIED.txt`` in its folder) is marked with the step and reason it
printed. ``--keep`` keeps the runs already in ``<out>/curves.csv`` whose labels are not given again (their
folders may be gone: the CSV is their record), in their order, before the new ones.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from src.metric_names import VAL_ACC
from src.runs.folders import DIED_FILE, METRICS_GLOB
from src.runs.metrics import metrics_files, read_metrics

COLUMNS = ["run", "epoch", "train_loss", "val_acc", "low_freq"]


def epoch_rows(run_dir: Path) -> list[dict[str, float]]:
    """Per finished epoch: train/loss_epoch, val/acc and kernels/low_freq from the run's metrics.csv files
    (:func:`src.runs.metrics.read_metrics`: a resumed run's versions merged)."""
    if not metrics_files(run_dir):
        raise FileNotFoundError(f"{run_dir}: no {METRICS_GLOB}: not a logger=csv run folder")
    epochs: dict[int, dict[str, float]] = {}
    for row in read_metrics(run_dir):
        if "epoch" not in row:
            continue
        epoch = int(row["epoch"])
        for key, name in (("train/loss_epoch", "train_loss"), (VAL_ACC, "val_acc")):
            if key in row:
                epochs.setdefault(epoch, {})[name] = row[key]
        if "kernels/low_freq" in row and VAL_ACC in row:
            epochs.setdefault(epoch, {})["low_freq"] = row["kernels/low_freq"]
    return [{"epoch": e} | epochs[e] for e in sorted(epochs) if "val_acc" in epochs[e]]


def kept_rows(curves: Path, replaced: set[str]) -> dict[str, list[dict[str, float]]]:
    """The runs already in ``curves`` (a curves.csv) whose labels are not in ``replaced``, in file order."""
    runs: dict[str, list[dict[str, float]]] = {}
    if not curves.is_file():
        return runs
    with open(curves, newline="") as file:
        for row in csv.DictReader(file):
            if row["run"] in replaced:
                continue
            values: dict[str, float] = {"epoch": int(row["epoch"])}
            values |= {k: float(row[k]) for k in ("train_loss", "val_acc", "low_freq") if row.get(k)}
            runs.setdefault(row["run"], []).append(values)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--keep", action="store_true", help="keep the runs already in <out>/curves.csv")
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    args = parser.parse_args()
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, COLUMNS)
    writer.writeheader()
    specs = [spec.partition("=")[::2] for spec in args.runs]
    kept = kept_rows(args.out / "curves.csv", {label for label, _ in specs}) if args.keep else {}
    runs = [(label, rows, None) for label, rows in kept.items()]
    for label, folder in specs:
        run_dir = Path(folder).expanduser()
        runs.append((label, epoch_rows(run_dir), run_dir))
    lines = []
    width = 0
    for label, rows, run_dir in runs:
        width = max(width, len(rows))
        for row in rows:
            writer.writerow({"run": label} | {k: (f"{v:.4f}" if k != "epoch" else v) for k, v in row.items()})
        cells = [f"{r.get('train_loss', float('nan')):.2f} / {r['val_acc']:.3f}" for r in rows]
        died = run_dir / DIED_FILE if run_dir else None
        if died and died.is_file():
            cells.append("died: " + died.read_text().split(":")[0].removeprefix("training died at "))
        lines.append((label, cells))
    header = "| run | " + " | ".join(f"epoch {e + 1}" for e in range(width)) + " |"
    body = [header, "|---" * (width + 1) + "|"]
    body += [
        f"| {label} | " + " | ".join(cells + [""] * (width - len(cells))) + " |" for label, cells in lines
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "curves.csv").write_text(table.getvalue())
    (args.out / "curves.md").write_text("train loss / val acc per epoch\n\n" + "\n".join(body) + "\n")
    print("\n".join(body))


if __name__ == "__main__":
    main()
