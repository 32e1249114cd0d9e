"""Validation and test read in a fixed, class-mixed order (issue #26; ``src/data/samplers.py``).

A split's images are listed class after class; read in that order, a run limited to a few batches
(``debug=limit``: 2 validation batches) saw one class only and printed ``val/acc 0.000`` for every epoch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from src.data.datamodule import ImageDataModule
from src.data.samplers import EvalShard, mixed_order
from tests.test_data import write_image

CLASSES = ("ant", "bee", "cow", "dog")


def four_class_folders(root: Path, train_per_class: int = 10, test_per_class: int = 5) -> None:
    """train/<class>/ and test/<class>/ of plain images, every one a different colour."""
    rng = np.random.default_rng(0)
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for cls in CLASSES:
            for i in range(n):
                colour = tuple(int(v) for v in rng.integers(0, 256, 3))
                write_image(root / split / cls / f"{i}.png", colour=colour)


def four_class_module(root: Path) -> ImageDataModule:
    dm = ImageDataModule(
        root=root,
        num_classes=len(CLASSES),
        layout="folders",
        cache_dir=root.parent / "cache",
        val_fraction=0.5,  # 5 validation images per class
        batch_size=4,
        num_workers=0,
        cache_workers=0,
        val_views="centre",
        test_views="centre",
    )
    dm.setup("fit")
    dm.setup("test")
    return dm


def ddp_rank(rank: int, world: int = 2) -> SimpleNamespace:
    """What the datamodule reads of a DDP trainer on process ``rank``."""
    return SimpleNamespace(
        global_rank=rank,
        world_size=world,
        overfit_batches=0,
        strategy=SimpleNamespace(distributed_sampler_kwargs={"num_replicas": world, "rank": rank}),
    )


def read(loader: DataLoader) -> list[tuple[str, int]]:
    """(hash of the pixels, label) of every item the loader gives, in order."""
    return [
        (hashlib.sha1(image.numpy().tobytes()).hexdigest(), int(label))
        for images, labels in loader
        for image, label in zip(images, labels, strict=True)
    ]


def every_item(dataset) -> list[tuple[str, int]]:
    return [
        (hashlib.sha1(dataset[i][0].numpy().tobytes()).hexdigest(), dataset[i][1])
        for i in range(len(dataset))
    ]


def test_mixed_order_is_one_fixed_permutation() -> None:
    items = list(range(100))
    first, again = mixed_order(items, seed=0), mixed_order(items, seed=0)
    order = [first[i] for i in range(len(first))]
    assert sorted(order) == items  # each item once
    assert order == [again[i] for i in range(len(again))]  # the same order for the same seed
    assert order != items  # not file order
    other = mixed_order(items, seed=1)
    assert [other[i] for i in range(len(other))] != order


@pytest.mark.parametrize("world", [2, 3])
def test_shards_of_the_mixed_order_hold_each_item_once(world: int) -> None:
    items = list(range(11))  # divides by neither 2 nor 3: DistributedSampler would pad with repeats
    mixed = mixed_order(items, seed=0)
    shards = [[mixed[i] for i in EvalShard(mixed, world, rank)] for rank in range(world)]
    assert sorted(sum(shards, [])) == items
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_validation_and_test_batches_mix_the_classes(tmp_path: Path) -> None:
    four_class_folders(tmp_path)
    dm = four_class_module(tmp_path)
    for split, loader in (("val", dm.val_dataloader), ("test", dm.test_dataloader)):
        dataset = dm.datasets[split]
        in_file_order = dataset.cache.labels[dataset.indices[:4]].tolist()
        assert len(set(in_file_order)) == 1, split  # what an unordered loader's first batch held: one class
        _, labels = next(iter(loader()))
        assert len(set(labels.tolist())) >= 2, (split, labels)  # the first batch holds several classes


def test_every_image_once_and_the_same_order_every_epoch_and_every_build(tmp_path: Path) -> None:
    four_class_folders(tmp_path)
    dm = four_class_module(tmp_path)
    rebuilt = four_class_module(tmp_path)
    for split, loader in (("val", "val_dataloader"), ("test", "test_dataloader")):
        seen = read(getattr(dm, loader)())
        assert sorted(seen) == sorted(every_item(dm.datasets[split])), split  # each image exactly once
        assert len(set(seen)) == len(seen) == len(dm.datasets[split]), split
        assert read(getattr(dm, loader)()) == seen, split  # the next epoch: the same order
        assert read(getattr(rebuilt, loader)()) == seen, split  # another run: the same order


def test_under_ddp_the_mixed_order_is_sharded_without_repeats(tmp_path: Path) -> None:
    four_class_folders(tmp_path, test_per_class=3)  # 12 test images; val: 20
    dm = four_class_module(tmp_path)
    single = {split: read(getattr(dm, f"{split}_dataloader")()) for split in ("val", "test")}
    shards: dict[str, list[tuple[str, int]]] = {"val": [], "test": []}
    for rank in (0, 1):
        dm.trainer = ddp_rank(rank)
        for split in shards:
            loader = getattr(dm, f"{split}_dataloader")()
            assert isinstance(loader.sampler, EvalShard)  # so Lightning keeps it, and adds no padding
            shards[split] += read(loader)
    for split, seen in shards.items():
        assert sorted(seen) == sorted(single[split]), split  # every image once over the two processes
    dm.trainer = ddp_rank(0)
    assert torch.equal(next(iter(dm.val_dataloader()))[1], next(iter(dm.val_dataloader()))[1])
