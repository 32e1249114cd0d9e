"""The split study's length rule (docs/split-study.md, "Length"), on made-up measures and archives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from src.reports.split_study import budget_epochs, epoch_measures, main, settled_epoch


def rows(splits: list[float], learning: list[float]) -> list[dict[str, float]]:
    pairs = zip(splits, learning, strict=True)
    return [{"epoch": e, "split": s, "learning": m} for e, (s, m) in enumerate(pairs)]


def test_settled_is_the_first_multiple_of_five_from_ten_whose_window_is_flat() -> None:
    flat_from_4 = [0.1, 0.2, 0.3, 0.35] + [0.40] * 20
    learning = [0.2, 0.3, 0.4, 0.45] + [0.50] * 20
    # epochs 4..9 are already flat, but the rule looks no earlier than epoch 10
    assert settled_epoch(rows(flat_from_4, learning)) == 10


def test_a_measure_that_still_moves_by_its_limit_is_not_settled() -> None:
    splits = [0.3] * 21
    learning = [0.40 + 0.0021 * e for e in range(21)]  # 0.0105 over a window of 5 epochs: not < 0.01
    assert settled_epoch(rows(splits, learning)) is None
    splits = [0.30 + 0.0099 * e for e in range(21)]  # 0.0495 over a window: < 0.05
    assert settled_epoch(rows(splits, [0.5] * 21)) == 10
    splits = [0.30 + 0.0101 * e for e in range(21)]
    assert settled_epoch(rows(splits, [0.5] * 21)) is None


def test_a_missing_epoch_in_the_window_is_not_settled() -> None:
    table = [row for row in rows([0.3] * 16, [0.5] * 16) if row["epoch"] != 8]
    assert settled_epoch(table) == 15  # epoch 8 lies in the window of 10 (5..10), not of 15


@pytest.mark.parametrize(("minutes", "epochs"), [(12, 18), (20, 11), (22, 10), (60, 3)])
def test_the_budget_gives_six_runs_22_hours(minutes: float, epochs: int) -> None:
    assert budget_epochs(minutes) == epochs


def test_measures_come_from_the_archived_conv1_of_every_epoch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    grey = torch.randn(48, 1, 5, 5).expand(48, 3, 5, 5)  # the same kernel in every channel: no colour
    colour = torch.randn(48, 3, 5, 5)
    np.savez(
        tmp_path / "weights.npz",
        conv1_epoch_000=torch.randn(96, 3, 5, 5).numpy(),
        conv1_epoch_001=torch.cat([grey, colour]).numpy(),
        conv2_epoch_001=np.zeros((128, 48, 5, 5), dtype=np.float32),
    )
    measures = epoch_measures(tmp_path)
    assert [row["epoch"] for row in measures] == [0, 1]
    assert measures[1]["split"] == pytest.approx(1.0)  # one tower grey, the other coloured
    assert measures[0]["split"] < 0.5
    assert 0.0 < measures[0]["learning"] < 1.0


def test_the_command_says_the_length_is_not_fixed_before_the_pilot_settles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(1)
    np.savez(tmp_path / "weights.npz", conv1_epoch_000=torch.randn(96, 3, 5, 5).numpy())
    main(["length", str(tmp_path), "--epoch-minutes", "12"])
    out = capsys.readouterr().out
    assert "budget: floor(22 h / (6 x 12 min)) = 18 epochs" in out
    assert "L not fixed yet" in out
