"""Figures over runs (section 6.1, figure 3 of Krizhevsky et al., NIPS 2012), for the notebook and reports.

``kernels_plot`` shows one net's conv1 kernels per tower; ``split_by_towers_plot`` the split statistic of
every run (:class:`~src.reports.summaries.RunSummary`) against its tower count, beside the chance level
(``fresh_splits``: the split of freshly initialised nets of every tower count) and, optionally, a reference:
the split of a net that really learned ImageNet (CaffeNet's, from :mod:`src.analysis.reference_kernels`).
What training logs is drawn by :mod:`src.analysis.kernel_images` instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from statistics import mean
from typing import Any

import torch
from matplotlib.figure import Figure

from src.analysis.colour import stats_for_model_kernels
from src.analysis.kernel_images import towers_figure
from src.analysis.reference_kernels import ReferenceSplit
from src.models.alexnet import AlexNet
from src.reports.summaries import RunSummary, fmt, sort_key

__all__ = ["RANDOM_INIT_SEEDS", "fresh_splits", "kernels_plot", "split_by_towers_plot"]

#: Fresh nets per tower count behind the chance level in :func:`split_by_towers_plot`.
RANDOM_INIT_SEEDS: int = 20


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
    for s in sorted(summaries, key=sort_key):
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
        ax.scatter(xs, ys, color=f"C{i % 10}", zorder=3, gid="runs", label=f"seed {fmt(seed)}")
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
