"""The config schema (src/config/schema.py): a wrong type or value is refused with its key's name, before
anything runs, and every shipped config passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.config.schema import check_config
from tests.conftest import CONF, compose_train

REFUSED = {
    "model.towers=two": "error: model.towers=two: expected an integer >= 1",
    "data.batch_size=-3": "error: data.batch_size=-3: expected an integer >= 1",
    "data.val_views=eleven": "error: data.val_views=eleven: expected one of ten, centre",
    "trainer.precision=17": "error: trainer.precision=17: expected one of auto, 64, 32, 16, "
    "transformer-engine, transformer-engine-float16, 16-true, 16-mixed, bf16-true, bf16-mixed, 32-true, "
    "64-true, 64, 32, 16, bf16",
    "optimizer.lr=abc": "error: optimizer.lr=abc: expected a number >= 0",
    "optimizer.lr=-0.01": "error: optimizer.lr=-0.01: expected a number >= 0",
    "model.dropout=1.5": "error: model.dropout=1.5: expected a number in [0, 1]",
    "data.crop_size=0": "error: data.crop_size=0: expected an integer >= 1",
    "scheduler.warmup_fraction=2": "error: scheduler.warmup_fraction=2: expected a number in (0, 1] or null",
    "data.batch_size=2.5": "error: data.batch_size=2.5: expected an integer >= 1",
    "data.num_workers=-1": "error: data.num_workers=-1: expected an integer >= 0 or null",
    "data.train_views=five": "error: data.train_views=five: expected one of random, ten, centre",
    "data.test_views=all": "error: data.test_views=all: expected one of ten, centre",
    "data.normalize=std": "error: data.normalize=std: expected one of mean, mean_std",
    "data.val_fraction=0": "error: data.val_fraction=0: expected a number in (0, 1)",
    "scheduler.warmup_steps=-1": "error: scheduler.warmup_steps=-1: expected an integer >= 0",
    "scheduler.lr_batch=0": "error: scheduler.lr_batch=0: expected an integer >= 1 or null",
    "model.init=he": "error: model.init=he: expected one of paper, kaiming, kaiming_paper_conv1",
    "model.layers=tiny": "error: model.layers=tiny: expected one of paper, small64",
    "data.val_fraction=1": "error: data.val_fraction=1: expected a number in (0, 1)",
    "compile=yes": "error: compile=yes: expected true or false",
    "data.crop_size=300": "error: data.crop_size=300: expected an integer <= data.image_size (256), the "
    "cached images it is cut from",
}


def refusal(overrides: list[str], tmp_path: Path) -> str:
    with pytest.raises(SystemExit) as stopped:
        check_config(compose_train(overrides, tmp_path))
    return str(stopped.value)


@pytest.mark.parametrize("override", list(REFUSED))
def test_a_wrong_value_is_refused_naming_its_key(override: str, tmp_path: Path) -> None:
    assert refusal([override], tmp_path) == REFUSED[override]


def test_right_values_of_the_same_keys_pass(tmp_path: Path) -> None:
    overrides = [
        "model.towers=4",
        "data.batch_size=3",
        "data.val_views=ten",
        "trainer.precision=bf16-mixed",
        "optimizer.lr=1",  # an integer is a number
        "model.dropout=1",  # torch's own range: the dead run it trains is stopped by training_health
        "data.crop_size=256",
        "scheduler.warmup_fraction=null",
        "model.conv_widths=[96,256,384,384,256]",
        "data.classes=[a,b]",
    ]
    check_config(compose_train(overrides, tmp_path))


def test_a_missing_or_unset_key_is_named(tmp_path: Path) -> None:
    assert refusal(["~optimizer.momentum"], tmp_path) == "error: optimizer.momentum: missing from the config"
    assert refusal(["data=base"], tmp_path) == "error: data.root=???: give it a value"
    short = refusal(["model.conv_widths=[1,2]"], tmp_path)
    widths = "a list of 5 integers >= 1 (conv1..conv5) or null"
    assert short == f"error: model.conv_widths=[1, 2]: expected {widths}"


def shipped(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


# These read any folder: they have no root or class count of their own.
ANY_FOLDER = ["data.root=/somewhere", "data.num_classes=2"]
NEEDS = {f"data={name}": ANY_FOLDER for name in ("base", "folders", "kaggle")}


@pytest.mark.parametrize(
    "choice",
    ["train"]
    + [
        f"{group}={name}"
        for group in ("experiment", "model", "data", "trainer", "scheduler")
        for name in shipped(group)
    ],
)
def test_every_shipped_config_passes(choice: str, tmp_path: Path) -> None:
    overrides = [] if choice == "train" else [choice, *NEEDS.get(choice, [])]
    check_config(compose_train(overrides, tmp_path))


def test_the_shipped_groups_are_all_checked() -> None:
    """A new file in a checked group is found by the test above (no list to keep up to date)."""
    assert "two_tower" in shipped("model") and "demo" in shipped("experiment") and len(shipped("data")) > 5


def test_train_stops_before_anything_starts(train_cli, tmp_path: Path) -> None:
    """The line and exit code 1, before the data is made or a logger starts; no run folder is left."""
    result = train_cli("data.batch_size=-3", timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert output.strip().splitlines()[-1] == "error: data.batch_size=-3: expected an integer >= 1"
    assert "wrote" not in output and "W&B" not in output and not (tmp_path / "data").exists()
    runs = tmp_path / "outputs" / "train" / "runs"
    assert not runs.exists() or not any(runs.iterdir())
