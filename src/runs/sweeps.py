"""One table per sweep: the job folders of a sweep, read back into ``summary.csv`` and ``summary.md``.

A sweep (``python src/train.py -m model.towers=1,2,4 seed=0,1``, or ``hparams_search=optuna``) writes one
folder per job under its sweep folder::

    outputs/train/multiruns/<date>_<time>/         the sweep folder (hydra.sweep.dir)
        0/ 1/ ...                                  one per job (hydra.sweep.subdir): a run's usual files
            job_result.json                        written by SweepSummary when the job ends
        summary.csv, summary.md                    written by SweepSummary: one row per job

``SweepSummary``, the Hydra callback that writes them (``src/hydra_callbacks/sweep_summary.py``), rebuilds the
table after every job and when the sweep ends (``write_summary``): the job number, status, one column per
override that differs between jobs, the value the job returned to the sweeper (``optimized_metric``), and
the final logged metrics (the last ``val/acc``, ``val/acc_best``, ``test/acc`` and the number of validated
epochs), read from the job's CSV log (every logger config keeps one), else ``checkpoints/last.ckpt``. A job
killed before its end is listed as ``no result``.

A job that dies or fails does not stop the sweep: ``src/train.py``'s ``main`` runs each job through
``run_job``, which, under ``-m`` only, catches what would end a single run (a dead or diverged run's exit
code 3, a checkpoint that cannot be written, bad data, any exception), records it and returns ``None`` to
the sweeper, so that the next job runs. The summary lists such a job with the status ``died`` (the
dead-run detector stopped it, exit code 3 in a single run) or ``failed`` (anything else) and the one-line
reason in ``error``. Ctrl-C and SIGTERM (exit codes 130 and 143) still stop the whole sweep. When the sweep
ends, ``SweepSummary`` exits with 100 plus the number of jobs that did not complete, and its last line names
them (the codes 1, 3, 130 and 143 keep their single-run meanings; the table says which job ended how).

W&B names and groups a sweep's jobs itself: ``src/loggers/wandb_run.py``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import sys
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf

from src.metric_names import TEST_ACC, VAL_ACC, VAL_ACC_BEST
from src.runs.folders import HYDRA_OVERRIDES, last_checkpoint
from src.runs.metrics import read_metrics
from src.runs.overrides import override_key, override_value
from src.utils.atomic import write_atomic
from src.utils.console import say
from src.utils.exits import DIED_EXIT_CODE, ERROR_EXIT_CODE, INTERRUPTED_EXIT_CODE, PREEMPTED_EXIT_CODE

__all__ = [
    "DIED",
    "FAILED",
    "JOB_RESULT",
    "as_number",
    "failed_jobs",
    "find_jobs",
    "job_metrics",
    "read_job",
    "run_job",
    "summarise_sweep",
    "take_failure",
    "write_summary",
]

log = logging.getLogger(__name__)

JOB_RESULT = "job_result.json"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
#: Final metrics reported for every job (the last value each logged).
DEFAULT_METRICS = (VAL_ACC, VAL_ACC_BEST, TEST_ACC)
#: Logged once per validation: the job's ``epochs`` column counts its values.
EPOCH_METRIC = VAL_ACC
#: The status of a job the dead-run detector stopped (exit code 3 in a single run), and of any other job
#: that ended early (an exception, a checkpoint not written, bad data: ``SystemExit`` with another code).
DIED, FAILED = "died", "failed"
COMPLETED = "COMPLETED"  # Hydra's JobStatus.COMPLETED.name
#: Exit codes that stop the whole sweep, as they stop a single run: Ctrl-C (130) and SIGTERM (143).
STOP_SWEEP_CODES = (INTERRUPTED_EXIT_CODE, PREEMPTED_EXIT_CODE)

T = TypeVar("T")

# --- running a job of a sweep -------------------------------------------------------------------------------

_failure: dict[str, str] | None = None  # how the job that just ran in this process ended, if it failed


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def run_job(job: Callable[[], T]) -> T | None:
    """``job()``; under a multirun (``-m``), a job that ends early is recorded for the sweep's summary
    (``take_failure``) and ``None`` is returned, so that the sweeper runs the next job.

    Ends early: ``SystemExit`` (a dead run's code 3, with its ``reason``; a failed checkpoint write; a
    data error's message) or any ``Exception`` (its traceback is printed). Ctrl-C and SIGTERM (``SystemExit``
    130 or 143, ``KeyboardInterrupt``) are not caught: they stop the sweep. Outside a multirun, ``job()``
    as it is: a single run exits as it always did.
    """
    global _failure
    if not _in_multirun():
        return job()
    _failure = None
    try:
        return job()
    except SystemExit as stop:
        if stop.code in STOP_SWEEP_CODES:
            raise
        reason = getattr(stop, "reason", None)  # an ErrorExit has printed it already
        if reason is None:
            reason = stop.code if isinstance(stop.code, str) else f"exit code {stop.code}"
            say(reason if isinstance(stop.code, str) else f"error: {reason}", error=True)
        reason = _one_line(reason).removeprefix("error: ")
        status = DIED if stop.code == DIED_EXIT_CODE else FAILED
    except Exception as error:
        traceback.print_exc()
        status, reason = FAILED, _one_line(f"{type(error).__name__}: {error}")
        _finish_wandb()
    _failure = {"status": status, "error": reason}
    say(f"sweep: job {_job_number()} {status}; the sweep goes on (the summary says why)", error=True)
    return None


def _job_number() -> str:
    from hydra.core.hydra_config import HydraConfig

    return str(HydraConfig.get().job.get("num", "?"))


def _finish_wandb() -> None:
    """A W&B run the failed job left open is ended (failed), so that the next job starts its own."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        try:
            wandb.finish(exit_code=ERROR_EXIT_CODE)
        except Exception as error:  # never let this hide the job's own failure
            log.warning(f"could not finish the failed job's W&B run: {error}")


