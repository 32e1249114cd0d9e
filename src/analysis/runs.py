"""Training runs on disk, summarised by the conv1 colour split of Krizhevsky et al. (NIPS 2012).

Section 6.1 / figure 3 of the paper: of the two-tower net's 96 conv1 kernels, the 48 on GPU 1 came out
"largely color-agnostic" and the 48 on GPU 2 "largely color-specific", in every run. This module loads the
network of each run written by ``python src/train.py`` (single runs and ``-m`` sweeps, found by
:mod:`src.runs.folders`), scores its conv1 kernels with :mod:`src.analysis.colour` and lays the results out
as a table and a plot of the split statistic against the tower count. ``notebooks/kernels.ipynb`` is a thin
front end to these functions.

Reading the split (see :mod:`src.analysis.colour`): 0 when the towers' kernels are alike in colour, 1 when
every kernel of one tower is more colourful than every kernel of the other (figure 3's claim). Freshly
initialised kernels are not exactly 0: for 2 x 48 kernels the split of a fresh net averages about 0.09 (one
standard deviation of the statistic is about 0.12), and with more towers the most and least colourful towers
are compared, which raises the chance level further (about 0.25 for 4 x 24 kernels).
:func:`split_by_towers_plot` therefore draws that chance level from fresh nets of every tower count, and
can draw a reference beside the runs: the split of a net that really learned ImageNet (CaffeNet's, from
:mod:`src.analysis.reference_kernels`).

:func:`first_layer` reads conv1 from any source the analysis command (``src/analyse.py``) takes: the
reference ``caffenet``, a checkpoint, a run folder, a folder of runs, or a published weights file (``.npy``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from src.analysis.colour import TowerColourStats, stats_for_model_kernels
from src.analysis.kernel_images import towers_figure
from src.analysis.reference_kernels import CAFFENET_PICTURE, ReferenceSplit, caffenet_towers
from src.models.alexnet import AlexNet
from src.models.caffe_weights import WEIGHTS_SUFFIX, alexnet_from_caffe_weights
from src.models.classifier import load_network, network_from_checkpoint
from src.runs.folders import HYDRA_SUBDIR, checkpoint_for, natural_key, run_dir_of

__all__ = [
    "CAFFENET",
    "RANDOM_INIT_SEEDS",
    "RunSummary",
    "describe_stats",
    "first_layer",
    "fresh_splits",
    "kernels_plot",
    "score_histogram",
    "split_by_towers_plot",
    "summarise_run",
    "summary_table",
]

HYDRA_CONFIG = Path(HYDRA_SUBDIR) / "config.yaml"
#: Fresh nets per tower count behind the chance level in :func:`split_by_towers_plot`.
RANDOM_INIT_SEEDS: int = 20
#: The source name of the reference first layer (:mod:`src.analysis.reference_kernels`).
CAFFENET = "caffenet"


# --- loading and summarising -----------------------------------------------------------------------------


def _hydra_config(run_dir: Path) -> DictConfig | None:
    path = run_dir / HYDRA_CONFIG
    if not path.is_file():
        return None
    config = OmegaConf.load(path)
    return config if isinstance(config, DictConfig) else None


def _seed(config: DictConfig | None) -> int | None:
    if config is None:
        return None
    seed = OmegaConf.select(config, "seed", default=None, throw_on_resolution_failure=False)
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _read_checkpoint(checkpoint: Path) -> dict[str, Any]:
    """The checkpoint dict, memory-mapped where possible so that its tensors are not read yet."""
    try:
        return torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)
    except RuntimeError:  # a file in torch's legacy (non-zip) format cannot be memory-mapped
        return torch.load(checkpoint, map_location="cpu", weights_only=False)


@dataclass(frozen=True)
class RunSummary:
    """One run's conv1 colour measurement (section 6.1, figure 3).

    Attributes:
        run_dir: the run folder.
        checkpoint: the checkpoint measured.
        towers: the network's tower count.
        seed: ``seed`` from ``.hydra/config.yaml``; None without that file.
        epoch: the checkpoint's ``epoch`` entry (Lightning's epoch counter when it was saved); None if absent.
        conv1_kernels: conv1's kernel count, all towers together (96 in the paper).
        means: mean colour specificity per tower (the two halves when ``halves``).
        fractions: share of each tower's kernels above :data:`~src.analysis.colour.COLOUR_THRESHOLD`.
        split: ``2 * auc - 1``: 0 towers alike, 1 perfectly separated.
        auc: Mann-Whitney AUC between the most and least colourful towers (>= 0.5).
        mean_gap: highest minus lowest tower mean.
        p_value: two-sided p of the split under no difference (two groups only, else None).
        halves: True for a one-tower net, measured over the two fixed halves of its kernels (the control).
    """

    run_dir: Path
    checkpoint: Path
    towers: int
    seed: int | None
    epoch: int | None
    conv1_kernels: int
    means: tuple[float, ...]
    fractions: tuple[float, ...]
    split: float
    auc: float
    mean_gap: float
    p_value: float | None
    halves: bool


def summarise_run(run: str | os.PathLike[str]) -> RunSummary:
    """Load a run's network and measure its conv1 towers (section 6.1, figure 3).

    Args:
        run: a run folder (its :func:`run_checkpoint` is used) or a checkpoint file.
    """
    checkpoint = checkpoint_for(run)
    run_dir = run_dir_of(checkpoint)
    content = _read_checkpoint(checkpoint)
    epoch = content.get("epoch")
    net = network_from_checkpoint(content, checkpoint)
    stats = stats_for_model_kernels(net.tower_kernels("conv1"))
    return RunSummary(
        run_dir=run_dir,
        checkpoint=checkpoint,
        towers=net.towers,
        seed=_seed(_hydra_config(run_dir)),
        epoch=None if epoch is None else int(epoch),
        conv1_kernels=net.conv_widths[0],
        means=stats.means,
        fractions=stats.fractions,
        split=stats.split,
        auc=stats.auc,
        mean_gap=stats.mean_gap,
        p_value=stats.p_value,
        halves=stats.halves,
    )


def first_layer(source: str | os.PathLike[str]) -> tuple[str, list[torch.Tensor]]:
    """A description of ``source`` and its conv1 kernels per tower (RGB, on the CPU).

    Args:
        source: ``"caffenet"`` (the reference: CaffeNet's kernels recovered from its picture), a weights file
            ending in ``.npy`` (imported by :func:`~src.models.caffe_weights.alexnet_from_caffe_weights`), or
            a checkpoint, run folder or folder of runs (its latest run), as :func:`checkpoint_for` takes.
    """
    if str(source) == CAFFENET:
        return f"CaffeNet conv1, recovered from {CAFFENET_PICTURE.name}", caffenet_towers()
    path = Path(source)
    if path.suffix == WEIGHTS_SUFFIX:
        return f"{path} (published weights, imported)", alexnet_from_caffe_weights(path).tower_kernels(
            "conv1"
        )
    checkpoint = checkpoint_for(path)
    return str(checkpoint), load_network(checkpoint).tower_kernels("conv1")


# --- text ------------------------------------------------------------------------------------------------


def _sort_key(summary: RunSummary) -> tuple[Any, ...]:
    seed = summary.seed
    return (summary.towers, seed is None, seed if seed is not None else 0, natural_key(summary.run_dir))


def _run_labels(summaries: Sequence[RunSummary]) -> dict[Path, str]:
    """Each run's folder name, or its path below the runs' common folder where names repeat."""
    names = [s.run_dir.name for s in summaries]
    if len(set(names)) == len(names):
        return {s.run_dir: s.run_dir.name for s in summaries}
    common = Path(os.path.commonpath([str(s.run_dir) for s in summaries]))
    return {s.run_dir: str(s.run_dir.relative_to(common)) or s.run_dir.name for s in summaries}


def _fmt(value: float | int | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def summary_table(summaries: Iterable[RunSummary]) -> str:
    """A markdown table, one row per run, sorted by tower count, then seed (runs without a seed last).

    Columns: run, towers (``1*``: compared over the two halves of its kernels, the control), seed, epoch,
    split (0 alike .. 1 separated, figure 3), auc, mean_gap, and the tower means (tower 0 first).
    """
    rows = sorted(summaries, key=_sort_key)
    labels = _run_labels(rows)
    header = ["run", "towers", "seed", "epoch", "split", "auc", "mean_gap", "tower means"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for s in rows:
        cells = [
            labels[s.run_dir],
            f"{s.towers}*" if s.halves else str(s.towers),
            _fmt(s.seed),
            _fmt(s.epoch),
            _fmt(s.split),
            _fmt(s.auc),
            _fmt(s.mean_gap),
            " / ".join(_fmt(m) for m in s.means),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if any(s.halves for s in rows):
        lines.append("")
        lines.append("`1*`: one tower, measured over the two fixed halves of its kernels (the control).")
    return "\n".join(lines)


def describe_stats(stats: TowerColourStats) -> str:
    """The per-tower colour scores and the split of one net, with a sentence on how to read them."""
    groups = "half" if stats.halves else "tower"
    lines = []
    for t, (m, f) in enumerate(zip(stats.means, stats.fractions, strict=True)):
        lines.append(
            f"{groups} {t}: mean colour score {m:.3f}, {f:.0%} of {stats.scores[t].numel()} kernels "
            f"above {stats.threshold:g}"
        )
    p = "" if stats.p_value is None else f", p = {stats.p_value:.2g}"
    lines.append(f"split = {stats.split:.3f} (AUC {stats.auc:.3f}, mean gap {stats.mean_gap:.3f}{p})")
    lines.append(
        "Colour score: 0 for a grey kernel (R = G = B), 1 for an opponent-colour one; fresh kernels score "
        "about 2/3. Split: 0 when the towers' scores are alike, 1 when every kernel of one tower is more "
        "colourful than every kernel of the other (figure 3); a freshly initialised 2 x 48 net gives "
        "about 0.1."
    )
    if stats.halves:
        lines.append(
            "One tower: its two fixed halves are compared, so the split measures chance (the control)."
        )
    return "\n".join(lines)


# --- figures ---------------------------------------------------------------------------------------------


def kernels_plot(kernels_per_tower: Sequence[torch.Tensor], scale: int = 4) -> Figure:
    """Each tower's conv1 kernels as pictures, tower 0 on top: figure 3 of the paper (section 6.1)."""
    image = towers_figure(kernels_per_tower, scale=scale)
    height, width = image.shape[:2]
    fig = Figure(figsize=(8, 8 * height / width / 0.96 + 0.5))
    ax = fig.add_axes((0.02, 0.02, 0.96, 1 - 0.02 - 0.5 / fig.get_figheight()))
    ax.imshow(image, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"conv1 kernels, {len(kernels_per_tower)} tower(s), tower 0 on top")
    return fig


def score_histogram(stats: TowerColourStats, bins: int = 40) -> Figure:
    """Histogram of the per-kernel colour scores, one outline per tower (section 6.1).

    The dotted line is the colour threshold; the shaded strip is where fresh random kernels lie (2/3 +- 2
    standard deviations of 0.035), so a tower that moved left has moved towards grey.
    """
    fig = Figure(figsize=(7, 3.5))
    ax = fig.add_subplot()
    edges = np.linspace(0.0, 1.0, bins + 1)
    ax.axvspan(2 / 3 - 0.07, 2 / 3 + 0.07, color="0.9", label="random init (2/3 +- 0.07)")
    groups = "half" if stats.halves else "tower"
    for t, scores in enumerate(stats.scores):
        ax.hist(scores.numpy(), bins=edges, histtype="step", linewidth=1.5, label=f"{groups} {t}")
    ax.axvline(stats.threshold, color="k", linestyle=":", label=f"threshold {stats.threshold:g}")
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("colour score (0 grey .. 1 opponent colour)")
    ax.set_ylabel("kernels")
    ax.set_title(f"conv1 colour scores per {groups} (split = {stats.split:.3f})")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def fresh_splits(
    towers: int, seeds: Iterable[int] = range(RANDOM_INIT_SEEDS), conv1_kernels: int = 96
) -> list[float]:
    """The split of freshly initialised nets (chance level) for ``towers`` towers, one value per seed.

    Only conv1 matters, so the later layers are made tiny. The global random state is left as it was.
    """
    out = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = AlexNet(
                2, towers, conv_widths=(conv1_kernels, towers, towers, towers, towers), fc_width=towers
            )
        out.append(stats_for_model_kernels(net.tower_kernels("conv1")).split)
    return out


def _by_towers(summaries: Sequence[RunSummary]) -> dict[int, list[RunSummary]]:
    groups: dict[int, list[RunSummary]] = {}
    for s in sorted(summaries, key=_sort_key):
        groups.setdefault(s.towers, []).append(s)
    return groups


def _draw_chance(ax: Any, groups: dict[int, list[RunSummary]], seeds: int) -> None:
    xs = sorted(groups)
    levels = [fresh_splits(t, range(seeds), groups[t][0].conv1_kernels) for t in xs]
    ax.fill_between(
        xs,
        [min(v) for v in levels],
        [max(v) for v in levels],
        color="0.88",
        gid="random-band",
        label=f"fresh nets, {seeds} seeds (min..max)",
    )
    ax.plot(
        xs,
        [mean(v) for v in levels],
        color="0.4",
        linestyle="--",
        gid="random-level",
        label="random init: mean split of fresh nets",
    )


def split_by_towers_plot(
    summaries: Sequence[RunSummary],
    reference_seeds: int = RANDOM_INIT_SEEDS,
    reference: ReferenceSplit | None = None,
) -> Figure:
    """The split statistic of every run against its tower count (section 6.1, figure 3).

    One point per run (a colour per seed, slightly spread sideways within a tower count), a black bar at
    the mean per tower count, and the chance level: the dashed line is the mean split of ``reference_seeds``
    freshly initialised nets of each tower count (same conv1 size), the grey band their range. A fresh net
    with 2 x 48 kernels gives about 0.09 on average; more towers raise it, as the extreme pair is compared.
    ``reference_seeds=0`` leaves the chance level out. ``reference`` (e.g.
    :func:`~src.analysis.reference_kernels.caffenet_split`) adds a solid line at a trained net's split and a
    hatched strip over its range. Artists carry gids ``runs``, ``means``, ``random-level``, ``random-band``,
    ``reference`` and ``reference-range``.
    """
    if not summaries:
        raise ValueError("need at least one run summary to plot")
    groups = _by_towers(summaries)
    fig = Figure(figsize=(9, 4.8))
    ax = fig.add_subplot()
    if reference_seeds > 0:
        _draw_chance(ax, groups, reference_seeds)
    if reference is not None:
        ax.axhspan(reference.low, reference.high, color="C3", alpha=0.15, gid="reference-range")
        ax.axhline(
            reference.split,
            color="C3",
            gid="reference",
            label=f"{reference.name}: {reference.split:.2f} ({reference.low:.2f}..{reference.high:.2f})",
        )
    seeds = sorted({s.seed for s in summaries}, key=lambda v: (v is None, v or 0))
    for i, seed in enumerate(seeds):
        xs, ys = [], []
        for towers, runs in groups.items():
            for j, s in enumerate(runs):
                if s.seed == seed:
                    xs.append(towers + 0.08 * (j - (len(runs) - 1) / 2))
                    ys.append(s.split)
        ax.scatter(xs, ys, color=f"C{i % 10}", zorder=3, gid="runs", label=f"seed {_fmt(seed)}")
    ax.scatter(
        sorted(groups),
        [mean(s.split for s in groups[t]) for t in sorted(groups)],
        marker="_",
        s=600,
        color="k",
        zorder=4,
        gid="means",
        label="mean per tower count",
    )
    ax.set_xticks(sorted(groups), [f"{t}\n(halves)" if t == 1 else str(t) for t in sorted(groups)])
    ax.set_xlim(min(groups) - 0.6, max(groups) + 0.6)
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel("towers")
    ax.set_ylabel("split = 2 AUC - 1 (0 alike .. 1 separated)")
    ax.set_title("conv1 colour split between towers (figure 3)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.text(
        0.01,
        0.01,
        "Dashed: random-initialisation level (mean split of fresh nets; ~0.09 for 2 x 48 kernels), band: "
        "their range.\nOne tower: its two fixed halves are compared (the control).",
        fontsize="small",
        va="bottom",
    )
    fig.subplots_adjust(left=0.08, right=0.7, bottom=0.24)
    return fig
