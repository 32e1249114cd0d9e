"""bench/epoch.py: real-epoch rows through the project's datamodule, on small synthetic sets made here.

The measurements are checked for what they hold (batch counts, splits, keys), never for how fast anything
ran: these machines are shared, and a test that asserts a speed fails under load. The rows' ratios, shares,
projections and verdicts are checked on given numbers.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from bench.common import net_for_data
from bench.epoch import (
    Clock,
    EpochSettings,
    epoch_rows,
    measure_epoch,
    net_settings,
    skipped_rows,
)
from src.datasets.synthetic import generate_dataset

SMALL = {"conv_widths": (8, 16, 16, 16, 16), "fc_width": 32}


def small_settings() -> EpochSettings:
    return EpochSettings(
        batch=4,
        warm_batches=1,
        timed_batches=2,
        step_repeats=1,
        val_timed_batches={"centre": 1, "ten": 1},
        image_size=72,
        crop_size=64,
        net=SMALL,
    )


def given_figures(
    settings: dict[str, Any], end_to_end: dict[str, tuple[float, float]], val_rates: tuple[float, float]
) -> dict[str, Any]:
    """``measure_epoch``'s result with given rates: workers -> (end-to-end img/s, step img/s); 900 training
    and 100 validation images; no start-up waits."""
    timing = {"start_seconds": 0.0, "batches": 2}
    return {
        "settings": settings,
        "train_images": 900,
        "val_images": 100,
        "step": 10.0,
        "end_to_end": {w: timing | {"rate": rate, "step": step} for w, (rate, step) in end_to_end.items()},
        "validation": {
            "centre": timing | {"rate": val_rates[0]},
            "ten": timing | {"rate": val_rates[1]},
        },
    }


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("epoch")
    root = generate_dataset(tmp / "synthetic", train_per_class=40, test_per_class=2, image_size=72)
    return measure_epoch(root, tmp / "cache", small_settings())


def test_measures_the_step_every_worker_count_and_both_validations(figures: dict) -> None:
    assert figures["train_images"] == 72 and figures["val_images"] == 8  # the 10 % split of 80
    assert set(figures["end_to_end"]) == {"0", "1", "2"}
    for timing in figures["end_to_end"].values():
        assert timing["batches"] == 2 and timing["rate"] > 0 and timing["step"] > 0
        assert timing["start_seconds"] >= 0
    assert set(figures["validation"]) == {"centre", "ten"}
    assert figures["validation"]["centre"]["batches"] == figures["validation"]["ten"]["batches"] == 1
    assert figures["step"] > 0


def test_measured_figures_make_every_row(figures: dict) -> None:
    rows = epoch_rows(figures)
    assert all(math.isfinite(r.value) and r.value > 0 for r in rows)
    end_to_end = [r for r in rows if "end to end" in r.name]
    assert len(end_to_end) == 3 and all("x the step alone (target >= 0.9: " in r.note for r in end_to_end)
    shares = [r for r in rows if "share of the epoch" in r.name]
    assert len(shares) == 2 and all(0 < r.value < 100 for r in shares)
    assert sum("one epoch projected" in r.name for r in rows) == 1


def test_end_to_end_verdicts_follow_the_ratio_to_the_step_around_it() -> None:
    figures = given_figures(
        vars(small_settings()), {"0": (9.0, 10.0), "1": (8.9, 10.0), "2": (12.0, 10.0)}, (50.0, 5.0)
    )
    rows = {re.search(r"\d workers", r.name)[0]: r for r in epoch_rows(figures) if "end to end" in r.name}
    assert rows["0 workers"].note.startswith("0.90x the step alone (target >= 0.9: pass)")
    assert rows["1 workers"].note.startswith("0.89x the step alone (target >= 0.9: FAIL)")
    assert rows["2 workers"].note.startswith("1.20x the step alone (target >= 0.9: pass)")
    assert "(target >= 0.9: FAIL)" in rows["1 workers"].summary


def test_shares_and_the_projected_epoch_follow_from_the_rates_and_split_sizes() -> None:
    figures = given_figures(vars(small_settings()), {"0": (10.0, 10.0)}, (50.0, 5.0))
    rows = epoch_rows(figures)
    shares = [r for r in rows if "share" in r.name]
    assert shares[0].value == pytest.approx(100 * 2 / 92)  # 2 s of 90 + 2
    assert "pass" in shares[0].note
    assert shares[1].value == pytest.approx(100 * 20 / 110) and "FAIL" in shares[1].note
    (epoch,) = (r for r in rows if "one epoch projected" in r.name)
    assert epoch.value == pytest.approx(92) and epoch.unit == "s"  # 900 / 10 + 100 / 50
    assert "training at 0 workers" in epoch.name and "(900 images)" in epoch.note


def test_the_epoch_is_projected_at_the_fastest_worker_count() -> None:
    figures = given_figures(vars(small_settings()), {"0": (10.0, 10.0), "1": (30.0, 30.0)}, (50.0, 5.0))
    (epoch,) = (r for r in epoch_rows(figures) if "one epoch projected" in r.name)
    assert "training at 1 workers" in epoch.name and epoch.value == pytest.approx(900 / 30 + 2)


def test_the_64_pixel_nets_settings_are_its_recipes() -> None:
    settings = net_settings("small64", batch=64)
    assert (settings.image_size, settings.crop_size, settings.batch) == (64, 56, 64)
    assert settings.net == {"layers": "small64"} and settings.timed_batches == 16
    paper = net_settings("paper")
    assert (paper.image_size, paper.crop_size, paper.net) == (256, 224, {"layers": "paper"})
    assert paper.timed_batches == EpochSettings.timed_batches


def test_rows_of_another_member_name_it_and_the_papers_keep_their_names() -> None:
    small64 = given_figures(vars(net_settings("small64")), {"0": (10.0, 10.0)}, (50.0, 5.0))
    assert all("small64 net, 56-pixel crops, 32-true" in r.name for r in epoch_rows(small64))
    paper = given_figures(vars(net_settings("paper")), {"0": (10.0, 10.0)}, (50.0, 5.0))
    assert all("net," not in r.name for r in epoch_rows(paper))
    assert epoch_rows(paper)[0].name == (
        "real epoch: the step alone (random tensors in memory), 32-true, channels_last, batch 128"
    )


def test_the_64_pixel_net_runs_an_epoch_at_its_sizes(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "photos", train_per_class=40, test_per_class=1, image_size=64)
    settings = net_settings(
        "small64",
        batch=4,
        warm_batches=1,
        timed_batches=1,
        step_repeats=1,
        val_timed_batches={"centre": 1, "ten": 1},
        workers=(0,),
    )
    figures = measure_epoch(root, tmp_path / "cache", settings)
    assert figures["settings"]["crop_size"] == 56 and figures["settings"]["net"]["layers"] == "small64"
    assert set(figures["end_to_end"]) == {"0"} and figures["end_to_end"]["0"]["batches"] == 1
    metas = [json.loads(p.read_text()) for p in (tmp_path / "cache").glob("*/meta.json")]
    assert len(metas) == 2 and all(m["image_size"] == 64 for m in metas)  # train/ and test/, 64-pixel squares


def test_a_tiny_imagenet_folder_gets_the_64_pixel_net(tmp_path: Path) -> None:
    assert net_for_data(tmp_path) == "paper"  # no prepared.json
    (tmp_path / "prepared.json").write_text(json.dumps({"dataset": "tiny_imagenet"}))
    assert net_for_data(tmp_path) == "small64"
    (tmp_path / "prepared.json").write_text(json.dumps({"dataset": "imagenette"}))
    assert net_for_data(tmp_path) == "paper"


def test_clock_needs_a_timed_batch_after_the_warm_up() -> None:
    clock = Clock()
    clock.epoch_start["train"] = 0.0
    clock.starts["train"], clock.ends["train"], clock.sizes["train"] = [0.5], [1.0], [4]
    with pytest.raises(ValueError, match="warm-up"):
        clock.timing("train", 1)


def test_skipped_rows_say_why(tmp_path: Path) -> None:
    (row,) = skipped_rows("no data folder given")
    assert math.isnan(row.value) and "skipped: no data folder given" in row.note
