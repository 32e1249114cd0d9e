"""The layer tables (src/models/layer_table.py): one description of each member of the family, read by both
builders; the 64-pixel member (``small64``) keeps the wiring figure 3 depends on."""

from __future__ import annotations

import pytest
import torch

import src.models.alexnet as alexnet
from src.models.alexnet import AlexNet
from src.models.layer_table import PAPER, SMALL_64, describe, layer_table
from src.models.tower_parallel import from_grouped, to_grouped
from tests.test_alexnet import capture, n_params


def test_the_docstring_shows_the_paper_table() -> None:
    shown = "\n".join("    " + line for line in describe(PAPER).splitlines())
    assert shown in alexnet.__doc__


def test_paper_table_gives_the_papers_maps() -> None:
    """Section 3.5: 55x55 conv1 maps, 27 after pooling, 13 from conv3 on, 6x6 into fc6."""
    assert PAPER.spatial_sizes() == [
        ("conv1", 55), ("pool1", 27), ("conv2", 27), ("pool2", 13),
        ("conv3", 13), ("conv4", 13), ("conv5", 13), ("pool5", 6),
    ]  # fmt: skip
    assert PAPER.pooled_size == 6


@pytest.mark.parametrize("towers", [1, 2, 4])
def test_small64_net_shapes_and_wiring(towers: int) -> None:
    net = AlexNet(num_classes=200, towers=towers, layers="small64")
    x = torch.randn(2, 3, 56, 56)
    sizes = {n: tuple(t.shape[2:]) for n, t in capture(net, ["conv1", "conv2", "conv3", "conv5"], x).items()}
    assert sizes == {"conv1": (28, 28), "conv2": (13, 13), "conv3": (6, 6), "conv5": (6, 6)}
    assert net(x).shape == (2, 200) and net.pooled_size == 2
    assert [k.shape for k in net.tower_kernels("conv1")] == [(96 // towers, 3, 5, 5)] * towers
    groups = {name: net.layer(name).groups for name in ("conv2", "conv3", "conv4", "conv5")}
    assert groups == {"conv2": towers, "conv3": 1, "conv4": towers, "conv5": towers}
    assert net.layer("fc6").in_features == 128 * 2 * 2
    assert (
        hasattr(net.features, "norm1") and hasattr(net.features, "norm2") and hasattr(net.features, "pool5")
    )


def test_small64_parameter_count_and_config_round_trip() -> None:
    net = AlexNet(num_classes=200, towers=2, layers="small64")
    assert n_params(net) == 6_315_976
    assert net.config()["layers"] == "small64" and net.config()["conv_widths"] == list(SMALL_64.conv_widths)
    assert n_params(AlexNet(**net.config())) == n_params(net)
    assert n_params(AlexNet(num_classes=1000)) == 60_965_224  # the paper's table is the default


@pytest.mark.parametrize("towers", [2, 4])
def test_one_tower_per_process_cut_of_small64_reassembles(towers: int) -> None:
    torch.manual_seed(0)
    net = AlexNet(num_classes=10, towers=towers, layers="small64")
    shards = [from_grouped(net, rank) for rank in range(towers)]
    assert shards[0].layer("conv1").weight.shape == (96 // towers, 3, 5, 5)
    assert shards[0].layer("conv3").weight.shape == (192 // towers, 128, 3, 3)
    assert shards[0].layer("fc6").weight.shape == (2048 // towers, 512)
    state = to_grouped([shard.state_dict() for shard in shards])
    assert all(torch.equal(state[name], tensor) for name, tensor in net.state_dict().items())


def test_an_unknown_table_is_refused_by_name() -> None:
    with pytest.raises(
        ValueError, match="model.layers='tiny' is not a known table; choose one of paper, small64"
    ):
        layer_table("tiny")
    with pytest.raises(ValueError, match="model.layers='tiny'"):
        AlexNet(num_classes=10, layers="tiny")
