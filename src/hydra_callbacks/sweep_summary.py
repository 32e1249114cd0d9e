"""``SweepSummary``: the Hydra callback behind ``<sweep dir>/summary.csv`` and ``summary.md``.

Configured in ``conf/hydra/callbacks/sweep_summary.yaml`` and selected in ``conf/train.yaml``.
When a job of a sweep (``-m``) ends, in the job's own process (wherever the launcher ran it: here, or on a
SLURM node), it writes ``job_result.json`` beside the job's files: the job's overrides, whether it completed
and what it returned to the sweeper (``optimized_metric``). Then, and again when the sweep ends, it rebuilds
the sweep's table from the job folders (``src/runs/sweeps.py``). Rebuilding after every job means that a
sweep stopped early (Ctrl-C, SIGTERM, a job killed) still leaves a summary of every job so far.

A job that died or failed (``src/runs/sweeps.py``, ``run_job``: it returned ``None`` to the sweeper so that
the sweep goes on) is recorded as ``died`` or ``failed`` with its one-line reason. When the sweep ends, if
any job did not complete, the last line names them and the sweep's exit code says how many: 100 plus their
number (101: one job, up to 127), apart from 1 (an error), 3 (a dead single run), 130 and 143 (Ctrl-C,
SIGTERM). Single runs are left alone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from src.runs.sweeps import (
    DEFAULT_METRICS,
    JOB_RESULT,
    as_number,
    failed_jobs,
    find_jobs,
    take_failure,
    write_summary,
)
from src.utils.atomic import write_atomic
from src.utils.console import say
from src.utils.exits import sweep_exit_code

log = logging.getLogger(__name__)


def _sweep_dir(config: DictConfig) -> Path:
    """The sweep folder, absolute (a relative ``hydra.sweep.dir`` is relative to the launch folder)."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    return sweep_dir if sweep_dir.is_absolute() else Path(str(config.hydra.runtime.cwd)) / sweep_dir


def _direction(config: DictConfig) -> str:
    """``maximize`` or ``minimize``: the sweeper's direction (Optuna), else guessed from the metric's name."""
    direction = OmegaConf.select(config, "hydra.sweeper.direction", default=None)
    if direction is not None and not OmegaConf.is_list(direction):
        return str(getattr(direction, "name", direction))
    metric = str(OmegaConf.select(config, "optimized_metric", default="") or "")
    return "minimize" if "loss" in metric else "maximize"


class SweepSummary(Callback):
    """Writes ``job_result.json`` in each job's folder and ``summary.csv``/``summary.md`` in the sweep folder.

    Args:
        metrics: the logged metrics to report for each job (their last values).
    """

    def __init__(self, metrics: Sequence[str] = DEFAULT_METRICS) -> None:
        self.metrics = tuple(metrics)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        # Single runs are left alone, and so are ranks > 0 where SLURM starts each rank as a job task.
        if config.hydra.mode != RunMode.MULTIRUN or rank_zero_only.rank != 0:
            return
        job_dir = Path(str(config.hydra.runtime.output_dir))
        completed = job_return.status == JobStatus.COMPLETED
        error = job_return._return_value  # the exception of a failed job (return_value would raise it)
        status, error = job_return.status.name, None if completed else f"{type(error).__name__}: {error}"
        failure = take_failure()  # a job that died or failed, caught so that the sweep goes on
        if failure is not None:
            completed, status, error = False, failure["status"], failure["error"]
        result = {
            "job": int(config.hydra.job.num),
            "status": status,
            "optimized_metric": OmegaConf.select(config, "optimized_metric", default=None),
            "returned": as_number(job_return.return_value) if completed else None,
            "error": error,
            "overrides": list(config.hydra.overrides.task),
        }
        job_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(job_dir / JOB_RESULT, json.dumps(result, indent=2) + "\n")
        try:
            write_summary(_sweep_dir(config), self.metrics, _direction(config))
        except Exception as error:  # the summary must never fail the job it summarises
            log.warning(f"sweep summary not updated: {type(error).__name__}: {error}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = _sweep_dir(config)
        if sweep_dir.is_dir():
            csv_path, md_path = write_summary(sweep_dir, self.metrics, _direction(config))
            say(f"sweep summary: {csv_path} and {md_path.name}")
            failed = failed_jobs(sweep_dir)
            if failed:
                jobs = ", ".join(f"{job['job']} ({job['status']})" for job in failed)
                say(
                    f"sweep: {len(failed)} of {len(find_jobs(sweep_dir))} jobs did not complete: {jobs}; "
                    f"why: the error column of {md_path} (exit code {sweep_exit_code(len(failed))})",
                    error=True,
                )
                raise SystemExit(sweep_exit_code(len(failed)))
