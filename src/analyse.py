"""Score any first layer: ``python src/analyse.py source=caffenet|<checkpoint or run folder>|<weights .npy>``.

Section 6.1 / figure 3 of Krizhevsky et al. (NIPS 2012): are one tower's conv1 kernels colour-agnostic and
the other's colour-specific? This command answers for one source, with the training callback's own code
(``src/callbacks/tower_kernels.py``): the scores are :func:`~src.analysis.colour.stats_for_model_kernels`,
printed as the callback logs them (``kernels/tower<t>/colour_mean``, ``.../colour_fraction``,
``kernels/split``, ``kernels/auc``, ``kernels/split_p``), and the pictures are the callback's figure 3,
tower grids and histogram, written to the Hydra run folder (``outputs/analyse/runs/<time>/``).

Sources (:func:`src.analysis.summaries.first_layer`): ``caffenet``, the reference (CaffeNet's kernels
recovered from its picture, ``src/analysis/reference_kernels.py``; also shows how its numbers move with the
zero level); a checkpoint, a run folder or a folder of runs (its latest checkpoint); a caffe-tensorflow
weights file (``bvlc_alexnet.npy``, ``src/models/caffe_weights.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:  # `python src/analyse.py` puts src/, not the root, on the path
    sys.path.insert(0, str(PROJECT_ROOT))

import hydra  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from src.analysis.colour import TowerColourStats, stats_for_model_kernels  # noqa: E402
from src.analysis.kernel_images import kernel_grid, save_png, towers_figure  # noqa: E402
from src.analysis.reference_kernels import zero_level_table  # noqa: E402
from src.analysis.summaries import CAFFENET, describe_stats, first_layer  # noqa: E402
from src.callbacks.tower_kernels import FIGURE_KEY, histogram_image, write_csv  # noqa: E402
from src.runs.overrides import command_line  # noqa: E402

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
    print(f"source: {label}")
    print(describe_stats(stats))
    for key, value in stats.log_dict().items():
        print(f"{key} = {value:.6g}")
    if source == CAFFENET:
        print(zero_level_table(float(cfg.zero_shift)))
    for path in write_pictures(kernels, stats, Path(cfg.paths.output_dir)):
        print(f"wrote {path}")
    return stats


@hydra.main(version_base="1.3", config_path="../conf", config_name="analyse")
def main(cfg: DictConfig) -> None:
    analyse(cfg)


if __name__ == "__main__":
    sys.argv[1:] = command_line(sys.argv[1:])  # key=~/... (src/runs/overrides.py)
    main()
