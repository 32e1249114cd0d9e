"""Real epochs: training and validation through the project's own pipeline, next to the step alone.

What a training run feels: photographs from the offline cache, random crops and flips and PCA lighting
(section 4.1), the LightningModule's training step (cross-entropy, fused SGD with section 5's momentum and
weight decay, its metrics), all through ``ImageDataModule`` and ``Trainer.fit``; validation on the centre
view or the ten-crop average (section 4.1). ``--net`` picks the member of the net family and with it the
sizes of its data recipe (``bench.common.NETS``):

- ``paper``: the Figure 3 experiment's net on section 2's 256x256 squares, 224x224 crops (Imagenette, say);
- ``small64``: the 64-pixel net (``model=two_tower_64``) on Tiny ImageNet-200's 64x64 photographs, 56x56
  crops (``data=tiny_imagenet``), 200 classes; more batches are timed, since its step is much quicker.

Without ``--net`` the folder's ``prepared.json`` decides (a Tiny ImageNet folder gets ``small64``).

A whole epoch is minutes on a CPU, so a fixed number of batches is timed after a few warm-up batches, and
the epoch is projected from the measured rates and the real split sizes:

    training seconds   = epoch start (first batch's wait) + training images / end-to-end img/s
    validation seconds = validation start + validation images / validation img/s
    validation share   = validation seconds / (training seconds + validation seconds)

The step alone (the same net, batch, precision and layout on random tensors already in memory) is timed
before, between and after the end-to-end runs; each end-to-end rate is divided by the mean of the two step
figures around it, so that a change of load on a shared machine moves both alike.

Targets (issues #18 and #24): end to end at least 0.9 x the step alone; validation at most 15 % of the epoch.

    python -m bench.epoch --data DIR [--net paper|small64] [--cache-dir DIR] [--batch 128]
                          [--precision 32-true] [--quick]       # one JSON line on stdout
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from bench.common import NETS, Row, autocast, net_for_data, sync
from src.config.compose import constant_rate_module
from src.data.datamodule import ImageDataModule
from src.models.alexnet import AlexNet
from src.models.classifier import TowerClassifier
from src.runs.paths import REPO_ROOT
from src.utils.console import quiet_lightning
from src.utils.memory import keep_freed_memory

#: conf/paths/default.yaml's data_dir, /cache: the training default
DEFAULT_CACHE = REPO_ROOT / "data" / "cache"
END_TO_END_TARGET = 0.9  # issues #18 and #24: an epoch end to end at least 0.9 x the step alone
VALIDATION_TARGET = 0.15  # issue #18: validation at most 15 % of the epoch
EVAL_VIEWS = ("centre", "ten")


@dataclass
class EpochSettings:
    """How the real-epoch rows run: the net's batch, precision and layout, and how many batches are timed.

    The defaults are the paper's net's (``net_settings`` makes any member's).
    """

    batch: int = 128  # section 5
    precision: str = "32-true"
    channels_last: bool = True
    accelerator: str = "cpu"  # or "gpu" (bench/gpu_check.py)
    warm_batches: int = 2
    timed_batches: int = 4
    step_repeats: int = 2  # steps of the step alone per measurement
    val_timed_batches: dict[str, int] = field(default_factory=lambda: {"centre": 2, "ten": 1})
    workers: tuple[int, ...] = (0, 1, 2)
    val_workers: int = 1  # the datamodule's default on 2 cores: min(8, cpus - 1)
    image_size: int = 256  # section 2
    crop_size: int = 224  # section 4.1
    net: dict[str, Any] = field(default_factory=dict)  # AlexNet arguments: layers (tests: small widths)


@dataclass
class Timing:
    """A timed stretch of batches: images/s after the warm-up, and the wait for the first batch."""

    rate: float
    start_seconds: float
    batches: int


class Clock(L.Callback):
    """When each training and validation batch started and ended, and its size; when each epoch began."""

    def __init__(self) -> None:
        self.epoch_start: dict[str, float] = {}
        self.starts: dict[str, list[float]] = {"train": [], "val": []}
        self.ends: dict[str, list[float]] = {"train": [], "val": []}
        self.sizes: dict[str, list[int]] = {"train": [], "val": []}

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.epoch_start.setdefault("train", time.perf_counter())

    def on_validation_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.epoch_start.setdefault("val", time.perf_counter())

    def on_train_batch_start(
        self, trainer: L.Trainer, module: L.LightningModule, batch: Any, *_: Any
    ) -> None:
        self.starts["train"].append(time.perf_counter())

    def on_validation_batch_start(
        self, trainer: L.Trainer, module: L.LightningModule, batch: Any, *_: Any
    ) -> None:
        self.starts["val"].append(time.perf_counter())

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, *_: Any
    ) -> None:
        self._end("train", batch)

    def on_validation_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, *_: Any
    ) -> None:
        self._end("val", batch)

    def _end(self, split: str, batch: Any) -> None:
        sync()
        self.ends[split].append(time.perf_counter())
        self.sizes[split].append(len(batch[1]))

    def timing(self, split: str, warm: int) -> Timing:
        """Images/s from the end of batch ``warm - 1`` to the end of the last; the first batch's wait."""
        ends, sizes = self.ends[split], self.sizes[split]
        if len(ends) <= warm:
            raise ValueError(
                f"{len(ends)} {split} batches ran; {warm} warm-up batches need at least one more"
            )
        images = sum(sizes[warm:])
        start = self.starts[split][0] - self.epoch_start[split]
        return Timing(images / (ends[-1] - ends[warm - 1]), start, len(ends) - warm)


class PreparedOnce(ImageDataModule):
    """The project's datamodule, whose cache is found (and its checksums verified) once, not at every fit."""

    _done = False

    def prepare_data(self) -> None:
        if not self._done:
            super().prepare_data()
            self._done = True


def class_count(root: Path) -> int:
    """Classes of a folder-per-class ``root/train`` (or, for other layouts, what the datamodule finds)."""
    folders = [p for p in (root / "train").iterdir() if p.is_dir()]
    if folders:
        return len(folders)
    from src.data.layouts import find_labelled_images

    return len(find_labelled_images(root / "train", "auto").classes)


def make_datamodule(root: Path, cache_dir: Path, settings: EpochSettings) -> PreparedOnce:
    """The datamodule the training defaults build (conf/data/base.yaml), at the bench's batch."""
    datamodule = PreparedOnce(
        root=root,
        num_classes=class_count(root),
        cache_dir=cache_dir,
        batch_size=settings.batch,
        num_workers=settings.val_workers,
        image_size=settings.image_size,
        crop_size=settings.crop_size,
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def device_of(settings: EpochSettings) -> torch.device:
    return torch.device("cuda" if settings.accelerator == "gpu" else "cpu")


def make_net(num_classes: int, settings: EpochSettings) -> AlexNet:
    torch.manual_seed(0)
    return AlexNet(num_classes, channels_last=settings.channels_last, **settings.net).to(device_of(settings))


def sgd(params: Any) -> torch.optim.Optimizer:
    """conf/optimizer/sgd.yaml: section 5's momentum and weight decay, fused."""
    return torch.optim.SGD(params, lr=0.001, momentum=0.9, weight_decay=5e-4, fused=True)


def quiet_trainer(settings: EpochSettings, clock: Clock, **options: Any) -> L.Trainer:
    return L.Trainer(
        accelerator=settings.accelerator,
        devices=1,
        precision=settings.precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[clock],
        **options,
    )


def train_timing(datamodule: ImageDataModule, settings: EpochSettings, workers: int) -> Timing:
    """End to end: ``Trainer.fit`` for ``warm + timed`` batches of the datamodule with ``workers`` workers."""
    datamodule.num_workers = workers
    module = constant_rate_module(make_net(datamodule.num_classes, settings), sgd)
    clock = Clock()
    batches = settings.warm_batches + settings.timed_batches
    trainer = quiet_trainer(settings, clock, max_epochs=1, limit_train_batches=batches, limit_val_batches=0)
    trainer.fit(module, datamodule=datamodule)
    return clock.timing("train", settings.warm_batches)


def val_timing(datamodule: ImageDataModule, settings: EpochSettings, views: str) -> Timing:
    """``Trainer.validate`` on ``views`` (``centre`` or ``ten``): one warm-up batch, then the timed ones."""
    datamodule.num_workers = settings.val_workers
    datamodule.eval_views["val"] = views
    datamodule.datasets["val"].views = "ten_crop" if views == "ten" else "centre"  # CachedViews' modes
    module = TowerClassifier.for_evaluation(make_net(datamodule.num_classes, settings))
    clock = Clock()
    trainer = quiet_trainer(settings, clock, limit_val_batches=1 + settings.val_timed_batches[views])
    trainer.validate(module, datamodule=datamodule, verbose=False)
    return clock.timing("val", 1)


def step_alone(num_classes: int, settings: EpochSettings) -> Any:
    """A function timing ``step_repeats`` training steps on random tensors: returns images/s."""
    net = make_net(num_classes, settings)
    optimizer = sgd(net.parameters())
    device = device_of(settings)
    images = torch.randn(settings.batch, 3, settings.crop_size, settings.crop_size, device=device)
    labels = torch.randint(0, num_classes, (settings.batch,), device=device)
    precision = "bf16-mixed" if "bf16" in settings.precision else "32-true"

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            loss = F.cross_entropy(net(images), labels)
        loss.backward()
        optimizer.step()

    step()  # warm-up

    def rate() -> float:
        sync()
        start = time.perf_counter()
        for _ in range(settings.step_repeats):
            step()
        sync()
        return settings.step_repeats * settings.batch / (time.perf_counter() - start)

    return rate


def measure_epoch(root: Path, cache_dir: Path, settings: EpochSettings) -> dict[str, Any]:
    """Step alone, end to end for each worker count (in turns with the step), validation per view."""
    quiet_lightning()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # "GPU available: False", per Trainer
    datamodule = make_datamodule(root, cache_dir, settings)
    step_rate = step_alone(datamodule.num_classes, settings)
    steps = [step_rate()]
    end_to_end: dict[int, dict[str, float]] = {}
    for workers in settings.workers:
        timing = train_timing(datamodule, settings, workers)
        steps.append(step_rate())
        end_to_end[workers] = asdict(timing) | {"step": (steps[-2] + steps[-1]) / 2}
    validation = {views: asdict(val_timing(datamodule, settings, views)) for views in EVAL_VIEWS}
    return {
        "settings": asdict(settings),
        "train_images": len(datamodule.datasets["train"]),
        "val_images": len(datamodule.datasets["val"]),
        "step": statistics.median(steps),
        "end_to_end": {str(w): t for w, t in end_to_end.items()},
        "validation": validation,
    }


def net_label(settings: dict[str, Any]) -> str:
    """``small64 net, 56-pixel crops, `` for a member other than the paper's (whose rows keep their names)."""
    layers = settings["net"].get("layers", "paper")
    return "" if layers == "paper" else f"{layers} net, {settings['crop_size']}-pixel crops, "


def net_settings(net: str, **overrides: Any) -> EpochSettings:
    """The settings for member ``net`` of ``NETS``: its recipe's image and crop sizes, its timed batches."""
    spec = NETS[net]
    settings = EpochSettings(
        image_size=spec.image_size, crop_size=spec.crop_size, net={"layers": spec.layers}
    )
    for key, value in (spec.epoch | overrides).items():
        setattr(settings, key, value)
    return settings


def epoch_seconds(images: int, timing: dict[str, float]) -> float:
    """Projected seconds of a pass over ``images`` images at a measured ``Timing``."""
    return timing["start_seconds"] + images / timing["rate"]


def seconds(value: float) -> str:
    """``0.42 s``, ``37 s``, ``1,364 s``."""
    return f"{value:.2f} s" if value < 10 else f"{value:,.0f} s"


def epoch_rows(figures: dict[str, Any]) -> list[Row]:
    """The rows of one ``measure_epoch`` result."""
    s = figures["settings"]
    layout = ", channels_last" if s["channels_last"] else ""
    tag = f"{net_label(s)}{s['precision']}{layout}, batch {s['batch']}"
    n_train, n_val = figures["train_images"], figures["val_images"]
    timed = f"{s['timed_batches']} batches timed after {s['warm_batches']}"
    rows = [Row(f"real epoch: the step alone (random tensors in memory), {tag}", figures["step"], "img/s")]
    best_workers, best = None, 0.0
    for workers, t in figures["end_to_end"].items():
        ratio = t["rate"] / t["step"]
        verdict = "pass" if ratio >= END_TO_END_TARGET else "FAIL"
        rows.append(
            Row(
                f"real epoch: training end to end (cache, views, lighting, step), {workers} workers, {tag}",
                t["rate"],
                "img/s",
                f"{ratio:.2f}x the step alone (target >= {END_TO_END_TARGET}: {verdict}); {timed}; "
                f"first batch after {t['start_seconds']:.1f} s",
                f"real epoch, {tag}, {workers} workers: end to end {ratio:.2f}x the step alone "
                f"(target >= {END_TO_END_TARGET}: {verdict})",
            )
        )
        if t["rate"] > best:
            best_workers, best = workers, t["rate"]
    train = epoch_seconds(n_train, figures["end_to_end"][best_workers])
    centre = epoch_seconds(n_val, figures["validation"]["centre"])
    rows.append(
        Row(
            f"real epoch: one epoch projected, training at {best_workers} workers + centre-view validation, "
            f"{tag}",
            train + centre,
            "s",
            f"training {seconds(train)} ({n_train:,} images), validation {seconds(centre)} ({n_val:,})",
        )
    )
    for views, t in figures["validation"].items():
        val = epoch_seconds(n_val, t)
        share = val / (train + val)
        verdict = "pass" if share <= VALIDATION_TARGET else "FAIL"
        name = "ten-crop" if views == "ten" else "centre view"
        rows += [
            Row(
                f"real epoch: validation, {name}, {s['val_workers']} workers, {tag}",
                t["rate"],
                "img/s",
                f"{t['batches']} batches timed after 1",
            ),
            Row(
                f"real epoch: validation's share of the epoch, {name}, {tag}",
                100 * share,
                "%",
                f"{seconds(val)} of {seconds(train + val)} projected ({n_train:,} training images at "
                f"{best_workers} workers, {n_val:,} validation); "
                f"target <= {VALIDATION_TARGET:.0%}: {verdict}",
                f"real epoch, {tag}: validation on the {name} {share:.0%} of the epoch "
                f"(target <= {VALIDATION_TARGET:.0%}: {verdict})",
            ),
        ]
    return rows


def skipped_rows(reason: str) -> list[Row]:
    """The real-epoch rows' place in the table when they cannot be measured."""
    return [Row("real epoch rows", math.nan, "", f"skipped: {reason}")]


def quick_settings(settings: EpochSettings) -> EpochSettings:
    """``--quick``: batch 32, one warm-up and two timed batches, one validation batch per view."""
    settings.batch, settings.warm_batches, settings.timed_batches, settings.step_repeats = 32, 1, 2, 1
    settings.val_timed_batches = {"centre": 1, "ten": 1}
    return settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a folder with train/ (class folders)")
    parser.add_argument("--net", choices=tuple(NETS), help="the member of the family (default: from --data)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--batch", type=int, default=EpochSettings.batch)
    parser.add_argument("--precision", default=EpochSettings.precision)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    keep_freed_memory()  # as src/train.py does: process-wide, so the bench runs this in a child process
    data = args.data.expanduser()
    settings = net_settings(args.net or net_for_data(data), batch=args.batch, precision=args.precision)
    if args.quick:
        settings = quick_settings(settings)
    print(json.dumps(measure_epoch(data, args.cache_dir.expanduser(), settings)))


if __name__ == "__main__":
    main()
