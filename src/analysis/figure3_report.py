"""Figure 3 on real photographs: the report of ``experiment=figure3`` runs (``docs/figure3.md``).

    python -m src.analysis.figure3_report RUN_OR_FOLDER_OR_GLOB [...] [--out OUT] [--band-seeds 200]

Section 6.1 / figure 3 of Krizhevsky et al. (NIPS 2012): the two towers' conv1 kernels split into a
colour-agnostic and a colour-specific group. The sweep (README, "The experiment (Figure 3 on real
photographs)") trains each arm (``model.towers=1``: the control, whose two kernel halves are compared; 2;
optionally 4) over a few seeds. This module reads what the runs logged and writes, under ``--out``
(by default ``<the runs' folder>/report/``: a sweep's report goes into the sweep, and nothing committed is
overwritten; ``--out docs`` is the act that updates the committed ``docs/figure3.md`` and ``docs/figure3/``)

    <out>/figure3.md                      a table per arm (mean and sd over seeds), the halfway check, the
                                          plots and a statement generated from the numbers
    <out>/figure3/epochs.csv              per run and epoch trained: val/acc and the kernels/* scores
    <out>/figure3/runs.csv                per run: its final numbers (what the tables are made from), and
                                          ``path``, the run's folder relative to ``<out>/figure3/``
    <out>/figure3/split_vs_epoch.png      kernels/split per run, the random-initialisation band per arm and
                                          CaffeNet's split
    <out>/figure3/low_freq_vs_epoch.png   the learning measure per run, the random level and CaffeNet's
    <out>/figure3/kernels_towers{t}.png   the last figure-3 picture of one run per arm

The CSVs are plain (the header row first, as ``csv.DictReader`` and ``pandas.read_csv`` expect); the command
that made them is the first line of ``figure3.md`` and the ``Comment`` of each PNG.

Each argument is a run folder (one holding ``csv/version_*/metrics.csv``), a folder searched for run folders
(a sweep folder, ``outputs/``), or a glob of either. Read from each run:

- ``csv/version_*/metrics.csv`` (Lightning's CSVLogger: ``logger=csv`` or ``wandb_csv``). The kernel scores
  are on the rows with ``kernels/epochs_trained`` (0: at initialisation); ``val/acc`` on rows whose
  ``epoch`` E means E + 1 epochs trained; ``test/acc`` once, after fitting. A resumed run continues in
  ``version_1``, ...: the versions are read in order, later values win.
- ``.hydra/config.yaml``: ``model.towers`` and ``seed``.
- ``kernels/epoch_NNN_figure3.png``: the pictures, and the wall time (below).
- ``run.json`` in a run kept by :mod:`src.analysis.run_archive` (a copy of the results alone, as
  ``docs/figure3/runs/`` holds): the wall times recorded when it was kept.

**Wall time.** The runs log no duration, so it is read from file times. ``fit_s``: from the picture at
initialisation (written when training starts, after the data cache is ready) to the last epoch's picture
(written after its validation): all training and per-epoch validation, no cache building, no test; the
tables show it. ``job_s`` (CSV only): from ``.hydra/config.yaml`` (written when the job starts) to the last
write of ``metrics.csv`` (after the test): the whole job. A resumed run has one ``csv/version_*`` per
process, each starting with its ``hparams.yaml``: the time between a stop and the resume is left out of
both (``fit_s`` counts an epoch from the later of its previous picture and the last process start before
its own picture, so the part of an epoch lost at the stop is left out too; ``job_s`` sums each process's
``hparams.yaml`` to its last ``metrics.csv`` write). Both are lost when run folders are copied without their
times (copy with ``cp -p`` or ``rsync -t``).

**References.** The random-initialisation band of an arm is the mean +- 2 sd of the split of freshly
initialised nets with its tower count (the project's ``model.init=kaiming_paper_conv1``; conv1 is all that is
scored, so the later layers are built tiny), over ``--band-seeds`` seeds. CaffeNet's split and learning
measure come from its recovered conv1 (:mod:`src.analysis.reference_kernels`) through the same
:func:`~src.analysis.colour.stats_for_model_kernels` as training logs. The learning measure is
``kernels/low_freq`` (:mod:`src.analysis.smoothness`): 0.174 for random kernels, about 0.73 for CaffeNet's; a
run passes the halfway check when its final value is at least halfway from the first to the second.

Training never imports this module.
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import math
import os
import shlex
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from omegaconf import OmegaConf
from PIL import Image, PngImagePlugin

from src.analysis.colour import stats_for_model_kernels
from src.analysis.reference_kernels import caffenet_stats
from src.analysis.smoothness import random_level
from src.models.alexnet import AlexNet

__all__ = [
    "Band",
    "Reference",
    "Run",
    "caffenet_reference",
    "default_out",
    "find_run_dirs",
    "main",
    "random_band",
    "read_run",
    "statement",
    "write_report",
]

COMMAND = "python -m src.analysis.figure3_report"
METRICS_GLOB = "csv/version_*/metrics.csv"
HYDRA_CONFIG = Path(".hydra") / "config.yaml"
PICTURES_GLOB = "kernels/epoch_*_figure3.png"
DIED_FILE = "DIED.txt"  # written by the training-health callback when a run dies
RUN_FILE = "run.json"  # an archived run's wall times (src/analysis/run_archive.py), which file times lose
REPORT_DIR = "report"  # without --out, the report goes to <the sweep folder>/report/
#: What ``experiment=figure3`` initialises from (conf/model/two_tower.yaml).
INIT = "kaiming_paper_conv1"
DEFAULT_BAND_SEEDS = 200
BAND_SDS = 2.0
#: A per-run p-value below this is called significant in the statement (two towers only).
ALPHA = 0.05

EPOCHS_TRAINED = "kernels/epochs_trained"
VAL_ACC = "val/acc"
TEST_ACC = "test/acc"
SPLIT = "kernels/split"
AUC = "kernels/auc"
SPLIT_P = "kernels/split_p"
LOW_FREQ = "kernels/low_freq"


def _tower_keys(t: int) -> tuple[str, str]:
    return f"kernels/tower{t}/colour_mean", f"kernels/tower{t}/colour_fraction"


# --- reading runs -------------------------------------------------------------------------------------------


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
        fit_s, job_s: wall times in seconds (module docstring), None where the files do not tell.
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


def _is_run(folder: Path) -> bool:
    return any(p.is_file() for p in folder.glob(METRICS_GLOB))


def find_run_dirs(sources: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The run folders named by ``sources`` (run folders, folders above runs, or globs), each once.

    Raises:
        FileNotFoundError: naming a source that matches nothing or holds no run.
    """
    found: dict[Path, None] = {}
    for source in sources:
        text = str(source)
        paths = sorted(Path(p) for p in glob.glob(text)) if glob.has_magic(text) else [Path(text)]
        runs: list[Path] = []
        for path in paths:
            if not path.is_dir():
                continue
            if _is_run(path):
                runs.append(path)
                continue
            for current, dirs, _ in os.walk(path):
                here = Path(current)
                if _is_run(here):
                    runs.append(here)
                    dirs.clear()
                else:
                    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if not runs:
            raise FileNotFoundError(f"{text}: no run folder (one holding {METRICS_GLOB}) found there")
        found.update(dict.fromkeys(p.resolve() for p in runs))
    return list(found)


