"""Evaluate a checkpoint: ``python src/eval.py ckpt_path=<path> [data=...] [split=test|val]``.

Runs the checkpoint's network over one split of the data twice, on the centre patch and with the softmax
averaged over the ten views (paper section 4.1), then prints and logs ``<split>/centre_acc``,
``<split>/centre_loss``, ``<split>/ten_crop_acc`` and ``<split>/ten_crop_loss`` under one heading (Lightning's
own result tables, two alike ``test/acc`` tables, are not printed, nor logged).

``split=test`` (the default) is the data's labelled ``test/`` folder; ``test/ten_crop_acc`` is then what the
training run's final test logged as ``test/acc`` (``data.test_views=ten``, the default). ``split=val`` is the
validation split, for data without a labelled ``test/`` (Kaggle's Dogs vs Cats, ``data=catsdogs``): the
images the training run held out of ``train/``, split off with ``data.val_fraction`` and ``data.split_seed``
as the run did (read from the run's ``.hydra/config.yaml`` beside ``checkpoints/``, unless given on the
command line), so none of them was trained on. Asking for a split the data does not have is a one-line
error.

A checkpoint records the classes it was trained on and the data root they came from: evaluating it on data
with other classes is an error naming both lists (``ImageDataModule.load_state_dict``), and the run prints
which data the checkpoint was trained on beside the split it uses (``data=`` is the synthetic set by default).

``ckpt_path`` is read as ``src/train.py`` reads it (``src/runs/resume.py``): a ``.ckpt`` file, a run folder
(its ``checkpoints/last.ckpt``), or ``last`` (the ``last.ckpt`` of the training run started last under
``${paths.log_dir}/train/runs/``); the file evaluated is printed. A file that cannot be read is a one-line
error naming it. The network is the checkpoint's own: a ``model`` setting (``+model=one_tower``) is refused,
not ignored.

``ckpt_path=<weights>.npy`` evaluates published weights instead (Caffe's ``bvlc_alexnet.npy``, imported by
``src/models/caffe_weights.py``; ``+imported_net.lrn_after_pool=true`` for CaffeNet's file), fed as Caffe fed
them: 0..255 minus Caffe's ImageNet mean pixel.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from src.config.schema import check_config
from src.data.datamodule import ImageDataModule
from src.loggers.build import build_loggers, finish
from src.models.caffe_weights import (
    WEIGHTS_SUFFIX,
    alexnet_from_caffe_weights,
    caffe_pixel_statistics,
)
from src.models.classifier import TowerClassifier, network_from_checkpoint
from src.runs.folders import HYDRA_CONFIG, RUNS_DIR, run_dir_of
from src.runs.overrides import command_line, override_key
from src.runs.resume import checkpoint_named, read_checkpoint
from src.utils.console import quiet_lightning, say
from src.utils.paths import expand_home
from src.utils.precision_check import choose_precision

VIEW_NAMES = {"centre": "centre", "ten": "ten_crop"}
VIEW_TITLES = {"centre": "the centre patch", "ten": "the ten views, softmax averaged"}
SPLITS = ("test", "val")
TRAIN_TASK = "train"  # the task_name of src/train.py's runs: ckpt_path=last looks among them
#: The data settings that decide which of train/'s images are the validation split (``split_by_source``).
SPLIT_KEYS = ("val_fraction", "split_seed")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Centre-patch and ten-view accuracy and loss of ``cfg.ckpt_path`` on ``cfg.data``'s ``cfg.split``."""
    split = str(cfg.get("split", "test"))
    if split not in SPLITS:
        raise SystemExit(
            f"split={split} is not known: split=test (the data's test/ folder) or split=val (the validation "
            "images the training run held out of train/)"
        )
    if cfg.get("model") is not None:
        raise SystemExit(
            "model: src/eval.py builds the network the checkpoint holds (its net_config), so a model setting "
            "would not apply: drop model=/+model=... (train another net with src/train.py)"
        )
    checkpoint = checkpoint_named(
        str(expand_home(cfg.ckpt_path)), Path(cfg.paths.log_dir) / TRAIN_TASK / RUNS_DIR
    )
    if str(cfg.ckpt_path) != str(checkpoint):
        say(f"ckpt_path={cfg.ckpt_path}: evaluating {checkpoint}")
    imported = checkpoint.suffix == WEIGHTS_SUFFIX
    split_settings = validation_split_settings(cfg, checkpoint, imported) if split == "val" else {}
    check_config(cfg)  # a wrong type or value, named by its key, before any data is read
    datamodules = {
        views: hydra.utils.instantiate(cfg.data, **{f"{split}_views": views}, **split_settings)
        for views in VIEW_NAMES
    }
    check_split(next(iter(datamodules.values())), split)  # before the checkpoint is read
    L.seed_everything(cfg.seed, workers=True)
    if imported:  # the pixel statistics are Caffe's
        net = alexnet_from_caffe_weights(checkpoint, **(cfg.get("imported_net") or {}))
        mean, std = caffe_pixel_statistics()
        data_state: dict[str, Any] | None = {"pixel_mean": mean.tolist(), "pixel_std": std.tolist()}
    else:
        saved = read_checkpoint(checkpoint)
        net = network_from_checkpoint(saved, checkpoint)
        data_state = saved.get(ImageDataModule.__qualname__)  # the training run's datamodule state
        del saved  # the weights are in the net; the optimiser's state is not needed
        say_what_trained(checkpoint, data_state, datamodules["centre"], split)
    callbacks = [RestoreDataState(data_state)] if data_state is not None else []
    module = TowerClassifier.for_evaluation(net)
    loggers = build_loggers(cfg)
    # No logger in the trainer: the module logs test/acc (val/acc) the same for both views, which the
    # loggers would get twice, unlabelled; the results are logged below, each under its own name.
    precision, why = choose_precision(cfg.trainer.precision, str(cfg.trainer.accelerator))  # as train.py
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, logger=False, callbacks=callbacks, precision=precision
    )
    if why and trainer.is_global_zero:
        say(why)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    run = trainer.test if split == "test" else trainer.validate
    results: dict[str, float] = {}
    for views, name in VIEW_NAMES.items():
        # No ckpt_path: the net already holds the weights, and RestoreDataState gives the datamodule the
        # training run's pixel statistics. ckpt_path would also restore the training run's callbacks, which
        # an evaluation has none of: Lightning warned about each of them, and about its own ModelCheckpoint
        # taking the state of the run's last-checkpoint callback.
        (metrics,) = run(module, datamodule=datamodules[views], verbose=False)
        results[f"{split}/{name}_acc"] = float(metrics[f"{split}/acc"])
        results[f"{split}/{name}_loss"] = float(metrics[f"{split}/loss"])

    for logger in loggers:
        logger.log_metrics(results)
        logger.save()
    if trainer.is_global_zero:
        say(heading(checkpoint, datamodules["centre"], split))
        for key, value in results.items():
            say(f"{key} = {value:.4f}")
    finish(loggers)
    return results


