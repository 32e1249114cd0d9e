"""Training runs on disk, summarised by the conv1 colour split of Krizhevsky et al. (NIPS 2012), one a row.

Section 6.1 / figure 3 of the paper: of the two-tower net's 96 conv1 kernels, the 48 on GPU 1 came out
"largely color-agnostic" and the 48 on GPU 2 "largely color-specific", in every run. This module loads the
network of a run written by ``python src/train.py`` (single runs and ``-m`` sweeps, found by
:mod:`src.runs.folders`), scores its conv1 kernels with :mod:`src.analysis.colour` (``summarise_run``) and
lays the results out as a table (``summary_table``); :mod:`src.reports.figures` draws them.
``notebooks/kernels.ipynb`` is a thin front end to these functions, and ``src/analyse.py`` to
``first_layer`` and ``describe_stats``.

Reading the split (see :mod:`src.analysis.colour`): 0 when the towers' kernels are alike in colour, 1 when
every kernel of one tower is more colourful than every kernel of the other (figure 3's claim). Freshly
initialised kernels are not exactly 0: for 2 x 48 kernels the split of a fresh net averages about 0.09 (one
standard deviation of the statistic is about 0.12), and with more towers the most and least colourful towers
are compared, which raises the chance level further (about 0.25 for 4 x 24 kernels).

:func:`first_layer` reads conv1 from any source the analysis command (``src/analyse.py``) takes: the
reference ``caffenet``, a checkpoint, a run folder, a folder of runs, or a published weights file (``.npy``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from src.analysis.colour import TowerColourStats, stats_for_model_kernels
from src.analysis.reference_kernels import CAFFENET_PICTURE, caffenet_towers
from src.models.caffe_weights import WEIGHTS_SUFFIX, alexnet_from_caffe_weights
from src.models.classifier import load_network, network_from_checkpoint
from src.runs.folders import HYDRA_CONFIG, checkpoint_for, natural_key, run_dir_of

__all__ = [
    "CAFFENET",
    "RunSummary",
    "describe_stats",
    "first_layer",
    "fmt",
    "sort_key",
    "summarise_run",
    "summary_table",
]

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


def sort_key(summary: RunSummary) -> tuple[Any, ...]:
    seed = summary.seed
    return (summary.towers, seed is None, seed if seed is not None else 0, natural_key(summary.run_dir))


def _run_labels(summaries: Sequence[RunSummary]) -> dict[Path, str]:
    """Each run's folder name, or its path below the runs' common folder where names repeat."""
    names = [s.run_dir.name for s in summaries]
    if len(set(names)) == len(names):
        return {s.run_dir: s.run_dir.name for s in summaries}
    common = Path(os.path.commonpath([str(s.run_dir) for s in summaries]))
    return {s.run_dir: str(s.run_dir.relative_to(common)) or s.run_dir.name for s in summaries}


def fmt(value: float | int | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def summary_table(summaries: Iterable[RunSummary]) -> str:
    """A markdown table, one row per run, sorted by tower count, then seed (runs without a seed last).

    Columns: run, towers (``1*``: compared over the two halves of its kernels, the control), seed, epoch,
    split (0 alike .. 1 separated, figure 3), auc, mean_gap, and the tower means (tower 0 first).
    """
    rows = sorted(summaries, key=sort_key)
    labels = _run_labels(rows)
    header = ["run", "towers", "seed", "epoch", "split", "auc", "mean_gap", "tower means"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for s in rows:
        cells = [
            labels[s.run_dir],
            f"{s.towers}*" if s.halves else str(s.towers),
            fmt(s.seed),
            fmt(s.epoch),
            fmt(s.split),
            fmt(s.auc),
            fmt(s.mean_gap),
            " / ".join(fmt(m) for m in s.means),
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
