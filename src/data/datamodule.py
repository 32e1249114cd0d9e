"""The LightningDataModule: image files -> offline cache -> uint8 views -> normalised float on the device.

``prepare_data`` (one process per node) first has the data config's ``source`` fetch or make the files, if
it has one (``src/datasets/``), then decodes every image of ``<root>/train`` and ``<root>/test`` once into
the offline cache (``cache.py``: short side 256, central 256x256, section 2). ``setup`` opens the caches and
splits a validation set off ``train/`` by source image, seeded and per class, so no two views of one
photograph land on both sides (the Dogs vs Cats reproduction split its already-augmented crops, which inflates
validation accuracy: ../shared/PAPER.md). A labelled ``<root>/test`` is the test set when present.

Views (``views.py``, section 4.1): training uses ``random`` 224 patches and flips (the paper), the ``ten``
fixed views (the Dogs vs Cats reproduction: ten items per image per epoch) or the ``centre`` patch alone (no
augmentation: ``debug=overfit``); validation and test average the softmax over the ten views (``ten``) or use
the ``centre`` patch.

A split's images are in file order, class after class. Validation and test are read in a fixed random
order instead (``samplers.mixed_order``, seeded with ``split_seed``): the same batches every epoch and every
run, each of every class, so that a run limited to a few batches (``trainer.limit_val_batches``,
``debug=limit``) measures more than exactly 0 or 1. Lightning's ``trainer.overfit_batches=N`` trains and
validates on the first N batches of each split, read in order; in file order those would hold one class only
and a net could fit them by its last bias alone, without looking at the images: while the trainer overfits,
the training split is read in the same kind of fixed order (the same batches every epoch).

Under DDP, validation and test are sharded without padding (``samplers.py``), so every image counts once.

Batches travel as uint8 (a quarter of the bytes of float32) and become floats on the device the model runs
on, in ``on_after_batch_transfer``: PCA lighting for training batches (``lighting.py``), minus the mean
training pixel (section 2), optionally divided by the pixel standard deviation.

Settings that cannot work stop the run before anything is read or trained, with a message naming them:
the config's types and ranges before the run starts (``src/config/schema.py``: batch and image sizes that
are not positive whole numbers, a crop larger than the image, unknown views, a ``val_fraction`` outside
(0, 1)), and in ``setup`` before ``fit`` trains (a class none of whose files
decode, a class too small to give both the training and the validation split an image, a ``test/`` whose
classes are not ``train/``'s). Checkpoints record the class names and the data root (``state_dict``), and
loading one into a datamodule with other classes (``src/eval.py`` on another test set, a resume on other
data) is an error naming both lists.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader, Dataset

from src.data.cache import ImageCache, build_cache
from src.data.layouts import describe_ignored, expected_layout, find_labelled_images, select_classes
from src.data.lighting import PCA_STD, PCALighting
from src.data.samplers import EvalShard, mixed_order
from src.data.views import CachedViews
from src.utils.console import say
from src.utils.paths import expand_home

NORMALIZATIONS = ("mean", "mean_std")


def check_every_class_decodes(files: Any, cache: ImageCache, folder: Path) -> None:
    """ValueError naming each class of ``folder`` none of whose files decoded, with the counts."""
    listed = np.bincount(np.asarray(files.labels, dtype=np.int64), minlength=len(files.classes))
    decoded = np.bincount(np.asarray(cache.labels, dtype=np.int64), minlength=len(files.classes))
    empty = [name for i, name in enumerate(files.classes) if decoded[i] == 0]
    if empty:
        counts = ", ".join(f"{name!r} {decoded[i]} of {listed[i]}" for i, name in enumerate(files.classes))
        raise ValueError(
            f"{folder}: no file of the class{'es' if len(empty) > 1 else ''} {', '.join(map(repr, empty))} "
            f"could be decoded (images that decode, per class: {counts}); the reasons are in "
            f"{cache.folder / 'skipped.tsv'}"
        )


def data_shards(trainer: L.Trainer) -> int:
    """Into how many parts each global batch is split: the number of processes under DDP, 1 on one device
    and under ``trainer=towers``, whose devices all see the whole batch (``src/strategies/towers.py``)."""
    sampler_kwargs = getattr(trainer.strategy, "distributed_sampler_kwargs", None) or {}
    return int(sampler_kwargs.get("num_replicas", trainer.world_size))


def worker_init(worker_id: int, rank: int) -> None:
    """A loader worker ignores Ctrl-C and SIGTERM: the terminal sends SIGINT, and SLURM or ``timeout`` send
    SIGTERM, to every process of the job, and the signal is the main process's to handle
    (``src/callbacks/preemption.py``), which still needs the workers' batches to reach the end of its step
    and save. (A worker killed by SIGTERM made the main process crash at the next batch, saving nothing.)
    The workers end when the main process does. Then Lightning's own seeding of the worker, which it adds
    only to loaders without a ``worker_init_fn``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        pl_worker_init_function(worker_id, rank=rank)


