"""Tests for the synthetic cats-vs-dogs generator: layout, determinism, safety, and the colour-stripe XOR."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from src.datasets import synthetic
from src.datasets.synthetic import CLASSES, generate_dataset, image_attributes

TRAIN, TEST = 150, 100  # per class: 250 images per class in all, ~2 s to generate
SIZE = 256
PATCH = 128  # images are centre-cropped and resized to PATCH x PATCH for the feature classifiers


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One generated data set shared by the layout and XOR tests."""
    return generate_dataset(tmp_path_factory.mktemp("synth") / "ds", TRAIN, TEST, image_size=SIZE, seed=3)


def _files(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under ``root``."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _siblings(root: Path) -> list[str]:
    """Names next to ``root`` that look like leftovers of a build (``<root>.tmp-*``, ``<root>.old-*``)."""
    return sorted(p.name for p in root.parent.iterdir() if p.name.startswith(root.name + "."))


# ----------------------------------------------------------------------------------------------- layout


def test_layout_counts_and_manifest(dataset: Path) -> None:
    for split, n in (("train", TRAIN), ("test", TEST)):
        names = {p.name for p in (dataset / split).iterdir()}
        assert names == {f"{c}.{i}.jpg" for c in CLASSES for i in range(n)}
    assert sorted(p.name for p in dataset.iterdir()) == ["DATASET.json", "test", "train"]
    manifest = json.loads((dataset / "DATASET.json").read_text())
    assert manifest["version"] == synthetic.VERSION
    assert (manifest["train_per_class"], manifest["test_per_class"], manifest["seed"]) == (TRAIN, TEST, 3)
    assert manifest["image_size"] == SIZE and manifest["classes"] == ["cat", "dog"]
    assert _siblings(dataset) == []


def test_images_decode_as_rgb_jpeg_with_varied_sizes(dataset: Path) -> None:
    sizes = []
    paths = sorted((dataset / "train").glob("*.jpg"))[:60] + sorted((dataset / "test").glob("*.jpg"))[:20]
    for path in paths:
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            im.load()
            sizes.append(im.size)
    short = [min(s) for s in sizes]
    assert min(short) >= SIZE and max(short) <= SIZE * 1.25
    assert max(max(s) / min(s) for s in sizes) <= 4 / 3 + 0.01
    assert any(w > h for w, h in sizes) and any(h > w for w, h in sizes)  # landscape and portrait
    assert len(set(sizes)) > len(sizes) // 2  # sizes really vary


def test_image_size_argument(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "small", 3, 1, image_size=64)
    for path in root.rglob("*.jpg"):
        with Image.open(path) as im:
            assert 64 <= min(im.size) <= 80


# ------------------------------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    a = _files(generate_dataset(tmp_path / "a", 3, 2, image_size=64, seed=1))
    b = _files(generate_dataset(tmp_path / "b", 3, 2, image_size=64, seed=1))
    c = _files(generate_dataset(tmp_path / "c", 3, 2, image_size=64, seed=2))
    assert len(a) == 2 * (3 + 2) + 1 and a == b
    images = [k for k in a if k.endswith(".jpg")]
    assert all(a[k] != c[k] for k in images)


def test_image_does_not_depend_on_how_many_are_generated(tmp_path: Path) -> None:
    few = _files(generate_dataset(tmp_path / "few", 1, 1, image_size=64, seed=5))
    many = _files(generate_dataset(tmp_path / "many", 4, 3, image_size=64, seed=5))
    images = [k for k in few if k.endswith(".jpg")]
    assert len(images) == 4 and all(few[k] == many[k] for k in images)


# ------------------------------------------------------------------------------------------------ safety


def test_second_call_reuses_without_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = generate_dataset(tmp_path / "ds", 2, 1, image_size=64)
    assert f"wrote 6 images to {root}" in capsys.readouterr().out
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert generate_dataset(tmp_path / "ds", 2, 1, image_size=64) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before
    assert "wrote" not in capsys.readouterr().out
    assert _siblings(root) == []


def test_changed_settings_replace_the_dataset(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "ds", 2, 1, image_size=64, seed=0)
    old = _files(root)
    generate_dataset(root, 3, 1, image_size=64, seed=7)
    new = _files(root)
    assert json.loads(new["DATASET.json"])["seed"] == 7
    assert "train/cat.2.jpg" in new and "train/cat.2.jpg" not in old
    assert new["train/cat.0.jpg"] != old["train/cat.0.jpg"]
    assert _siblings(root) == []


def test_dataset_of_an_older_version_is_regenerated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:
        m.setattr(synthetic, "VERSION", synthetic.VERSION - 1)
        root = generate_dataset(tmp_path / "ds", 2, 1, image_size=64)
    old = _files(root)
    assert json.loads(old["DATASET.json"])["version"] == synthetic.VERSION - 1
    generate_dataset(root, 2, 1, image_size=64)
    new = _files(root)
    assert json.loads(new["DATASET.json"])["version"] == synthetic.VERSION
    assert new.keys() == old.keys() and new != old
    assert _siblings(root) == []


def test_foreign_folder_is_never_overwritten(tmp_path: Path) -> None:
    root = tmp_path / "kaggle"
    (root / "train").mkdir(parents=True)
    (root / "train" / "cat.0.jpg").write_bytes(b"a real photo")
    with pytest.raises(FileExistsError, match="not a generated") as err:
        generate_dataset(root, 2, 1, image_size=64)
    assert str(root) in str(err.value)
    assert (root / "train" / "cat.0.jpg").read_bytes() == b"a real photo"
    assert sorted(p.name for p in root.rglob("*")) == ["cat.0.jpg", "train"]
    assert _siblings(root) == []


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_dataset(tmp_path / "x", -1, 1)
    with pytest.raises(ValueError):
        generate_dataset(tmp_path / "x", 1, 1, seed=-1)
    assert not (tmp_path / "x").exists()


def _failing_writer(monkeypatch: pytest.MonkeyPatch, after: int) -> None:
    """Make the image writer raise once ``after`` images have been written."""
    real, calls = synthetic._write_image, []

    def write(pixels: np.ndarray, path: Path) -> None:
        if len(calls) >= after:
            raise KeyboardInterrupt("simulated interruption")
        calls.append(path)
        real(pixels, path)

    monkeypatch.setattr(synthetic, "_write_image", write)


def test_interrupted_build_leaves_no_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _failing_writer(monkeypatch, after=3)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path / "ds", 4, 2, image_size=64)
    assert not (tmp_path / "ds").exists()
    assert list(tmp_path.iterdir()) == []


