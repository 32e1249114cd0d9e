"""Sweeps: multiruns through the command line, the sweep summary, W&B groups, Optuna, DDP configs, SLURM."""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path

import hydra
import lightning as L
import pytest
import torch
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict, read_write

from src.loggers.wandb_records import iter_records, wait_until_finished
from src.loggers.wandb_run import sweep_group, sweep_run_name
from src.runs.sweeps import (
    JOB_RESULT,
    find_jobs,
    job_metrics,
    summarise_sweep,
    write_summary,
)
from src.train import build_module, build_trainer
from tests.conftest import compose_train
from tests.helpers.runs import write_metrics
from tests.test_train import TINY_GENERATED, TINY_RUN

# fc6/fc7 of 256 units instead of 4096: 3 M parameters instead of 57 M, so that checkpoints and the model
# handed to ddp_spawn's processes are small and each job takes seconds.
TINY_SWEEP = [*TINY_GENERATED, *TINY_RUN, "trainer.max_epochs=1", "model.fc_width=256"]


def sweep_dirs(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "outputs" / "train" / "multiruns").iterdir())


def job_dirs(sweep: Path) -> list[Path]:
    return sorted(
        (p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def as_multirun_job(cfg, sweep_dir: str, num: int, overrides: list[str]) -> None:
    """Make ``cfg``'s Hydra config look like job ``num`` of a multirun, and install it."""
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.sweep.dir = sweep_dir
        cfg.hydra.job.num = num
        cfg.hydra.overrides.task = overrides
    HydraConfig().set_config(cfg)


# --- trainer configs ----------------------------------------------------------------------------------------


# How Lightning starts the other ranks: trainer=ddp re-runs the command line (under -m: the sweep again),
# trainer=ddp_spawn starts them with multiprocessing inside the job.
LAUNCHERS = {"ddp": "_SubprocessScriptLauncher", "ddp_spawn": "_MultiProcessingLauncher"}


@pytest.mark.parametrize("option", sorted(LAUNCHERS))
def test_ddp_trainer_configs_are_short_diffs_against_the_default(tmp_path: Path, option: str) -> None:
    default = OmegaConf.to_container(compose_train([], tmp_path).trainer, resolve=True)
    cfg = compose_train([f"trainer={option}"], tmp_path)
    changed = OmegaConf.to_container(cfg.trainer, resolve=True)
    assert {k for k in changed if changed[k] != default.get(k)} == {"strategy", "devices"}
    assert changed["strategy"] == option and changed["devices"] == 2
    # On a CPU-only machine the two devices are two CPU processes (gloo); building the Trainer starts none.
    trainer, _ = build_trainer(cfg.trainer, accelerator="cpu", logger=False, enable_progress_bar=False)
    assert isinstance(trainer, L.Trainer) and trainer.world_size == 2
    assert type(trainer.strategy.launcher).__name__ == LAUNCHERS[option]


# --- W&B group and name -------------------------------------------------------------------------------------


def test_wandb_group_is_the_sweep_folder_under_multirun_and_none_for_a_single_run(tmp_path: Path) -> None:
    cfg = compose_train(["logger=wandb"], tmp_path)
    assert sweep_group() is None and sweep_run_name() is None  # a single run: W&B's defaults
    assert hydra.utils.instantiate(cfg.logger.wandb.group) is None

    sweep = str(tmp_path / "multiruns" / "2026-01-02_03-04-05-678901")
    as_multirun_job(cfg, sweep, 3, [f"paths.log_dir={tmp_path}", "model.towers=2", "seed=1"])
    assert sweep_group() == "2026-01-02_03-04-05-678901"
    assert sweep_run_name() == "3: model.towers=2 seed=1"  # where the files go is left out
    assert hydra.utils.instantiate(cfg.logger.wandb.group) == "2026-01-02_03-04-05-678901"


def test_a_wandb_group_on_the_command_line_wins(tmp_path: Path) -> None:
    cfg = compose_train(["logger=wandb", "logger.wandb.group=towers-sweep"], tmp_path)
    assert cfg.logger.wandb.group == "towers-sweep"


def test_sweep_folders_of_one_second_do_not_collide(tmp_path: Path) -> None:
    first = compose_train([], tmp_path).hydra.sweep
    second = compose_train([], tmp_path).hydra.sweep
    assert first.dir != second.dir  # the folder name has microseconds
    assert OmegaConf.to_container(first)["subdir"] == "${hydra.job.num}"  # one folder per job


# --- the summary, from job folders on disk ------------------------------------------------------------------


def fake_job(sweep: Path, num: int, overrides: list[str], status="COMPLETED", returned=None, csv_rows=None):
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if status is not None:
        result = {
            "job": num,
            "status": status,
            "optimized_metric": "val/acc_best",
            "returned": returned,
            "error": None if status == "COMPLETED" else "RuntimeError: out of memory",
            "overrides": overrides,
        }
        (job / JOB_RESULT).write_text(json.dumps(result))
    if csv_rows:
        (job / "csv" / "version_0").mkdir(parents=True)
        with (job / "csv" / "version_0" / "metrics.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["epoch", "val/acc", "val/acc_best", "test/acc"])
            writer.writeheader()
            writer.writerows(csv_rows)
    return job


def test_summary_lists_every_job_with_the_overrides_that_differ(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    common = ["paths.log_dir=/x", "trainer.max_epochs=2"]
    rows = [
        {"epoch": 0, "val/acc": 0.5, "val/acc_best": 0.5, "test/acc": ""},
        {"epoch": 1, "val/acc": 0.75, "val/acc_best": 0.75, "test/acc": ""},
        {"epoch": 2, "val/acc": "", "val/acc_best": "", "test/acc": 0.7},
    ]
    fake_job(sweep, 0, [*common, "model.towers=1", "seed=0"], returned=0.75, csv_rows=rows)
    fake_job(sweep, 1, [*common, "model.towers=2", "seed=0"], status="FAILED")
    fake_job(sweep, 10, [*common, "model.towers=4", "seed=0"], status=None)  # killed: no job_result.json
    (sweep / ".submitit").mkdir()
    assert [p.name for p in find_jobs(sweep)] == ["0", "1", "10"]

    csv_path, md_path = write_summary(sweep)
    table = read_csv(csv_path)
    assert list(table[0])[:4] == ["job", "status", "model.towers", "returned"]  # seed and paths do not vary
    assert [(r["job"], r["status"], r["model.towers"]) for r in table] == [
        ("0", "COMPLETED", "1"),
        ("1", "FAILED", "2"),
        ("10", "no result", "4"),
    ]
    assert table[0]["returned"] == "0.75" and table[0]["val/acc"] == "0.75" and table[0]["test/acc"] == "0.7"
    assert table[0]["epochs"] == "2" and "trainer.max_epochs=2" in table[0]["overrides"]
    assert table[1]["error"] == "RuntimeError: out of memory" and table[1]["returned"] == ""
    markdown = md_path.read_text()
    assert "| 0 | COMPLETED | 1 | 0.75 |" in markdown and "Best (maximize): job 0" in markdown


def test_a_key_only_some_jobs_override_is_a_column(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, ["seed=0"], returned=0.5)
    fake_job(sweep, 1, ["seed=0", "optimizer.lr=0.001"], returned=0.6)
    columns, rows = summarise_sweep(sweep)
    assert "optimizer.lr" in columns and "seed" not in columns
    assert [r["optimizer.lr"] for r in rows] == [None, "0.001"]


def test_appended_keys_and_quoted_values_are_columns_by_their_key(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, ["+trainer.limit_train_batches=2", "tags='a'"], returned=0.5)
    fake_job(sweep, 1, ["+trainer.limit_train_batches=4", "tags='b'"], returned=0.6)
    columns, rows = summarise_sweep(sweep)
    assert "trainer.limit_train_batches" in columns and "+trainer.limit_train_batches" not in columns
    assert [(r["trainer.limit_train_batches"], r["tags"]) for r in rows] == [("2", "a"), ("4", "b")]


SWEEP_HEADER = ["epoch", "step", "val/acc", "val/acc_best", "test/acc"]


def test_a_resumed_job_reports_the_values_of_every_version_merged(tmp_path: Path) -> None:
    job = tmp_path / "0"
    # the first process validated epochs 0..2, then stopped after epoch 2's validation but before its
    # checkpoint; the resumed process went back to epoch 2's start and went on to epoch 3 and the test
    write_metrics(
        job, 0, SWEEP_HEADER, [{"epoch": e, "step": 10 * (e + 1), "val/acc": 0.1 * (e + 1)} for e in range(3)]
    )
    write_metrics(
        job,
        1,
        SWEEP_HEADER,
        [
            {"epoch": 2, "step": 30, "val/acc": 0.35, "val/acc_best": 0.35},
            {"epoch": 3, "step": 40, "val/acc": 0.4, "val/acc_best": 0.4},
            {"epoch": 4, "step": 40, "test/acc": 0.38},
        ],
    )
    found = job_metrics(job)
    assert found["epochs"] == 4  # epochs 0..3, epoch 2 once; the newest version alone has 2
    assert found["val/acc"] == pytest.approx(0.4) and found["val/acc_best"] == pytest.approx(0.4)
    assert found["test/acc"] == pytest.approx(0.38)


def test_metrics_come_from_the_checkpoint_without_a_log(tmp_path: Path) -> None:
    job = tmp_path / "0"
    (job / "checkpoints").mkdir(parents=True)
    state = {"monitor": "val/acc", "current_score": torch.tensor(0.6), "best_model_score": torch.tensor(0.8)}
    torch.save(
        {"epoch": 4, "callbacks": {"ModelCheckpoint{'monitor': 'val/acc'}": state}},
        job / "checkpoints" / "last.ckpt",
    )
    found = job_metrics(job)
    assert found["val/acc"] == pytest.approx(0.6) and found["val/acc_best"] == pytest.approx(0.8)
    assert found["epochs"] == 5


# --- multiruns through the command line ---------------------------------------------------------------------


def wandb_run_record(run_dir: Path):
    wait_until_finished(run_dir)
    return next(r.run for r in iter_records(run_dir) if r.WhichOneof("record_type") == "run")


@pytest.mark.slow
@pytest.mark.long
def test_multirun_gives_one_folder_one_wandb_run_and_one_row_per_job(tmp_path: Path, train_cli) -> None:
    start = time.monotonic()
    result = train_cli(  # -m after the overrides: argparse takes no override after an option
        *TINY_SWEEP,
        f"data.root={tmp_path / 'synthetic'}",
        "logger=wandb",
        "hydra/callbacks=sweep_summary",
        "model.towers=1,2",
        "seed=0",
        "-m",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = sweep_dirs(tmp_path)
    jobs = job_dirs(sweep)
    assert [j.name for j in jobs] == ["0", "1"]
    assert not (tmp_path / "outputs" / "train" / "runs").exists() and not (tmp_path / "multirun").exists()

    records = [wandb_run_record(run) for job in jobs for run in job.glob("wandb/offline-run-*")]
    assert len(records) == 2  # each job its own run: wandb.finish() between jobs
    assert len({r.run_id for r in records}) == 2
    assert {r.run_group for r in records} == {sweep.name}  # grouped by the sweep
    assert [r.display_name.split(":")[0] for r in records] == ["0", "1"]
    assert "model.towers=1" in records[0].display_name and "model.towers=2" in records[1].display_name

    table = read_csv(sweep / "summary.csv")
    assert [(r["job"], r["status"], r["model.towers"]) for r in table] == [
        ("0", "COMPLETED", "1"),
        ("1", "COMPLETED", "2"),
    ]
    for row in table:
        assert 0 <= float(row["returned"]) <= 1 and row["returned"] == row["val/acc_best"]  # optimized_metric
        assert row["val/acc"] and row["test/acc"] and row["epochs"] == "1"  # read from the CSV logs
    assert f"sweep summary: {sweep / 'summary.csv'}" in result.stdout
    print(f"2-job multirun with W&B: {time.monotonic() - start:.0f} s")


@pytest.mark.slow
@pytest.mark.long
def test_ddp_spawn_multirun_runs_each_job_once_on_two_processes(tmp_path: Path, train_cli) -> None:
    start = time.monotonic()
    result = train_cli(
        *[a for a in TINY_SWEEP if a != "trainer=cpu"],
        f"data.root={tmp_path / 'synthetic'}",
        "logger=wandb",  # and the CSV log, which fit's and test's spawned processes both write
        "trainer=ddp_spawn",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "hydra/callbacks=sweep_summary",
        "model.towers=1,2",
        "-m",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Exactly one sweep with two job folders: no rank ran the sweep again (under trainer=ddp rank 1 would).
    (sweep,) = sweep_dirs(tmp_path)
    jobs = job_dirs(sweep)
    assert [j.name for j in jobs] == ["0", "1"]
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "outputs" / "train" / "runs").exists()
    assert [len(list(job.glob("wandb/offline-run-*"))) for job in jobs] == [1, 1]  # rank 0 logs, once
    assert "batch: 8 global = 2 devices x 4" in result.stdout  # each job trained on two processes
    table = read_csv(sweep / "summary.csv")
    assert [r["status"] for r in table] == ["COMPLETED", "COMPLETED"] and all(r["test/acc"] for r in table)
    for job in jobs:  # one CSV version per job: test's rows after fit's, under one header
        (metrics,) = job.glob("csv/version_*/metrics.csv")
        rows = read_csv(metrics)
        assert [bool(r["val/acc"]) for r in rows if r["val/acc"] or r["test/acc"]] == [True, False]
    print(f"2-job ddp_spawn multirun: {time.monotonic() - start:.0f} s")


# --- a job that dies or fails: recorded, and the sweep goes on (#27) ----------------------------------------


def end_job(cfg, returned) -> None:
    """What Hydra does after a job's task function returned ``returned``: ``SweepSummary.on_job_end``."""
    from hydra.core.utils import JobReturn, JobStatus

    from src.hydra_callbacks.sweep_summary import SweepSummary

    job_return = JobReturn(status=JobStatus.COMPLETED, _return_value=returned)
    SweepSummary().on_job_end(cfg, job_return)


def test_a_job_that_dies_in_a_sweep_is_recorded_with_its_reason_and_the_sweep_goes_on(
    tmp_path: Path, capsys
) -> None:
    from src.hydra_callbacks.sweep_summary import SweepSummary
    from src.runs.sweeps import run_job
    from src.utils.exits import ErrorExit

    sweep = tmp_path / "sweep"
    reason = "training died at step 3, epoch 0 (lr 6.25e+04): the training loss is nan"

    def dies() -> float:
        raise ErrorExit(3, reason)  # what exit_when_dead raises

    def fails() -> float:
        raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")

    cfg = compose_train([], tmp_path)
    for num, job in enumerate((dies, lambda: 0.5, fails, lambda: SystemExit("error: /x does not exist"))):
        with read_write(cfg.hydra), open_dict(cfg.hydra):
            cfg.hydra.runtime.output_dir = str(sweep / str(num))
        as_multirun_job(cfg, str(sweep), num, [f"optimizer.lr={num}"])

        def raising(job=job):
            returned = job()
            if isinstance(returned, SystemExit):
                raise returned  # a data error's SystemExit("error: ...")
            return returned

        end_job(cfg, run_job(raising))  # returns (None for the failures): the sweeper goes on

    table = read_csv(sweep / "summary.csv")
    assert [(r["job"], r["status"], r["returned"]) for r in table] == [
        ("0", "died", ""),
        ("1", "COMPLETED", "0.5"),
        ("2", "failed", ""),
        ("3", "failed", ""),
    ]
    assert table[0]["error"] == reason
    assert table[2]["error"] == "RuntimeError: CUDA out of memory. Tried to allocate 2 GiB"  # one line
    assert table[3]["error"] == "/x does not exist"
    assert "4 jobs, 1 completed, 1 died, 2 failed" in (sweep / "summary.md").read_text()
    err = capsys.readouterr().err
    assert "sweep: job 0 died; the sweep goes on" in err and "error: /x does not exist" in err
    with pytest.raises(SystemExit) as ended:
        SweepSummary().on_multirun_end(cfg)
    assert ended.value.code == 103  # the sweep's exit code: 100 + the 3 jobs that did not complete
    assert "sweep: 3 of 4 jobs did not complete: 0 (died), 2 (failed), 3 (failed)" in capsys.readouterr().err


@pytest.mark.parametrize("code", [130, 143])
def test_ctrl_c_and_sigterm_still_stop_the_whole_sweep(tmp_path: Path, code: int) -> None:
    from src.runs.sweeps import run_job, take_failure

    cfg = compose_train([], tmp_path)
    as_multirun_job(cfg, str(tmp_path / "sweep"), 0, [])

    def stopped() -> float:
        raise SystemExit(code)

    with pytest.raises(SystemExit) as stop:
        run_job(stopped)
    assert stop.value.code == code and take_failure() is None


def test_a_single_run_that_dies_still_exits_with_code_3(tmp_path: Path) -> None:
    from src.runs.sweeps import run_job
    from src.utils.exits import ErrorExit

    compose_train([], tmp_path)  # hydra.mode: RUN

    def dies() -> float:
        raise ErrorExit(3, "training died")

    with pytest.raises(SystemExit) as stop:
        run_job(dies)
    assert stop.value.code == 3


def test_a_sweep_whose_jobs_all_completed_exits_0(tmp_path: Path) -> None:
    from src.hydra_callbacks.sweep_summary import SweepSummary

    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, ["seed=0"], returned=0.5)
    fake_job(sweep, 1, ["seed=1"], returned=0.6)
    cfg = compose_train([], tmp_path)
    as_multirun_job(cfg, str(sweep), 1, ["seed=1"])
    SweepSummary().on_multirun_end(cfg)  # no SystemExit


@pytest.mark.slow
@pytest.mark.long
def test_a_sweep_goes_on_after_a_job_that_dies_and_exits_101(tmp_path: Path, train_cli) -> None:
    result = train_cli(
        *TINY_SWEEP,
        f"data.root={tmp_path / 'synthetic'}",
        "logger=csv",
        "hydra/callbacks=sweep_summary",
        "callbacks.training_health.every_n_steps=1",
        "callbacks.training_health.patience=2",
        "optimizer.lr=1e6,0.001",  # job 0 diverges (exit code 3 as a single run), job 1 trains
        "-m",
    )
    assert result.returncode == 101, result.stderr[-3000:]  # 100 + the one job that died
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    (sweep,) = sweep_dirs(tmp_path)
    assert [j.name for j in job_dirs(sweep)] == ["0", "1"]
    table = read_csv(sweep / "summary.csv")
    assert [(r["job"], r["status"]) for r in table] == [("0", "died"), ("1", "COMPLETED")]
    assert table[0]["error"].startswith("training died at step") and table[0]["returned"] == ""
    assert float(table[1]["returned"]) >= 0 and table[1]["test/acc"]
    assert "sweep: 1 of 2 jobs did not complete: 0 (died)" in result.stderr


# --- Optuna -------------------------------------------------------------------------------------------------


def test_optuna_config_searches_lr_weight_decay_and_batch_size(tmp_path: Path) -> None:
    cfg = compose_train(["hparams_search=optuna", "hydra.sweeper.n_trials=7"], tmp_path)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.n_trials == 7
    assert str(sweeper.direction).endswith("maximize") and cfg.optimized_metric == "val/acc_best"
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed == 0
    assert set(sweeper.params) == {"optimizer.lr", "optimizer.weight_decay", "data.batch_size"}
    assert "sweep_summary" in cfg.hydra.callbacks


@pytest.mark.filterwarnings("ignore:Deprecated API features detected")  # optuna 2.10 on SQLAlchemy 1.4
def test_optuna_sqlite_storage_works_with_the_pinned_sqlalchemy(tmp_path: Path) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    again = optuna.load_study(storage=storage, study_name="s")  # a study kept between sweeps
    assert len(again.trials) == 2


@pytest.mark.slow
@pytest.mark.long
def test_optuna_sweep_of_three_trials(tmp_path: Path, train_cli) -> None:
    start = time.monotonic()
    result = train_cli(  # -m after the overrides: argparse takes no override after an option
        *[a for a in TINY_SWEEP if not a.startswith("data.batch_size=")],  # a fixed value would win
        f"data.root={tmp_path / 'synthetic'}",
        "logger=csv",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=3",
        "-m",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = sweep_dirs(tmp_path)
    assert [j.name for j in job_dirs(sweep)] == ["0", "1", "2"]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"optimizer.lr", "optimizer.weight_decay", "data.batch_size"}

    table = read_csv(sweep / "summary.csv")
    assert len(table) == 3 and {"optimizer.lr", "optimizer.weight_decay"} <= set(table[0])
    for row in table:
        assert 1e-4 <= float(row["optimizer.lr"]) <= 0.03
        assert 1e-5 <= float(row["optimizer.weight_decay"]) <= 1e-3
        assert int(row["data.batch_size"]) in (32, 64, 128)
        assert not math.isnan(float(row["returned"]))
    assert best["best_value"] == pytest.approx(max(float(r["returned"]) for r in table))  # maximised
    print(f"3-trial Optuna sweep: {time.monotonic() - start:.0f} s")


# --- SLURM --------------------------------------------------------------------------------------------------


def test_slurm_launcher_composes_into_an_sbatch_script(tmp_path: Path, monkeypatch) -> None:
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    cfg = compose_train(["hydra/launcher=slurm", "trainer=ddp", "hydra.launcher.partition=gpu"], tmp_path)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert params.pop("_target_").endswith("SlurmLauncher")
    assert params["gpus_per_node"] == params["tasks_per_node"] == 2  # one task (rank) per GPU

    # What the launcher hands submitit (submitit_launcher.py, launch()); submitit checks every name.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for srun before it builds anything
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    folder = params.pop("submitit_folder")
    executor = submitit.AutoExecutor(
        cluster="slurm", folder=folder, slurm_max_num_timeout=params.pop("max_num_timeout")
    )
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    sbatch = executor._executor._make_submission_file_text("python -u -m submitit.core._submit x", "0")
    for line in ("--gpus-per-node=2", "--ntasks-per-node=2", "--partition=gpu", "--time=4320", "--mem=64GB"):
        assert f"#SBATCH {line}" in sbatch
    assert folder.startswith(str(cfg.hydra.sweep.dir))


@pytest.mark.slow
def test_slurm_launcher_composes_through_the_command_line(tmp_path: Path, train_cli) -> None:
    # --cfg cannot go with -m; hydra.mode=MULTIRUN composes as -m would, and prints instead of submitting.
    result = train_cli("hydra/launcher=slurm", "hydra.mode=MULTIRUN", "trainer=ddp", "--cfg", "hydra")
    assert result.returncode == 0, result.stderr[-3000:]
    hydra_cfg = yaml.safe_load(result.stdout)["hydra"]
    assert hydra_cfg["mode"] == "MULTIRUN" and hydra_cfg["launcher"]["_target_"].endswith("SlurmLauncher")
    assert hydra_cfg["launcher"]["tasks_per_node"] == "${trainer.devices}"


# --- experiment configs -------------------------------------------------------------------------------------


def test_paper_experiment_is_the_papers_imagenet_recipe(tmp_path: Path) -> None:
    cfg = compose_train(["experiment=paper"], tmp_path)
    assert cfg.model.towers == 2 and cfg.model.init == "paper"
    assert (cfg.data.batch_size, cfg.data.normalize, cfg.data.train_views) == (128, "mean", "random")
    assert cfg.data.val_views == cfg.data.test_views == "ten"  # ten-crop test (section 4.1)
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (0.01, 0.9, 0.0005)
    assert cfg.trainer.max_epochs == 90 and cfg.scheduler.monitor == "val/acc"


def test_catsdogs_experiment_is_the_reproductions_recipe(tmp_path: Path) -> None:
    cfg = compose_train(["experiment=catsdogs"], tmp_path)
    assert cfg.data.root.endswith("catsdogs") and cfg.data.layout == "kaggle" and cfg.data.num_classes == 2
    assert cfg.data.train_views == "ten"  # the ten offline views
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (0.001, 0.9, 0.0005)
    assert cfg.trainer.max_epochs == 100 and cfg.model.init == "paper" and cfg.model.towers == 2
    assert cfg.scheduler.monitor == "train/acc"  # the plateau is on TRAINING accuracy
    assert cfg.scheduler.scheduler.mode == "max" and cfg.scheduler.scheduler.patience == 10
    module = build_module(cfg)
    scheduler = module.configure_optimizers()["lr_scheduler"]
    assert scheduler["monitor"] == "train/acc" and scheduler["scheduler"].patience == 10