def _version(path: Path) -> int:
    return int(path.parent.name.rpartition("_")[2] or 0)


def metrics_files(run_dir: Path) -> list[Path]:
    """The run's ``csv/version_*/metrics.csv``, in the order its processes wrote them (a resumed run has
    one per process; read in this order, later values win)."""
    return sorted(run_dir.glob(METRICS_GLOB), key=_version)


def _numbers(row: dict[str, str | None]) -> dict[str, float]:
    out = {}
    for key, text in row.items():
        if not key or not text:
            continue
        try:
            out[key] = float(text)
        except ValueError:
            continue
    return out


def read_metrics(run_dir: Path) -> tuple[dict[int, dict[str, float]], float | None]:
    """Per epoch trained, ``val/acc`` and the ``kernels/*`` scores; and the last ``test/acc``."""
    epochs: dict[int, dict[str, float]] = {}
    test_acc = None
    for path in metrics_files(run_dir):
        with path.open(newline="") as file:
            for row in csv.DictReader(file):
                values = _numbers(row)
                if EPOCHS_TRAINED in values:
                    kernels = {k: v for k, v in values.items() if k.startswith("kernels/")}
                    epochs.setdefault(int(values[EPOCHS_TRAINED]), {}).update(kernels)
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
    """One run folder, read as the module docstring says.

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
    epochs, test_acc = read_metrics(run_dir)
    pictures = sorted(run_dir.glob(PICTURES_GLOB))
    status = "tested" if test_acc is not None else "no test"
    if (run_dir / DIED_FILE).is_file():
        status = "died"
    starts = [t for t in (_mtime(p) for p in run_dir.glob("csv/version_*/hparams.yaml")) if t is not None]
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


# --- references ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Band:
    """The split of freshly initialised nets with ``towers`` towers: mean and sd over ``seeds`` seeds."""

    towers: int
    mean: float
    sd: float
    seeds: int

    @property
    def low(self) -> float:
        return self.mean - BAND_SDS * self.sd

    @property
    def high(self) -> float:
        return self.mean + BAND_SDS * self.sd


def random_band(towers: int, seeds: int = DEFAULT_BAND_SEEDS, init: str = INIT) -> Band:
    """:class:`Band` of fresh ``AlexNet(10, towers, init=init)`` nets; the global random state is kept.

    Only conv1 is scored, and it is initialised i.i.d. whatever the later layers are, so they are built
    ``towers`` wide (milliseconds instead of a second per net).
    """
    splits = []
    for seed in range(seeds):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            tiny = (96, towers, towers, towers, towers)
            net = AlexNet(10, towers, conv_widths=tiny, fc_width=towers, init=init)
        splits.append(stats_for_model_kernels(net.tower_kernels("conv1")).split)
    sd = statistics.stdev(splits) if len(splits) > 1 else 0.0
    return Band(towers, statistics.fmean(splits), sd, seeds)


@dataclass(frozen=True)
class Reference:
    """A trained net's split and learning measure, and the random kernels' learning measure."""

    name: str
    split: float
    low_freq: float
    random_low_freq: float

    @property
    def halfway(self) -> float:
        """The learning measure halfway from random kernels to the reference's."""
        return self.random_low_freq + (self.low_freq - self.random_low_freq) / 2


