"""Per-epoch curves of training runs, as one CSV and one markdown table (README, "Training defaults").

    python scripts/recipe_curves.py --out docs/recipes LABEL=RUN_DIR [LABEL=RUN_DIR ...]

Reads each run's ``csv/version_0/metrics.csv`` (``logger=csv``) and writes ``<out>/curves.csv`` (one row
per run and epoch: mean training loss, validation accuracy, conv1's low-frequency share) and
``<out>/curves.md`` (train loss / val acc per epoch, one row per run). A run that stopped because it died
(``DIED.txt`` in its folder) is marked with the step and reason it printed.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

COLUMNS = ["run", "epoch", "train_loss", "val_acc", "low_freq"]


def epoch_rows(run_dir: Path) -> list[dict[str, float]]:
    """Per finished epoch: train/loss_epoch, val/acc and kernels/low_freq from the run's metrics.csv."""
    metrics = run_dir / "csv" / "version_0" / "metrics.csv"
    if not metrics.is_file():
        raise FileNotFoundError(f"{metrics}: not a logger=csv run folder")
    epochs: dict[int, dict[str, float]] = {}
    with open(metrics) as file:
        for row in csv.DictReader(file):
            if not row.get("epoch"):
                continue
            epoch = int(float(row["epoch"]))
            for key, name in (("train/loss_epoch", "train_loss"), ("val/acc", "val_acc")):
                if row.get(key):
                    epochs.setdefault(epoch, {})[name] = float(row[key])
            if row.get("kernels/low_freq") and row.get("val/acc"):
                epochs.setdefault(epoch, {})["low_freq"] = float(row["kernels/low_freq"])
    return [{"epoch": e} | epochs[e] for e in sorted(epochs) if "val_acc" in epochs[e]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    args = parser.parse_args()
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, COLUMNS)
    writer.writeheader()
    lines = []
    width = 0
    for spec in args.runs:
        label, _, folder = spec.partition("=")
        run_dir = Path(folder).expanduser()
        rows = epoch_rows(run_dir)
        width = max(width, len(rows))
        for row in rows:
            writer.writerow({"run": label} | {k: (f"{v:.4f}" if k != "epoch" else v) for k, v in row.items()})
        cells = [f"{r.get('train_loss', float('nan')):.2f} / {r['val_acc']:.3f}" for r in rows]
        died = run_dir / "DIED.txt"
        if died.is_file():
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