def test_interrupted_rebuild_keeps_the_old_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = generate_dataset(tmp_path / "ds", 2, 1, image_size=64, seed=0)
    old = _files(root)
    _failing_writer(monkeypatch, after=3)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(root, 2, 1, image_size=64, seed=1)
    assert _files(root) == old
    assert _siblings(root) == []


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "cli"
    synthetic.main([str(root), "--train-per-class", "2", "--test-per-class", "1", "--image-size", "64"])
    assert f"wrote 6 images to {root}" in capsys.readouterr().out
    assert json.loads((root / "DATASET.json").read_text())["image_size"] == 64
    assert len(list(root.rglob("*.jpg"))) == 6


# --------------------------------------------------------------------------------------- the XOR property


def _load(root: Path, split: str) -> dict[str, np.ndarray]:
    """Centre-cropped, resized pixels of a split, with labels and the generator's hidden attributes."""
    rgb, label, horizontal, warm = [], [], [], []
    for path in sorted((root / split).glob("*.jpg")):
        cls, index, _ = path.name.split(".")
        with Image.open(path) as im:
            w, h = im.size
            s = min(w, h)
            box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
            rgb.append(np.asarray(im.convert("RGB").resize((PATCH, PATCH), box=box), dtype=np.float32) / 255)
        pattern, colour = image_attributes(cls, int(index))
        label.append(cls == "cat")
        horizontal.append(pattern == "horizontal")
        warm.append(colour == "warm")
    return {
        "rgb": np.stack(rgb),
        "cat": np.array(label),
        "horizontal": np.array(horizontal),
        "warm": np.array(warm),
    }


