"""src/runs/metrics.py: a run's CSV log read back, every version of a resumed run merged by epoch and step."""

from __future__ import annotations

from pathlib import Path

from src.runs.metrics import has_metrics, metrics_files, read_metrics
from tests.helpers.runs import write_metrics


def test_versions_are_read_in_the_order_written_and_rows_merged_by_epoch_and_step(tmp_path: Path) -> None:
    header = ["epoch", "step", "train/loss", "val/acc", "note"]
    first = write_metrics(
        tmp_path, 0, header, [[0, 10, 2.0, "", "x"], [0, 10, "", 0.2, ""], [1, 20, 1.5, 0.3, ""]]
    )
    tenth = write_metrics(tmp_path, 10, header, [[2, 40, 1.1, 0.5, ""]])
    second = write_metrics(tmp_path, 2, header, [[1, 20, 1.4, 0.35, ""], [2, 30, 1.2, 0.4, ""]])
    assert metrics_files(tmp_path) == [first, second, tenth]  # version_10 after version_2
    assert read_metrics(tmp_path) == [
        {"epoch": 0, "step": 10, "train/loss": 2.0, "val/acc": 0.2},  # two rows of one step; text left out
        {"epoch": 1, "step": 20, "train/loss": 1.4, "val/acc": 0.35},  # written again on resume: later wins
        {"epoch": 2, "step": 30, "train/loss": 1.2, "val/acc": 0.4},
        {"epoch": 2, "step": 40, "train/loss": 1.1, "val/acc": 0.5},
    ]


def test_rows_without_a_step_stand_alone_and_a_run_without_a_log_has_none(tmp_path: Path) -> None:
    assert not has_metrics(tmp_path) and read_metrics(tmp_path) == []
    write_metrics(tmp_path, 0, ["epoch", "val/acc"], [[0, 0.5], [0, 0.6]])
    assert has_metrics(tmp_path)
    assert read_metrics(tmp_path) == [{"epoch": 0, "val/acc": 0.5}, {"epoch": 0, "val/acc": 0.6}]
