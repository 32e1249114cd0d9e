"""Evaluate a checkpoint: ``python src/eval.py ckpt_path=<path> [data=...]``.

Tests the checkpoint's network on the data's ``test/`` split twice, on the centre patch and with the softmax
averaged over the ten views (paper section 4.1), then prints and logs ``test/centre_acc``,
``test/centre_loss``, ``test/ten_crop_acc`` and ``test/ten_crop_loss``.

A checkpoint records the classes it was trained on and the data root they came from: testing it on data with
other classes is an error naming both lists (``ImageDataModule.load_state_dict``), and the run prints which
data the checkpoint was trained on beside the test data it uses (``data=`` is the synthetic set by default).

``ckpt_path=<weights>.npy`` tests published weights instead (Caffe's ``bvlc_alexnet.npy``, imported by
``src/models/caffe_weights.py``; ``+imported_net.lrn_after_pool=true`` for CaffeNet's file), fed as Caffe fed
them: 0..255 minus Caffe's ImageNet mean pixel.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(PROJECT_ROOT))
if str(PROJECT_ROOT) not in sys.path:  # `python src/eval.py` puts src/, not the root, on the path
    sys.path.insert(0, str(PROJECT_ROOT))

import hydra  # noqa: E402
import lightning as L  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from src.data.datamodule import ImageDataModule  # noqa: E402
from src.loggers.build import build_loggers, finish  # noqa: E402
from src.models.caffe_weights import (  # noqa: E402
    WEIGHTS_SUFFIX,
    alexnet_from_caffe_weights,
    caffe_pixel_statistics,
)
from src.models.classifier import TowerClassifier, network_from_checkpoint  # noqa: E402
from src.runs.overrides import command_line  # noqa: E402
from src.utils.console import quiet_lightning  # noqa: E402
from src.utils.paths import expand_home  # noqa: E402

VIEW_NAMES = {"centre": "centre", "ten": "ten_crop"}


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Centre-crop and ten-crop test accuracy and loss of ``cfg.ckpt_path`` on ``cfg.data``'s test split."""
    checkpoint = expand_home(cfg.ckpt_path)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"ckpt_path={checkpoint} is not a file")
    L.seed_everything(cfg.seed, workers=True)
    imported = checkpoint.suffix == WEIGHTS_SUFFIX
    if imported:
        net = alexnet_from_caffe_weights(checkpoint, **(cfg.get("imported_net") or {}))
        data_state = None
    else:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)
        net = network_from_checkpoint(saved, checkpoint)
        data_state = saved.get(ImageDataModule.__qualname__)  # the training run's datamodule state
        del saved  # the weights are in the net; the optimiser's state is not needed
    callbacks = [RestoreDataState(data_state)] if data_state is not None else []
    module = TowerClassifier(net=net)
    loggers = build_loggers(cfg)
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers, callbacks=callbacks)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    results: dict[str, float] = {}
    for views, name in VIEW_NAMES.items():
        datamodule = hydra.utils.instantiate(cfg.data, test_views=views)
        if not datamodule.has_test_split:
            raise FileNotFoundError(f"no test split: {datamodule.root / 'test'} does not exist")
        if not imported and views == "centre":
            say_what_trained(checkpoint, data_state, datamodule)
        if imported:  # the pixel statistics are Caffe's
            datamodule.register_pixel_stats(*caffe_pixel_statistics())
        # No ckpt_path: the net already holds the weights, and RestoreDataState gives the datamodule the
        # training run's pixel statistics. ckpt_path would also restore the training run's callbacks, which
        # an evaluation has none of: Lightning warned about each of them, and about its own ModelCheckpoint
        # taking the state of the run's last-checkpoint callback.
        (metrics,) = trainer.test(module, datamodule=datamodule)
        results[f"test/{name}_acc"] = float(metrics["test/acc"])
        results[f"test/{name}_loss"] = float(metrics["test/loss"])

    for logger in loggers:
        logger.log_metrics(results)
        logger.save()
    if trainer.is_global_zero:
        for key, value in results.items():
            print(f"{key} = {value:.4f}")
    finish(loggers)
    return results


class RestoreDataState(L.Callback):
    """Give the datamodule its state from the checkpoint (the training run's pixel statistics, classes and
    data root) once its test split is set up, as ``trainer.test(ckpt_path=...)`` would: loading it checks
    the classes against the test split's (``ImageDataModule.load_state_dict``)."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.datamodule is not None:
            trainer.datamodule.load_state_dict(self.state)


def say_what_trained(checkpoint: Path, state: dict[str, Any] | None, datamodule: ImageDataModule) -> None:
    """Print the data the checkpoint was trained on (its datamodule ``state``) beside the test data (the
    classes are checked when that state is loaded: ``RestoreDataState``)."""
    if state and state.get("classes"):
        print(
            f"{checkpoint.name}: trained on {state.get('root')} (classes {state['classes']}); "
            f"testing on {datamodule.root / 'test'}"
        )
    else:
        print(f"{checkpoint.name} does not record its classes (an older checkpoint): they are not checked")


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    quiet_lightning()  # the two notes of Lightning's that train.py drops too (src/utils/console.py)
    evaluate(cfg)


if __name__ == "__main__":
    sys.argv[1:] = command_line(sys.argv[1:])  # key=~/..., old key spellings (src/runs/overrides.py)
    main()
