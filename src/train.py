"""Train an N-tower AlexNet: ``python src/train.py [model=two_tower] [data=...] [trainer.devices=2] ...``.

Builds the datamodule, network, LightningModule, callbacks, loggers and trainer from the Hydra config in
``conf/``, fits, tests on the best checkpoint, and returns ``cfg.optimized_metric`` for a sweeper.

Resuming (``src/runs/resume.py``): ``ckpt_path=last`` continues the newest run that has a ``last.ckpt``, in
its own folder, with its own overrides and its W&B run; ``hydra.run.dir=<run> ckpt_path=last`` continues
that run; ``ckpt_path=<file>`` resumes from a checkpoint. Before Hydra starts, ``rewrite_command_line`` points
the run folder at the run being resumed.

SIGTERM or Ctrl-C during ``fit`` (``src/callbacks/preemption.py``) saves ``checkpoints/last.ckpt`` and exits
with code 143 (130 after Ctrl-C); ``ckpt_path=last`` goes on from there. Every checkpoint is written beside
its final name and renamed into place (``src/runs/checkpoint_io.py``): a full disk never truncates one.
Whatever can be checked before ``fit`` is: the settings of the data (``ImageDataModule``), the crop against
the net (``src/models/input_size.py``), the batch against the devices, and a resume against its checkpoint
(before Hydra starts, ``src/runs/resume.py``).

DDP (``trainer.devices=2 trainer.strategy=ddp``): one output folder, one W&B run, checkpoints and the data
cache written by rank 0; ``data.batch_size`` is the global batch, split over the devices.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(PROJECT_ROOT))
if str(PROJECT_ROOT) not in sys.path:  # `python src/train.py` puts src/, not the root, on the path
    sys.path.insert(0, str(PROJECT_ROOT))

import hydra  # noqa: E402
import lightning as L  # noqa: E402
from lightning.pytorch.loggers import Logger  # noqa: E402
from lightning.pytorch.utilities.exceptions import SIGTERMException  # noqa: E402
from lightning.pytorch.utilities.rank_zero import rank_zero_only  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from src.callbacks.model_summary import use_flop_counting_summary  # noqa: E402
from src.callbacks.preemption import (  # noqa: E402
    INTERRUPTED_EXIT_CODE,
    PREEMPTED_EXIT_CODE,
    PreemptionCheckpoint,
)
from src.callbacks.resume import CommitRunConfig  # noqa: E402
from src.callbacks.training_health import DIED_EXIT_CODE, TrainingDiedError  # noqa: E402
from src.data.datamodule import data_shards  # noqa: E402
from src.loggers.build import build_loggers, finish  # noqa: E402
from src.loggers.wandb_run import report_offline_runs  # noqa: E402
from src.models.classifier import TowerClassifier  # noqa: E402
from src.models.input_size import check_crop_size  # noqa: E402
from src.runs.checkpoint_io import AtomicCheckpointIO  # noqa: E402
from src.runs.overrides import command_line  # noqa: E402
from src.runs.resume import LAST, drop_pending_config, resolve_checkpoint, rewrite_command_line  # noqa: E402
from src.utils.console import quiet_lightning  # noqa: E402
from src.utils.memory import keep_freed_memory  # noqa: E402

CONF_DIR = PROJECT_ROOT / "conf"


def build_module(cfg: DictConfig) -> TowerClassifier:
    """The LightningModule from the ``model``, ``optimizer`` and ``scheduler`` groups."""
    scheduler_cfg = cfg.get("scheduler") or {}
    scheduler = (
        hydra.utils.instantiate(scheduler_cfg.get("scheduler")) if scheduler_cfg.get("scheduler") else None
    )
    return TowerClassifier(
        net=hydra.utils.instantiate(cfg.model),
        optimizer=hydra.utils.instantiate(cfg.optimizer),
        scheduler=scheduler,
        scheduler_monitor=scheduler_cfg.get("monitor") or "val/acc",
        warmup_steps=scheduler_cfg.get("warmup_steps") or 0,
        lr_batch=scheduler_cfg.get("lr_batch"),
    )


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    return [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]


def check_batch_size(datamodule: L.LightningDataModule, trainer: L.Trainer) -> None:
    """Fail before any process starts if the global batch does not split over the devices."""
    split = getattr(datamodule, "device_batch_size", None)
    if callable(split):
        split(data_shards(trainer), trainer.accumulate_grad_batches)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and test) as ``cfg`` says; return the metrics Lightning collected, as floats.

    A SIGTERM (Ctrl-C) during ``fit`` or ``test`` ends the process with exit code 143 (130):
    ``stop_on_signal``.
    """
    keep_freed_memory()  # each step reallocates the same large activations: keep them mapped (+30 % on CPU)
    quiet_lightning()  # two notes of Lightning's that are not about this run (src/utils/console.py)
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = resolve_checkpoint(cfg.get("ckpt_path"), output_dir)
    if rank_zero_only.rank == 0:
        if ckpt_path is not None:
            print(f"resuming from {ckpt_path}, writing to {output_dir}")
        elif cfg.get("ckpt_path") == LAST:
            print(f"ckpt_path=last: {output_dir} has no checkpoints/last.ckpt yet, starting a new run there")
    datamodule: L.LightningDataModule = hydra.utils.instantiate(cfg.data)
    module = build_module(cfg)
    loggers = build_loggers(cfg)
    check_crop_size(module.net, datamodule.crop_size)
    callbacks = [*build_callbacks(cfg), CommitRunConfig(output_dir)]  # a resume's config, once it trains
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers, plugins=[AtomicCheckpointIO()]
    )
    use_flop_counting_summary(trainer, cfg.data.get("crop_size", 224))
    check_batch_size(datamodule, trainer)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    try:
        metrics = fit_and_test(cfg, trainer, module, datamodule, ckpt_path)
    except SIGTERMException as stop:
        stop_on_signal(cfg, trainer, loggers, stop.code)
    except TrainingDiedError as died:
        stop_on_death(died, trainer, loggers)

    if trainer.is_global_zero:
        report(cfg, metrics, loggers)
    finish(loggers)
    return metrics


