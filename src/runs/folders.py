"""Run folders and their checkpoints: where ``src/train.py`` writes, and how runs are found again.

Written by Hydra and Lightning::

    outputs/<task>/runs/<date>_<time>/                one run (hydra.run.dir)
        .hydra/config.yaml, overrides.yaml             the run's configuration, as Hydra composed it
        .hydra.pending/                                a resumed run's new configuration, until it trains
        .run.lock                                      held (flock) by the process writing the run, its pid
        checkpoints/last.ckpt, epoch_NNN.ckpt          torch.save'd dicts: "state_dict", "net_config", "epoch"
        csv/version_N/metrics.csv                      every logged number, one version per process
        DIED.txt                                       why the run died, if it did (training_health.py)
        wandb_run_id.txt, wandb/, kernels/             the other loggers' and callbacks' files
    outputs/<task>/multiruns/<date>_<time>/<job>/      one job of a sweep, laid out as a run

Two questions have an answer here, each with its own function: which run was started last
(``latest_run``: what ``ckpt_path=last`` resumes, ``src/runs/resume.py``), and which checkpoint was written
last under a folder of runs and sweeps (``latest_checkpoint``: what the notebook and ``src/analyse.py``
show when given a folder).

**What a run is.** One definition, :func:`is_run_dir`: a folder holding ``.hydra/``, which Hydra writes
into the job's folder before the job does anything else. It is the one mark every run has from its start
(a run that stopped before its first checkpoint or its first logged row is still the run that
``ckpt_path=last`` names, and a folder a second run into it would overwrite), and one that no other folder has
(``checkpoints/`` and ``csv/`` are Lightning's, and a sweep folder holds neither ``.hydra/`` nor a run's
records). A reader that needs more of a run asks for it with a named filter on top: :func:`has_checkpoint`
(the analysis command and the notebook load a net) or :func:`src.runs.metrics.has_metrics` (the reports read
the logged numbers); :func:`find_runs` finds the runs that pass one under a folder.

One process writes a run folder at a time: ``hold_run_folder`` takes an exclusive ``flock`` on
``<run>/.run.lock`` (holding the process id) before Hydra writes there, and a second run into the same folder
(the same ``hydra.run.dir``, or a resume of a run still training) is refused, naming the first's process.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from src.utils.locks import deleted_on_release

CHECKPOINT_DIR = "checkpoints"
#: The checkpoint written at the end of every epoch (``conf/callbacks/default.yaml``, ``last_checkpoint``).
LAST_CHECKPOINT = "last.ckpt"
RUNS_DIR = "runs"
HYDRA_SUBDIR = ".hydra"
#: The run's configuration as Hydra composed it (``model.towers``, ``seed``, the whole recipe).
HYDRA_CONFIG = Path(HYDRA_SUBDIR) / "config.yaml"
#: The command-line overrides the run was started with.
HYDRA_OVERRIDES = Path(HYDRA_SUBDIR) / "overrides.yaml"
#: The CSV log every logger config keeps (``conf/logger/csv.yaml``): one ``version_N`` per process, so a
#: resumed run has several (``src/runs/metrics.py`` reads them together).
METRICS_GLOB = "csv/version_*/metrics.csv"
#: Written by the training-health callback (``src/callbacks/training_health.py``) when the run dies: the
#: step and the reason.
DIED_FILE = "DIED.txt"
PENDING_SUBDIR = ".hydra.pending"  # a resumed run's new configuration, until it trains (CommitRunConfig)
RUN_LOCK = ".run.lock"  # held by the process writing the run (hold_run_folder)
#: The environment variables that give a process's global rank (as ``lightning``'s ``rank_zero_only`` reads
#: them): a DDP child that Lightning starts with the same command line runs with ``LOCAL_RANK`` set.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
_held: set[Path] = set()  # the run folders this process holds (hold_run_folder is re-entrant)


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a run: a folder ``src/train.py`` (or ``src/eval.py``) wrote, holding the
    ``.hydra/`` that Hydra writes first (the module docstring says why this is the one definition)."""
    return (path / HYDRA_SUBDIR).is_dir()