def caffenet_reference() -> Reference:
    """CaffeNet's conv1 (recovered from its picture), scored as training scores its runs."""
    logged = caffenet_stats().log_dict()
    return Reference("CaffeNet", logged[SPLIT], logged[LOW_FREQ], random_level())


# --- numbers ------------------------------------------------------------------------------------------------


def _groups(runs: Sequence[Run]) -> int:
    """Tower columns to write: the most ``kernels/tower{t}`` groups any run logged."""
    logged = {
        t for run in runs for values in run.epochs.values() for t in range(8) if _tower_keys(t)[0] in values
    }
    return max(logged, default=-1) + 1


def _epoch_columns(groups: int) -> list[str]:
    towers = [key for t in range(groups) for key in _tower_keys(t)]
    return ["run", "towers", "seed", "epoch", VAL_ACC, SPLIT, AUC, SPLIT_P, *towers, LOW_FREQ]


def _run_columns(groups: int) -> list[str]:
    towers = [key for t in range(groups) for key in _tower_keys(t)]
    return [
        *("run", "towers", "seed", "status", "epochs", "fit_s", "job_s", VAL_ACC, TEST_ACC),
        *(SPLIT, AUC, SPLIT_P, *towers, LOW_FREQ, "halfway", "path"),
    ]


def _relative(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` (``runs/t1_s0``, ``../../0``), the same on every machine; absolute
    where there is no relative path (another drive)."""
    try:
        return Path(os.path.relpath(path.resolve(), folder.resolve())).as_posix()
    except ValueError:
        return str(path)


def _run_row(run: Run, folder: Path) -> dict[str, object]:
    """The run's row of ``runs.csv``, written to ``folder``."""
    return run.final | {
        "run": run.label,
        "towers": run.towers,
        "seed": run.seed,
        "status": run.status,
        "epochs": run.last_epoch,
        "fit_s": run.fit_s,
        "job_s": run.job_s,
        "halfway": run.halfway,
        "path": _relative(run.path, folder),
    }


def _csv_text(columns: Sequence[str], rows: Iterable[dict[str, object]]) -> str:
    """A plain CSV: the header row, then the rows (no comment line: readers take the first row as header)."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return text.getvalue()


def _summary(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the values present (sd None below two values)."""
    present = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not present:
        return None, None
    return statistics.fmean(present), statistics.stdev(present) if len(present) > 1 else None


def _fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:.2g}" if 0 < abs(value) < 10**-digits else f"{value:.{digits}f}"
    return str(value)


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 60


# --- figures ------------------------------------------------------------------------------------------------

LINE_STYLES = ("-", "--", ":", "-.")


def _arm_colours(runs: Sequence[Run]) -> dict[int, str]:
    return {t: f"C{i}" for i, t in enumerate(sorted({r.towers for r in runs}))}


def _curves(ax: object, runs: Sequence[Run], key: str) -> None:
    colours = _arm_colours(runs)
    for run in runs:
        style = LINE_STYLES[[r for r in runs if r.towers == run.towers].index(run) % len(LINE_STYLES)]
        epochs = sorted(e for e, values in run.epochs.items() if key in values)
        ax.plot(
            epochs,
            [run.epochs[e][key] for e in epochs],
            color=colours[run.towers],
            linestyle=style,
            marker="o",
            markersize=3,
            label=f"towers={run.towers}, seed {run.seed} (run {run.label})",
        )


def _finish(fig: Figure, ax: object, ylabel: str, title: str) -> Figure:
    ax.set_xlabel("epochs trained (0: at initialisation)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.subplots_adjust(left=0.09, right=0.66, bottom=0.12)
    return fig


def split_plot(runs: Sequence[Run], bands: dict[int, Band], reference: Reference) -> Figure:
    """``kernels/split`` against epochs trained, per run; the bands of fresh nets; the reference's split."""
    fig = Figure(figsize=(10, 5))
    ax = fig.add_subplot()
    colours = _arm_colours(runs)
    for towers, band in sorted(bands.items()):
        label = f"fresh nets, towers={towers}: mean +- 2 sd ({band.seeds} seeds)"
        ax.axhspan(max(band.low, 0.0), band.high, color=colours[towers], alpha=0.12, label=label)
    ax.axhline(reference.split, color="k", label=f"{reference.name}: {reference.split:.3f}")
    _curves(ax, runs, SPLIT)
    ax.set_ylim(0.0, 1.05)
    return _finish(fig, ax, "split = 2 AUC - 1 (0 alike .. 1 separated)", "conv1 colour split (figure 3)")


def low_freq_plot(runs: Sequence[Run], reference: Reference) -> Figure:
    """``kernels/low_freq`` against epochs trained, per run; random, halfway and reference levels."""
    fig = Figure(figsize=(10, 5))
    ax = fig.add_subplot()
    levels = (
        (reference.random_low_freq, "0.5", "--", "random kernels"),
        (reference.halfway, "0.5", ":", "halfway"),
        (reference.low_freq, "k", "-", reference.name),
    )
    for level, colour, style, name in levels:
        ax.axhline(level, color=colour, linestyle=style, label=f"{name}: {level:.3f}")
    _curves(ax, runs, LOW_FREQ)
    ax.set_ylim(0.0, 1.0)
    return _finish(fig, ax, "low-frequency share of conv1 (kernels/low_freq)", "How far conv1 has learned")


def _png_info(header: str) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", header)
    return info


def _save_figure(fig: Figure, path: Path, header: str) -> None:
    fig.savefig(path, dpi=100, metadata={"Comment": header})


# --- the report ---------------------------------------------------------------------------------------------


def _arm_title(towers: int) -> str:
    if towers == 1:
        return "towers = 1 (the control: the two halves of one tower's kernels are compared)"
    return f"towers = {towers}"


def _arm_table(runs: Sequence[Run], groups: int) -> list[str]:
    """One row per run, then the mean and sd over them."""
    name = "half" if runs[0].towers == 1 else "tower"
    colour = [f"colour frac. {name} {t}" for t in range(groups)]
    header = ["seed", "run", "epochs", "fit (min)", "split", "AUC", "p", *colour]
    header += ["learning measure", "halfway", "val acc", "test acc"]
    fraction_keys = [_tower_keys(t)[1] for t in range(groups)]
    keys = [SPLIT, AUC, SPLIT_P, *fraction_keys, LOW_FREQ]

    def numbers(run: Run) -> list[float | None]:
        final = run.final
        return [
            float(run.last_epoch),
            _minutes(run.fit_s),
            *(final.get(k) for k in keys),
            None,
            final.get(VAL_ACC),
            final.get(TEST_ACC),
        ]

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        cells = [_fmt(v) for v in numbers(run)]
        cells[0] = str(run.last_epoch)
        cells[-3] = _fmt(run.halfway)
        lines.append(f"| {run.seed} | {run.label} | " + " | ".join(cells) + " |")
    columns = list(zip(*(numbers(run) for run in runs), strict=True))
    stats = [_summary(column) for column in columns]
    for label, index in (("mean", 0), ("sd", 1)):
        cells = [_fmt(s[index]) for s in stats]
        cells[0] = _fmt(stats[0][index], digits=1)  # epochs
        cells[-3] = f"{sum(bool(r.halfway) for r in runs)} of {len(runs)}" if index == 0 else ""
        lines.append(f"| **{label}** | | " + " | ".join(cells) + " |")
    return lines


def _range(values: Sequence[float]) -> str:
    return f"{min(values):.3f}..{max(values):.3f}"


def _compare(name: str, runs: Sequence[Run], control: Sequence[Run], band: Band) -> str:
    """One arm's final splits against the control's range and the arm's random band, in words."""
    splits = [r.final[SPLIT] for r in runs if SPLIT in r.final]
    control_splits = [r.final[SPLIT] for r in control if SPLIT in r.final]
    if not splits:
        return f"The {name} runs logged no split yet."
    mean, sd = _summary(splits)
    spread = "" if sd is None else f" +- {sd:.3f}"
    text = f"The {name} runs' final split is {mean:.3f}{spread} (range {_range(splits)}, {_runs(splits)})"
    if control_splits and control is not runs:
        low, high = min(control_splits), max(control_splits)
        if min(splits) > high:
            where = "every one lies above"
        elif max(splits) < low:
            where = "every one lies below"
        else:
            where = "they overlap"
        text += f"; {where} the one-tower control's range ({_range(control_splits)})"
    text += f"; {_relation(splits, band.high)} the band of fresh {band.towers}-tower nets "
    text += f"({band.mean:.3f} +- 2 x {band.sd:.3f}, up to {band.high:.3f})."
    p_values = [r.final[SPLIT_P] for r in runs if SPLIT_P in r.final]
    if p_values:
        significant = sum(p < ALPHA for p in p_values)
        text += f" {significant} of {len(p_values)} have p < {ALPHA:g} for their own split."
    return text


def _runs(values: Sequence[object]) -> str:
    return f"{len(values)} run" + ("" if len(values) == 1 else "s")


def _relation(splits: Sequence[float], high: float) -> str:
    if min(splits) > high:
        return "every one lies above"
    if max(splits) <= high:
        return "every one lies within or below"
    return f"{sum(s > high for s in splits)} of {len(splits)} lie above"


def statement(runs: Sequence[Run], bands: dict[int, Band], reference: Reference) -> str:
    """A paragraph that says what the numbers show, and no more."""
    by_arm = _by_arm(runs)
    parts = []
    halfway = [r for r in runs if r.halfway]
    parts.append(
        f"{len(halfway)} of {len(runs)} runs end at least halfway from random kernels to "
        f"{reference.name}'s on the learning measure ({reference.halfway:.3f})."
    )
    if len(halfway) < len(runs):
        parts.append(
            "A run short of halfway has conv1 kernels still closer to random than to a trained net's, so "
            "its split says little about figure 3."
        )
    control = by_arm.get(1, [])
    for towers, arm in sorted(by_arm.items()):
        name = "one-tower control" if towers == 1 else f"{towers}-tower"
        parts.append(_compare(name, arm, control, bands[towers]))
    if 2 not in by_arm or 1 not in by_arm:
        missing = " and ".join(f"towers={t}" for t in (1, 2) if t not in by_arm)
        parts.append(
            f"There are no {missing} runs, so the comparison the experiment is built for is not made."
        )
    parts.append(f"{reference.name}'s split is {reference.split:.3f}.")
    if any(len(arm) < 5 for arm in by_arm.values()):
        parts.append("With this few seeds per arm these are comparisons of ranges, not significance tests.")
    return " ".join(parts)


def _by_arm(runs: Sequence[Run]) -> dict[int, list[Run]]:
    arms: dict[int, list[Run]] = {}
    for run in runs:
        arms.setdefault(run.towers, []).append(run)
    return arms


def _summary_table(runs: Sequence[Run], bands: dict[int, Band]) -> list[str]:
    header = ["towers", "runs", "final split", "random band (mean +- 2 sd)", "learning measure", "test acc"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for towers, arm in sorted(_by_arm(runs).items()):
        cells = [str(towers), str(len(arm))]
        for key in (SPLIT, None, LOW_FREQ, TEST_ACC):
            if key is None:
                band = bands[towers]
                cells.append(f"{band.mean:.3f} ({max(band.low, 0.0):.3f}..{band.high:.3f})")
                continue
            mean, sd = _summary([r.final.get(key) for r in arm])
            cells.append(_fmt(mean) if sd is None else f"{_fmt(mean)} +- {_fmt(sd)}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _untagged(runs: Sequence[Run]) -> list[str]:
    """A warning naming the runs that ``experiment=figure3`` did not make (no ``figure3`` tag)."""
    others = [r.label for r in runs if "figure3" not in r.tags]
    if not others:
        return []
    return [f"**Not made by `experiment=figure3`** (no `figure3` tag): {', '.join(others)}.", ""]


def _markdown(
    runs: Sequence[Run], bands: dict[int, Band], reference: Reference, header: str, pictures: dict[int, Run]
) -> str:
    groups = _groups(runs)
    seeds = ", ".join(
        f"towers={t}: seeds {[r.seed for r in arm]}" for t, arm in sorted(_by_arm(runs).items())
    )
    lines = [
        f"<!-- {header} -->",
        "# Figure 3 on real photographs: the runs",
        "",
        f"{_runs(runs)} ({seeds}) of `experiment=figure3`; the recipe and the data are in the README, "
        '"The experiment (Figure 3 on real photographs)". The numbers are in `figure3/runs.csv` (final, per '
        "run) and `figure3/epochs.csv` (per epoch).",
        "",
        *_untagged(runs),
        "## Summary",
        "",
        statement(runs, bands, reference),
        "",
        *_summary_table(runs, bands),
        "",
        f"Split: 2 AUC - 1 between the most and the least colourful tower's conv1 scores, 0 alike .. 1 "
        f"separated (`src/analysis/colour.py`). Random band: the split of {bands[runs[0].towers].seeds} "
        f"freshly initialised nets per arm (`model.init={INIT}`). Learning measure: `kernels/low_freq` "
        f"(`src/analysis/smoothness.py`), {reference.random_low_freq:.3f} for random kernels, "
        f"{reference.low_freq:.3f} for {reference.name}. Values are mean +- sd over seeds.",
        "",
        "## Per arm",
    ]
    for towers, arm in sorted(_by_arm(runs).items()):
        groups_here = 2 if towers == 1 else towers
        lines += ["", f"### {_arm_title(towers)}", "", *_arm_table(arm, min(groups, groups_here))]
    lines += [
        "",
        "Epochs: epochs trained at the last scores. Fit: wall time from the kernels' picture at "
        "initialisation to the last epoch's (training and per-epoch validation; no cache build, no test; "
        "from file times; a resumed run's pause is left out). p: two-sided p of the run's own split "
        "(two groups only). sd: sample standard deviation over seeds.",
        "",
        "## The halfway check",
        "",
        f"A run passes when its final learning measure is at least {reference.halfway:.3f}, halfway from "
        f"random kernels ({reference.random_low_freq:.3f}) to {reference.name}'s ({reference.low_freq:.3f}).",
        "",
    ]
    failed = [r for r in runs if not r.halfway]
    if failed:
        lines += ["| run | towers | seed | learning measure |", "|---|---|---|---|"]
        lines += [f"| {r.label} | {r.towers} | {r.seed} | {_fmt(r.final.get(LOW_FREQ))} |" for r in failed]
        lines.append("")
        lines.append(f"{len(failed)} of {len(runs)} runs do not pass (above); the others do.")
    else:
        lines.append(f"Every run passes ({len(runs)} of {len(runs)}).")
    lines += [
        "",
        "## Split against epoch",
        "",
        "![split against epoch](figure3/split_vs_epoch.png)",
        "",
        "## Learning measure against epoch",
        "",
        "![learning measure against epoch](figure3/low_freq_vs_epoch.png)",
        "",
        "## The kernels after the last epoch",
    ]
    for towers, run in sorted(pictures.items()):
        lines += [
            "",
            f"### towers = {towers}: run {run.label}, seed {run.seed}, after {run.last_epoch} epochs",
            "",
            f"![conv1 kernels, towers={towers}](figure3/kernels_towers{towers}.png)",
        ]
    lines += ["", "Each tower's conv1 kernels in a row, tower 0 on top (one tower: one block)."]
    return "\n".join(lines) + "\n"


def write_report(
    run_dirs: Sequence[Path],
    out: Path,
    band_seeds: int = DEFAULT_BAND_SEEDS,
    reference: Reference | None = None,
    command: str = COMMAND,
) -> Path:
    """Write ``<out>/figure3.md`` and ``<out>/figure3/`` from the runs; return the markdown's path."""
    runs = read_runs(run_dirs)
    reference = reference or caffenet_reference()
    for run in runs:
        low_freq = run.final.get(LOW_FREQ)
        run.halfway = None if low_freq is None else low_freq >= reference.halfway
    bands = {t: random_band(t, band_seeds) for t in sorted({r.towers for r in runs})}
    header = f"generated by: {command} -- do not edit; rerun the command"
    folder = out / "figure3"
    folder.mkdir(parents=True, exist_ok=True)
    groups = _groups(runs)
    epoch_rows = (
        run.epochs[e] | {"run": run.label, "towers": run.towers, "seed": run.seed, "epoch": e}
        for run in runs
        for e in sorted(run.epochs)
    )
    (folder / "epochs.csv").write_text(_csv_text(_epoch_columns(groups), epoch_rows))
    run_rows = (_run_row(run, folder) for run in runs)
    (folder / "runs.csv").write_text(_csv_text(_run_columns(groups), run_rows))
    _save_figure(split_plot(runs, bands, reference), folder / "split_vs_epoch.png", header)
    _save_figure(low_freq_plot(runs, reference), folder / "low_freq_vs_epoch.png", header)
    pictures: dict[int, Run] = {}
    for towers, arm in _by_arm(runs).items():
        shown = next((r for r in arm if r.picture is not None), None)
        if shown is not None:
            with Image.open(shown.picture) as image:
                image.save(folder / f"kernels_towers{towers}.png", pnginfo=_png_info(header))
            pictures[towers] = shown
    markdown = out / "figure3.md"
    markdown.write_text(_markdown(runs, bands, reference, header, pictures))
    return markdown


def default_out(sources: Iterable[str | os.PathLike[str]]) -> Path:
    """Where the report goes without ``--out``: ``report/`` in the folder the sources share (the sweep
    folder given, or the one above the run folders or the glob's matches), never over the committed report."""
    sources = list(sources)
    paths = []
    for source in sources:
        text = str(source)
        matches = sorted(glob.glob(text)) if glob.has_magic(text) else [text]
        paths += [os.path.abspath(p) for p in matches if Path(p).is_dir()]
    if not paths:
        raise FileNotFoundError(f"{', '.join(map(str, sources))}: no folder there to write the report under")
    return Path(os.path.commonpath(paths)) / REPORT_DIR


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", help="run folders, folders above runs (a sweep), or globs")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"writes OUT/figure3.md and OUT/figure3/ (default: {REPORT_DIR}/ in the sweep or runs' folder; "
        "--out docs updates the committed report)",
    )
    parser.add_argument("--band-seeds", type=int, default=DEFAULT_BAND_SEEDS, help="fresh nets per arm")
    args = parser.parse_args(argv)
    run_dirs = find_run_dirs(args.sources)
    out = default_out(args.sources) if args.out is None else args.out
    markdown = write_report(run_dirs, out, args.band_seeds, command=f"{COMMAND} {shlex.join(argv)}")
    print(f"wrote {markdown} and {markdown.parent / 'figure3'}/")


if __name__ == "__main__":
    main()
