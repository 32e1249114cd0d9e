"""Keep the small part of a run that a report is made from, so that the report can be made again anywhere.

    python -m src.reports.run_archive RUN [RUN ...] --into docs/figure3/runs [--commit SHA]

A run folder holds checkpoints (for the two-tower net a 455 MB ``last.ckpt`` and the best epoch's 228 MB of
weights) beside a few kilobytes of results. The Figure 3 report (:mod:`src.reports.figure3_report`) reads
only the results, so this copies, per run, into ``<into>/<run name>/``:

- ``.hydra/config.yaml`` and ``.hydra/overrides.yaml`` (the arm, the seed, the whole recipe);
- ``csv/version_*/metrics.csv`` (every logged number);
- the first and the last ``kernels/epoch_NNN_figure3.png`` (the pictures at initialisation and at the end);
- ``DIED.txt`` if the run died (``src/callbacks/training_health.py``), and the run's log (``train.log``: what
  the console showed, one time-stamped line per epoch);
- ``weights.npz`` when the run saved its weights per snapshot (``kernels/epoch_NNN_weights.npz``): conv1 at
  every snapshot (``conv1_epoch_NNN``, 29 kB each for the 64-pixel net) and conv2 at the first and the last
  (``conv2_epoch_NNN``), enough to score any conv1 measure again per epoch and Distill's test at the end;
- ``run.json``: the wall times the report otherwise reads from file times (which a copy, and git, lose),
  when each epoch's weights were saved (``snapshots``), the code's commit and the host.

The report reads such a folder as it reads the run itself (``run.json``'s times win over file times).
Checkpoints, W&B folders and the per-epoch pictures stay behind.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from src.reports.figure3_runs import PICTURES_GLOB, RUN_FILE, read_run
from src.runs.folders import DIED_FILE, HYDRA_CONFIG, HYDRA_OVERRIDES, METRICS_GLOB
from src.runs.metrics import has_metrics, metrics_files
from src.runs.paths import REPO_ROOT

WEIGHTS_GLOB = "kernels/epoch_*_weights.npz"  # src/callbacks/tower_kernels.py writes one per snapshot
WEIGHTS_FILE = "weights.npz"


def keep_weights(snapshots: list[Path], path: Path) -> None:
    """conv1 of every snapshot and conv2 of the first and last, as one compressed file (module docstring)."""
    if not snapshots:
        return
    arrays: dict[str, np.ndarray] = {}
    for index, snapshot in enumerate(snapshots):
        epoch = snapshot.name.split("_")[1]
        with np.load(snapshot) as weights:
            arrays[f"conv1_epoch_{epoch}"] = weights["conv1"]
            if index in (0, len(snapshots) - 1) and "conv2" in weights:
                arrays[f"conv2_epoch_{epoch}"] = weights["conv2"]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def code_commit(root: Path = REPO_ROOT) -> str | None:
    """The commit checked out at ``root`` (``+dirty`` when files differ from it), None outside git."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("+dirty" if dirty else "")


def archive_run(run_dir: Path, into: Path, commit: str | None) -> Path:
    """Copy ``run_dir``'s results into ``into/<run name>/`` (module docstring); return that folder.

    The copy is made beside its final name and renamed into place, so an archive is whole or absent.

    Raises:
        FileNotFoundError: the run has no ``.hydra/config.yaml`` or no metrics.
    """
    run = read_run(run_dir)
    if not has_metrics(run_dir):
        raise FileNotFoundError(f"{run_dir}: no {METRICS_GLOB} to keep")
    target = into / run_dir.name
    partial = into / f".{run_dir.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    sources = [run_dir / HYDRA_CONFIG, run_dir / HYDRA_OVERRIDES]
    sources += metrics_files(run_dir)
    pictures = sorted(run_dir.glob(PICTURES_GLOB))
    sources += [pictures[0], pictures[-1]] if pictures else []
    sources += [run_dir / DIED_FILE]
    sources += sorted(run_dir.glob("*.log"))  # the run's log (Hydra's job logging): one line per epoch, timed
    for source in sources:
        if source.is_file():
            destination = partial / source.relative_to(run_dir)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
    record = {
        "fit_s": run.fit_s,
        "job_s": run.job_s,
        "epochs": run.last_epoch,
        "status": run.status,
        "commit": commit,
        "host": f"{platform.node()} ({platform.machine()}, {platform.processor() or 'cpu'})",
        "source": str(run_dir.resolve()),
        # when each epoch's weights were saved: the epochs' wall times, also of epochs before the log had them
        "snapshots": {
            path.name.split("_")[1]: datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat()
            for path in sorted(run_dir.glob(WEIGHTS_GLOB))
        },
    }
    keep_weights(sorted(run_dir.glob(WEIGHTS_GLOB)), partial / WEIGHTS_FILE)
    (partial / RUN_FILE).write_text(json.dumps(record, indent=2) + "\n")
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders")
    parser.add_argument("--into", type=Path, required=True, help="where the copies go (one folder per run)")
    parser.add_argument(
        "--commit",
        default=None,
        help="the commit the runs were trained at (default: this checkout's, +dirty if it has changes)",
    )
    args = parser.parse_args(argv)
    commit = args.commit or code_commit()
    args.into.mkdir(parents=True, exist_ok=True)
    for run_dir in args.runs:
        kept = archive_run(run_dir, args.into, commit)
        size = sum(p.stat().st_size for p in kept.rglob("*") if p.is_file())
        print(f"{run_dir} -> {kept} ({size / 1e3:.0f} kB)", file=sys.stderr)


if __name__ == "__main__":
    main()