def has_checkpoint(run: Path) -> bool:
    """Whether the run has saved a net: a ``checkpoints/*.ckpt`` file."""
    return bool(_checkpoints(run))


def discard_unstarted_run(run: Path) -> bool:
    """Remove the folder of a new run that stopped before doing anything: it holds nothing but Hydra's
    configuration and log files, and would otherwise become "the run started last" that ``ckpt_path=last``
    names. Returns whether it was removed; a folder with anything else in it is kept."""
    kept = {HYDRA_SUBDIR, PENDING_SUBDIR, RUN_LOCK}
    if not is_run_dir(run) or any(p.name not in kept and p.suffix != ".log" for p in run.iterdir()):
        return False
    shutil.rmtree(run, ignore_errors=True)
    return True


def started(run: Path) -> float:
    """When ``run`` was last started or resumed: when Hydra wrote its ``.hydra/config.yaml``.

    ``.hydra.pending/`` does not count: a resume that was refused (other data, a bad override) leaves it
    there without having trained, and must not make that run the one ``ckpt_path=last`` continues. A resume
    that trains moves it over ``.hydra/`` (``commit_run_config``), written when the resume started."""
    config = run / HYDRA_CONFIG
    return config.stat().st_mtime if config.is_file() else run.stat().st_mtime


def global_rank(environ: Any = os.environ) -> int:
    """This process's global rank as its environment gives it (0 for a single process)."""
    for name in RANK_VARIABLES:
        value = environ.get(name)
        if value not in (None, ""):
            return int(value)
    return 0


@contextmanager
def hold_run_folder(run: str | os.PathLike[str] | None) -> Iterator[None]:
    """Hold ``<run>/.run.lock`` (an exclusive ``flock``, the file holding this process's id) while the body
    runs; ``SystemExit`` naming the holder's process id if another process holds it.

    ``None`` holds nothing, and so does a process of global rank other than 0 (the DDP ranks Lightning starts
    with the same ``hydra.run.dir``: their run is the rank-0 process's). Re-entrant within one process. The
    lock goes with the process (a killed run releases it); the file is deleted while still held, so a
    finished run leaves none, and a folder this call created that stays empty is removed again.
    """
    if run is None or global_rank() != 0:
        yield
        return
    run = Path(run).expanduser().absolute()
    if run in _held:
        yield
        return
    created = not run.exists()
    run.mkdir(parents=True, exist_ok=True)
    lock = run / RUN_LOCK
    held = FileLock(lock, on_acquired=_write_pid)
    try:
        held.acquire(blocking=False)
    except Timeout:
        holder = lock.read_text().strip() if lock.is_file() else ""
        raise SystemExit(
            f"error: {run} is being written by another run (process {holder or 'unknown'}, holding {lock}): "
            "nothing was written; wait for it to end, or write to another folder (hydra.run.dir=<new folder>)"
        ) from None
    try:
        with deleted_on_release(held):
            _held.add(run)
            yield
    finally:
        _held.discard(run)
        if created and run.is_dir() and not any(run.iterdir()):
            run.rmdir()


def _write_pid(fd: int) -> None:
    """Write this process's id into the lock file just locked (what a refused run names)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def latest_run(runs_dir: Path) -> Path | None:
    """The run folder under ``runs_dir`` started (or resumed) most recently, with or without a checkpoint."""
    if not runs_dir.is_dir():
        return None
    runs = [(started(p), p.name, p) for p in runs_dir.iterdir() if is_run_dir(p)]
    return max(runs)[2] if runs else None


def last_checkpoint(run: Path) -> Path:
    """``<run>/checkpoints/last.ckpt``, whether or not it exists yet."""
    return run / CHECKPOINT_DIR / LAST_CHECKPOINT


def _checkpoints(run_dir: Path) -> list[Path]:
    folder = run_dir / CHECKPOINT_DIR
    return sorted(p for p in folder.glob("*.ckpt") if p.is_file()) if folder.is_dir() else []


def natural_key(path: Path) -> list[Any]:
    """Sort key that puts multirun job ``10`` after ``9``: digit runs compare as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", str(path))]


