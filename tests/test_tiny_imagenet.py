"""``data=tiny_imagenet``: Stanford's ``tiny-imagenet-200.zip`` laid out as ``{train,test}/<wnid>/``.

A small zip in the official layout (``tests/helpers/dataset_archives.py``) is served from 127.0.0.1 and
prepared in-process: downloaded, verified, extracted, the official ``val/`` moved into ``test/<wnid>/`` by
``val_annotations.txt``, the unlabelled official ``test/`` left out. Then the pipeline reads it whole and as
a subset of classes (``data.classes``), and decodes its greyscale JPEG as RGB. One run of ``src/prepare.py``
checks the command-line spelling for a local copy and a subset.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import hydra
import numpy as np
import pytest
import yaml
from omegaconf import open_dict

from src.data.images import load_square_rgb
from src.datasets.download import ChecksumError
from src.datasets.recipes import MARKER, prepare_dataset
from tests.conftest import CONF, compose_train, script_runner
from tests.helpers import dataset_archives as make
from tests.helpers.archive_server import serve

WNIDS = sorted(make.TINY_IMAGENET_WNIDS)
FAST = {"backoff_s": 0.01, "progress": False}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def class_counts(folder: Path) -> dict[str, int]:
    return {d.name: sum(1 for f in d.iterdir() if f.is_file()) for d in sorted(folder.iterdir())}


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, dict]:
    path = tmp_path / "served" / "tiny-imagenet-200.zip"
    return path, make.tiny_imagenet_zip(path, train=3, val=2, test=2)


def source(tmp_path: Path, url: str, archive_md5: str) -> dict:
    return {
        "dataset": "tiny_imagenet",
        "files": {"archive": {"url": url, "sha256": None, "md5": archive_md5}},
        "download": {"dir": tmp_path / "data" / "downloads", **FAST},
        "extract": {"dir": tmp_path / "data" / "extracted"},
    }


def check_layout(root: Path, val: dict[str, str]) -> None:
    """train/ and test/ per wnid, the val images where val_annotations.txt puts them, no official test/."""
    assert class_counts(root / "train") == dict.fromkeys(WNIDS, 3)
    assert class_counts(root / "test") == dict.fromkeys(WNIDS, 2)
    for image, wnid in val.items():
        assert (root / "test" / wnid / image).is_file()
    assert not list(root.rglob("test_*.JPEG")) and not list(root.rglob("*.txt"))  # nor boxes, nor lists
    made = json.loads((root / MARKER).read_text())
    assert made["splits"] == {"train": dict.fromkeys(WNIDS, 3), "test": dict.fromkeys(WNIDS, 2)}


def test_download_verify_extract_and_lay_out(tmp_path: Path, archive, capsys) -> None:
    path, built = archive
    root = tmp_path / "data" / "tiny_imagenet"
    with serve() as (base, state):
        made = prepare_dataset(root, **source(tmp_path, f"{base}{state.add(path)}", md5(path)))
    check_layout(root, built["val"])
    assert made["copied"] == 0 and (tmp_path / "data" / "downloads" / path.name).is_file()
    assert "(not pinned; to pin it: data.source.files.archive.sha256=" in capsys.readouterr().out
    # ~1.8 % of Tiny ImageNet is greyscale: the decoder (the cache's) turns them into three equal channels.
    grey = root / "train" / WNIDS[WNIDS.index(make.TINY_IMAGENET_WNIDS[0])] / built["grey"]
    pixels = load_square_rgb(grey, 64)
    assert pixels.shape == (64, 64, 3) and pixels.std() > 0
    assert np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 0], pixels[..., 2])


def test_a_wrong_checksum_is_refused_naming_the_file(tmp_path: Path, archive) -> None:
    path, _ = archive
    root = tmp_path / "data" / "tiny_imagenet"
    wrong = "0" * 32
    with serve() as (base, state), pytest.raises(ChecksumError) as error:
        prepare_dataset(root, **source(tmp_path, f"{base}{state.add(path)}", wrong))
    assert "tiny-imagenet-200.zip" in str(error.value) and f"md5 is {md5(path)}, expected {wrong}" in str(
        error.value
    )
    assert not root.exists() and not (tmp_path / "data" / "extracted").exists()
    # A local copy is checked against data.source.sha256 the same way.
    with pytest.raises(ChecksumError, match=r"tiny-imagenet-200.zip .*expected a{64}"):
        prepare_dataset(root, **source(tmp_path, "unused", wrong), path=str(path), sha256="a" * 64)
    assert not root.exists()


@pytest.mark.parametrize("local", ["zip", "folder"])
def test_a_local_copy_the_zip_or_its_extracted_folder(tmp_path: Path, archive, local: str) -> None:
    path, built = archive
    given = path
    if local == "folder":
        given = tmp_path / "unzipped"
        prepare_dataset(tmp_path / "first", "tiny_imagenet", path=str(path), extract={"dir": given})
        (given,) = given.iterdir()  # <extract dir>/tiny_imagenet-tiny-imagenet-200/tiny-imagenet-200/...
    root = tmp_path / "data" / "tiny_imagenet"
    made = prepare_dataset(
        root, **source(tmp_path, "http://127.0.0.1:9/nothing-downloaded", "0" * 32), path=str(given)
    )
    check_layout(root, built["val"])
    assert made["sources"] == {"path": str(given)} and not (tmp_path / "data" / "downloads").exists()


def test_the_config_and_a_subset_of_classes_in_the_pipeline(tmp_path: Path, archive) -> None:
    path, built = archive
    root = tmp_path / "data" / "tiny_imagenet"
    prepare_dataset(root, "tiny_imagenet", path=str(path), extract={"dir": tmp_path / "data" / "extracted"})
    entry = yaml.safe_load((CONF / "data" / "tiny_imagenet.yaml").read_text())["source"]["files"]["archive"]
    assert entry["url"] == "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
    assert entry["sha256"] is None and len(entry["md5"]) == 32

    cfg = compose_train(["data=tiny_imagenet"], tmp_path)
    assert (cfg.data.num_classes, cfg.data.classes, cfg.data.image_size, cfg.data.crop_size) == (
        200,
        None,
        64,
        56,
    )

    def datamodule(*overrides: str):
        fast = ["data.cache_workers=0", "data.val_fraction=0.34"]  # 3 images a class: 1 for validation
        cfg = compose_train(["data=tiny_imagenet", *fast, *overrides], tmp_path)
        with open_dict(cfg):
            cfg.data.source = None  # the folder is prepared (its source would find it ready)
        return hydra.utils.instantiate(cfg.data)

    whole = datamodule("data.num_classes=4")
    whole.prepare_data()
    whole.setup("fit")
    assert whole.classes == WNIDS and len(whole.datasets["train"]) + len(whole.datasets["val"]) == 12
    grey = whole.datasets["train"].cache.paths.index(
        str(root / "train" / make.TINY_IMAGENET_WNIDS[0] / built["grey"])
    )
    square = whole.datasets["train"].cache.images[grey]
    assert square.shape == (64, 64, 3) and (square == square[..., :1]).all()  # cached as 3 equal channels

    first_two = datamodule("data.classes=2", "data.num_classes=2")
    first_two.setup(None)
    assert first_two.classes == WNIDS[:2] and first_two.datasets["test"].cache.classes == WNIDS[:2]
    assert len(first_two.datasets["test"].indices) == 4

    named = datamodule(f"data.classes=[{WNIDS[3]},{WNIDS[1]}]", "data.num_classes=2")
    named.setup("fit")
    assert named.classes == [WNIDS[1], WNIDS[3]]

    with pytest.raises(
        ValueError, match=r"data.classes=3 keeps 3 of its classes .* but data.num_classes=200"
    ):
        datamodule("data.classes=3").setup("fit")
    with pytest.raises(ValueError, match=r"no class \['n99999999'\]"):
        datamodule("data.classes=[n99999999]", "data.num_classes=1").setup("fit")


def test_prepare_a_local_copy_through_the_command_line(tmp_path: Path, archive) -> None:
    path, built = archive
    run = script_runner("prepare.py", tmp_path)
    result = run(
        "data=tiny_imagenet", f"data.source.path={path}", "data.classes=2", "data.num_classes=2", timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    check_layout(tmp_path / "data" / "tiny_imagenet", built["val"])
    assert "(not pinned; to pin it: data.source.sha256=" in result.stdout
    assert "cached 6 images" in result.stdout  # the 2 classes' 3 training images, not the 4 classes' 12