def _grey_features(rgb: np.ndarray) -> np.ndarray:
    """Grey-level statistics of each image, including a measure of the stripe orientation.

    Columns: mean, std, mean absolute gradient, object (centre) level, border level, and the orientation
    statistic log(E[(dY/dy)^2] / E[(dY/dx)^2]) over the central patch: horizontal stripes vary along y
    (positive), vertical ones along x (negative). The centre is covered by the object in most images.
    """
    grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    c = grey.shape[-1] // 2
    edges = np.concatenate([grey[:, 0], grey[:, -1], grey[:, :, 0], grey[:, :, -1]], axis=1)
    border = np.median(edges, axis=1)
    centre = grey[:, c - 8 : c + 8, c - 8 : c + 8].mean((1, 2))
    central = grey[:, c - 16 : c + 16, c - 16 : c + 16]
    along_y = (np.diff(central, axis=1) ** 2).mean((1, 2))
    along_x = (np.diff(central, axis=2) ** 2).mean((1, 2))
    orientation = np.log((along_y + 1e-5) / (along_x + 1e-5))
    gradient = np.abs(np.diff(grey, axis=1)).mean((1, 2)) + np.abs(np.diff(grey, axis=2)).mean((1, 2))
    return np.column_stack([grey.mean((1, 2)), grey.std((1, 2)), gradient, centre, border, orientation])


def _mean_rgb(rgb: np.ndarray) -> np.ndarray:
    return rgb.mean((1, 2))


def _object_rgb(rgb: np.ndarray) -> np.ndarray:
    """Mean colour of the central patch, which shows the main object in most images (81-89 % per data set)."""
    c = rgb.shape[1] // 2
    return rgb[:, c - 8 : c + 8, c - 8 : c + 8].mean((1, 2))


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train.mean(0), train.std(0) + 1e-8
    return (train - mean) / std, (test - mean) / std


def _quadratic_accuracy(train: np.ndarray, y: np.ndarray, test: np.ndarray, y_test: np.ndarray) -> float:
    """Held-out accuracy of ridge least squares on (1, x, all x_i x_j), which can represent an XOR."""
    train, test = _standardise(train, test)
    i, j = np.triu_indices(train.shape[1])

    def expand(x: np.ndarray) -> np.ndarray:
        return np.column_stack([np.ones(len(x)), x, x[:, i] * x[:, j]])

    a = expand(train)
    w = np.linalg.solve(a.T @ a + np.eye(a.shape[1]), a.T @ np.where(y, 1.0, -1.0))
    return float(((expand(test) @ w > 0) == y_test).mean())


def _knn_accuracy(
    train: np.ndarray, y: np.ndarray, test: np.ndarray, y_test: np.ndarray, k: int = 15
) -> float:
    """Held-out accuracy of a k-nearest-neighbour vote on standardised features."""
    train, test = _standardise(train, test)
    nearest = np.argsort(((test[:, None] - train[None]) ** 2).sum(-1), axis=1)[:, :k]
    return float(((y[nearest].mean(1) > 0.5) == y_test).mean())


@pytest.fixture(scope="module")
def xor_data(dataset: Path) -> dict[str, dict[str, np.ndarray]]:
    """Features and targets of the train (fit) and test (held-out) splits."""
    out = {}
    for split in ("train", "test"):
        d = _load(dataset, split)
        grey = _grey_features(d["rgb"])
        out[split] = {
            "mean_rgb": _mean_rgb(d["rgb"]),
            "object_rgb": _object_rgb(d["rgb"]),
            "grey": grey,
            "orientation": grey[:, 5:],  # the orientation statistic alone
            "cat": d["cat"],
            "horizontal": d["horizontal"],
            "warm": d["warm"],
        }
    return out


def _scores(data: dict[str, dict[str, np.ndarray]], features: list[str], target: str) -> tuple[float, float]:
    """(quadratic ridge, k-NN) held-out accuracies for predicting ``target`` from ``features``."""
    tr, te = data["train"], data["test"]
    x_tr = np.hstack([tr[f] for f in features])
    x_te = np.hstack([te[f] for f in features])
    return (
        _quadratic_accuracy(x_tr, tr[target], x_te, te[target]),
        _knn_accuracy(x_tr, tr[target], x_te, te[target]),
    )


