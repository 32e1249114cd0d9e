"""bench/profile.py: the step's time grouped by what it is for, and the avgpool the net now skips."""

from __future__ import annotations

import pytest
import torch

from bench.models import AlwaysPooled, profile_table
from bench.profile import OTHER, group_of, profile_step, step_runner
from src.models.alexnet import AlexNet

SMALL = {"conv_widths": (8, 16, 16, 16, 16), "fc_width": 32}


@pytest.mark.parametrize(
    ("names", "group"),
    [
        (["aten::mkldnn_convolution", "aten::convolution"], "convolutions"),
        (["aten::convolution_backward"], "convolutions"),
        (["aten::mm", "AddmmBackward0"], "fc layers"),
        (["aten::fill_", "aten::max_pool2d_with_indices_backward"], "pooling"),
        (["alexnet_towers_lrn::backward"], "LRN"),
        (["aten::threshold_backward"], "ReLU"),
        (["aten::bernoulli_", "aten::dropout"], "dropout"),
        (["aten::_fused_sgd_", "Optimizer.step#SGD.step"], "optimizer"),
        (["aten::copy_", "aten::_to_copy", "aten::to"], "casts and layout copies"),
        (["aten::empty"], OTHER),
    ],
)
def test_ops_fall_in_the_group_of_the_innermost_match(names: list[str], group: str) -> None:
    assert group_of(names) == group


def test_profile_of_a_small_step_accounts_for_its_time() -> None:
    torch.manual_seed(0)
    net = AlexNet(2, channels_last=True, **SMALL)
    groups, wall = profile_step(step_runner(net, batch=2, precision="fp32", size=64), steps=1)
    assert groups["convolutions"] > 0 and groups["fc layers"] > 0 and groups["LRN"] > 0
    assert sum(groups.values()) > 0 and wall > 0  # how the times compare is the machine's load, not a test's
    rows = profile_table(groups, wall, "fp32, batch 2")
    assert rows[-1].name.endswith("all but the convolutions")
    assert rows[-1].value == pytest.approx(sum(groups.values()) - groups["convolutions"])


@pytest.mark.parametrize("channels_last", [False, True])
def test_skipping_avgpool_at_6x6_changes_nothing(channels_last: bool) -> None:
    torch.manual_seed(0)
    net = AlexNet(3, channels_last=channels_last)
    before = AlwaysPooled(3, channels_last=channels_last)
    before.load_state_dict(net.state_dict())
    calls = []
    net.avgpool.register_forward_hook(lambda *_: calls.append(1))
    x = torch.randn(2, 3, 224, 224)
    net.eval(), before.eval()
    assert torch.equal(net(x), before(x)) and not calls  # skipped, bit for bit the same
    net(torch.randn(1, 3, 256, 256))  # 7x7 maps: avgpool still brings them to 6x6
    assert calls == [1]
