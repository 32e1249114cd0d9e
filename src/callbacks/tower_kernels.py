"""Figure 3, measured during training: each tower's conv1 kernels as pictures and as colour scores.

Section 6.1 / figure 3 of the paper: "the kernels on GPU 1 are largely color-agnostic, while the kernels on
GPU 2 are largely color-specific". At step 0 (before training) and after every validation epoch, on rank 0
only, this callback logs

    kernels/tower{t}                  image: tower t's kernels in a grid, each scaled to 0..255 (uint8)
    kernels/figure3                   image: the towers in rows, separated, as the paper's figure 3
    kernels/tower{t}/colour_mean      mean colour specificity of tower t's kernels (src/analysis/colour.py)
    kernels/tower{t}/colour_fraction  share of tower t's kernels above the colour threshold
    kernels/split                     2 * AUC - 1 of telling the most- from the least-colour tower by score:
                                      0 when the towers are alike, 1 when they separate perfectly
    kernels/auc, kernels/mean_gap     the AUC itself and the gap between the extreme tower means
    kernels/epochs_trained            epochs trained when scored (0: at initialisation): the x-axis of the
                                      scores in W&B (src/loggers/wandb_run.py)
    kernels/change/...                the same scores for the learned change (the kernels minus their
                                      values at initialisation), so that leftover random initialisation
                                      can neither hide nor fake a split

(with one tower, ``tower0``/``tower1`` are the two fixed halves of its kernels: the control). At the end
of training it adds an animation of ``kernels/figure3`` across epochs, the final per-kernel scores as a
table and a histogram of the scores per tower.

Every picture is also written as a PNG under ``<run dir>/kernels/``: ``epoch_<k>_tower<t>.png`` and
``epoch_<k>_figure3.png`` show the kernels after ``k`` epochs (``000``: at initialisation), with
``epoch_<k>_weights.npz`` (conv1's and conv2's weights, all towers, float32: a few hundred kB, enough to
score them again with any measure later, e.g. Distill's singular vector of |conv2|), then
``animation.gif``, ``final_scores.csv`` and ``histogram.png``; so ``logger=csv`` runs have them too. The
scalars go to every logger, at the step of the validation metrics. ``logger=tensorboard`` gets the same
pictures (IMAGES tab), the histogram picture and the scores as TensorBoard histograms; the animation and
the table are W&B's only (their files are in ``kernels/``).
"""

from __future__ import annotations

import io
from pathlib import Path

import lightning as L
import numpy as np
import torch
import wandb
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from PIL import Image

from src.analysis.colour import COLOUR_THRESHOLD, TowerColourStats, stats_for_model_kernels
from src.analysis.kernel_images import (
    FIGURE_KEY,
    histogram_image,
    kernel_grid,
    save_png,
    towers_figure,
    write_csv,
)
from src.loggers.wandb_run import EPOCH_AXIS, define_epoch_axis
from src.utils.atomic import write_atomic

CHANGE_PREFIX = "kernels/change"
WEIGHTS_SAVED = ("conv1", "conv2")
ANIMATION_FRAME_MS = 500


