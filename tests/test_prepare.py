"""``python src/prepare.py data=<name>`` on tiny archives with the real layouts, served from 127.0.0.1.

Each dataset is prepared through the command line, as a researcher types it (only the URLs, the pinned
hashes and ``paths.data_dir`` are overridden), its class folders are checked, and one training step runs on
it. The recipes' error paths (wrong checksum, interrupted extraction, missing Kaggle file, a root prepared
another way) run in-process.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from omegaconf import open_dict

from src.datasets import archives, recipes
from src.datasets.download import ChecksumError
from src.datasets.recipes import MARKER, prepare_dataset
from src.train import train
from tests.conftest import CONF, compose_train, script_runner
from tests.helpers import dataset_archives as make
from tests.helpers.archive_server import ServerState, serve
from tests.test_train import TINY_RUN

ONE_STEP = ["logger=csv", "trainer.fast_dev_run=true", "data.val_views=centre", "data.test_views=centre"]
Check = Callable[[Path, str], None]  # (data.root, what prepare printed) -> asserts
FAST_DOWNLOAD = ["data.source.download.backoff_s=0.01", "data.source.download.progress=false"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def class_counts(folder: Path) -> dict[str, int]:
    return {
        d.name: sum(1 for f in d.iterdir() if f.is_file()) for d in sorted(folder.iterdir()) if d.is_dir()
    }


@pytest.fixture
def server():
    with serve() as (base, state):
        yield base, state


# ------------------------------------------------------------- each dataset: archives, overrides, checks


def petimages(folder: Path, base: str, state: ServerState) -> tuple[list[str], Check]:
    archive = folder / "kagglecatsanddogs_5340.zip"
    files = make.petimages_zip(archive)
    key = state.add(archive)
    state.drop_after[key] = archive.stat().st_size // 2  # the first connection dies halfway

    def check(root: Path, printed: str) -> None:
        assert class_counts(root / "train") == files and not (root / "test").exists()
        first, second = state.ranges(key)
        assert first is None and second is not None and second.startswith("bytes=")  # resumed
        # The known bad files are laid out like the others and reach the cache, which skips and lists them.
        (report,) = (root.parent / "cache").glob("*/skipped.tsv")
        skipped = [Path(line.split("\t")[0]) for line in report.read_text().splitlines()[1:]]
        skipped = sorted(path.relative_to(root / "train").as_posix() for path in skipped)
        assert skipped == ["Cat/666.jpg", "Cat/Thumbs.db", "Dog/11702.jpg", "Dog/Thumbs.db"]
        assert f"cached {sum(files.values()) - 4} images" in printed and "(4 skipped: see" in printed

    overrides = [
        f"data.source.files.archive.url={base}{key}",
        f"data.source.files.archive.sha256={sha256(archive)}",
    ]
    return overrides, check


def kaggle(folder: Path, base: str, state: ServerState) -> tuple[list[str], Check]:
    archive = make.kaggle_train_zip(folder / "dogs-vs-cats.zip", per_class=6, wrapped=True)

    def check(root: Path, printed: str) -> None:
        names = sorted(p.name for p in (root / "train").iterdir())
        assert names == sorted(f"{label}.{i}.jpg" for label in ("cat", "dog") for i in range(6))

    return [f"data.source.path={archive}", f"data.source.sha256={sha256(archive)}"], check


def oxford(target: str) -> Callable[..., tuple[list[str], Check]]:
    def build(folder: Path, base: str, state: ServerState) -> tuple[list[str], Check]:
        images, annotations, counts = make.oxford_tarballs(folder, trainval=3, test=1)
        overrides = []
        for role, path in (("images", images), ("annotations", annotations)):
            key = state.add(path)
            overrides += [
                f"data.source.files.{role}.url={base}{key}",
                f"data.source.files.{role}.md5={md5(path)}",
            ]

        def check(root: Path, printed: str) -> None:
            if target == "species":
                cats, dogs = len(make.CAT_BREEDS), len(make.DOG_BREEDS)
                assert class_counts(root / "train") == {"cat": 3 * cats, "dog": 3 * dogs}
                assert class_counts(root / "test") == {"cat": cats, "dog": dogs}
            else:
                breeds = sorted(make.CAT_BREEDS + make.DOG_BREEDS)
                assert class_counts(root / "train") == dict.fromkeys(breeds, 3)
                assert class_counts(root / "test") == dict.fromkeys(breeds, 1)
            assert sum(class_counts(root / "train").values()) == counts["train"]

        return overrides, check

    return build


def imagenette(folder: Path, base: str, state: ServerState) -> tuple[list[str], Check]:
    archive = make.imagenette_tgz(folder / "imagenette2-160.tgz", train=3, val=2)
    key = state.add(archive)

    def check(root: Path, printed: str) -> None:
        assert root.name == "imagenette-px160"
        assert class_counts(root / "train") == dict.fromkeys(make.IMAGENETTE_WNIDS, 3)
        assert class_counts(root / "test") == dict.fromkeys(make.IMAGENETTE_WNIDS, 2)  # the official val/

    overrides = [
        "data.source.size=px160",
        f"data.source.sizes.px160.url={base}{key}",
        f"data.source.sizes.px160.md5={md5(archive)}",
    ]
    return overrides, check


DATASETS = {
    "petimages": (petimages, "petimages"),
    "kaggle": (kaggle, "catsdogs"),
    "oxford_pets": (oxford("species"), "oxford_pets"),
    "oxford_pets_breeds": (oxford("breeds"), "oxford_pets_breeds"),
    "imagenette": (imagenette, "imagenette-px160"),
}


@pytest.mark.parametrize("name", list(DATASETS))
def test_prepare_through_the_command_line_then_one_training_step(name: str, tmp_path: Path, server) -> None:
    base, state = server
    build, folder = DATASETS[name]
    overrides, check = build(tmp_path / "served", base, state)
    fast = FAST_DOWNLOAD if name != "kaggle" else []  # kaggle downloads nothing
    result = script_runner("prepare.py", tmp_path)(f"data={name}", *overrides, *fast, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    root = tmp_path / "data" / folder
    check(root, result.stdout)
    made = json.loads((root / MARKER).read_text())
    assert made["dataset"] == ("oxford_pets" if name.startswith("oxford") else name) and made["copied"] == 0
    assert (
        "hard links, no extra disk" in result.stdout
        and f"ready: python src/train.py data={name}" in result.stdout
    )
    if "sha256=" not in " ".join(overrides):  # no sha256 pinned: the one computed is printed, to pin it
        assert "(not pinned; to pin it: data.source." in result.stdout

    # One training step on what was laid out (the same code as `python src/train.py`, in this process).
    metrics = train_in_process([f"data={name}", *overrides], tmp_path)
    assert metrics["train/loss"] > 0 and 0 <= metrics["val/acc"] <= 1
    assert ("test/acc" in metrics) == (root / "test").is_dir()


def test_kaggle_without_the_file_says_how_to_get_it(tmp_path: Path) -> None:
    result = script_runner("prepare.py", tmp_path)("data=kaggle", timeout=120)
    assert result.returncode != 0
    assert "data.source.path is not set" in result.stderr
    assert "https://www.kaggle.com/c/dogs-vs-cats/data" in result.stderr
    assert "kaggle competitions download -c dogs-vs-cats" in result.stderr
    assert not (tmp_path / "data" / "catsdogs").exists()


def test_the_readmes_tilde_paths_mean_the_home_folder(tmp_path: Path) -> None:
    """``data.source.path=~/Downloads/train.zip`` as the README writes it (HOME is ``tmp_path`` here)."""
    (tmp_path / "Downloads").mkdir()
    make.kaggle_train_zip(tmp_path / "Downloads" / "train.zip", per_class=2)
    run = script_runner("prepare.py", tmp_path)
    result = run("data=kaggle", "data.source.path=~/Downloads/train.zip", "data.root='~/pets'", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "pets" / "train" / "cat.0.jpg").is_file()
    assert not list(tmp_path.rglob("~"))  # no folder named ~


def train_in_process(overrides: list[str], tmp_path: Path) -> dict[str, float]:
    """``src/train.py``'s ``train`` on the composed config, in this process (no interpreter to start)."""
    cfg = compose_train([*overrides, *TINY_RUN, *ONE_STEP], tmp_path)
    with open_dict(cfg):
        cfg.pop("hydra")  # as a Hydra app sees its config (the hydra node apart; it is set for resolvers)
    return train(cfg)


