"""A run's configuration and objects for code outside a run: the bench, the notebook, tests.

``compose_config`` composes ``conf/train.yaml`` with Hydra's compose API and the overrides a command line
would give (``["model=one_tower", "data.batch_size=32"]``); the builders instantiate from it what
``src/train.py`` would, so such code gets a run's behaviour (the same net, data settings, learning rate and
warm-up) instead of the constructors' own arguments. Keyword arguments replace single arguments of the
object built (a small test net: ``build_module(cfg, net=net)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig
from torch import nn

from src.data.datamodule import ImageDataModule
from src.models.classifier import TowerClassifier
from src.runs.paths import CONF_DIR, register_resolver


def compose_config(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """``conf/<config_name>.yaml`` composed with ``overrides``, as the entry point would see it.

    Keys that read Hydra's run folder (``paths.output_dir``) resolve only inside a run; the builders below
    do not read them.
    """
    register_resolver()
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def build_net(cfg: DictConfig, **replace: Any) -> nn.Module:
    """The network of ``cfg.model``."""
    return hydra.utils.instantiate(cfg.model, **replace)


def build_datamodule(cfg: DictConfig, **replace: Any) -> ImageDataModule:
    """The datamodule of ``cfg.data``."""
    return hydra.utils.instantiate(cfg.data, **replace)


def build_module(cfg: DictConfig, **replace: Any) -> TowerClassifier:
    """The LightningModule of ``cfg.module``: net, optimiser, schedule and batch-scaled rate from the config.

    ``build_module(cfg, net=net)`` trains a net built elsewhere with the run's recipe; a test that brings
    its own optimiser partial passes ``learning_rate=None`` to keep that partial's rate.
    """
    return hydra.utils.instantiate(cfg.module, **replace)


@cache
def _constant_rate_config() -> DictConfig:
    return compose_config(["scheduler=constant"])


def constant_rate_module(net: nn.Module, optimizer: Any, **replace: Any) -> TowerClassifier:
    """A module that trains ``net`` with the ``optimizer`` partial at the partial's own rate, under
    ``conf/scheduler/constant.yaml`` (no schedule, no warm-up, no batch scaling): for tests and benchmarks
    that feed batches without a datamodule, so without the validation a plateau schedule watches."""
    return build_module(_constant_rate_config(), net=net, optimizer=optimizer, learning_rate=None, **replace)
