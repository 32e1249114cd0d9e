"""Every config in conf/ composes, and every object it names instantiates."""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning as L
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

from src.loggers.build import build_loggers
from src.models.alexnet import AlexNet
from src.models.caffe_weights import caffe_arrays, read_caffe_weights, write_caffe_weights
from src.runs.overrides import command_line
from src.train import build_callbacks, build_module, build_trainer
from tests.conftest import CONF, compose_train


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


GROUP_OPTIONS = [
    (group, option)
    for group in ("model", "data", "optimizer", "scheduler", "trainer", "logger", "callbacks", "experiment")
    for option in options(group)
]


def test_the_old_spelling_of_the_synthetic_settings_still_works(tmp_path: Path) -> None:
    """``data.generate.<key>`` (before the synthetic set's settings moved under ``data.source``)."""
    overrides = command_line(["data.generate.train_per_class=12", "~data.generate.seed", "-m"])
    assert overrides == ["data.source.train_per_class=12", "~data.source.seed", "-m"]
    cfg = compose_train(overrides[:1], tmp_path)
    assert cfg.data.source.train_per_class == 12 and cfg.data.source.test_per_class == 200


def test_every_group_has_options() -> None:
    assert {"one_tower", "two_tower", "three_tower", "four_tower"} <= set(options("model"))
    assert {"synthetic", "catsdogs", "folders"} <= set(options("data"))
    assert {"paper", "demo"} <= set(options("experiment"))


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_config_composes_and_instantiates(group: str, option: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_X_TRANSACTION_LOG_FLUSH_INTERVAL", "1")  # what wandb_logger sets, undone after
    overrides = [f"{group}={option}"]
    if group == "data" and option in ("base", "folders"):  # no dataset of their own: name one
        overrides += ["data.root=/somewhere", "data.num_classes=10"]
    if group == "model" and option == "bvlc_alexnet":
        overrides += small_bvlc_alexnet(tmp_path)
    cfg = compose_train(overrides, tmp_path)
    datamodule = hydra.utils.instantiate(cfg.data)
    assert isinstance(datamodule, L.LightningDataModule)
    module = build_module(cfg)
    assert isinstance(module.net, AlexNet) and module.net.num_classes == cfg.data.num_classes
    optimizers = module.configure_optimizers()
    assert isinstance(optimizers["optimizer"], torch.optim.SGD)
    callbacks = build_callbacks(cfg)
    trainer, _ = build_trainer(cfg.trainer, accelerator="cpu", devices=1, callbacks=callbacks, logger=False)
    assert isinstance(trainer, L.Trainer)
    loggers = build_loggers(cfg)
    assert all(isinstance(lg, L.pytorch.loggers.Logger) for lg in loggers)
    for logger in loggers:  # a W&B logger starts its run in this process (define_metric): end it here, or
        if isinstance(logger, L.pytorch.loggers.WandbLogger):  # the next wandb.init in this process hangs
            logger.experiment.finish()


def test_model_configs_have_the_documented_towers_and_widths(tmp_path: Path) -> None:
    expected = {"one_tower": 1, "two_tower": 2, "three_tower": 3, "four_tower": 4}
    for option, towers in expected.items():
        net = hydra.utils.instantiate(compose_train([f"model={option}"], tmp_path).model)
        assert net.towers == towers
        assert len(net.tower_kernels("conv1")) == towers
    three = hydra.utils.instantiate(compose_train(["model=three_tower"], tmp_path).model)
    assert three.conv_widths == (96, 255, 384, 384, 255) and three.fc_width == 4095


#: bvlc_alexnet's layout at small widths, so that tests can write its weights file quickly.
SMALL_CAFFE_WIDTHS = {"conv_widths": [96, 16, 16, 16, 8], "fc_width": 16}


def small_bvlc_alexnet(tmp_path: Path, num_classes: int = 1000) -> list[str]:
    """Overrides for ``model=bvlc_alexnet``: a small weights file written to ``tmp_path`` and its widths."""
    source = AlexNet(num_classes, 2, **SMALL_CAFFE_WIDTHS)
    path = write_caffe_weights(source, tmp_path / "bvlc_alexnet_small.npy")
    return [f"model.pretrained={path}", "model.conv_widths=[96,16,16,16,8]", "model.fc_width=16"]


def test_bvlc_alexnet_starts_from_the_file_with_caffe_lrn(tmp_path: Path) -> None:
    overrides = small_bvlc_alexnet(tmp_path, num_classes=2)  # the synthetic data's 2 classes: fc8 loads too
    net = hydra.utils.instantiate(compose_train(["model=bvlc_alexnet", *overrides], tmp_path).model)
    arrays, loaded = read_caffe_weights(overrides[0].split("=", 1)[1]), caffe_arrays(net)
    assert all(np.array_equal(arrays[name][0], loaded[name][0]) for name in arrays)  # fc8 included
    config = net.config()
    assert (config["lrn_k"], config["lrn_size"], config["lrn_alpha"], config["lrn_beta"]) == (
        1.0,
        5,
        1e-4,
        0.75,
    )
    with pytest.raises(Exception, match="pretrained"):  # model.pretrained=??? must be given
        hydra.utils.instantiate(compose_train(["model=bvlc_alexnet"], tmp_path).model)


def test_sweepable_tower_override(tmp_path: Path) -> None:
    net = hydra.utils.instantiate(compose_train(["model.towers=4"], tmp_path).model)
    assert net.towers == 4 and net.layer("conv2").groups == 4


def test_split_study_builds_the_64_pixel_net_on_tiny_imagenet(tmp_path: Path) -> None:
    cfg = compose_train(["experiment=split_study"], tmp_path)
    assert (cfg.data.image_size, cfg.data.crop_size, cfg.data.num_classes) == (64, 56, 200)
    net = hydra.utils.instantiate(cfg.model)
    assert net.layers == "small64" and net.towers == 2 and net.conv_widths == (96, 128, 192, 192, 128)
    assert net(torch.randn(2, 3, 56, 56)).shape == (2, 200)


def test_defaults_follow_the_paper(tmp_path: Path) -> None:
    cfg = compose_train([], tmp_path)
    assert cfg.model.towers == 2 and cfg.model.layers == "paper"
    net = hydra.utils.instantiate(cfg.model, num_classes=10)
    assert net.conv_widths == (96, 256, 384, 384, 256) and net.fc_width == 4096
    assert cfg.data.batch_size == 128 and cfg.data.crop_size == 224 and cfg.data.image_size == 256
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (0.01, 0.9, 0.0005)
    assert cfg.scheduler.scheduler.factor == 0.1 and cfg.scheduler.monitor == "val/acc"
    paper = compose_train(["experiment=paper"], tmp_path)
    assert paper.model.init == "paper" and paper.data.normalize == "mean" and paper.trainer.max_epochs == 90


def test_weight_decay_spares_biases(tmp_path: Path) -> None:
    module = build_module(compose_train([], tmp_path))
    groups = module.configure_optimizers()["optimizer"].param_groups
    assert groups[0]["weight_decay"] == 0.0005 and groups[1]["weight_decay"] == 0.0
    assert all(p.dim() > 1 for p in groups[0]["params"]) and all(p.dim() == 1 for p in groups[1]["params"])


def test_eval_config_composes(tmp_path: Path) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="eval", overrides=["ckpt_path=/x/last.ckpt"], return_hydra_config=True)
    HydraConfig().set_config(cfg)
    assert cfg.ckpt_path == "/x/last.ckpt" and cfg.data.test_views == "ten"
    datamodule = hydra.utils.instantiate(cfg.data, test_views="centre")
    assert datamodule.eval_views["test"] == "centre"
    assert {"csv"} == set(cfg.logger)


def test_validation_uses_the_centre_view_and_the_test_ten_by_default(tmp_path: Path) -> None:
    """Ten-crop validation costs ~31 % of an epoch (bench/epoch.py); the test keeps section 4.1's."""
    cfg = compose_train([], tmp_path)
    assert (cfg.data.val_views, cfg.data.test_views) == ("centre", "ten")
    paper = compose_train(["experiment=paper"], tmp_path)
    assert (paper.data.val_views, paper.data.test_views) == ("ten", "ten")


def test_a_recipes_download_url_overrides_as_the_readme_spells_it(tmp_path: Path) -> None:
    """data.source.files.<name>.url=... for every recipe (imagenette's file is picked by size, and its keys
    still override one by one)."""
    url = "http://127.0.0.1:9/imagenette.tgz"
    cfg = compose_train(["data=imagenette", f"data.source.files.archive.url={url}"], tmp_path)
    archive = cfg.data.source.files.archive
    assert archive.url == url and archive.md5 == cfg.data.source.sizes.px320.md5
    small = compose_train(["data=imagenette", "data.source.size=px160"], tmp_path).data.source
    assert small.files.archive.url == small.sizes.px160.url