def test_the_first_training_run_downloads_and_prepares(tmp_path: Path, server, capsys) -> None:
    base, state = server
    overrides, check = imagenette(tmp_path / "served", base, state)
    state.fail_times["/imagenette2-160.tgz"] = 1  # a transient 503 first
    metrics = train_in_process(["data=imagenette", *overrides, *FAST_DOWNLOAD], tmp_path)
    printed = capsys.readouterr().out
    check(tmp_path / "data" / "imagenette-px160", printed)
    assert "attempt 1/5 failed (503" in printed and "retrying in 0.01 s" in printed
    assert len(state.requests) == 2 and "test/acc" in metrics


# ---------------------------------------------------------------------------------------- in-process


def petimages_source(tmp_path: Path, base: str, state: ServerState, sha: str | None) -> dict:
    archive = tmp_path / "served" / "kagglecatsanddogs_5340.zip"
    make.petimages_zip(archive)
    key = state.add(archive)
    return {
        "dataset": "petimages",
        "files": {"archive": {"url": f"{base}{key}", "sha256": sha or sha256(archive)}},
        "download": {"dir": tmp_path / "data" / "downloads", "backoff_s": 0.01, "progress": False},
        "extract": {"dir": tmp_path / "data" / "extracted"},
    }


def test_a_wrong_checksum_stops_before_anything_is_extracted(tmp_path: Path, server) -> None:
    base, state = server
    wrong = "ab" * 32
    source = petimages_source(tmp_path, base, state, wrong)
    root = tmp_path / "data" / "petimages"
    with pytest.raises(ChecksumError) as error:
        prepare_dataset(root, **source)
    assert "kagglecatsanddogs_5340.zip" in str(error.value) and f"expected {wrong}" in str(error.value)
    assert not root.exists() and not (tmp_path / "data" / "extracted").exists()
    assert list((tmp_path / "data" / "downloads").iterdir()) == []