class TowerKernelMonitor(L.Callback):
    """Logs the kernels of ``layer`` per tower (see the module docstring).

    Args:
        layer: the conv layer to show; conv1 is the one figure 3 shows (RGB kernels).
        threshold: score above which a kernel counts as colour-specific.
        scale: nearest-neighbour magnification of the pictures (11x11 kernels are small).
    """

    def __init__(self, layer: str = "conv1", threshold: float = COLOUR_THRESHOLD, scale: int = 4) -> None:
        super().__init__()
        self.layer = layer
        self.threshold = threshold
        self.scale = scale
        self.last_stats: TowerColourStats | None = None
        self.initial: list[torch.Tensor] | None = None  # the watched layer's kernels at step 0, per tower

    @staticmethod
    def output_dir(trainer: L.Trainer) -> Path:
        return Path(trainer.default_root_dir) / "kernels"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        kernels = self.kernels(pl_module)
        saved = {name: self.kernels(pl_module, name) for name in WEIGHTS_SAVED}  # a collective under towers
        if not trainer.is_global_zero:
            return
        resumed = trainer.global_step > 0  # the snapshot before training exists
        if resumed:
            stats = stats_for_model_kernels(kernels, self.threshold)
            self.initial = initial_kernels(self.output_dir(trainer), self.layer, len(kernels))
        else:
            self.initial = [k.clone() for k in kernels]
            stats = self.snapshot(trainer, kernels, saved, epochs_done=0)
        scalars = scalars_of(stats, epochs_trained=0)
        for logger in wandb_loggers(trainer):  # a resumed run's new process declares it again
            define_epoch_axis(logger.experiment, scalars)
        if not resumed:
            for logger in trainer.loggers:
                logger.log_metrics(scalars | {"epoch": 0}, step=0)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        kernels = self.kernels(pl_module)
        saved = {name: self.kernels(pl_module, name) for name in WEIGHTS_SAVED}  # a collective under towers
        if not trainer.is_global_zero:
            return
        epochs_trained = trainer.current_epoch + 1
        stats = self.snapshot(trainer, kernels, saved, epochs_done=epochs_trained)
        # Through Lightning, so the scores share a step (and a CSV row) with val/acc. The kernels are the same
        # on every rank, so rank 0's scores are the global ones: rank_zero_only with sync_dist=True is how
        # Lightning is told so (its "sync" is then a no-op on rank 0, no collective; without it Lightning
        # warns once per scalar under DDP that an epoch-level value was not reduced).
        scalars = scalars_of(stats, epochs_trained)
        if self.initial is not None:
            change = [k - k0 for k, k0 in zip(kernels, self.initial, strict=True)]
            scalars |= stats_for_model_kernels(change, self.threshold).log_dict(prefix=CHANGE_PREFIX)
        pl_module.log_dict(scalars, rank_zero_only=True, sync_dist=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and self.last_stats is not None:
            self.log_summary(trainer, self.last_stats)

    def kernels(self, pl_module: L.LightningModule, layer: str | None = None) -> list[torch.Tensor]:
        """Each tower's kernels of ``layer`` (default: the watched one), on the CPU. Call it on every rank:
        under ``trainer=towers`` each device holds one tower and the kernels are gathered."""
        return [k.float().cpu() for k in pl_module.net.tower_kernels(layer or self.layer)]

    def snapshot(
        self,
        trainer: L.Trainer,
        kernels: list[torch.Tensor],
        saved: dict[str, list[torch.Tensor]],
        epochs_done: int,
    ) -> TowerColourStats:
        """Scores of the kernels as they are now; their pictures to files and to W&B; weights to a file."""
        stats = stats_for_model_kernels(kernels, self.threshold)
        write_weights(self.output_dir(trainer) / f"epoch_{epochs_done:03d}_weights.npz", saved)
        self.last_stats = stats
        images = {f"kernels/tower{t}": kernel_grid(k, scale=self.scale) for t, k in enumerate(kernels)}
        images[FIGURE_KEY] = towers_figure(kernels, scale=self.scale)
        out = self.output_dir(trainer)
        for key, image in images.items():
            save_png(image, out / f"epoch_{epochs_done:03d}_{key.split('/')[-1]}.png")
        log_images(trainer, images)
        return stats

    def log_summary(self, trainer: L.Trainer, stats: TowerColourStats) -> None:
        """The animation across epochs, the final scores as a table, a histogram per tower."""
        out = self.output_dir(trainer)
        animation = write_animation(sorted(out.glob("epoch_*_figure3.png")), out / "animation.gif")
        rows = [
            [tower, index, float(score), bool(score > stats.threshold)]
            for tower, scores in enumerate(stats.scores)
            for index, score in enumerate(scores.tolist())
        ]
        columns = ["tower", "kernel", "colour_score", "colour_specific"]
        write_csv(out / "final_scores.csv", columns, rows)
        histogram = histogram_image(stats)
        save_png(histogram, out / "histogram.png")
        step = trainer.global_step
        for logger in tensorboard_loggers(trainer):  # W&B gets the table and its own histograms below
            for t, scores in enumerate(stats.scores):
                logger.experiment.add_histogram(f"kernels/tower{t}/scores", scores, step)
            logger.experiment.add_image("kernels/histogram", histogram, step, dataformats="HWC")
        for logger in wandb_loggers(trainer):
            logger.log_table(key="kernels/final_scores", columns=columns, data=rows)
            logged: dict[str, object] = {
                f"kernels/tower{t}/scores": wandb.Histogram(scores.numpy())
                for t, scores in enumerate(stats.scores)
            }
            if animation is not None:
                logged["kernels/animation"] = wandb.Video(str(animation), format="gif")
            logger.experiment.log(logged | {"trainer/global_step": trainer.global_step})


def write_weights(path: Path, layers: dict[str, list[torch.Tensor]]) -> None:
    """Each layer's weights, all towers concatenated on the output channels, as float32 arrays in ``path``."""
    arrays = {name: torch.cat(parts).numpy().astype(np.float32) for name, parts in layers.items()}
    buffer = io.BytesIO()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


def initial_kernels(out: Path, layer: str, towers: int) -> list[torch.Tensor] | None:
    """The ``layer`` kernels a resumed run started from (``epoch_000_weights.npz``), per tower; ``None``
    for a run started before the weights were saved (its change scores are then not logged)."""
    path = out / "epoch_000_weights.npz"
    if not path.is_file():
        return None
    with np.load(path) as arrays:
        return list(torch.from_numpy(arrays[layer]).chunk(towers))


def scalars_of(stats: TowerColourStats, epochs_trained: int) -> dict[str, float]:
    """The scores to log, with their x-axis in W&B: the epochs trained (``src/loggers/wandb_run.py``)."""
    return stats.log_dict() | {EPOCH_AXIS: float(epochs_trained)}


def wandb_loggers(trainer: L.Trainer) -> list[WandbLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]


def tensorboard_loggers(trainer: L.Trainer) -> list[TensorBoardLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


def log_images(trainer: L.Trainer, images: dict[str, np.ndarray]) -> None:
    """uint8 (H, W, 3) pictures to the W&B and TensorBoard loggers, at the trainer's global step."""
    step = trainer.global_step
    for logger in wandb_loggers(trainer):
        for key, image in images.items():
            logger.log_image(key=key, images=[image], step=step)
    for logger in tensorboard_loggers(trainer):
        for key, image in images.items():
            logger.experiment.add_image(key, image, step, dataformats="HWC")


def write_animation(frames: list[Path], path: Path) -> Path | None:
    """An animated GIF of the PNG ``frames`` (all the same size), written atomically; None if no frames."""
    if not frames:
        return None
    images = [Image.open(frame).convert("RGB") for frame in frames]
    gif = io.BytesIO()
    images[0].save(
        gif, format="GIF", save_all=True, append_images=images[1:], duration=ANIMATION_FRAME_MS, loop=0
    )
    return write_atomic(path, gif.getvalue())
