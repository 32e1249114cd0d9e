"""The split study's numbers of docs/split-study.md: the fresh-net bands, and the main runs' length.

    python -m src.reports.split_study bands --out docs/split-study/fresh_bands.csv [--seeds 200]
    python -m src.reports.split_study length docs/split-study/runs/pilot_t2_s0 --epoch-minutes T
    python -m src.reports.split_study report [--check]

For each arm's tower count (1: the control, 2: arms A and B, 4: arm E) and each measure (the colour split,
the frequency split and, for one tower, Distill's singular-vector separation: ``src/analysis/branches.py``),
the mean, standard deviation, 99th percentile and maximum over untrained 64-pixel nets, seeds 0..seeds-1.
The decision rule compares each trained run's final value with its arm's 99th percentile. Writes only where
``--out`` says.

``length`` applies the rule "Length (fixed by the pilot, by this rule)" to an archived pilot run
(``src/reports/run_archive.py``): the split and the learning measure of every epoch, recomputed from the conv1
weights the archive keeps (not the logged values: the pilot logged an older learning measure), the first epoch
at which both have settled, and the budget's cap for the pilot's quiet epoch time ``T``. It prints; it writes
nothing.

``report`` rewrites the results section of docs/split-study.md and its figure from the archives
(:mod:`src.reports.split_study_report`); with ``--check`` it writes nothing and exits 1 when the committed
section differs from what the archives give.
"""

from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from src.analysis.branches import fresh_bands
from src.analysis.colour import stats_for_model_kernels
from src.analysis.smoothness import low_frequency_share
from src.reports.figure3_plots import save_figure
from src.reports.figure3_references import caffenet_reference
from src.reports.split_study_report import (
    FIGURE,
    RESULTS,
    SNAPSHOTS,
    replace_section,
    results_section,
    snapshots_csv,
    split_figure,
)
from src.reports.split_study_rule import read_p99
from src.reports.split_study_runs import conv_snapshots, read_study_run, study_runs
from src.runs.paths import REPO_ROOT
from src.utils.atomic import write_atomic

LAYERS = "small64"
STUDY = REPO_ROOT / "docs" / "split-study"
DOC = REPO_ROOT / "docs" / "split-study.md"
PILOT = "pilot_t2_s0"
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


#: The length rule's numbers (docs/split-study.md, "Length"): the first epoch considered, its step, the window
#: over which both measures must have settled, and how much each may vary (max - min) within it.
FIRST_EPOCH = 10
EPOCH_STEP = 5
WINDOW = 5
SETTLED = {"split": 0.05, "learning": 0.01}
#: Hours of the budget left for arms A and C, and their runs (3 seeds each).
MAIN_HOURS = 22.0
MAIN_RUNS = 6


def epoch_measures(archive: Path, towers: int = 2) -> list[dict[str, float]]:
    """Per archived epoch (0 = the initial weights): the split and the learning measure of conv1."""
    rows = []
    for epoch, weights in sorted(conv_snapshots(archive)["conv1"].items()):
        conv1 = torch.from_numpy(weights)
        rows.append(
            {
                "epoch": epoch,
                "split": stats_for_model_kernels(list(conv1.chunk(towers))).split,
                "learning": float(low_frequency_share(conv1).mean()),
            }
        )
    return rows


def settled_epoch(rows: Sequence[dict[str, float]]) -> int | None:
    """The first epoch ``e >= FIRST_EPOCH``, a multiple of ``EPOCH_STEP``, at which each measure varied by
    less than its ``SETTLED`` amount over epochs ``e - WINDOW .. e``; None if no archived epoch qualifies."""
    by_epoch = {int(row["epoch"]): row for row in rows}
    for epoch in sorted(by_epoch):
        if epoch < FIRST_EPOCH or epoch % EPOCH_STEP:
            continue
        window = [by_epoch.get(e) for e in range(epoch - WINDOW, epoch + 1)]
        if any(row is None for row in window):
            continue
        if all(
            max(row[m] for row in window) - min(row[m] for row in window) < limit  # type: ignore[index]
            for m, limit in SETTLED.items()
        ):
            return epoch
    return None