def test_an_interrupted_preparation_leaves_nothing_trusted_and_the_rerun_completes(
    tmp_path: Path, server, monkeypatch
) -> None:
    base, state = server
    source = petimages_source(tmp_path, base, state, None)
    root = tmp_path / "data" / "petimages"
    real, calls = archives.extract_member, []

    def fails_mid_way(member, dest):
        calls.append(member)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real(member, dest)

    monkeypatch.setattr(archives, "extract_member", fails_mid_way)
    with pytest.raises(archives.ArchiveError, match="No space left on device"):
        prepare_dataset(root, **source)
    assert not root.exists() and not root.with_name("petimages.partial").exists()
    assert list((tmp_path / "data" / "extracted").iterdir()) == []
    assert len(state.requests) == 1

    monkeypatch.setattr(archives, "extract_member", real)
    made = prepare_dataset(root, **source)
    assert made["splits"] == {"train": {"Cat": 9, "Dog": 10}} and (root / MARKER).is_file()
    assert len(state.requests) == 1  # the verified download was kept: no second download


def test_two_runs_preparing_one_root_at_once_prepare_it_once(
    tmp_path: Path, server, monkeypatch, capsys
) -> None:
    """The second run waits on ``<root>.lock`` while the first lays the root out, then finds it ready."""
    base, state = server
    source = petimages_source(tmp_path, base, state, None)
    root = tmp_path / "data" / "petimages"
    real_recipe = recipes.RECIPES["petimages"]
    inside, release = threading.Event(), threading.Event()

    entered: list[str] = []

    def held_open(sources, layout, **options) -> None:
        entered.append("recipe")
        inside.set()
        assert release.wait(30)
        real_recipe(sources, layout, **options)

    monkeypatch.setitem(recipes.RECIPES, "petimages", held_open)
    results: dict[str, dict] = {}
    runs = {
        name: threading.Thread(
            target=lambda name=name: results.__setitem__(name, prepare_dataset(root, **source))
        )
        for name in ("first", "second")
    }
    runs["first"].start()
    assert inside.wait(30)
    runs["second"].start()
    runs["second"].join(0.5)
    assert entered == ["recipe"]  # the second waits for the lock instead of preparing alongside
    release.set()
    for run in runs.values():
        run.join(30)
    assert results["first"]["splits"] == results["second"]["splits"] == {"train": {"Cat": 9, "Dog": 10}}
    assert len(state.requests) == 1
    printed = capsys.readouterr().out
    assert printed.count(f"waiting for another process building {root} ...") == 1 and "is ready" in printed
    assert not root.with_name(root.name + ".lock").exists()  # deleted by its last holder


def test_a_root_prepared_another_way_is_refused(tmp_path: Path, server) -> None:
    base, state = server
    images, annotations, _ = make.oxford_tarballs(tmp_path / "served")
    files = {
        "images": {"url": f"{base}{state.add(images)}"},
        "annotations": {"url": f"{base}{state.add(annotations)}"},
    }
    root = tmp_path / "data" / "pets"
    prepare_dataset(root, "oxford_pets", files=files, target="species", download={"progress": False})
    with pytest.raises(ValueError, match=r"prepared as oxford_pets \{'target': 'species'\}"):
        prepare_dataset(root, "oxford_pets", files=files, target="breeds")
    with pytest.raises(ValueError, match="data.source.target='colour'"):
        prepare_dataset(tmp_path / "data" / "other", "oxford_pets", files=files, target="colour")


def test_a_hand_made_layout_is_used_as_it_is(tmp_path: Path, capsys) -> None:
    root = tmp_path / "catsdogs"
    (root / "train").mkdir(parents=True)
    prepare_dataset(root, "kaggle", path=None)  # no file needed: train/ is there
    assert "using" in capsys.readouterr().out and not (root / MARKER).exists()