def check_split(datamodule: ImageDataModule, split: str) -> None:
    """``SystemExit`` with one line when the data has no ``split``; a data config that makes its files
    (``data.source``: the synthetic set, a download) makes them first."""
    folder = datamodule.root / ("test" if split == "test" else "train")
    if not folder.is_dir() and datamodule.source is not None:
        datamodule.prepare_data()
    if split == "test" and not datamodule.has_test_split:
        raise SystemExit(
            f"{datamodule.root} has no test/ split; evaluate the validation split with split=val (the images "
            "the training run held out of train/)"
        )
    if not folder.is_dir():
        raise SystemExit(
            f"{datamodule.root} has no train/ split, which the validation images are held out of"
        )


def validation_split_settings(cfg: DictConfig, checkpoint: Path, imported: bool) -> dict[str, Any]:
    """``data.val_fraction`` and ``data.split_seed`` as the checkpoint's training run had them (its
    ``.hydra/config.yaml``), so that ``split=val`` holds out the same images; keys given on the command
    line win. Printed, with where each value came from."""
    given = set()
    if HydraConfig.initialized():
        given = {override_key(o).removeprefix("data.") for o in HydraConfig.get().overrides.task}
    run_config = run_dir_of(checkpoint) / HYDRA_CONFIG
    saved = OmegaConf.load(run_config) if not imported and run_config.is_file() else None
    settings: dict[str, Any] = {}
    for key in SPLIT_KEYS:
        value = OmegaConf.select(saved, f"data.{key}", default=None) if saved is not None else None
        if key not in given and value is not None:
            settings[key] = value
    shown = " ".join(f"data.{key}={settings.get(key, cfg.data.get(key))}" for key in SPLIT_KEYS)
    if settings:
        say(f"validation split: {shown}, as the training run had it ({run_config})")
    elif not imported and not set(SPLIT_KEYS) & given:
        say(
            f"validation split: {shown}; {run_config} is not there to say what the training run used: give "
            "its values if they differ, or some of these images were trained on"
        )
    return settings


def heading(checkpoint: Path, datamodule: ImageDataModule, split: str) -> str:
    """What the four numbers below it are: the split and the two ways of viewing each image."""
    where = (
        f"{datamodule.root / 'test'}"
        if split == "test"
        else f"the validation split of {datamodule.root / 'train'}"
    )
    views = ", ".join(f"{VIEW_NAMES[v]}: {title}" for v, title in VIEW_TITLES.items())
    return f"{checkpoint.name} on {where} ({views}; paper section 4.1):"


class RestoreDataState(L.Callback):
    """Give the datamodule its state from the checkpoint (the training run's pixel statistics, classes and
    data root) once the split is set up, as ``trainer.test(ckpt_path=...)`` would: loading it checks the
    classes against the split's (``ImageDataModule.load_state_dict``). For imported weights the state is
    Caffe's pixel statistics alone."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.datamodule is not None:
            trainer.datamodule.load_state_dict(self.state)


def say_what_trained(
    checkpoint: Path, state: dict[str, Any] | None, datamodule: ImageDataModule, split: str = "test"
) -> None:
    """Print the data the checkpoint was trained on (its datamodule ``state``) beside the split evaluated
    (the classes are checked when that state is loaded: ``RestoreDataState``)."""
    if state and state.get("classes"):
        where = datamodule.root / "test" if split == "test" else f"the validation split of {datamodule.root}"
        verb = "testing" if split == "test" else "evaluating"
        trained = f"{checkpoint.name}: trained on {state.get('root')} (classes {state['classes']})"
        say(f"{trained}; {verb} on {where}")
    else:
        say(f"{checkpoint.name} does not record its classes (an older checkpoint): they are not checked")


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    quiet_lightning()  # the two notes of Lightning's that train.py drops too (src/utils/console.py)
    evaluate(cfg)


if __name__ == "__main__":
    sys.argv[1:] = command_line(sys.argv[1:])  # key=~/..., old key spellings (src/runs/overrides.py)
    main()
