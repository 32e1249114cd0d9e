"""Run the split study (docs/split-study.md): its main runs in order, each resumed where it stopped.

    python src/split_study.py --runs ~/runs/split_study --data ~/data            # the whole study
    python src/split_study.py --runs ~/runs/split_study --data ~/data --only C_s1 # one run
    python src/split_study.py ... --dry-run                                       # print, run nothing

For each run of :data:`ORDER` (``<arm>_s<seed>``) it does what the study's runs README says by hand: a run
already archived in ``docs/split-study/runs/`` is skipped; a run whose folder holds a ``last.ckpt`` goes on
from it (``ckpt_path=last``); any other starts in ``<runs>/<run>`` with the documented command
(``python src/train.py experiment=split_study seed=S <the arm's overrides>``), its
console appended to ``<runs>/<run>.log``. A run that ends tested is archived (``src/reports/run_archive.py``,
with the commit its last part trained at); a run that fails stops the study there, with the run's log
named. Afterwards ``python -m src.reports.split_study report`` rewrites the results, to be committed with
the archive.

The arms, their seeds and order: ``src/reports/split_study_arms.py``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from src.reports.figure3_runs import read_run
from src.reports.run_archive import archive_run, code_commit
from src.reports.split_study_arms import ARMS, ORDER, Arm
from src.runs.folders import HYDRA_CONFIG
from src.runs.paths import REPO_ROOT

ARCHIVES = REPO_ROOT / "docs" / "split-study" / "runs"
TRAIN = REPO_ROOT / "src" / "train.py"


def arm_and_seed(name: str) -> tuple[Arm, int]:
    arm, _, seed = name.partition("_s")
    if arm not in ARMS or not seed.isdigit() or int(seed) not in ARMS[arm].seeds:
        raise SystemExit(f"error: {name}: not a run of the study; the runs are {', '.join(ORDER)}")
    return ARMS[arm], int(seed)


def train_command(name: str, runs: Path, data: Path, resume: bool) -> list[str]:
    """The documented command of run ``name`` (docs/split-study/runs/README.md)."""
    arm, seed = arm_and_seed(name)
    overrides = [f"seed={seed}", *arm.overrides]
    folders = [f"paths.data_dir={data}", f"paths.log_dir={runs}", f"hydra.run.dir={runs / name}"]
    return [sys.executable, str(TRAIN), "experiment=split_study", *overrides, *folders] + (
        ["ckpt_path=last"] if resume else []
    )


def tested(run_dir: Path) -> bool:
    return (run_dir / HYDRA_CONFIG).is_file() and read_run(run_dir).test_acc is not None


def run_study(names: Sequence[str], runs: Path, data: Path, archives: Path, dry_run: bool = False) -> int:
    """Train and archive ``names`` in order (module docstring); the exit status of the first failure, or 0."""
    for name in names:
        arm_and_seed(name)
    for name in names:
        run_dir = runs / name
        if (archives / name / "run.json").is_file() and tested(archives / name):
            print(f"{name}: archived in {archives / name}, skipped")
            continue
        commit = None
        if not tested(run_dir):
            command = train_command(
                name, runs, data, resume=(run_dir / "checkpoints" / "last.ckpt").is_file()
            )
            commit = code_commit()  # what this run (or this part of it) trains with, for its archive
            log = runs / f"{name}.log"
            print(f"{name}: {' '.join(command)} >> {log}", flush=True)
            if dry_run:
                continue
            runs.mkdir(parents=True, exist_ok=True)
            with log.open("a") as out:
                status = subprocess.run(
                    command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT
                ).returncode
            if status != 0:
                print(f"error: {name} stopped with exit status {status}; see {log}", file=sys.stderr)
                return status
        if dry_run:
            print(f"{name}: would be archived into {archives / name}")
            continue
        folder = archive_run(run_dir, archives, commit or code_commit())
        print(
            f"{name}: archived into {folder}; now: python -m src.reports.split_study report, and commit both"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=Path, required=True, help="where the run folders go (outside the repo)"
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="paths.data_dir: the folder holding the data"
    )
    parser.add_argument("--only", nargs="+", default=list(ORDER), metavar="RUN", help="these runs, e.g. C_s1")
    parser.add_argument("--archives", type=Path, default=ARCHIVES, help="default: %(default)s")
    parser.add_argument("--dry-run", action="store_true", help="print the commands; run and archive nothing")
    args = parser.parse_args(argv)
    runs, data = args.runs.expanduser().resolve(), args.data.expanduser().resolve()
    raise SystemExit(run_study(args.only, runs, data, args.archives, args.dry_run))


if __name__ == "__main__":
    main()