def split_by_source(
    labels: list[int] | np.ndarray, val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
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


class ImageDataModule(L.LightningDataModule):
    """Train/val/test loaders over ``root`` (see the module docstring).

    Args:
        root: dataset folder holding ``train/`` (and optionally ``test/``).
        num_classes: classes the model predicts; must match the classes found on disk.
        layout: ``kaggle``, ``folders`` or ``auto`` (``layouts.py``).
        cache_dir: where the offline caches live (one folder per fingerprint of the source files); the
            config's ``${paths.data_dir}/cache``.
        val_fraction: share of each class's training images held out for validation.
        batch_size: the GLOBAL batch, images per optimiser step over all devices (section 5: 128); each
            device loads ``batch_size / (devices x accumulated batches)`` (``device_batch_size``).
        num_workers: loader processes; ``None`` picks ``min(8, cpus - 1)``.
        image_size: side of the cached square image (section 2: 256).
        crop_size: side of the patches the network sees (section 4.1: 224).
        train_views: ``random`` (section 4.1), ``ten`` (the ten fixed views, ten items per image) or
            ``centre`` (the centre patch, unflipped: no augmentation).
        val_views, test_views: ``ten`` (average over ten views, section 4.1) or ``centre``; validation on
            the ``centre`` patch by default, as ``conf/data/base.yaml``.
        pca_std: standard deviation of the PCA lighting coefficients (section 4.1: 0.1); 0 turns it off.
        normalize: ``mean`` (section 2: subtract the mean pixel, keep the 0..255 scale) or ``mean_std``
            (also divide by the pixel standard deviation, for ``model.init=kaiming``).
        split_seed: seed of the validation split.
        cache_workers: processes decoding images into the cache (``None``: one per CPU).
        source: when given, ``prepare_data`` first calls ``source(root)`` to make sure ``root`` holds the
            files: a dataset's recipe (download, verify, extract and link: ``src.datasets.recipes``) or the
            built-in generator (``src.datasets.synthetic``), a partial from the data config's ``source``.
        classes: read only some classes of ``train/`` and ``test/``: None (all), a number N (the first N
            class names in sorted order) or a list of class names (``layouts.select_classes``);
            ``num_classes`` must be the number kept.
    """

    def __init__(
        self,
        root: str | Path,
        num_classes: int,
        *,
        cache_dir: str | Path,
        layout: str = "auto",
        val_fraction: float = 0.1,
        batch_size: int = 128,
        num_workers: int | None = None,
        image_size: int = 256,
        crop_size: int = 224,
        train_views: str = "random",
        val_views: str = "centre",
        test_views: str = "ten",
        pca_std: float = PCA_STD,
        normalize: str = "mean_std",
        split_seed: int = 0,
        cache_workers: int | None = None,
        source: Callable[[Path], Any] | None = None,
        classes: int | Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.root = expand_home(root)
        self.num_classes = num_classes
        self.layout = layout
        self.cache_dir = expand_home(cache_dir)
        self.val_fraction = val_fraction
        self.batch_size = batch_size  # global; the loaders use self.per_device_batch_size
        self.per_device_batch_size = batch_size
        self._reported_batch: tuple[int, int] | None = None
        self.num_workers = min(8, (os.cpu_count() or 2) - 1) if num_workers is None else num_workers
        self.image_size = image_size
        self.crop_size = crop_size
        self.train_views = train_views
        self.eval_views = {"val": val_views, "test": test_views}
        self.pca_std = pca_std
        self.normalize = normalize
        self.split_seed = split_seed
        self.cache_workers = cache_workers
        self.source = source
        self.class_subset = classes  # data.classes; self.classes is the list read from train/
        self.classes: list[str] = []
        self.datasets: dict[str, CachedViews] = {}
        self._prepared: dict[str, ImageCache] = {}  # caches prepare_data built in this process
        self._sourced = False  # prepare_data had the source make sure of the files
        self.lighting: PCALighting | None = None
        self.register_pixel_stats(np.zeros(3, np.float32), np.ones(3, np.float32))

    def register_pixel_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.pixel_mean = torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.pixel_std = torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def device_batch_size(self, world_size: int, accumulate: int = 1) -> int:
        """Images per batch on each device: the global ``batch_size`` / (``world_size`` x ``accumulate``).

        ValueError naming the numbers when they do not divide it.
        """
        shares = world_size * accumulate
        if self.batch_size % shares:
            parts = f"{world_size} devices" + (
                f" x {accumulate} accumulated batches" if accumulate > 1 else ""
            )
            raise ValueError(
                f"data.batch_size={self.batch_size} (the global batch) does not divide by "
                f"{parts} = {shares}; make it a multiple of {shares}"
            )
        return self.batch_size // shares

    def _split_batch(self) -> None:
        """Set the per-device batch from the trainer's data shards; rank 0 says once how it split."""
        trainer = self.trainer
        shards = data_shards(trainer) if trainer is not None else 1
        accumulate = trainer.accumulate_grad_batches if trainer is not None else 1
        self.per_device_batch_size = self.device_batch_size(shards, accumulate)
        if (shards, accumulate) != self._reported_batch and (trainer is None or trainer.is_global_zero):
            steps = f" x {accumulate} accumulated" if accumulate > 1 else ""
            if trainer is not None and shards != trainer.world_size:  # trainer=towers: model parallel
                each = f"the same {self.per_device_batch_size} images on each of {trainer.world_size} towers"
                say(f"batch: {self.batch_size} global{steps}, {each}")
            else:
                devices = f"{shards} device{'s' if shards > 1 else ''}"
                say(f"batch: {self.batch_size} global = {devices}{steps} x {self.per_device_batch_size}")
        self._reported_batch = (shards, accumulate)

    @property
    def has_test_split(self) -> bool:
        return (self.root / "test").is_dir()

    def _cache(self, split: str, progress: bool = True, verify: bool = False) -> ImageCache:
        """The offline cache of ``<root>/<split>``: built on first use, then reused (``cache.py``).

        ``prepare_data`` runs in one process per node and ``setup`` in every process: ``setup`` takes the
        cache that ``prepare_data`` built in the same process instead of listing and fingerprinting again.
        """
        if split in self._prepared:
            return self._prepared.pop(split)
        folder = self.root / split
        files = select_classes(find_labelled_images(folder, self.layout), self.class_subset, folder)
        if files.ignored:
            say(f"{folder}: {len(files.ignored)} entries not read: {describe_ignored(files, folder)}")
        if len(files.classes) != self.num_classes:
            n = len(files.classes)
            subset = self.class_subset is not None
            what = f": data.classes={self.class_subset!r} keeps {n} of its" if subset else f" has {n}"
            raise ValueError(
                f"{folder}{what} classes {files.classes}, but data.num_classes={self.num_classes}: "
                f"set data.num_classes={n}"
            )
        cache = build_cache(
            files,
            self.cache_dir,
            self.image_size,
            workers=self.cache_workers,
            progress=progress,
            verify=verify,
        )
        check_every_class_decodes(files, cache, folder)
        return cache

    def fetch_files(self, splits: tuple[str, ...] = ("train",)) -> None:
        """Before anything else starts (loggers, the trainer): run the source (download, verify, extract:
        its errors name the URL or file) and check that ``splits`` are there, naming ``data.root`` and the
        layout expected. ``prepare_data`` then finds the files and does not ask the source again.
        Safe in every process: a recipe takes a lock and sees the files already prepared.
        """
        if self.source is not None and not self._sourced:
            self.source(self.root)
            self._sourced = True
        for split in splits:
            folder = self.root / split
            if not folder.is_dir():
                want = expected_layout(self.layout)
                raise FileNotFoundError(f"data.root={self.root}: it has no {split}/ folder; expected {want}")

    def prepare_data(self) -> None:
        """Make sure the files are there (``source``), then build the caches (one process per node).

        Only the splits present are cached: a fit without ``train/`` stops in ``setup``, naming the folder.
        Lightning calls this again for each entry point (``trainer.test`` after ``trainer.fit``): a split
        this process already prepared or set up is not listed, checked and reported a second time, nor is
        the source asked again.
        """
        if self.source is not None and not self._sourced:
            self.source(self.root)
            self._sourced = True
        for split in ("train", "test"):
            if split in self._prepared or split in self.datasets:
                continue
            if (self.root / split).is_dir():
                self._prepared[split] = self._cache(split, verify=True)  # checksums: once per node

    def setup(self, stage: str | None = None) -> None:
        """Open the caches the stage needs: train and val for fitting, test for testing.

        A test-only setup (``src/eval.py``) reads no ``train/``: the pixel statistics then come from the
        checkpoint (``load_state_dict``).
        """
        self._split_batch()
        if stage in (None, "fit", "validate") and "train" not in self.datasets:
            self._setup_train_and_val()
        if stage in (None, "test") and "test" not in self.datasets and self.has_test_split:
            test_cache = self._cache("test", progress=False)
            if self.classes and test_cache.classes != self.classes:
                raise ValueError(
                    f"{self.root / 'test'} has classes {test_cache.classes}, train/ has {self.classes}"
                )
            all_test = np.arange(len(test_cache))
            self.datasets["test"] = CachedViews(test_cache, all_test, self._eval_mode("test"), self.crop_size)

    def _setup_train_and_val(self) -> None:
        train_cache = self._cache("train", progress=False)
        self.classes = train_cache.classes
        if self.has_test_split:  # now, not after the whole fit
            test = self._prepared.get("test")
            test_classes = test.classes if test is not None else self._test_classes()
            if test_classes != self.classes:
                raise ValueError(
                    f"{self.root / 'test'} has classes {test_classes}, {self.root / 'train'} has "
                    f"{self.classes}: the test split must hold the training classes"
                )
        train_idx, val_idx = split_by_source(train_cache.labels, self.val_fraction, self.split_seed)
        self._check_split(train_cache, train_idx, val_idx)
        self.datasets["train"] = CachedViews(
            train_cache, np.array(train_idx), self.train_views, self.crop_size
        )
        self.datasets["val"] = CachedViews(
            train_cache, np.array(val_idx), self._eval_mode("val"), self.crop_size
        )
        statistics = train_cache.rgb_statistics(np.array(train_idx))  # section 4.1: over the training split
        self.register_pixel_stats(statistics.mean, statistics.std)
        self.lighting = PCALighting(statistics, self.pca_std)

    def _test_classes(self) -> list[str]:
        folder = self.root / "test"
        return select_classes(find_labelled_images(folder, self.layout), self.class_subset, folder).classes

    def _check_split(self, cache: ImageCache, train_idx: list[int], val_idx: list[int]) -> None:
        """ValueError naming each class that the split leaves without a training or a validation image."""
        labels = np.asarray(cache.labels)
        in_train = np.bincount(labels[train_idx], minlength=len(self.classes))
        in_val = np.bincount(labels[val_idx], minlength=len(self.classes))
        short = [
            f"{name!r}: {in_train[i] + in_val[i]} usable images, {in_val[i]} for validation and "
            f"{in_train[i]} for training"
            for i, name in enumerate(self.classes)
            if not in_train[i] or not in_val[i]
        ]
        if short:
            raise ValueError(
                f"{self.root / 'train'} has too few images in some classes for data.val_fraction="
                f"{self.val_fraction}: {'; '.join(short)}. Every class needs an image on each side: add "
                "images, or change data.val_fraction"
            )

    def _eval_mode(self, split: str) -> str:
        return "ten_crop" if self.eval_views[split] == "ten" else "centre"

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"no {split} split: {self.root / split} was not found")
        trainer = self.trainer
        dataset: Dataset = self.datasets[split]
        overfitting = trainer is not None and trainer.overfit_batches > 0
        if split != "train" or overfitting:  # a fixed class-mixed order, the same every epoch (docstring)
            dataset, shuffle = mixed_order(self.datasets[split], self.split_seed), False
        rank = trainer.global_rank if trainer is not None else 0
        shards = data_shards(trainer) if trainer is not None else 1
        # validation and test under DDP: each image once, no padding (samplers.py); Lightning keeps a
        # DistributedSampler it is given
        sampler = EvalShard(dataset, shards, rank) if split != "train" and shards > 1 else None
        return DataLoader(
            dataset,
            batch_size=self.per_device_batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            worker_init_fn=partial(worker_init, rank=rank) if self.num_workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def state_dict(self) -> dict[str, Any]:
        """What travels in checkpoints: the pixel statistics, so evaluation normalises as training did, and
        the class names and data root, so a checkpoint is never tested on other classes."""
        return {
            "pixel_mean": self.pixel_mean.flatten().tolist(),
            "pixel_std": self.pixel_std.flatten().tolist(),
            "classes": list(self.classes),
            "root": str(self.root),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take the checkpoint's pixel statistics; ValueError naming both lists if it was trained on other
        classes than this data's (checkpoints written before the classes were recorded are not checked)."""
        self.register_pixel_stats(np.asarray(state_dict["pixel_mean"]), np.asarray(state_dict["pixel_std"]))
        trained = list(state_dict.get("classes") or [])
        here = self.classes or (self.datasets["test"].cache.classes if "test" in self.datasets else [])
        if trained and here and trained != list(here):
            where = state_dict.get("root", "its data")
            raise ValueError(
                f"the checkpoint was trained on the classes {trained} (of {where}), but {self.root} has the "
                f"classes {list(here)}: test it on data with its classes (data=..., data.root=...)"
            )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 -> float on the model's device: PCA lighting (training only), mean subtraction, scaling."""
        images, labels = batch
        x = images.float()
        trainer = self.trainer
        if self.lighting is not None and trainer is not None and trainer.training:
            x = self.lighting.to(x.device)(x)
        x = x - self.pixel_mean.to(x.device)
        if self.normalize == "mean_std":
            x = x / self.pixel_std.to(x.device)
        return x, labels
