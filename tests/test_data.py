"""Finding files, decoding and cropping, the validation split, and the datamodule's batches."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DistributedSampler, RandomSampler, SequentialSampler

from src.data.datamodule import ImageDataModule, split_by_source
from src.data.images import load_square_rgb
from src.data.layouts import find_labelled_images
from tests.helpers.trainers import quiet_trainer


def write_image(
    path: Path, size: tuple[int, int] = (300, 260), colour: tuple[int, int, int] = (200, 30, 30)
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def test_kaggle_layout_labels_from_file_names(tmp_path: Path) -> None:
    for name in ("cat.0.jpg", "cat.1.jpg", "dog.0.jpg", "Thumbs.db", "notes.txt", "dog.1.jpeg"):
        if name.endswith(("jpg", "jpeg")):
            write_image(tmp_path / name)
        else:
            (tmp_path / name).write_text("x")
    files = find_labelled_images(tmp_path, "kaggle")
    assert files.classes == ["cat", "dog"]
    assert [p.name for p in files.paths] == ["cat.0.jpg", "cat.1.jpg", "dog.0.jpg", "dog.1.jpeg"]
    assert files.labels == [0, 0, 1, 1]
    assert [p.name for p in files.ignored] == ["Thumbs.db", "notes.txt"]  # listed, not dropped silently
    assert find_labelled_images(tmp_path, "auto").paths == files.paths


def test_class_folder_layout(tmp_path: Path) -> None:
    for cls in ("zebra", "ant", "bee"):
        for i in range(2):
            write_image(tmp_path / cls / f"{i}.png")
    (tmp_path / "bee" / "Thumbs.db").write_bytes(b"\0" * 10)  # a candidate: the decoder reports it
    (tmp_path / "bee" / ".DS_Store").write_bytes(b"\0")  # hidden: not a candidate
    files = find_labelled_images(tmp_path, "auto")
    assert files.classes == ["ant", "bee", "zebra"]
    assert files.labels == [0, 0, 1, 1, 1, 2, 2]
    assert [p.name for p in files.paths][2:5] == ["0.png", "1.png", "Thumbs.db"]


def test_missing_and_empty_folders_name_the_path_and_layout(tmp_path: Path) -> None:
    with pytest.raises(
        FileNotFoundError, match=rf"{tmp_path / 'nowhere'} does not exist; expected .*cat\.0\.jpg"
    ):
        find_labelled_images(tmp_path / "nowhere", "kaggle")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=rf"no images found in {tmp_path / 'empty'} .*<class>/"):
        find_labelled_images(tmp_path / "empty", "folders")
    with pytest.raises(ValueError, match="data.layout='voc' is not known"):
        find_labelled_images(tmp_path, "voc")


def test_load_square_rgb_scales_short_side_and_centre_crops(tmp_path: Path) -> None:
    # 512x256 image: left half red, right half blue. Short side 256 already; the centre 256 square keeps the
    # middle: columns 128..383 of the original, so its left half is red and its right half is blue.
    pixels = np.zeros((256, 512, 3), np.uint8)
    pixels[:, :256] = (255, 0, 0)
    pixels[:, 256:] = (0, 0, 255)
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    square = load_square_rgb(tmp_path / "wide.png", 256)
    assert square.shape == (256, 256, 3) and square.dtype == np.uint8
    assert tuple(square[128, 10]) == (255, 0, 0) and tuple(square[128, 245]) == (0, 0, 255)
    # Greyscale and small images are converted and scaled up.
    Image.new("L", (100, 80), 77).save(tmp_path / "grey.jpg")
    grey = load_square_rgb(tmp_path / "grey.jpg", 256)
    assert grey.shape == (256, 256, 3) and abs(int(grey[5, 5, 0]) - 77) <= 2
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(OSError, match="cannot decode image .*broken.jpg"):
        load_square_rgb(tmp_path / "broken.jpg")


def test_split_by_source_is_seeded_per_class_and_disjoint() -> None:
    labels = [0] * 60 + [1] * 40
    train, val = split_by_source(labels, 0.25, seed=3)
    assert set(train).isdisjoint(val) and sorted(train + val) == list(range(100))
    assert sum(labels[i] == 0 for i in val) == 15 and sum(labels[i] == 1 for i in val) == 10
    assert split_by_source(labels, 0.25, seed=3) == (train, val)
    assert split_by_source(labels, 0.25, seed=4)[1] != val
    with pytest.raises(ValueError, match="val_fraction"):
        split_by_source(labels, 1.0, seed=0)


def make_dataset(root: Path, per_class: int = 10) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", 3)):
        for cls in ("cat", "dog"):
            for i in range(n):
                colour = tuple(int(v) for v in rng.integers(0, 256, 3))
                write_image(root / split / f"{cls}.{i}.jpg", colour=colour)


def datamodule(root: Path, **overrides) -> ImageDataModule:
    settings = dict(
        root=root,
        num_classes=2,
        layout="kaggle",
        cache_dir=Path(root).parent / "cache",
        val_fraction=0.2,
        batch_size=4,
        num_workers=0,
        cache_workers=0,
    )
    return ImageDataModule(**(settings | overrides))


def test_datamodule_batches_are_uint8_then_normalised_on_the_device(tmp_path: Path) -> None:
    make_dataset(tmp_path)
    dm = datamodule(tmp_path, val_views="ten")
    dm.prepare_data()
    dm.setup("fit")
    assert "test" not in dm.datasets  # fitting needs no test split
    dm.setup("test")
    assert len(dm.datasets["train"]) == 16 and len(dm.datasets["val"]) == 4 and len(dm.datasets["test"]) == 6
    assert set(dm.datasets["train"].indices).isdisjoint(dm.datasets["val"].indices)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (4, 3, 224, 224) and labels.shape == (4,)
    views, _ = next(iter(dm.val_dataloader()))  # ten-crop: all ten views of each image
    assert views.dtype == torch.uint8 and views.shape == (4, 10, 3, 224, 224)
    x, _ = dm.on_after_batch_transfer((images, labels), 0)  # no trainer: not training, no PCA lighting
    torch.testing.assert_close(x, (images.float() - dm.pixel_mean) / dm.pixel_std)
    # The statistics are those of the training split's pixels: uniform-colour images, so easy to check.
    cache = dm.datasets["train"].cache
    train_means = np.stack([cache.images[i].reshape(-1, 3).mean(0) for i in dm.datasets["train"].indices])
    np.testing.assert_allclose(dm.pixel_mean.flatten().numpy(), train_means.mean(0), rtol=1e-5)
    # The statistics travel in checkpoints.
    fresh = ImageDataModule(tmp_path, num_classes=2, cache_dir=tmp_path.parent / "cache")
    fresh.load_state_dict(dm.state_dict())
    torch.testing.assert_close(fresh.pixel_mean, dm.pixel_mean)


def test_each_split_is_listed_once_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """setup takes the caches prepare_data built; a process that skipped prepare_data lists them itself."""
    import src.data.datamodule as datamodule_module

    make_dataset(tmp_path)
    listed: list[str] = []

    def counting(folder: Path, layout: str):  # noqa: ANN202 - the wrapped function's own return type
        listed.append(folder.name)
        return find_labelled_images(folder, layout)

    monkeypatch.setattr(datamodule_module, "find_labelled_images", counting)
    dm = datamodule(tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    assert sorted(listed) == ["test", "train"]
    other_rank = datamodule(tmp_path)  # DDP: only rank 0 runs prepare_data
    other_rank.setup("fit")  # lists test/ too: its classes are checked before fit trains
    assert sorted(listed) == ["test", "test", "train", "train"]
    assert len(other_rank.datasets["train"]) == len(dm.datasets["train"]) == 16


def test_pca_lighting_only_while_training(tmp_path: Path) -> None:
    make_dataset(tmp_path)
    dm = datamodule(tmp_path, normalize="mean")
    dm.setup("fit")
    images, labels = next(iter(dm.train_dataloader()))
    plain = images.float() - dm.pixel_mean
    dm.trainer = SimpleNamespace(training=False)
    torch.testing.assert_close(dm.on_after_batch_transfer((images, labels), 0)[0], plain)
    dm.trainer = SimpleNamespace(training=True)
    lit = dm.on_after_batch_transfer((images, labels), 0)[0]
    shift = lit - plain
    assert shift.abs().max() > 0.01  # something was added ...
    torch.testing.assert_close(shift, shift[:, :, :1, :1].expand_as(shift))  # ... one RGB shift per image
    off = datamodule(tmp_path, normalize="mean", pca_std=0.0)
    off.setup("fit")
    off.trainer = SimpleNamespace(training=True)
    torch.testing.assert_close(off.on_after_batch_transfer((images, labels), 0)[0], plain)


def test_ten_training_views_make_ten_items_per_image(tmp_path: Path) -> None:
    make_dataset(tmp_path)
    dm = datamodule(tmp_path, train_views="ten", val_views="centre")
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 160
    views, _ = next(iter(dm.val_dataloader()))
    assert views.shape == (4, 3, 224, 224)


def test_overfit_batches_are_the_same_each_epoch_and_hold_every_class(tmp_path: Path) -> None:
    """Lightning's ``overfit_batches`` takes the first batches of a loader read in order; in file order (all
    the cats, then all the dogs) those would be of one class, which the last bias alone fits."""
    make_dataset(tmp_path, per_class=40)  # 24 training and 16 validation images of each class
    dm = datamodule(tmp_path, batch_size=8, train_views="centre", val_views="centre", val_fraction=0.4)
    dm.setup("fit")
    for split in ("train", "val"):  # what a plain unshuffled loader would give: 16 cats
        assert set(dm.datasets[split].cache.labels[dm.datasets[split].indices[:16]].tolist()) == {0}
    dm.trainer = quiet_trainer(max_steps=1, overfit_batches=2)
    for split, loader in (("train", dm.train_dataloader), ("val", dm.val_dataloader)):
        epochs = [[labels for _, labels in itertools.islice(loader(), 2)] for _ in range(2)]
        assert isinstance(loader().sampler, SequentialSampler), split  # Lightning keeps it as it is
        assert set(torch.cat(epochs[0]).tolist()) == {0, 1}, split  # both classes in the two batches
        assert all(torch.equal(a, b) for a, b in zip(*epochs, strict=True)), split  # the same every epoch
    (images, _), (again, _) = (next(iter(dm.train_dataloader())) for _ in range(2))
    assert torch.equal(images, again)  # train_views=centre: the same pixels, no random crop or flip


def test_validation_and_test_under_ddp_count_every_image_once(tmp_path: Path) -> None:
    """torch's DistributedSampler pads a split to a multiple of the processes with repeats (5 test images on
    2 processes: 6, one counted twice); the datamodule shards evaluation without padding instead."""
    make_dataset(tmp_path)
    (tmp_path / "test" / "dog.2.jpg").unlink()  # 5 test images
    dm = datamodule(tmp_path)
    dm.setup("fit")
    dm.setup("test")
    seen = {"val": [], "test": []}
    for rank in (0, 1):
        dm.trainer = SimpleNamespace(
            global_rank=rank, world_size=2, overfit_batches=0,
            strategy=SimpleNamespace(distributed_sampler_kwargs={"num_replicas": 2, "rank": rank}),
        )  # fmt: skip
        for split, loader in (("val", dm.val_dataloader()), ("test", dm.test_dataloader())):
            assert isinstance(loader.sampler, DistributedSampler)  # so Lightning keeps it, adds none
            seen[split] += list(loader.sampler)
            assert len(loader.sampler) == len(list(loader.sampler))
        assert isinstance(dm.train_dataloader().sampler, RandomSampler)  # training: Lightning's, padded
    assert sorted(seen["test"]) == [0, 1, 2, 3, 4]
    assert sorted(seen["val"]) == list(range(len(dm.datasets["val"])))
    dm.trainer = SimpleNamespace(
        global_rank=0,
        world_size=2,
        overfit_batches=0,
        strategy=SimpleNamespace(distributed_sampler_kwargs={"num_replicas": 1, "rank": 0}),
    )  # trainer=towers: every rank, every image
    assert isinstance(dm.test_dataloader().sampler, SequentialSampler)


def test_datamodule_checks_the_number_of_classes(tmp_path: Path) -> None:
    make_dataset(tmp_path)
    with pytest.raises(ValueError, match=r"has 2 classes \['cat', 'dog'\], but data.num_classes=3"):
        datamodule(tmp_path, num_classes=3).setup("fit")


def test_datamodule_missing_root_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "absent" / "train")):
        datamodule(tmp_path / "absent").setup("fit")


def folders_dataset(root: Path, counts: dict[str, int], split: str = "train") -> None:
    """``root/<split>/<class>/<i>.png`` for each class and count (distinct colours)."""
    for c, (cls, n) in enumerate(counts.items()):
        for i in range(n):
            write_image(root / split / cls / f"{i}.png", colour=(40 * c, 7 * i, 100))


def folders_module(root: Path, num_classes: int = 2, **overrides) -> ImageDataModule:
    return datamodule(root, num_classes=num_classes, layout="folders", **overrides)


def test_a_class_none_of_whose_files_decode_is_named_with_the_counts(tmp_path: Path) -> None:
    folders_dataset(tmp_path, {"cat": 4})
    for i in range(3):
        (tmp_path / "train" / "dog" / f"{i}.jpg").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "train" / "dog" / f"{i}.jpg").write_bytes(b"not an image")
    dm = folders_module(tmp_path)
    with pytest.raises(
        ValueError, match=r"no file of the class 'dog' could be decoded .*'cat' 4 of 4, 'dog' 0 of 3"
    ):
        dm.prepare_data()


def test_a_class_too_small_for_the_validation_split_is_named(tmp_path: Path) -> None:
    folders_dataset(tmp_path, {"cat": 10, "dog": 2})  # 0.2 of 2 rounds to 0: no dog to validate on
    with pytest.raises(ValueError, match=r"'dog': 2 usable images, 0 for validation and 2 for training"):
        folders_module(tmp_path).setup("fit")
    with pytest.raises(ValueError, match=r"'dog': 2 usable images, 2 for validation and 0 for training"):
        folders_module(tmp_path, val_fraction=0.8).setup("fit")


def test_an_empty_class_folder_is_named(tmp_path: Path) -> None:
    folders_dataset(tmp_path, {"cat": 2, "dog": 2})
    (tmp_path / "train" / "bird" / ".keep").parent.mkdir()
    (tmp_path / "train" / "bird" / ".keep").write_bytes(b"")
    match = (
        r"class folder .*bird \(class 'bird'\) has 0 files to read \(1 entries not read: .keep \(hidden\)\)"
    )
    with pytest.raises(ValueError, match=match):
        folders_module(tmp_path, num_classes=3).setup("fit")


def test_test_classes_other_than_train_stop_before_fit(tmp_path: Path) -> None:
    folders_dataset(tmp_path, {"cat": 5, "dog": 5})
    folders_dataset(tmp_path, {"cat": 2, "fox": 2}, split="test")
    dm = folders_module(tmp_path)
    dm.prepare_data()
    with pytest.raises(ValueError, match=r"test has classes \['cat', 'fox'\], .*train has \['cat', 'dog'\]"):
        dm.setup("fit")
    with pytest.raises(ValueError, match=r"test has classes \['cat', 'fox'\]"):
        folders_module(tmp_path).setup("fit")  # another rank: no prepare_data, it lists test/ itself


def test_a_checkpoint_is_refused_on_data_with_other_classes(tmp_path: Path) -> None:
    folders_dataset(tmp_path / "pets", {"cat": 5, "dog": 5})
    trained = folders_module(tmp_path / "pets")
    trained.setup("fit")
    state = trained.state_dict()
    assert state["classes"] == ["cat", "dog"] and state["root"] == str(tmp_path / "pets")
    folders_dataset(tmp_path / "birds", {"crow": 2, "owl": 2}, split="test")
    other = folders_module(tmp_path / "birds")
    other.setup("test")
    with pytest.raises(
        ValueError,
        match=r"trained on the classes \['cat', 'dog'\] \(of .*pets\), but .*birds has the classes "
        r"\['crow', 'owl'\]",
    ):
        other.load_state_dict(state)
    folders_dataset(tmp_path / "more_pets", {"cat": 2, "dog": 2}, split="test")
    same = folders_module(tmp_path / "more_pets")
    same.setup("test")
    same.load_state_dict(state)  # the same classes: fine
    older = {k: v for k, v in state.items() if k in ("pixel_mean", "pixel_std")}
    other.load_state_dict(older)  # a checkpoint from before the classes were recorded: not checked


def test_entries_that_are_not_read_are_listed_with_why(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folders_dataset(tmp_path, {"cat": 5, "dog": 5})
    cat = tmp_path / "train" / "cat"
    write_image(cat / "more" / "extra.png")
    (cat / ".DS_Store").write_bytes(b"\0")
    (cat / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "train" / "README.txt").write_text("x")
    files = find_labelled_images(tmp_path / "train", "folders")
    reasons = {p.name: why for p, why in zip(files.ignored, files.ignored_reasons, strict=True)}
    assert reasons == {
        "README.txt": "outside any class folder",
        ".DS_Store": "hidden",
        "gone.png": "a broken link",
        "more": "a sub-folder, 1 files not read",
    }
    folders_module(tmp_path).setup("fit")
    printed = capsys.readouterr().out
    assert "4 entries not read: README.txt (outside any class folder); cat/.DS_Store (hidden)" in printed
    assert "cat/gone.png (a broken link); cat/more (a sub-folder, 1 files not read)" in printed


def test_entries_not_read_are_listed_once_in_a_fit_then_test(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Lightning calls prepare_data again for trainer.test, after fit's: the caches in use are not read
    again."""
    folders_dataset(tmp_path, {"cat": 5, "dog": 5})
    folders_dataset(tmp_path, {"cat": 2, "dog": 2}, split="test")
    (tmp_path / "train" / "README.txt").write_text("x")
    sourced: list[Path] = []
    dm = folders_module(tmp_path, source=sourced.append)  # a source says "dataset at ... is up to date"
    for stage in ("fit", "test"):  # what trainer.fit, then trainer.test, call
        dm.prepare_data()
        dm.setup(stage)
    printed = capsys.readouterr().out
    assert printed.count("1 entries not read: README.txt (outside any class folder)") == 1, printed
    assert printed.count("using cache") == 0 and sourced == [tmp_path]  # nothing checked twice
    assert len(dm.datasets["train"]) == 8 and len(dm.datasets["test"]) == 4


def test_a_root_with_a_tilde_is_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    dm = datamodule("~/data/pets", cache_dir="~/cache")
    assert dm.root == tmp_path / "data" / "pets" and dm.cache_dir == tmp_path / "cache"
