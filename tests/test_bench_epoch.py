"""bench/epoch.py: real-epoch rows through the project's datamodule, on a small synthetic set made here."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.epoch import Clock, EpochSettings, epoch_rows, measure_epoch, skipped_rows
from src.datasets.synthetic import generate_dataset


def small_settings() -> EpochSettings:
    return EpochSettings(
        batch=4,
        warm_batches=1,
        timed_batches=2,
        step_repeats=1,
        val_timed_batches={"centre": 1, "ten": 1},
        image_size=72,
        crop_size=64,
        net={"conv_widths": (8, 16, 16, 16, 16), "fc_width": 32},
    )


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
        assert 0 <= timing["start_seconds"] < 60
    assert set(figures["validation"]) == {"centre", "ten"}
    assert figures["step"] > 0


def test_rows_give_ratios_shares_and_verdicts(figures: dict) -> None:
    rows = epoch_rows(figures)
    assert all(math.isfinite(r.value) and r.value > 0 for r in rows)
    end_to_end = [r for r in rows if "end to end" in r.name]
    assert len(end_to_end) == 3 and all("x the step alone (target >= 0.9: " in r.note for r in end_to_end)
    shares = {r.name: r.value for r in rows if "share of the epoch" in r.name}
    assert len(shares) == 2 and all(0 < v < 100 for v in shares.values())
    centre, ten = (next(v for k, v in shares.items() if name in k) for name in ("centre", "ten-crop"))
    assert centre < ten  # one view against ten


def test_share_follows_from_the_rates_and_split_sizes() -> None:
    timing = {"rate": 10.0, "start_seconds": 0.0, "batches": 2, "step": 10.0}
    figures = {
        "settings": vars(small_settings()) | {"workers": (0,)},
        "train_images": 900,
        "val_images": 100,
        "step": 10.0,
        "end_to_end": {"0": timing},
        "validation": {"centre": timing | {"rate": 50.0}, "ten": timing | {"rate": 5.0}},
    }
    shares = [r for r in epoch_rows(figures) if "share" in r.name]
    assert shares[0].value == pytest.approx(100 * 2 / 92)  # 2 s of 90 + 2
    assert shares[1].value == pytest.approx(100 * 20 / 110) and "FAIL" in shares[1].note


def test_clock_needs_a_timed_batch_after_the_warm_up() -> None:
    clock = Clock()
    clock.epoch_start["train"] = 0.0
    clock.starts["train"], clock.ends["train"], clock.sizes["train"] = [0.5], [1.0], [4]
    with pytest.raises(ValueError, match="warm-up"):
        clock.timing("train", 1)


def test_skipped_rows_say_why(tmp_path: Path) -> None:
    (row,) = skipped_rows("no data folder given")
    assert math.isnan(row.value) and "skipped: no data folder given" in row.note