def take_failure() -> dict[str, str] | None:
    """How the job that just ran in this process ended early (``status``, ``error``), None if it did not;
    forgotten once taken (``SweepSummary.on_job_end`` takes it)."""
    global _failure
    failure, _failure = _failure, None
    return failure


# --- reading the job folders --------------------------------------------------------------------------------


def as_number(value: Any) -> float | None:
    """A float from a float, int or one-element tensor; None for anything else (or NaN)."""
    try:
        number = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError):
        return None
    return None if math.isnan(number) else number


def _job_key(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (1 << 62, path.name)


def find_jobs(sweep_dir: str | os.PathLike[str]) -> list[Path]:
    """The job folders of a sweep: its subfolders holding ``job_result.json`` or ``.hydra/overrides.yaml``.

    Sorted by job number. Hidden folders (``.submitit``) are skipped.
    """
    sweep_dir = Path(sweep_dir)
    jobs = [
        p
        for p in sweep_dir.iterdir()
        if p.is_dir()
        and not p.name.startswith(".")
        and ((p / JOB_RESULT).is_file() or (p / HYDRA_OVERRIDES).is_file())
    ]
    return sorted(jobs, key=_job_key)


def _last_values(rows: Iterable[Mapping[str, Any]], metrics: Sequence[str]) -> dict[str, float]:
    """The last number each metric took in ``rows``, and ``epochs``: how many rows logged ``val/acc``."""
    found: dict[str, float] = {}
    epochs = 0
    for row in rows:
        for key in metrics:
            value = as_number(row.get(key))
            if value is not None:
                found[key] = value
        epochs += as_number(row.get(EPOCH_METRIC)) is not None
    if epochs:
        found["epochs"] = epochs
    return found


def _from_csv(job_dir: Path, metrics: Sequence[str]) -> dict[str, float]:
    """Last values from Lightning's CSV log, every ``csv/version_*/metrics.csv`` merged (a resumed job has
    one per process: :func:`src.runs.metrics.read_metrics`)."""
    return _last_values(read_metrics(job_dir), metrics)


def _from_checkpoint(job_dir: Path) -> dict[str, float]:
    """The monitored metric's last and best values from ``checkpoints/last.ckpt`` (ModelCheckpoint state)."""
    path = last_checkpoint(job_dir)
    if not path.is_file():
        return {}
    import torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    found: dict[str, float] = {}
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if str(key).startswith("ModelCheckpoint") and state.get("monitor"):
            monitor = state["monitor"]
            for name, value in (
                (monitor, state.get("current_score")),
                (f"{monitor}_best", state.get("best_model_score")),
            ):
                if as_number(value) is not None:
                    found[name] = as_number(value)
            break
    if "epoch" in checkpoint:
        found["epochs"] = int(checkpoint["epoch"]) + 1
    return found


def job_metrics(
    job_dir: str | os.PathLike[str], metrics: Sequence[str] = DEFAULT_METRICS
) -> dict[str, float]:
    """The last logged value of each of ``metrics``, and ``epochs`` (how many validations were logged).

    Read from the job's CSV log (every logger config keeps one: ``conf/logger/csv.yaml``), else its
    ``checkpoints/last.ckpt`` (which knows only the checkpoint's monitored metric, ``val/acc``, its best value
    and the epoch). Empty when there is neither.
    """
    job_dir = Path(job_dir)
    try:
        found = _from_csv(job_dir, metrics)
    except (OSError, ValueError) as error:
        log.warning(f"could not read the CSV metrics of {job_dir}: {error}")
        found = {}
    if found:
        return found
    try:
        return _from_checkpoint(job_dir)
    except Exception as error:  # an unreadable checkpoint leaves the cells empty
        log.warning(f"could not read the checkpoint of {job_dir}: {error}")
        return {}


def read_job(job_dir: str | os.PathLike[str], metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, Any]:
    """One job's row: ``job``, ``status``, ``returned``, ``error``, ``overrides`` (a list) and its metrics."""
    job_dir = Path(job_dir)
    result_file = job_dir / JOB_RESULT
    if result_file.is_file():
        row = json.loads(result_file.read_text())
    else:  # killed, or still running
        overrides = OmegaConf.load(job_dir / HYDRA_OVERRIDES)
        row = {"job": _job_key(job_dir)[0], "status": "no result", "overrides": list(overrides)}
    row.setdefault("returned", None)
    row.setdefault("error", None)
    row["dir"] = str(job_dir)
    row["metrics"] = job_metrics(job_dir, metrics) if result_file.is_file() else {}
    return row


def failed_jobs(sweep_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The jobs of a sweep that did not complete (died, failed, or ended with no result), with their
    ``job``, ``status`` and ``error``: read from the job folders alone, without their metrics."""
    failed = []
    for job_dir in find_jobs(sweep_dir):
        result_file = job_dir / JOB_RESULT
        row = json.loads(result_file.read_text()) if result_file.is_file() else {"status": "no result"}
        if row.get("status") != COMPLETED:
            failed.append({"job": _job_key(job_dir)[0], "status": row["status"], "error": row.get("error")})
    return failed


def summarise_sweep(
    sweep_dir: str | os.PathLike[str], metrics: Sequence[str] = DEFAULT_METRICS
) -> tuple[list[str], list[dict[str, Any]]]:
    """``(columns, rows)`` of the sweep's table, one row per job folder, as ``write_summary`` writes it.

    Columns: ``job``, ``status``, one per override key whose value is not the same in every job (all the
    keys when there is one job), ``returned`` (what the job returned to the sweeper), ``metrics``, ``epochs``,
    ``overrides`` (all of the job's overrides), ``error`` and ``dir``.
    """
    jobs = [read_job(job, metrics) for job in find_jobs(sweep_dir)]
    for job in jobs:
        job["_pairs"] = {override_key(o): override_value(o) for o in job["overrides"]}
    keys = list(dict.fromkeys(key for job in jobs for key in job["_pairs"]))  # in order of appearance
    # None stands for "not overridden", which differs from every value given on the command line
    varying = [k for k in keys if len({job["_pairs"].get(k) for job in jobs}) > 1]
    if len(jobs) == 1:
        varying = keys
    columns = ["job", "status", *varying, "returned", *metrics, "epochs", "overrides", "error", "dir"]
    rows = []
    for job in jobs:
        row = {"job": job["job"], "status": job["status"], "returned": job["returned"]}
        row |= {key: job["_pairs"].get(key) for key in varying}
        row |= {key: job["metrics"].get(key) for key in (*metrics, "epochs")}
        row |= {"overrides": " ".join(job["overrides"]), "error": job["error"], "dir": job["dir"]}
        row["optimized_metric"] = job.get("optimized_metric")
        rows.append(row)
    return columns, rows


def _cell(value: Any, short: bool = False) -> str:
    """A table cell: empty for None; floats in full, or to 4 significant digits when ``short``."""
    if value is None:
        return ""
    if isinstance(value, float) and short:
        return f"{value:.4g}"
    return str(value)


def _markdown(columns: Sequence[str], rows: Sequence[Mapping[str, Any]], title: str, note: str) -> str:
    shown = [c for c in columns if c not in ("dir", "overrides")]

    def cell(row: Mapping[str, Any], column: str) -> str:
        return _cell(row.get(column), short=True).replace("|", "\\|").replace("\n", " ")

    lines = [f"# {title}", "", note, "", "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(cell(row, c) for c in shown) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_summary(
    sweep_dir: str | os.PathLike[str], metrics: Sequence[str] = DEFAULT_METRICS, direction: str = "maximize"
) -> tuple[Path, Path]:
    """Write ``summary.csv`` and ``summary.md`` into ``sweep_dir``; return their paths.

    The Markdown table leaves out the long ``overrides`` and ``dir`` columns and names the best job by
    ``returned`` (``direction``: ``maximize`` or ``minimize``).
    """
    sweep_dir = Path(sweep_dir)
    columns, rows = summarise_sweep(sweep_dir, metrics)
    csv_path, md_path = sweep_dir / SUMMARY_CSV, sweep_dir / SUMMARY_MD

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: _cell(row.get(c)) for c in columns} for row in rows)
    write_atomic(csv_path, text.getvalue())

    done = [r for r in rows if r["returned"] is not None]
    sign = -1 if direction == "minimize" else 1
    best = max(done, key=lambda r: sign * r["returned"], default=None)
    metric = next((r["optimized_metric"] for r in rows if r.get("optimized_metric")), None)
    completed = sum(r["status"] == COMPLETED for r in rows)
    ended = Counter(r["status"] for r in rows if r["status"] != COMPLETED)
    not_completed = "".join(f", {n} {status}" for status, n in ended.items())
    note = (
        f"{len(rows)} jobs, {completed} completed{not_completed} (`error`: why a job ended early). "
        f"`returned`: what each job returned to the sweeper ({metric or 'optimized_metric'}); "
        f"the metric columns: the last value each job logged."
    )
    if best is not None:
        note += f" Best ({direction}): job {best['job']}, returned {_cell(best['returned'], short=True)}."
    write_atomic(md_path, _markdown(columns, rows, f"Sweep {sweep_dir.name}", note))
    return csv_path, md_path
