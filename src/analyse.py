"""Score any first layer: ``python src/analyse.py source=caffenet|<checkpoint or run folder>|<weights .npy>``.

Section 6.1 / figure 3 of Krizhevsky et al. (NIPS 2012): are one tower's conv1 kernels colour-agnostic and
the other's colour-specific? This command answers for one source, with the training callback's own code
(``src/callbacks/tower_kernels.py``): the scores are :func:`~src.analysis.colour.stats_for_model_kernels`,
printed as the callback logs them (``kernels/tower<t>/colour_mean``, ``.../colour_fraction``,
``kernels/split``, ``kernels/auc``, ``kernels/split_p``), and the pictures are the callback's figure 3,
tower grids and histogram, written to the Hydra run folder (``outputs/analyse/runs/<time>/``).

Sources (:func:`src.reports.summaries.first_layer`): ``caffenet``, the reference (CaffeNet's kernels
recovered from its picture, ``src/analysis/reference_kernels.py``; also shows how its numbers move with the
zero level); a checkpoint, a run folder or a folder of runs (its latest checkpoint); a caffe-tensorflow
weights file (``bvlc_alexnet.npy``, ``src/models/caffe_weights.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from src.analysis.colour import TowerColourStats, stats_for_model_kernels
from src.analysis.kernel_images import (
    FIGURE_KEY,
    histogram_image,
    kernel_grid,
    save_png,
    towers_figure,
    write_csv,
)
from src.analysis.reference_kernels import zero_level_table
from src.reports.summaries import CAFFENET, describe_stats, first_layer
from src.runs.overrides import command_line
from src.utils.console import say

PICTURE_SCALE = 4  # as TowerKernelMonitor's default


def write_pictures(kernels: list[torch.Tensor], stats: TowerColourStats, folder: Path) -> list[Path]:
    """figure3.png, tower<t>.png, histogram.png and scores.csv, as the training callback writes them."""
    written = [
        save_png(towers_figure(kernels, scale=PICTURE_SCALE), folder / f"{FIGURE_KEY.split('/')[-1]}.png")
    ]
    for t, tower in enumerate(kernels):
        written.append(save_png(kernel_grid(tower, scale=PICTURE_SCALE), folder / f"tower{t}.png"))
    written.append(save_png(histogram_image(stats), folder / "histogram.png"))
    rows = [
        [tower, index, float(score), bool(score > stats.threshold)]
        for tower, scores in enumerate(stats.scores)
        for index, score in enumerate(scores.tolist())
    ]
    write_csv(folder / "scores.csv", ["tower", "kernel", "colour_score", "colour_specific"], rows)
    return [*written, folder / "scores.csv"]


def analyse(cfg: DictConfig) -> TowerColourStats:
    """Score ``cfg.source``'s conv1 towers, print the numbers and write the pictures to the run folder."""
    source = str(cfg.source)
    label, kernels = first_layer(source)
    kernels = [k.float().cpu() for k in kernels]
    stats = stats_for_model_kernels(kernels)
    say(f"source: {label}")
    say(describe_stats(stats))
    for key, value in stats.log_dict().items():
        say(f"{key} = {value:.6g}")
    if source == CAFFENET:
        say(zero_level_table(float(cfg.zero_shift)))
    for path in write_pictures(kernels, stats, Path(cfg.paths.output_dir)):
        say(f"wrote {path}")
    return stats


@hydra.main(version_base="1.3", config_path="../conf", config_name="analyse")
def main(cfg: DictConfig) -> None:
    analyse(cfg)


if __name__ == "__main__":
    sys.argv[1:] = command_line(sys.argv[1:])  # key=~/... (src/runs/overrides.py)
    main()
