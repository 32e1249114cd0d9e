"""bench/ceiling.py: the conv layers' shapes and FLOPs (section 3.5), and a small net's measured ceiling."""

from __future__ import annotations

import math

import pytest

from bench.ceiling import Ceiling, ceiling_rows, conv_shapes, measure_ceiling, share_note
from bench.models import training_flops_per_image
from src.models.alexnet import AlexNet

SMALL = {"conv_widths": (8, 16, 16, 16, 16), "fc_width": 32}


def test_the_paper_nets_conv_layers_have_figure_2s_shapes() -> None:
    shapes = {s.name: s for s in conv_shapes(AlexNet(2), batch=128)}
    assert list(shapes) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert shapes["conv1"].input == (128, 3, 224, 224) and shapes["conv1"].output_size() == (55, 55)
    assert shapes["conv2"].input == (128, 96, 27, 27) and shapes["conv2"].groups == 2
    assert shapes["conv3"].input == (128, 256, 13, 13) and shapes["conv3"].groups == 1
    assert [shapes[n].groups for n in ("conv4", "conv5")] == [2, 2]
    assert not shapes["conv1"].input_grad and all(shapes[n].input_grad for n in ("conv2", "conv3", "conv5"))
    # conv3: 384 kernels of 3x3x256 on 13x13 maps
    assert shapes["conv3"].forward_macs() == 128 * 384 * 13 * 13 * 256 * 9


def test_conv_flops_plus_fc_flops_are_the_nets_training_flops() -> None:
    net = AlexNet(1000)
    shapes = conv_shapes(net, batch=1)
    fc_macs = 9216 * 4096 + 4096 * 4096 + 4096 * 1000
    assert sum(s.training_flops() for s in shapes) + 3 * 2 * fc_macs == training_flops_per_image(net)
    # 724.4 M multiply-adds per image in the forward pass (1000 classes)
    assert sum(s.forward_macs() for s in shapes) + fc_macs == pytest.approx(724.4e6, rel=1e-3)


def test_measured_ceiling_of_a_small_net_is_finite_and_consistent() -> None:
    net = AlexNet(2, channels_last=True, **SMALL)
    flops = training_flops_per_image(net, 64)
    ceiling, shapes = measure_ceiling(net, batch=2, precision="fp32", net_flops=flops, repeats=1, size=64)
    assert set(ceiling.seconds) == {s.name for s in shapes}
    assert all(
        math.isfinite(t) and t > 0 for t in ceiling.seconds.values()
    )  # how long: not a test's business
    assert ceiling.images_per_second == pytest.approx(ceiling.conv_rate * 1e9 / flops)
    assert ceiling.convs_alone() > ceiling.images_per_second  # the fc layers add FLOPs, never remove them
    rows = ceiling_rows(ceiling, shapes)
    assert len(rows) == len(shapes) + 2
    assert all(math.isfinite(r.value) and r.value > 0 for r in rows)
    assert rows[-1].unit == "img/s" and "batch 2" in rows[-1].name


def test_share_note_names_the_share_and_the_ceiling() -> None:
    ceiling = Ceiling(128, "fp32", {"conv1": 1.0}, conv_flops=1e9, net_flops=1e9)  # 128 GFLOP/s: 128 img/s
    assert ceiling.images_per_second == pytest.approx(128)
    assert share_note(96, ceiling) == "75% of the fp32 conv ceiling (128 img/s at batch 128)"
    assert share_note(96, None) == ""


def test_target_rows_give_each_default_step_its_share_and_issue_18s_verdict() -> None:
    from bench.models import target_rows, target_variants

    names = list(target_variants())  # what the child process times, on this CPU
    best = {name: 10.0 for name in names} | {"two towers, fp32, channels_last, fused SGD, batch 128": 12.0}
    ceilings = {
        ("two", p, b): Ceiling(b, p, {"conv1": 1.0}, 1e9, 1e9) for p in ("fp32", "bf16") for b in (32, 128)
    }
    rows = {r.name: r for r in target_rows(best, ceilings)}
    batch_128 = next(r for name, r in rows.items() if "fp32, channels_last, batch 128 (" in name)
    assert batch_128.note.startswith(
        "9% of the fp32 conv ceiling (128 img/s at batch 128); target >= 75%: FAIL"
    )
    assert "9% of its conv ceiling (target >= 75%: FAIL)" in batch_128.summary
    avgpool = next(r for name, r in rows.items() if name.startswith("avgpool skipped"))
    assert avgpool.value == pytest.approx(1.2)
