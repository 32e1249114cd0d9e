"""Train an N-tower AlexNet: ``python src/train.py [model=two_tower] [data=...] [trainer.devices=2] ...``.

Builds the datamodule, network, LightningModule, callbacks, loggers and trainer from the Hydra config in
``conf/``, fits, tests on the best checkpoint, and returns ``cfg.optimized_metric`` for a sweeper. Where the
rest lives: resuming (``ckpt_path=last``, ``src/runs/resume.py``), the loggers and W&B (``src/loggers/``),
stopping on SIGTERM or Ctrl-C with ``checkpoints/last.ckpt`` saved (``src/callbacks/preemption.py``) or on a
dead run (``src/callbacks/training_health.py``), checkpoints written whole or, on a full disk, a message
naming the one kept (``src/runs/checkpoint_io.py``).
Whatever can be checked before ``fit`` is: the data's settings (``ImageDataModule``), the crop against the
net (``src/models/input_size.py``), the batch against the devices, a resume against its checkpoint.

DDP (``trainer.devices=2 trainer.strategy=ddp``): one output folder, one W&B run, checkpoints and the data
cache written by rank 0; ``data.batch_size`` is the global batch, split over the devices.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from lightning.pytorch.accelerators import CPUAccelerator
from omegaconf import DictConfig, OmegaConf

from src.callbacks.epoch_line import EpochLine
from src.callbacks.model_summary import use_flop_counting_summary
from src.callbacks.preemption import exit_when_stopped, stop_before_test
from src.callbacks.resume import CommitRunConfig
from src.callbacks.training_health import exit_when_dead
from src.config.schema import check_config
from src.data.cache import CacheSpaceError
from src.data.datamodule import ImageDataModule, data_shards
from src.datasets.archives import ArchiveError
from src.datasets.download import ChecksumError, DownloadError
from src.loggers.build import build_loggers, finish
from src.loggers.wandb_run import report_offline_runs
from src.metric_names import TEST_ACC, VAL_ACC, VAL_ACC_BEST
from src.models.classifier import TowerClassifier
from src.models.input_size import check_crop_size
from src.runs.checkpoint_io import AtomicCheckpointIO, exit_when_write_fails
from src.runs.folders import discard_unstarted_run, global_rank, hold_run_folder
from src.runs.overrides import command_line, run_dir_argument
from src.runs.paths import CONF_DIR, folders_line
from src.runs.resume import drop_pending_config, resume_from, rewrite_command_line
from src.runs.sweeps import run_job
from src.utils.console import quiet_lightning, say
from src.utils.exits import ERROR_EXIT_CODE, exit_on_error
from src.utils.memory import keep_freed_memory
from src.utils.precision_check import choose_precision, slow_bf16_line

FINAL_METRICS = (VAL_ACC, VAL_ACC_BEST, TEST_ACC, "test/loss")  # the run's last line


def build_module(cfg: DictConfig) -> TowerClassifier:
    """The LightningModule, whole, from the config's ``module`` node (``conf/train.yaml``): the net, the
    optimiser, the schedule and the batch-scaled learning rate, each from its own group."""
    return hydra.utils.instantiate(cfg.module)


def fetch_data(datamodule: ImageDataModule, cfg: DictConfig) -> None:
    """The data's files, fetched and checked before anything else starts: a missing folder, a host that does
    not resolve or a file that fails its checksum ends the run with its one-line message (``SystemExit``),
    not a traceback after W&B started."""
    splits = ("train",) if cfg.train else ()
    try:
        datamodule.fetch_files(splits)
    except (FileNotFoundError, NotADirectoryError, DownloadError, ChecksumError, ArchiveError) as error:
        raise SystemExit(f"error: {error}") from None
    if cfg.test and not datamodule.has_test_split:
        say(
            f"no test split at {datamodule.root / 'test'}: the run will not be tested (test=false hides this)"
        )


@contextmanager
def leave_no_trace_on_failure(output_dir: Path, new_run: bool) -> Iterator[None]:
    """Whatever stops a run while it is set up (before any logger starts) leaves nothing behind: a new run's
    folder, still holding only Hydra's files, is removed, and a resume's pending configuration dropped, so
    that ``ckpt_path=last`` means what it meant before."""
    try:
        yield
    except BaseException:
        if new_run:
            discard_unstarted_run(output_dir)
        else:
            drop_pending_config(output_dir)  # a refused resume leaves the run as it was
        raise


def build_trainer(trainer_cfg: DictConfig, **arguments: Any) -> tuple[L.Trainer, str | None]:
    """The Trainer of the ``trainer`` group, with ``trainer.precision=auto`` resolved for this hardware
    (``src/utils/precision_check.py``), and the line saying what auto chose (``None`` for a given one)."""
    precision, why = choose_precision(trainer_cfg.precision, str(trainer_cfg.accelerator))
    return hydra.utils.instantiate(trainer_cfg, precision=precision, **arguments), why


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    return [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and test) as ``cfg`` says; return the metrics Lightning collected, as floats.

    A SIGTERM (Ctrl-C) during ``fit`` or ``test`` ends the process with exit code 143 (130), a dead run with
    exit code 3, a checkpoint that cannot be written (a full disk) with a message and exit code 1.
    """
    keep_freed_memory()  # each step reallocates the same large activations: keep them mapped (+30 % on CPU)
    quiet_lightning()  # two notes of Lightning's that are not about this run (src/utils/console.py)
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    if global_rank() == 0:
        say(folders_line(cfg))  # data, cache, outputs: where this run reads and writes
    with leave_no_trace_on_failure(output_dir, new_run=cfg.get("ckpt_path") is None):
        check_config(cfg)  # a wrong type or value, named by its key, before anything starts
        ckpt_path = resume_from(cfg.get("ckpt_path"), output_dir)
        datamodule: ImageDataModule = hydra.utils.instantiate(cfg.data)
        module = build_module(cfg)
        check_crop_size(
            module.net, datamodule.crop_size
        )  # settings that cannot work: before any data is read
        fetch_data(datamodule, cfg)  # bad paths and hosts: before any logger starts
    loggers = build_loggers(cfg)
    # a resume's config, once it trains; one line per epoch in the console and train.log
    callbacks = [*build_callbacks(cfg), CommitRunConfig(output_dir), EpochLine()]
    trainer, why = build_trainer(
        cfg.trainer, callbacks=callbacks, logger=loggers, plugins=[AtomicCheckpointIO()]
    )
    if why and trainer.is_global_zero:
        say(why)
    use_flop_counting_summary(trainer, cfg.data.get("crop_size", 224))
    slow_bf16 = slow_bf16_line(trainer.precision, isinstance(trainer.accelerator, CPUAccelerator))
    if slow_bf16 and trainer.is_global_zero:
        say(slow_bf16)
    datamodule.device_batch_size(
        data_shards(trainer), trainer.accumulate_grad_batches
    )  # splits, or fails now
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    close = partial(finish, loggers)
    with (
        exit_when_stopped(trainer, cfg.paths.output_dir, close),
        exit_when_dead(trainer, close),
        exit_when_write_fails(trainer, cfg.paths.output_dir, close),
        # a full disk while the data cache is built
        exit_on_error(CacheSpaceError, ERROR_EXIT_CODE, trainer, close),
    ):
        metrics = fit_and_test(cfg, trainer, module, datamodule, ckpt_path)
    if trainer.is_global_zero:
        say("final: " + "  ".join(f"{k}={metrics[k]:.4f}" for k in FINAL_METRICS if k in metrics))
        say(f"outputs: {cfg.paths.output_dir}")
        report_offline_runs(loggers)
    finish(loggers)
    return metrics


