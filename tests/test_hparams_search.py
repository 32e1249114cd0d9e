"""``hparams_search=optuna`` is a sweep by itself: ``-m`` is not needed (issue #26).

Without ``hydra.mode: MULTIRUN`` in the search config, ``python src/train.py hparams_search=optuna`` (no
``-m``) trained one run at the defaults and never asked the sweeper for a trial.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra.types import RunMode

from tests.conftest import compose_train
from tests.test_sweeps import TINY_SWEEP, job_dirs, read_csv


def test_the_optuna_search_config_makes_the_run_a_sweep(tmp_path: Path) -> None:
    assert compose_train([], tmp_path).hydra.mode in (None, RunMode.RUN)  # a plain run stays one run
    assert compose_train(["hparams_search=optuna"], tmp_path).hydra.mode == RunMode.MULTIRUN


@pytest.mark.slow
@pytest.mark.long
def test_a_one_trial_search_without_m_runs_the_sweeper(tmp_path: Path, train_cli) -> None:
    result = train_cli(
        *[a for a in TINY_SWEEP if not a.startswith("data.batch_size=")],  # the sweeper chooses the batch
        f"data.root={tmp_path / 'synthetic'}",
        "logger=csv",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=1",
    )  # no -m
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "outputs" / "train" / "runs").exists()  # not a single run at the defaults
    (sweep,) = (tmp_path / "outputs" / "train" / "multiruns").iterdir()
    assert [job.name for job in job_dirs(sweep)] == ["0"]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"optimizer.lr", "optimizer.weight_decay", "data.batch_size"}
    (row,) = read_csv(sweep / "summary.csv")
    assert int(row["data.batch_size"]) in (32, 64, 128) and 1e-4 <= float(row["optimizer.lr"]) <= 0.03