def test_hidden_attributes_are_balanced_and_follow_the_xor(xor_data: dict) -> None:
    for split in ("train", "test"):
        d = xor_data[split]
        assert np.array_equal(d["cat"], d["horizontal"] == d["warm"])  # the rule: cat = horizontal XNOR cool
        for is_cat in (True, False):
            in_class = d["cat"] == is_cat
            combos = Counter(zip(d["horizontal"][in_class], d["warm"][in_class], strict=True))
            assert len(combos) == 2 and len(set(combos.values())) == 1
    # The four combinations are balanced across the two classes too, and in any prefix of indices.
    assert [image_attributes(c, i) for c in CLASSES for i in range(2)] == [
        ("horizontal", "warm"), ("vertical", "cool"), ("horizontal", "cool"), ("vertical", "warm"),
    ]  # fmt: skip


def _on_object(grey: np.ndarray) -> np.ndarray:
    """Images whose central patch shows the object: its level (column 3) is in the object's luma range.

    The object's mean luma is 0.4-0.6 and its stripes average out over the patch; backgrounds are darker
    than 0.25 or brighter than 0.75. Off-centre small objects leave the centre on the background.
    """
    return (grey[:, 3] > 0.35) & (grey[:, 3] < 0.65)


def test_measured_object_colour_matches_the_hidden_attribute(xor_data: dict) -> None:
    """The object's measured colour agrees with the generator's attribute (so the balance above is real)."""
    for split in ("train", "test"):
        r, _, b = xor_data[split]["object_rgb"].T
        on_object = _on_object(xor_data[split]["grey"])
        assert on_object.mean() > 0.8
        assert ((r > b) == xor_data[split]["warm"])[on_object].mean() > 0.98


def test_mean_colour_alone_does_not_tell_the_class(xor_data: dict) -> None:
    for features in (["mean_rgb"], ["object_rgb"]):
        quadratic, knn = _scores(xor_data, features, "cat")
        assert quadratic < 0.65 and knn < 0.65, (features, quadratic, knn)
    # Control: the same features do see the colour family, so the failure above is the XOR's doing.
    assert min(_scores(xor_data, ["object_rgb"], "warm")) > 0.9


def test_grey_level_alone_does_not_tell_the_class_nor_the_colour(xor_data: dict) -> None:
    quadratic, knn = _scores(xor_data, ["grey"], "cat")
    assert quadratic < 0.65 and knn < 0.65, (quadratic, knn)
    quadratic, knn = _scores(xor_data, ["grey"], "warm")  # warm and cool objects share one luma distribution
    assert quadratic < 0.65 and knn < 0.65, (quadratic, knn)
    # More sensitive than a classifier: the object's grey level (column 3, in images whose centre shows the
    # object) is distributed alike in both colour families (a luma bias of 0.03 would show here; the
    # classifiers above need about 0.1).
    grey = np.concatenate([xor_data[s]["grey"] for s in ("train", "test")])
    on_object = _on_object(grey)
    level = grey[on_object, 3]
    warm = np.concatenate([xor_data[s]["warm"] for s in ("train", "test")])[on_object]
    assert abs(level[warm].mean() - level[~warm].mean()) < 0.02
    assert np.abs(np.percentile(level[warm], [10, 90]) - np.percentile(level[~warm], [10, 90])).max() < 0.03
    # Control: the grey features do see the stripe orientation.
    assert min(_scores(xor_data, ["grey"], "horizontal")) > 0.9


def test_measured_stripe_orientation_matches_the_hidden_attribute(xor_data: dict) -> None:
    """The orientation statistic alone, thresholded at 0, recovers the pattern: the stripes are clear."""
    for split in ("train", "test"):
        orientation = xor_data[split]["grey"][:, 5]
        assert ((orientation > 0) == xor_data[split]["horizontal"]).mean() > 0.9


def test_colour_and_orientation_together_tell_the_class(xor_data: dict) -> None:
    """Control: with both cues a simple quadratic classifier solves the task, so it is learnable."""
    quadratic, _ = _scores(xor_data, ["object_rgb", "orientation"], "cat")
    assert quadratic > 0.9, quadratic
