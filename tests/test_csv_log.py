"""The CSV log continues a version's metrics.csv written by another process (trainer=ddp_spawn's fit, then
its test), where Lightning's own writer fails or deletes the file."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import pytest
from lightning.pytorch.loggers import CSVLogger

from src.loggers.csv_log import CSVLog
from tests.conftest import CONF, compose_train


def spawned_fit_then_test(logger_class: type[CSVLogger], save_dir: Path) -> Path:
    """What ddp_spawn does: the main process's logger (its writer made, nothing logged) is copied into the
    process that fits, which logs an epoch, and copied again into the process that tests."""
    main = logger_class(save_dir, name="csv")
    main.experiment  # noqa: B018 - the main process resolves the version and makes the writer
    fit = pickle.loads(pickle.dumps(main))
    fit.log_metrics({"val/acc": 0.5, "epoch": 0}, step=9)
    fit.save()
    test = pickle.loads(pickle.dumps(main))
    test.log_metrics({"test/acc": 0.75, "epoch": 1}, step=10)
    test.save()
    return Path(test.experiment.metrics_file_path)


def test_lightnings_writer_fails_where_the_test_process_writes_after_fit(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fields not in fieldnames"):
        spawned_fit_then_test(CSVLogger, tmp_path)


def test_the_test_rows_follow_the_fit_rows_under_one_header(tmp_path: Path) -> None:
    path = spawned_fit_then_test(CSVLog, tmp_path)
    assert path == tmp_path / "csv" / "version_0" / "metrics.csv"
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert rows == [
        {"epoch": "0", "step": "9", "test/acc": "", "val/acc": "0.5"},
        {"epoch": "1", "step": "10", "test/acc": "0.75", "val/acc": ""},
    ]


def test_a_new_writer_for_the_same_version_keeps_the_file(tmp_path: Path) -> None:
    first = CSVLog(tmp_path, name="csv")
    first.log_metrics({"val/acc": 0.5}, step=1)
    first.save()
    again = CSVLog(tmp_path, name="csv", version=0)  # Lightning's would delete metrics.csv here
    again.log_metrics({"val/acc": 0.25}, step=2)
    again.save()
    with Path(again.experiment.metrics_file_path).open(newline="") as file:
        assert [(r["step"], r["val/acc"]) for r in csv.DictReader(file)] == [("1", "0.5"), ("2", "0.25")]


@pytest.mark.parametrize("logger", sorted(p.stem for p in (CONF / "logger").glob("*.yaml")))
def test_every_logger_config_keeps_the_csv_log(logger: str, tmp_path: Path) -> None:
    cfg = compose_train([f"logger={logger}"], tmp_path)
    assert cfg.logger.csv._target_ == "src.loggers.csv_log.CSVLog"
    assert cfg.logger.csv.save_dir == str(tmp_path) and cfg.logger.csv.name == "csv"  # the reports' glob