def budget_epochs(epoch_minutes: float) -> int:
    """``floor(MAIN_HOURS / (MAIN_RUNS * t))`` epochs, ``t`` the pilot's quiet epoch time in hours."""
    return int(MAIN_HOURS * 60 // (MAIN_RUNS * epoch_minutes))


def write_report(runs_dir: Path, bands: Path, doc: Path, check: bool = False) -> int:
    """Rewrite ``doc``'s results section, its figure and its snapshot table (``results/`` beside
    ``runs_dir``); with ``check`` only compare the section and the table. Returns the exit status: 1 when
    checking finds either stale, else 0."""
    for path in (runs_dir, bands, doc):
        if not path.exists():
            raise SystemExit(f"error: {path}: not found")
    runs = study_runs(runs_dir)
    pilot = read_study_run(runs_dir / PILOT) if (runs_dir / PILOT).is_dir() else None
    p99 = read_p99(bands)
    results = runs_dir.parent / RESULTS
    figure, table = results / FIGURE, results / SNAPSHOTS
    document = doc.read_text()
    updated = replace_section(document, results_section(runs, pilot, p99, figure, table, doc.parent), doc)
    snapshots = snapshots_csv([*runs, *([pilot] if pilot else [])])
    if check:
        stale = [
            str(p)
            for p, new in ((doc, updated), (table, snapshots))
            if not p.is_file() or p.read_text() != new
        ]
        verdict = f"{', '.join(stale)}: not what" if stale else f"{doc} and {table}: what"
        print(f"{verdict} the archives in {runs_dir} give")
        return int(bool(stale))
    results.mkdir(parents=True, exist_ok=True)
    header = "generated by: python -m src.reports.split_study report -- do not edit; rerun the command"
    save_figure(split_figure(runs, pilot, p99, caffenet_reference()), figure, header)
    write_atomic(table, snapshots)
    write_atomic(doc, updated)
    print(f"wrote {doc} (results section), {figure} and {table}")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    bands = commands.add_parser("bands", help="the fresh-net bands, as a CSV")
    bands.add_argument("--out", type=Path, required=True, help="the CSV to write")
    bands.add_argument("--seeds", type=int, default=200, help="untrained nets per tower count (default 200)")
    length = commands.add_parser("length", help="the main runs' length L, from the archived pilot")
    length.add_argument("archive", type=Path, help="the pilot's archive folder (holding weights.npz)")
    length.add_argument(
        "--epoch-minutes", type=float, required=True, help="t: the pilot's median quiet epoch time, minutes"
    )
    report = commands.add_parser(
        "report", help="the results section of docs/split-study.md, from the archives"
    )
    report.add_argument(
        "--runs", type=Path, default=STUDY / "runs", help="the archived runs (default: %(default)s)"
    )
    report.add_argument("--bands", type=Path, default=STUDY / "fresh_bands.csv", help="default: %(default)s")
    report.add_argument("--doc", type=Path, default=DOC, help="the document to update (default: %(default)s)")
    report.add_argument("--check", action="store_true", help="write nothing; exit 1 if the section is stale")
    args = parser.parse_args(argv)
    if args.command == "report":
        raise SystemExit(write_report(args.runs, args.bands, args.doc, check=args.check))
    if args.command == "bands":
        rows = write_bands(args.out, args.seeds)
        for row in rows:
            print(", ".join(f"{key} {row[key]}" for key in BAND_COLUMNS))
        print(f"wrote {args.out}")
        return
    measures = epoch_measures(args.archive)
    for row in measures:
        print(f"epoch {row['epoch']:3d}  split {row['split']:.3f}  learning measure {row['learning']:.4f}")
    settled = settled_epoch(measures)
    cap = budget_epochs(args.epoch_minutes)
    last = int(measures[-1]["epoch"])
    when = f"epoch {settled}" if settled is not None else f"not yet (last epoch {last})"
    rule = f"floor({MAIN_HOURS:g} h / ({MAIN_RUNS} x {args.epoch_minutes:g} min))"
    print(f"settled: {when}; budget: {rule} = {cap} epochs")
    if settled is not None:
        print(f"L = {min(settled, cap)}")
    elif last >= cap:
        print(f"L = {cap} (the budget binds before the measures settle)")
    else:
        print("L not fixed yet: the pilot has not settled and has not reached the budget's cap")


if __name__ == "__main__":
    main()