def find_runs(
    folder: str | os.PathLike[str], having: Callable[[Path], bool] = has_checkpoint, wanted: str = ""
) -> list[Path]:
    """The runs at any depth under ``folder`` (``folder`` included) that pass the filter ``having``: by
    default those with a checkpoint (``has_checkpoint``).

    A run of ``src/train.py`` is one such folder; a sweep keeps one per job. A run's own subfolders are not
    searched, hidden folders (``.hydra``, ...) neither, and symbolic links are not followed.

    Args:
        folder: a run, or a folder above runs (a sweep folder, ``outputs/``).
        having: the filter on top of :func:`is_run_dir`.
        wanted: what ``having`` asks for, as the error names it (default: ``checkpoints/*.ckpt``).

    Returns:
        The run folders, sorted by path (job numbers in numeric order).

    Raises:
        FileNotFoundError: naming ``folder`` when it does not exist or holds no such run.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root}")
    runs: list[Path] = []
    for current, dirs, _ in os.walk(root):
        here = Path(current)
        if is_run_dir(here):
            if having(here):
                runs.append(here)
            dirs.clear()
        else:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
    if not runs:
        raise FileNotFoundError(
            f"no training runs under {root}: no folder there holds {wanted or CHECKPOINT_DIR + '/*.ckpt'} "
            "(write one with `python src/train.py`)"
        )
    return sorted(runs, key=natural_key)


def run_checkpoint(run_dir: str | os.PathLike[str]) -> Path:
    """The run's ``checkpoints/last.ckpt``, else its most recently modified ``checkpoints/*.ckpt``.

    Raises:
        FileNotFoundError: naming ``run_dir`` when it has no checkpoint.
    """
    run_dir = Path(run_dir)
    last = last_checkpoint(run_dir)
    if last.is_file():
        return last
    candidates = _checkpoints(run_dir)
    if not candidates:
        raise FileNotFoundError(f"no checkpoint in {run_dir / CHECKPOINT_DIR} (expected *.ckpt files)")
    return max(candidates, key=lambda p: (p.stat().st_mtime, p.name))


def latest_checkpoint(folder: str | os.PathLike[str]) -> Path:
    """The checkpoint written last under ``folder``, single runs and sweep jobs alike (each run's
    ``run_checkpoint``).

    Raises:
        FileNotFoundError: naming ``folder`` when it does not exist or holds no run.
    """
    checkpoints = [run_checkpoint(run) for run in find_runs(folder)]
    return max(checkpoints, key=lambda checkpoint: (checkpoint.stat().st_mtime, str(run_dir_of(checkpoint))))


def latest_sweep(outputs_dir: str | os.PathLike[str]) -> Path | None:
    """The newest sweep folder ``<outputs_dir>/<task>/multiruns/<date>_<time>`` holding a run, or None."""
    sweeps = [p for p in Path(outputs_dir).glob("*/multiruns/*") if p.is_dir() and not p.name.startswith(".")]
    with_runs = [p for p in sweeps if _holds_run(p)]
    return max(with_runs, key=lambda p: (p.stat().st_mtime, p.name), default=None)


def _holds_run(folder: Path) -> bool:
    try:
        return bool(find_runs(folder))
    except FileNotFoundError:
        return False


def run_dir_of(checkpoint: str | os.PathLike[str]) -> Path:
    """The run folder of a checkpoint file: the parent of its ``checkpoints/`` folder (else its folder)."""
    folder = Path(checkpoint).parent
    return folder.parent if folder.name == CHECKPOINT_DIR else folder


def checkpoint_for(path: str | os.PathLike[str]) -> Path:
    """A checkpoint from a checkpoint file, a run folder, or a folder of runs (then the latest checkpoint).

    Raises:
        FileNotFoundError: naming ``path`` when it is none of these.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise FileNotFoundError(f"no such checkpoint or run folder: {path}")
    if has_checkpoint(path):
        return run_checkpoint(path)
    return latest_checkpoint(path)
