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

PROJECT_ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(PROJECT_ROOT))
if str(PROJECT_ROOT) not in sys.path:  # `python src/eval.py` puts src/, not the root, on the path
    sys.path.insert(0, str(PROJECT_ROOT))

import hydra  # noqa: E402
import lightning as L  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from src.loggers.build import build_loggers, finish  # noqa: E402
from src.models.caffe_weights import (  # noqa: E402
    WEIGHTS_SUFFIX,
    alexnet_from_caffe_weights,
    caffe_pixel_statistics,
)
from src.models.classifier import TowerClassifier, load_network  # noqa: E402
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
    else:
        net = load_network(checkpoint)
    module = TowerClassifier(net=net)
    loggers = build_loggers(cfg)
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers, callbacks=[])
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    results: dict[str, float] = {}
    for views, name in VIEW_NAMES.items():
        datamodule = hydra.utils.instantiate(cfg.data, test_views=views)
        if not datamodule.has_test_split:
            raise FileNotFoundError(f"no test split: {datamodule.root / 'test'} does not exist")
        if not imported and views == "centre":
            say_what_trained(checkpoint, datamodule)
        if imported:  # the module holds the weights; the pixel statistics are Caffe's
            datamodule.register_pixel_stats(*caffe_pixel_statistics())
        # ckpt_path restores the weights and the training run's pixel statistics (the datamodule's state).
        (metrics,) = trainer.test(
            module, datamodule=datamodule, ckpt_path=None if imported else str(checkpoint), weights_only=False
        )
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


def say_what_trained(checkpoint: Path, datamodule: L.LightningDataModule) -> None:
    """Print the data the checkpoint was trained on beside the test data (the classes are checked when the
    checkpoint is loaded)."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)
    data = saved.get(type(datamodule).__qualname__) or {}
    if data.get("classes"):
        print(
            f"{checkpoint.name}: trained on {data.get('root')} (classes {data['classes']}); "
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