def fit_and_test(
    cfg: DictConfig,
    trainer: L.Trainer,
    module: TowerClassifier,
    datamodule: ImageDataModule,
    ckpt_path: Path | None,
) -> dict[str, float]:
    if cfg.train:
        if ckpt_path is not None:  # ModelCheckpoint warns about the run's own checkpoints/ folder
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        # The run's own checkpoints hold the optimiser's and scheduler's settings as Python objects.
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=False)
        stop_before_test(trainer)  # a SIGTERM during the last validation
    if trainer.is_global_zero:  # a resume that did not train (train=false, or nothing left to train)
        drop_pending_config(cfg.paths.output_dir)  # leaves the run's configuration as it was
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    if cfg.test and datamodule.has_test_split:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        test_ckpt = best or (None if cfg.train else ckpt_path)
        trainer.test(module, datamodule=datamodule, ckpt_path=test_ckpt, weights_only=False)
        metrics |= {k: float(v) for k, v in trainer.callback_metrics.items()}
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """A single run: ``train``, exiting as it says (3: a dead run, 1, 130, 143; the table of
    ``src/utils/exits.py``). A job of a sweep (``-m``) that dies or fails is recorded for the sweep's summary
    and returns None, so that the sweep goes on (``src/runs/sweeps.py``, ``run_job``)."""
    return run_job(lambda: train(cfg).get(cfg.optimized_metric))


if __name__ == "__main__":
    sys.argv[1:] = rewrite_command_line(command_line(sys.argv[1:]), CONF_DIR)
    with hold_run_folder(run_dir_argument(sys.argv[1:])):  # one run per folder, taken before Hydra writes
        main()
