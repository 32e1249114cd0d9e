"""The Figure 3 report's plots: the split and the learning measure against epochs trained, per run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import PngImagePlugin

from src.reports.figure3_references import Band, Reference
from src.reports.figure3_runs import LOW_FREQ, SPLIT, Run

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


def png_info(header: str) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", header)
    return info


def save_figure(fig: Figure, path: Path, header: str) -> None:
    fig.savefig(path, dpi=100, metadata={"Comment": header})
