"""The LightningDataModule: image files on disk -> uint8 batches -> normalised float batches on the device.

``<root>/train`` holds the labelled training images (layouts in ``layouts.py``); a validation set is split off
by source image, seeded and per class, so no two views of one photograph land on both sides (the Dogs vs
Cats reproduction split its already-augmented crops, which inflates validation accuracy: ../shared/PAPER.md).
A labelled ``<root>/test`` in the same layout is the test set when present.

Batches travel as uint8 (a quarter of the bytes of float32) and are converted on the device the model runs
on, in ``on_after_batch_transfer``: float, minus the mean training pixel (section 2), optionally divided by
the pixel standard deviation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from src.data.images import CROP_SIZE, IMAGE_SIZE, ImageFileDataset, load_square_rgb
from src.data.layouts import LabelledFiles, find_labelled_images
from src.data.synthetic import generate_dataset

NORMALIZATIONS = ("mean", "mean_std")
PIXEL_STATS_SAMPLE = 500  # training images read to estimate the mean pixel (seeded sample)


def split_by_source(labels: list[int], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of (train, val): ``val_fraction`` of each class's source images, chosen with ``seed``."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    labels_array = np.asarray(labels)
    train, val = [], []
    for label in np.unique(labels_array):
        members = rng.permutation(np.flatnonzero(labels_array == label))
        n_val = round(len(members) * val_fraction)
        val += members[:n_val].tolist()
        train += members[n_val:].tolist()
    return sorted(train), sorted(val)


def pixel_statistics(
    paths: list[Path], image_size: int, sample: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of the 0..255 RGB values of a seeded sample of images."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(paths), size=min(sample, len(paths)), replace=False)
    total, total_sq, count = np.zeros(3), np.zeros(3), 0
    for i in sorted(chosen):
        pixels = load_square_rgb(paths[i], image_size).reshape(-1, 3).astype(np.float64)
        total += pixels.sum(0)
        total_sq += (pixels**2).sum(0)
        count += len(pixels)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return mean.astype(np.float32), std.astype(np.float32)


class ImageDataModule(L.LightningDataModule):
    """Train/val/test loaders over ``root`` (see the module docstring).

    Args:
        root: dataset folder holding ``train/`` (and optionally ``test/``).
        num_classes: classes the model predicts; must match the classes found on disk.
        layout: ``kaggle``, ``folders`` or ``auto`` (``layouts.py``).
        val_fraction: share of each class's training images held out for validation.
        batch_size: images per batch per device.
        num_workers: loader processes; ``None`` picks ``min(8, cpus - 1)``.
        image_size: side of the stored square image (section 2: 256).
        crop_size: side of the patches the network sees (section 4.1: 224).
        normalize: ``mean`` (section 2: subtract the mean pixel, keep the 0..255 scale) or ``mean_std``
            (also divide by the pixel standard deviation, for ``model.init=kaiming``).
        split_seed: seed of the validation split and of the pixel-statistics sample.
        generate: when given, ``prepare_data`` writes the built-in synthetic dataset to ``root`` with these
            arguments of ``src.data.synthetic.generate_dataset``.
    """

    def __init__(
        self,
        root: str | Path,
        num_classes: int,
        layout: str = "auto",
        val_fraction: float = 0.1,
        batch_size: int = 128,
        num_workers: int | None = None,
        image_size: int = IMAGE_SIZE,
        crop_size: int = CROP_SIZE,
        normalize: str = "mean_std",
        split_seed: int = 0,
        generate: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"data.normalize={normalize!r} is not known; choose one of {NORMALIZATIONS}")
        self.root = Path(root)
        self.num_classes = num_classes
        self.layout = layout
        self.val_fraction = val_fraction
        self.batch_size = batch_size
        self.num_workers = min(8, (os.cpu_count() or 2) - 1) if num_workers is None else num_workers
        self.image_size = image_size
        self.crop_size = crop_size
        self.normalize = normalize
        self.split_seed = split_seed
        self.generate = dict(generate) if generate else None
        self.classes: list[str] = []
        self.datasets: dict[str, ImageFileDataset] = {}
        self.register_pixel_stats(np.zeros(3, np.float32), np.ones(3, np.float32))

    def register_pixel_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.pixel_mean = torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.pixel_std = torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def prepare_data(self) -> None:
        if self.generate is not None:
            generate_dataset(self.root, **self.generate)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        train_files = find_labelled_images(self.root / "train", self.layout)
        self._check_classes(train_files, self.root / "train")
        self.classes = train_files.classes
        train_idx, val_idx = split_by_source(train_files.labels, self.val_fraction, self.split_seed)
        if not train_idx:
            raise ValueError(f"{self.root / 'train'} holds too few images to keep any for training")

        def subset(indices: list[int], train: bool) -> ImageFileDataset:
            return ImageFileDataset(
                [train_files.paths[i] for i in indices],
                [train_files.labels[i] for i in indices],
                train=train,
                image_size=self.image_size,
                crop_size=self.crop_size,
            )

        self.datasets["train"] = subset(train_idx, train=True)
        self.datasets["val"] = subset(val_idx, train=False)
        test_dir = self.root / "test"
        if test_dir.is_dir():
            test_files = find_labelled_images(test_dir, self.layout)
            self._check_classes(test_files, test_dir)
            self.datasets["test"] = ImageFileDataset(
                test_files.paths, test_files.labels, False, self.image_size, self.crop_size
            )
        mean, std = pixel_statistics(
            self.datasets["train"].paths, self.image_size, PIXEL_STATS_SAMPLE, self.split_seed
        )
        self.register_pixel_stats(mean, std)

    def _check_classes(self, files: LabelledFiles, folder: Path) -> None:
        if self.classes and files.classes != self.classes:
            raise ValueError(f"{folder} has classes {files.classes}, but train/ has {self.classes}")
        if len(files.classes) != self.num_classes:
            raise ValueError(
                f"{folder} has {len(files.classes)} classes {files.classes}, "
                f"but data.num_classes={self.num_classes}"
            )

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"no {split} split: {self.root / split} was not found")
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    @property
    def has_test_split(self) -> bool:
        return (self.root / "test").is_dir()

    def state_dict(self) -> dict[str, Any]:
        """The pixel statistics travel in checkpoints, so evaluation normalises as training did."""
        return {
            "pixel_mean": self.pixel_mean.flatten().tolist(),
            "pixel_std": self.pixel_std.flatten().tolist(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.register_pixel_stats(np.asarray(state_dict["pixel_mean"]), np.asarray(state_dict["pixel_std"]))

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 images -> float, mean subtracted (and scaled), on the device the model runs on."""
        images, labels = batch
        mean = self.pixel_mean.to(images.device)
        x = images.float() - mean
        if self.normalize == "mean_std":
            x = x / self.pixel_std.to(images.device)
        return x, labels
