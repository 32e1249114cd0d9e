"""The Figure 3 report's references: the split of freshly initialised nets (the random band of an arm) and
CaffeNet's split and learning measure, scored as training scores its runs."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch

from src.analysis.colour import stats_for_model_kernels
from src.analysis.reference_kernels import caffenet_stats
from src.analysis.smoothness import random_level
from src.models.alexnet import AlexNet
from src.reports.figure3_runs import LOW_FREQ, SPLIT

#: What ``experiment=figure3`` initialises from (conf/model/two_tower.yaml).
INIT = "kaiming_paper_conv1"
DEFAULT_BAND_SEEDS = 200
BAND_SDS = 2.0


@dataclass(frozen=True)
class Band:
    """The split of freshly initialised nets with ``towers`` towers: mean and sd over ``seeds`` seeds."""

    towers: int
    mean: float
    sd: float
    seeds: int

    @property
    def low(self) -> float:
        return self.mean - BAND_SDS * self.sd

    @property
    def high(self) -> float:
        return self.mean + BAND_SDS * self.sd


def random_band(towers: int, seeds: int = DEFAULT_BAND_SEEDS, init: str = INIT) -> Band:
    """:class:`Band` of fresh ``AlexNet(10, towers, init=init)`` nets; the global random state is kept.

    Only conv1 is scored, and it is initialised i.i.d. whatever the later layers are, so they are built
    ``towers`` wide (milliseconds instead of a second per net).
    """
    splits = []
    for seed in range(seeds):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            tiny = (96, towers, towers, towers, towers)
            net = AlexNet(10, towers, conv_widths=tiny, fc_width=towers, init=init)
        splits.append(stats_for_model_kernels(net.tower_kernels("conv1")).split)
    sd = statistics.stdev(splits) if len(splits) > 1 else 0.0
    return Band(towers, statistics.fmean(splits), sd, seeds)


@dataclass(frozen=True)
class Reference:
    """A trained net's split and learning measure, and the random kernels' learning measure."""

    name: str
    split: float
    low_freq: float
    random_low_freq: float

    @property
    def halfway(self) -> float:
        """The learning measure halfway from random kernels to the reference's."""
        return self.random_low_freq + (self.low_freq - self.random_low_freq) / 2


def caffenet_reference() -> Reference:
    """CaffeNet's conv1 (recovered from its picture), scored as training scores its runs."""
    logged = caffenet_stats().log_dict()
    return Reference("CaffeNet", logged[SPLIT], logged[LOW_FREQ], random_level())