def test_the_configs_pin_real_urls_and_well_formed_hashes() -> None:
    entries = []
    for name in ("petimages", "oxford_pets", "imagenette"):
        source = yaml.safe_load((CONF / "data" / f"{name}.yaml").read_text())["source"]
        entries += [*source.get("files", {}).values(), *source.get("sizes", {}).values()]
    # imagenette's files.archive interpolates its chosen size's entry, key by key: the sizes are checked
    entries = [e for e in entries if isinstance(e, dict) and not str(e["url"]).startswith("${")]
    assert len(entries) == 6
    for entry in entries:
        assert entry["url"].startswith("https://") and "127.0.0.1" not in entry["url"]
        assert entry["sha256"] is None or len(entry["sha256"]) == 64
        assert entry.get("md5") is None or len(entry["md5"]) == 32


# ------------------------------------------------- data is what the files say: a changed source (#27)


def kaggle_zip(path: Path, per_class: int, mtime: float | None = None) -> Path:
    make.kaggle_train_zip(path, per_class=per_class)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_a_new_kaggle_archive_prepares_the_root_again_and_says_so(tmp_path: Path, capsys) -> None:
    root = tmp_path / "data" / "catsdogs"
    old = kaggle_zip(tmp_path / "old" / "train.zip", per_class=2)
    new = kaggle_zip(tmp_path / "new" / "train.zip", per_class=3)
    prepare_dataset(root, "kaggle", path=str(old))
    assert class_counts_kaggle(root) == {"cat": 2, "dog": 2}
    capsys.readouterr()

    made = prepare_dataset(root, "kaggle", path=str(new))
    printed = capsys.readouterr().out
    (line,) = [line for line in printed.splitlines() if "out of date" in line]
    assert str(old) in line and str(new) in line and "preparing it again" in line
    assert "is ready" not in printed
    assert class_counts_kaggle(root) == {"cat": 3, "dog": 3}  # the new archive's files, the old ones gone
    assert made["source"]["path"] == str(new.resolve())
    assert json.loads((root / MARKER).read_text())["source"]["path"] == str(new.resolve())
    assert not list(root.parent.glob("catsdogs.*"))  # no .replaced, .partial or .lock left

    prepare_dataset(root, "kaggle", path=str(new))  # the same file again: nothing to do
    assert "is ready" in capsys.readouterr().out
    prepare_dataset(root, "kaggle", path=None)  # a run that names no path uses the root as prepared
    assert "is ready" in capsys.readouterr().out


def test_the_same_path_holding_another_archive_prepares_the_root_again(tmp_path: Path, capsys) -> None:
    root = tmp_path / "data" / "catsdogs"
    archive = kaggle_zip(tmp_path / "Downloads" / "train.zip", per_class=2, mtime=1_700_000_000)
    prepare_dataset(root, "kaggle", path=str(archive))
    kaggle_zip(archive, per_class=4, mtime=1_700_000_100)  # downloaded again, over the old one
    capsys.readouterr()
    prepare_dataset(root, "kaggle", path=str(archive))
    assert f"{archive} changed since it was prepared" in capsys.readouterr().out
    assert class_counts_kaggle(root) == {"cat": 4, "dog": 4}


def test_a_file_that_is_not_an_archive_is_refused_naming_it_and_what_was_expected(tmp_path: Path) -> None:
    from src.datasets.archives import NotAnArchiveError

    notes = tmp_path / "notes.txt"
    notes.write_text("not an archive\n")
    fresh = tmp_path / "data" / "fresh"
    with pytest.raises(NotAnArchiveError) as refused:
        prepare_dataset(fresh, "kaggle", path=str(notes))
    message = str(refused.value)
    assert "\n" not in message and str(notes) in message and "expected Kaggle's train.zip" in message
    assert not fresh.exists()

    root = tmp_path / "data" / "catsdogs"
    old = kaggle_zip(tmp_path / "old" / "train.zip", per_class=2)
    prepare_dataset(root, "kaggle", path=str(old))
    with pytest.raises(NotAnArchiveError) as refused:
        prepare_dataset(root, "kaggle", path=str(notes))
    assert str(notes) in str(refused.value) and f"{root} keeps what {old}" in str(refused.value)  # both
    assert class_counts_kaggle(root) == {"cat": 2, "dog": 2}  # untouched


@pytest.mark.slow
def test_prepare_refuses_a_file_that_is_not_an_archive_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an archive\n")
    run = script_runner("prepare.py", tmp_path)
    result = run("data=kaggle", f"data.source.path={tmp_path / 'notes.txt'}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = result.stderr.strip().splitlines()
    assert f"{tmp_path / 'notes.txt'} is not a zip or tar archive" in line and "expected Kaggle's" in line


def class_counts_kaggle(root: Path) -> dict[str, int]:
    names = [p.name.split(".")[0] for p in (root / "train").iterdir()]
    return {label: names.count(label) for label in sorted(set(names))}
