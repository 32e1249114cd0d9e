"""Each default in one place: the config (conf/) owns the run's settings; a constructor default that a
config also sets agrees with it, and code outside a run builds what a run builds (src/config/compose.py)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from src.config.compose import build_datamodule, build_module, build_net, compose_config, constant_rate_module
from src.data.datamodule import ImageDataModule
from src.models.alexnet import AlexNet
from src.models.classifier import BatchScaledRate, TowerClassifier
from src.models.tower_parallel import TowerParallelAlexNet

SMALL = {"conv_widths": (16, 32, 48, 48, 32), "fc_width": 64}


def code_defaults(cls: type) -> dict[str, Any]:
    parameters = inspect.signature(cls.__init__).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def disagreements(cls: type, node: DictConfig) -> dict[str, tuple[Any, Any]]:
    """The defaults of ``cls`` that ``node`` also sets, to another value: ``{name: (code's, config's)}``."""
    found = {}
    for name, default in code_defaults(cls).items():
        if name in node:
            value = OmegaConf.to_container(node, resolve=True)[name]
            if (list(default) if isinstance(default, tuple) else default) != value:
                found[name] = (default, value)
    return found


@pytest.fixture(scope="module")
def cfg() -> DictConfig:
    return compose_config()


def test_network_defaults_agree_with_the_model_config(cfg: DictConfig) -> None:
    assert disagreements(AlexNet, cfg.model) == {}
    assert disagreements(TowerParallelAlexNet, cfg.model) == {}
    assert code_defaults(AlexNet)["channels_last"] is True  # once False, where the config said true


def test_datamodule_defaults_agree_with_the_data_config() -> None:
    base = compose_config(["data=base", "data.root=/somewhere", "data.num_classes=2"])
    assert disagreements(ImageDataModule, base.data) == {}
    assert code_defaults(ImageDataModule)["val_views"] == "centre"  # once "ten", where the config said centre
    assert "cache_dir" not in code_defaults(ImageDataModule)  # only the config knows paths.data_dir


def test_the_module_takes_every_setting_from_the_config(cfg: DictConfig) -> None:
    parameters = inspect.signature(TowerClassifier.__init__).parameters
    assert code_defaults(TowerClassifier) == {}
    assert set(cfg.module) - {"_target_"} == set(parameters) - {"self"}


def test_the_builders_give_what_a_run_builds() -> None:
    cfg = compose_config(["data.batch_size=32", "model.towers=1", "scheduler.warmup_steps=40"])
    module = build_module(cfg, net=AlexNet(2, **SMALL))
    assert module.hparams.learning_rate == BatchScaledRate(lr=0.01, lr_batch=128, batch_size=32)
    assert module.hparams.learning_rate.value == pytest.approx(0.0025)
    assert (module.hparams.warmup_steps, module.hparams.warmup_fraction) == (40, 0.25)
    assert module.hparams.scheduler_monitor == "val/acc" and module.hparams.scheduler is not None
    net = build_net(cfg, **SMALL)
    assert net.towers == 1 and net.channels_last and net.init == "kaiming_paper_conv1"
    datamodule = build_datamodule(cfg)
    assert (datamodule.batch_size, datamodule.eval_views["val"]) == (32, "centre")
    assert datamodule.cache_dir == datamodule.root.parent / "cache"  # ${paths.data_dir}/cache


def test_the_rate_is_scaled_once_and_said_as_before() -> None:
    assert BatchScaledRate(0.01, 128, 32).line() == "learning rate: 0.01 at batch 128 -> 0.0025 at batch 32"
    assert BatchScaledRate(0.01, None, 32).value == 0.01 and BatchScaledRate(0.01, None, 32).line() == ""
    assert BatchScaledRate(0.01, 128, 128).line() == ""  # the batch it was meant for: nothing to say
    module = build_module(compose_config(["data.batch_size=64"]), net=AlexNet(2, **SMALL))
    optimizer = module.configure_optimizers()["optimizer"]
    assert [group["lr"] for group in optimizer.param_groups] == [0.005, 0.005]


def test_a_module_with_its_own_optimizer_keeps_its_rate() -> None:
    sgd = lambda params: torch.optim.SGD(params, lr=0.3)  # noqa: E731
    module = constant_rate_module(AlexNet(2, **SMALL), sgd)
    assert module.hparams.scheduler is None and module.hparams.warmup_steps == 0
    assert module.configure_optimizers()["optimizer"].param_groups[0]["lr"] == 0.3
