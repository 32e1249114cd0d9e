"""Run folders and their checkpoints: where ``src/train.py`` writes, and how runs are found again.

Written by Hydra and Lightning::

    outputs/<task>/runs/<date>_<time>/                one run (hydra.run.dir)
        .hydra/config.yaml, overrides.yaml             the run's configuration, as Hydra composed it
        .hydra.pending/                                a resumed run's new configuration, until it trains
        .run.lock                                      held (flock) by the process writing the run, its pid
        checkpoints/last.ckpt, epoch_NNN.ckpt          torch.save'd dicts: "state_dict", "net_config", "epoch"
        wandb_run_id.txt, wandb/, csv/, kernels/       the loggers' and callbacks' files
    outputs/<task>/multiruns/<date>_<time>/<job>/      one job of a sweep, laid out as a run

Two questions have an answer here, each with its own function: which run was started last
(``latest_run``: what ``ckpt_path=last`` resumes, ``src/runs/resume.py``), and which checkpoint was written
last under a folder of runs and sweeps (``latest_checkpoint``: what the notebook and ``src/analyse.py``
show when given a folder).

One process writes a run folder at a time: ``hold_run_folder`` takes an exclusive ``flock`` on
``<run>/.run.lock`` (holding the process id) before Hydra writes there, and a second run into the same folder
(the same ``hydra.run.dir``, or a resume of a run still training) is refused, naming the first's process.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from src.utils.locks import is_the_file_at

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock
    fcntl = None  # type: ignore[assignment]

CHECKPOINT_DIR = "checkpoints"
#: The checkpoint written at the end of every epoch (``conf/callbacks/default.yaml``, ``last_checkpoint``).
LAST_CHECKPOINT = "last.ckpt"
RUNS_DIR = "runs"
HYDRA_SUBDIR = ".hydra"
PENDING_SUBDIR = ".hydra.pending"  # a resumed run's new configuration, until it trains (CommitRunConfig)
RUN_LOCK = ".run.lock"  # held by the process writing the run (hold_run_folder)
#: The environment variables that give a process's global rank (as ``lightning``'s ``rank_zero_only`` reads
#: them): a DDP child that Lightning starts with the same command line runs with ``LOCAL_RANK`` set.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
_held: set[Path] = set()  # the run folders this process holds (hold_run_folder is re-entrant)


def is_run_dir(path: Path) -> bool:
    """A folder ``src/train.py`` wrote: Hydra keeps the run's configuration in ``.hydra/``."""
    return (path / HYDRA_SUBDIR).is_dir()


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
    config = run / HYDRA_SUBDIR / "config.yaml"
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
    if run is None or fcntl is None or global_rank() != 0:
        yield
        return
    run = Path(run).expanduser().absolute()
    if run in _held:
        yield
        return
    created = not run.exists()
    run.mkdir(parents=True, exist_ok=True)
    lock = run / RUN_LOCK
    while True:
        handle = open(lock, "a+")  # noqa: SIM115 - held until the body ends
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise SystemExit(
                f"error: {run} is being written by another run (process {holder}, holding {lock}): nothing "
                "was written; wait for it to end, or write to another folder (hydra.run.dir=<new folder>)"
            ) from None
        if is_the_file_at(handle.fileno(), lock):
            break
        handle.close()  # its holder deleted it as it let go: lock the path again
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        _held.add(run)
        yield
    finally:
        _held.discard(run)
        lock.unlink(missing_ok=True)  # while still held, so that no waiter takes a stale lock
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
        if created and run.is_dir() and not any(run.iterdir()):
            run.rmdir()


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


def find_runs(folder: str | os.PathLike[str]) -> list[Path]:
    """Run folders at any depth under ``folder`` (``folder`` included): those with ``checkpoints/*.ckpt``.

    A run of ``src/train.py`` keeps ``checkpoints/last.ckpt`` (and ``epoch_NNN.ckpt``); a sweep keeps one such
    folder per job. Hidden folders (``.hydra``, ...) are not searched and symbolic links are not followed.

    Returns:
        The run folders, sorted by path (job numbers in numeric order).

    Raises:
        FileNotFoundError: naming ``folder`` when it does not exist or holds no run.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root}")
    runs: list[Path] = []
    for current, dirs, _ in os.walk(root):
        here = Path(current)
        if _checkpoints(here):
            runs.append(here)
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != CHECKPOINT_DIR]
    if not runs:
        raise FileNotFoundError(
            f"no training runs under {root}: no folder there holds {CHECKPOINT_DIR}/*.ckpt "
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
    with_runs = [p for p in sweeps if any(True for _ in p.rglob(f"{CHECKPOINT_DIR}/*.ckpt"))]
    return max(with_runs, key=lambda p: (p.stat().st_mtime, p.name), default=None)


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
    if _checkpoints(path):
        return run_checkpoint(path)
    return latest_checkpoint(path)
