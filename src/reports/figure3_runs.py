"""The Figure 3 report's reading: each run's curves, final numbers, status and wall times.

What is read from a run, and how its wall times are measured, is in :mod:`src.reports.figure3_report`'s
docstring. The logged numbers come through :func:`src.runs.metrics.read_metrics` (every ``version_*`` of a
resumed run, merged); the run folders through :func:`src.runs.folders.find_runs`, with the filter
:func:`src.runs.metrics.has_metrics`.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from src.metric_names import EPOCHS_TRAINED, TEST_ACC, VAL_ACC
from src.runs.folders import DIED_FILE, HYDRA_CONFIG, METRICS_GLOB, find_runs
from src.runs.metrics import has_metrics, metrics_files, read_metrics

PICTURES_GLOB = "kernels/epoch_*_figure3.png"  # src/callbacks/tower_kernels.py draws one per snapshot
HPARAMS_GLOB = "csv/version_*/hparams.yaml"  # one per process: when it started
RUN_FILE = "run.json"  # an archived run's wall times (src/reports/run_archive.py), which file times lose
SPLIT = "kernels/split"
AUC = "kernels/auc"
SPLIT_P = "kernels/split_p"
LOW_FREQ = "kernels/low_freq"
STEP = "step"  # Lightning's step column of metrics.csv


def tower_keys(t: int) -> tuple[str, str]:
    return f"kernels/tower{t}/colour_mean", f"kernels/tower{t}/colour_fraction"


@dataclass
class Run:
    """One run's curves and final numbers.

    Attributes:
        label: the run's name in the report (its path below the runs' common folder).
        path: the run folder.
        towers: ``model.towers``.
        seed: ``seed``.
        epochs: per epoch trained (0: initialisation), the logged numbers (``val/acc``, ``kernels/*``).
        test_acc: the ten-crop test accuracy, None before the test.
        fit_s, job_s: wall times in seconds (see :mod:`src.reports.figure3_report`), None if unknown.
        status: ``died`` (``DIED.txt``), ``tested`` or ``no test``.
        picture: the last epoch's ``kernels/epoch_NNN_figure3.png``, None if there is none.
        tags: the run's ``tags`` (``experiment=figure3`` sets ``figure3``).
        halfway: whether its final learning measure passes the halfway check (set by :func:`write_report`).
    """

    label: str
    path: Path
    towers: int
    seed: int
    epochs: dict[int, dict[str, float]]
    test_acc: float | None = None
    fit_s: float | None = None
    job_s: float | None = None
    status: str = "no test"
    picture: Path | None = None
    tags: tuple[str, ...] = ()
    halfway: bool | None = field(default=None, compare=False)

    @property
    def last_epoch(self) -> int:
        """Epochs trained at the run's last kernel scores."""
        scored = [e for e, values in self.epochs.items() if SPLIT in values]
        return max(scored, default=max(self.epochs, default=0))

    @property
    def final(self) -> dict[str, float]:
        """The numbers of the last epoch, and ``test/acc``."""
        values = dict(self.epochs.get(self.last_epoch, {}))
        if self.test_acc is not None:
            values[TEST_ACC] = self.test_acc
        return values


def find_run_dirs(sources: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The run folders named by ``sources`` (run folders, folders above runs, or globs), each once: the runs
    (:func:`src.runs.folders.is_run_dir`) with a CSV log (:func:`src.runs.metrics.has_metrics`).

    Raises:
        FileNotFoundError: naming a source that matches nothing or holds no run.
    """
    found: dict[Path, None] = {}
    for source in sources:
        text = str(source)
        paths = sorted(Path(p) for p in glob.glob(text)) if glob.has_magic(text) else [Path(text)]
        runs: list[Path] = []
        for path in paths:
            if path.is_dir():
                try:
                    runs += find_runs(path, having=has_metrics, wanted=METRICS_GLOB)
                except FileNotFoundError:
                    continue
        if not runs:
            raise FileNotFoundError(f"{text}: no run folder (one holding {METRICS_GLOB}) found there")
        found.update(dict.fromkeys(p.resolve() for p in runs))
    return list(found)


def epoch_scores(run_dir: Path) -> tuple[dict[int, dict[str, float]], float | None]:
    """Per epoch trained, ``val/acc``, the ``kernels/*`` scores and the ``step`` they were logged at; and the
    last ``test/acc``."""
    epochs: dict[int, dict[str, float]] = {}
    test_acc = None
    for values in read_metrics(run_dir):
        if EPOCHS_TRAINED in values:
            kept = {k: v for k, v in values.items() if k.startswith("kernels/") or k == STEP}
            epochs.setdefault(int(values[EPOCHS_TRAINED]), {}).update(kept)
        if VAL_ACC in values and "epoch" in values:
            epochs.setdefault(int(values["epoch"]) + 1, {})[VAL_ACC] = values[VAL_ACC]
        if TEST_ACC in values:
            test_acc = values[TEST_ACC]
    return epochs, test_acc


def _mtime(path: Path) -> float | None:
    return path.stat().st_mtime if path.is_file() else None


def _span(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else end - start


def _fit_seconds(pictures: Sequence[Path], process_starts: Sequence[float]) -> float | None:
    """Training time from the epochs' pictures (in epoch order), leaving out the pauses of a resumed run.

    Epoch e counts from the later of picture e - 1 and the last process start before picture e.
    """
    times = [t for t in map(_mtime, pictures) if t is not None]
    if len(times) < 2:
        return None
    total = 0.0
    for previous, current in zip(times, times[1:], strict=False):
        begun = max([previous, *(s for s in process_starts if previous < s < current)])
        total += current - begun
    return total


def _job_seconds(run_dir: Path, config_path: Path) -> float | None:
    """The job's time: one span per process (``csv/version_*``), from its ``hparams.yaml`` to its last
    ``metrics.csv`` write; without ``hparams.yaml``, from ``.hydra/config.yaml`` to the last write."""
    spans = []
    files = metrics_files(run_dir)
    for metrics in files:
        start = _mtime(metrics.with_name("hparams.yaml"))
        if start is None:
            return _span(_mtime(config_path), max(_mtime(p) or 0.0 for p in files))
        spans.append(_span(start, _mtime(metrics)) or 0.0)
    return sum(spans) if spans else None


def read_run(run_dir: str | os.PathLike[str], label: str | None = None) -> Run:
    """One run folder, read as :mod:`src.reports.figure3_report`'s docstring says.

    Raises:
        FileNotFoundError: when the run has no ``.hydra/config.yaml`` (its arm and seed are unknown).
    """
    run_dir = Path(run_dir)
    config_path = run_dir / HYDRA_CONFIG
    if not config_path.is_file():
        raise FileNotFoundError(f"{run_dir}: no {HYDRA_CONFIG}, so its towers and seed are unknown")
    config = OmegaConf.load(config_path)
    towers = OmegaConf.select(config, "model.towers", throw_on_resolution_failure=False)
    seed = OmegaConf.select(config, "seed", throw_on_resolution_failure=False)
    epochs, test_acc = epoch_scores(run_dir)
    pictures = sorted(run_dir.glob(PICTURES_GLOB))
    status = "tested" if test_acc is not None else "no test"
    if (run_dir / DIED_FILE).is_file():
        status = "died"
    starts = [t for t in (_mtime(p) for p in run_dir.glob(HPARAMS_GLOB)) if t is not None]
    fit_s = _fit_seconds(pictures, starts)
    job_s = _job_seconds(run_dir, config_path)
    if (run_dir / RUN_FILE).is_file():  # an archived copy: its recorded times, not the copy's file times
        recorded = json.loads((run_dir / RUN_FILE).read_text())
        fit_s, job_s = recorded.get("fit_s"), recorded.get("job_s")
    return Run(
        label=label or run_dir.name,
        path=run_dir,
        towers=int(towers),
        seed=int(seed),
        epochs=epochs,
        test_acc=test_acc,
        fit_s=fit_s,
        job_s=job_s,
        status=status,
        picture=pictures[-1] if pictures else None,
        tags=tuple(OmegaConf.select(config, "tags", default=None, throw_on_resolution_failure=False) or ()),
    )


def _labels(run_dirs: Sequence[Path]) -> list[str]:
    """Each run's path below the runs' common folder (its name when there is one run)."""
    if len(run_dirs) == 1:
        return [run_dirs[0].name]
    common = Path(os.path.commonpath([str(p) for p in run_dirs]))
    return [str(p.relative_to(common)) or p.name for p in run_dirs]


def read_runs(run_dirs: Sequence[Path]) -> list[Run]:
    """The runs, sorted by towers, then seed, then label."""
    runs = [read_run(p, label) for p, label in zip(run_dirs, _labels(run_dirs), strict=True)]
    return sorted(runs, key=lambda r: (r.towers, r.seed, r.label))


def by_arm(runs: Sequence[Run]) -> dict[int, list[Run]]:
    arms: dict[int, list[Run]] = {}
    for run in runs:
        arms.setdefault(run.towers, []).append(run)
    return arms