def fit_and_test(
    cfg: DictConfig,
    trainer: L.Trainer,
    module: TowerClassifier,
    datamodule: L.LightningDataModule,
    ckpt_path: Path | None,
) -> dict[str, float]:
    if cfg.train:
        if ckpt_path is not None:  # ModelCheckpoint warns about the run's own checkpoints/ folder
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        # The run's own checkpoints hold the optimiser's and scheduler's settings as Python objects.
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=False)
        preemption = next((cb for cb in trainer.callbacks if isinstance(cb, PreemptionCheckpoint)), None)
        # A SIGTERM after the last training batch (during the last validation): training is complete and
        # checkpointed; stop before the test, on every rank alike.
        stop = preemption is not None and preemption.requested
        if preemption is not None and trainer.strategy.reduce_boolean_decision(stop, all=False):
            raise SIGTERMException(preemption.exit_code)
    if trainer.is_global_zero:  # a resume that did not train (train=false, or nothing left to train)
        drop_pending_config(cfg.paths.output_dir)  # leaves the run's configuration as it was
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    if cfg.test and datamodule.has_test_split:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        test_ckpt = best or (None if cfg.train else ckpt_path)
        trainer.test(module, datamodule=datamodule, ckpt_path=test_ckpt, weights_only=False)
        metrics |= {k: float(v) for k, v in trainer.callback_metrics.items()}
    elif cfg.test:
        print(f"no test split at {datamodule.root / 'test'}: skipping the test")
    return metrics


def stop_on_signal(cfg: DictConfig, trainer: L.Trainer, loggers: list[Logger], code: object) -> None:
    """After a SIGTERM or Ctrl-C: end the W&B run (with the exit code) and the process group, and exit.

    Rank 0 exits with ``PREEMPTED_EXIT_CODE`` (143) after SIGTERM, ``INTERRUPTED_EXIT_CODE`` (130) after
    Ctrl-C; other ranks exit 0, so that Lightning's watcher of the processes it started does not kill rank 0
    while it finishes.
    """
    code = INTERRUPTED_EXIT_CODE if code == INTERRUPTED_EXIT_CODE else PREEMPTED_EXIT_CODE
    if trainer.is_global_zero:
        name = "Ctrl-C" if code == INTERRUPTED_EXIT_CODE else "SIGTERM"
        print(
            f"stopped by {name} (exit code {code}); to go on: "
            f"python src/train.py hydra.run.dir={cfg.paths.output_dir} ckpt_path=last",
            file=sys.stderr,
            flush=True,
        )
    finish(loggers, exit_code=code)
    raise SystemExit(code if trainer.is_global_zero else 0)


def stop_on_death(died: TrainingDiedError, trainer: L.Trainer, loggers: list[Logger]) -> None:
    """A dead run (``src/callbacks/training_health.py``): say why, close the loggers, exit with code 3."""
    if trainer.is_global_zero:
        print(f"error: {died}", file=sys.stderr, flush=True)
    finish(loggers, exit_code=DIED_EXIT_CODE)
    raise SystemExit(DIED_EXIT_CODE)


def report(cfg: DictConfig, metrics: dict[str, float], loggers: list[Logger]) -> None:
    """Print the final accuracies and where the run's files are."""
    shown = [
        f"{k}={metrics[k]:.4f}" for k in ("val/acc", "val/acc_best", "test/acc", "test/loss") if k in metrics
    ]
    print("final: " + "  ".join(shown))
    print(f"outputs: {cfg.paths.output_dir}")
    report_offline_runs(loggers)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    return metrics.get(cfg.optimized_metric)


if __name__ == "__main__":
    sys.argv[1:] = rewrite_command_line(command_line(sys.argv[1:]), CONF_DIR)
    main()
