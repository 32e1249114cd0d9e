"""The 64-pixel net in the bench: its sizes from its data recipe, its layers' shapes and multiply-adds, its
parameters, and its step rows (as a share of its own convolution ceiling) on given numbers."""

from __future__ import annotations

import math

import pytest
import yaml

from bench.ceiling import Ceiling, conv_shapes
from bench.common import NETS
from bench.models import (
    PAPER_BATCH,
    layer_macs,
    member_net,
    member_size_rows,
    member_step_rows,
    member_variants,
    parameter_count,
    precisions,
    training_flops_per_image,
)
from src.models.alexnet import AlexNet
from src.models.layer_table import layer_table
from src.runs.paths import CONF_DIR

# conv1 96 5x5/2 on 56 -> 28; pool 13; conv2 128 5x5 (48 inputs a tower); pool 6; conv3 192 3x3 on all 128;
# conv4 192 (96 a tower), conv5 128 (96 a tower); pool 2; fc6 512 -> 2048, fc7 2048, fc8 200.
SMALL64_CONV_MACS = (
    96 * 28 * 28 * 3 * 25,
    128 * 13 * 13 * 48 * 25,
    192 * 6 * 6 * 128 * 9,
    192 * 6 * 6 * 96 * 9,
    128 * 6 * 6 * 96 * 9,
)
SMALL64_FC_MACS = (128 * 2 * 2 * 2048, 2048 * 2048, 2048 * 200)


@pytest.mark.parametrize("name", list(NETS))
def test_each_nets_sizes_are_its_data_recipes_and_its_tables(name: str) -> None:
    net = NETS[name]
    recipe = yaml.safe_load((CONF_DIR / "data" / f"{net.data}.yaml").read_text())
    base = yaml.safe_load((CONF_DIR / "data" / "base.yaml").read_text())
    assert net.image_size == recipe.get("image_size", base["image_size"])
    assert net.crop_size == recipe.get("crop_size", base["crop_size"])
    assert net.crop_size == layer_table(net.layers).input_size


def test_the_64_pixel_nets_sizes_and_label() -> None:
    net = NETS["small64"]
    assert (net.image_size, net.crop_size, net.num_classes) == (64, 56, 200)
    assert net.label == "small64 net, 56-pixel crops"


def test_conv_shapes_at_56_pixels_are_the_64_pixel_nets() -> None:
    shapes = {s.name: s for s in conv_shapes(member_net("small64"), batch=128, size=56)}
    assert shapes["conv1"].input == (128, 3, 56, 56) and shapes["conv1"].output_size() == (28, 28)
    assert shapes["conv1"].kernel == (5, 5) and shapes["conv1"].stride == (2, 2)
    assert shapes["conv2"].input == (128, 96, 13, 13) and shapes["conv2"].groups == 2
    assert shapes["conv3"].input == (128, 128, 6, 6) and shapes["conv3"].groups == 1
    assert [shapes[n].forward_macs() for n in shapes] == [128 * m for m in SMALL64_CONV_MACS]


def test_multiply_adds_and_flops_from_the_layer_shapes() -> None:
    macs = layer_macs(member_net("small64"), 56)
    assert [m for kind, m in macs if kind == "conv"] == list(SMALL64_CONV_MACS)
    assert [m for kind, m in macs if kind == "fc"] == list(SMALL64_FC_MACS)
    assert sum(m for _, m in macs) == 55_171_584
    conv1, rest = SMALL64_CONV_MACS[0], sum(SMALL64_CONV_MACS[1:]) + sum(SMALL64_FC_MACS)
    assert training_flops_per_image(member_net("small64"), 56) == 2 * 2 * conv1 + 3 * 2 * rest


def test_size_rows_count_parameters_and_multiply_adds_for_1_2_and_4_towers() -> None:
    rows = {r.name: r for r in member_size_rows("small64")}
    for towers in (1, 2, 4):
        plural = "s" if towers > 1 else ""
        label = f"small64 net, 56-pixel crops, 200 classes, {towers} tower{plural}"
        count = parameter_count(AlexNet(200, towers=towers, layers="small64"))
        params = rows[f"parameters, {label}"]
        assert params.value == pytest.approx(count / 1e6) and params.note == f"{count:,}"
        assert rows[f"forward multiply-adds per image, {label}"].value > 0
    assert rows["parameters, small64 net, 56-pixel crops, 200 classes, 2 towers"].note == "6,315,976"
    two = rows["forward multiply-adds per image, small64 net, 56-pixel crops, 200 classes, 2 towers"]
    assert two.value == pytest.approx(55.171584) and two.note.startswith("55,171,584: conv layers 49.5 M")
    prefix = "forward multiply-adds per image, small64 net, 56-pixel crops, 200 classes"
    macs = [rows[f"{prefix}, {towers}"].value for towers in ("1 tower", "2 towers", "4 towers")]
    assert macs[0] > macs[1] > macs[2]  # grouped layers: each tower's kernels see fewer channels


def test_step_rows_are_shares_of_the_nets_own_ceiling() -> None:
    names = list(member_variants("small64"))  # what the child process times, on this CPU
    rates = {name: 40.0 for name in names} | {"small64 at the paper's widths, fp32": 20.0}
    ceilings = {p: Ceiling(PAPER_BATCH, p, {"conv1": 1.0}, 1e9, 1e9) for p in precisions()}  # 128 img/s
    rows = {r.name: r for r in member_step_rows("small64", rates, ceilings)}
    step = rows[
        "training step, small64 net, 56-pixel crops, fp32, channels_last, batch 128 "
        "(glibc keeping freed memory, fused SGD: the training defaults)"
    ]
    assert step.value == 40.0
    assert step.note == "31% of the fp32 conv ceiling (128 img/s at batch 128)"
    assert step.summary.endswith("40 img/s, 31% of its conv ceiling")
    ratio = rows[
        "small64 net, 56-pixel crops: the table's widths / the paper's widths, fp32 step at batch 128"
    ]
    assert ratio.value == pytest.approx(2.0) and ratio.unit == "ratio"
    wide = next(r for name, r in rows.items() if "at the paper's widths, fp32" in name)
    assert wide.value == 20.0 and "x the table's widths'" in wide.note
    if "bf16" not in precisions():
        assert any(math.isnan(r.value) and "bf16" in name for name, r in rows.items())


def test_the_child_times_the_training_defaults_at_batch_128_on_56_pixel_crops() -> None:
    variants = member_variants("small64")
    assert "small64, fp32" in variants and "small64 at the paper's widths, fp32" in variants
    for step, batch in variants.values():
        assert batch == PAPER_BATCH and step.size == 56 and step.net.channels_last
        assert step.net.layers == "small64" and step.net.num_classes == 200
        assert step.optimizer.defaults["fused"]
    wide = variants["small64 at the paper's widths, fp32"][0].net
    assert wide.conv_widths == layer_table("paper").conv_widths and wide.fc_width == 4096
