"""Train an N-tower AlexNet: ``python src/train.py [model=two_tower] [data=...] [trainer.devices=2] ...``.

Builds the datamodule, network, LightningModule, callbacks, loggers and trainer from the Hydra config in
``conf/``, fits, tests on the best checkpoint, and returns ``cfg.optimized_metric`` for a sweeper.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(PROJECT_ROOT))
if str(PROJECT_ROOT) not in sys.path:  # `python src/train.py` puts src/, not the root, on the path
    sys.path.insert(0, str(PROJECT_ROOT))

import hydra  # noqa: E402
import lightning as L  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.loggers import Logger, WandbLogger  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from src.models.classifier import TowerClassifier  # noqa: E402
from src.utils.wandb_mode import choose_wandb_mode, offline_run_dirs  # noqa: E402


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
    )


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    return [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]


def build_loggers(cfg: DictConfig) -> list[Logger]:
    loggers_cfg = {name: c for name, c in (cfg.get("logger") or {}).items() if c}
    if any("wandb" in str(c.get("_target_", "")).lower() for c in loggers_cfg.values()):
        mode = choose_wandb_mode()
        if mode == "offline":
            print(
                "W&B: no API key found, logging offline (set WANDB_API_KEY or run `wandb login` to go online)"
            )
    return [hydra.utils.instantiate(c) for c in loggers_cfg.values()]


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and test) as ``cfg`` says; return the metrics Lightning collected, as floats."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule: L.LightningDataModule = hydra.utils.instantiate(cfg.data)
    module = build_module(cfg)
    loggers = build_loggers(cfg)
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=build_callbacks(cfg), logger=loggers)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    if cfg.train:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    if cfg.test and datamodule.has_test_split:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        ckpt_path = best or (None if cfg.train else cfg.get("ckpt_path"))
        trainer.test(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=False)
        metrics |= {k: float(v) for k, v in trainer.callback_metrics.items()}
    elif cfg.test:
        print(f"no test split at {datamodule.root / 'test'}: skipping the test")

    if trainer.is_global_zero:
        report(cfg, metrics, loggers)
    finish(loggers)
    return metrics


def report(cfg: DictConfig, metrics: dict[str, float], loggers: list[Logger]) -> None:
    """Print the final accuracies and where the run's files are."""
    shown = [
        f"{k}={metrics[k]:.4f}" for k in ("val/acc", "val/acc_best", "test/acc", "test/loss") if k in metrics
    ]
    print("final: " + "  ".join(shown))
    print(f"outputs: {cfg.paths.output_dir}")
    for logger in loggers:
        if isinstance(logger, WandbLogger) and os.environ.get("WANDB_MODE") == "offline":
            for run_dir in offline_run_dirs(logger.save_dir):
                print(f"W&B offline run: {run_dir}  (upload with: wandb sync {run_dir})")


def finish(loggers: list[Logger]) -> None:
    """End the W&B run (each multirun job must be its own run) and the process group (clean DDP exit)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    return metrics.get(cfg.optimized_metric)


if __name__ == "__main__":
    main()
