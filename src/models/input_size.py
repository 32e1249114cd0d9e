"""The smallest image a network's convolutions and poolings accept, checked before any data is read.

A crop too small for the net used to fail only in the first forward pass, after the data cache was built,
with PyTorch's "Output size is too small". ``check_crop_size`` says it before ``fit``, naming the setting
and the smallest value that works.
"""

from __future__ import annotations

from torch import nn

LARGEST_SEARCHED = 4096  # pixels: a net needing more than this is not an AlexNet


def output_side(layer: nn.Module, side: int) -> int:
    """The output side of a square ``side`` x ``side`` input to a conv or pool layer (others keep it)."""
    if not isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        return side

    def first(value: int | tuple[int, ...]) -> int:
        return value[0] if isinstance(value, tuple) else value

    kernel, stride, padding = first(layer.kernel_size), first(layer.stride), first(layer.padding)
    dilation = first(getattr(layer, "dilation", 1))
    span = side + 2 * padding - dilation * (kernel - 1) - 1
    if span < 0:
        return 0
    steps = -(-span // stride) if getattr(layer, "ceil_mode", False) else span // stride
    return steps + 1


def final_side(net: nn.Module, side: int) -> int:
    """The side of the maps after the last conv or pool layer of ``net`` (0 when one has no output)."""
    for layer in net.modules():
        side = output_side(layer, side)
        if side < 1:
            return 0
    return side


def smallest_input(net: nn.Module) -> int:
    """The smallest square input side that every conv and pool layer of ``net`` accepts."""
    for side in range(1, LARGEST_SEARCHED + 1):
        if final_side(net, side) >= 1:
            return side
    raise ValueError(f"no input up to {LARGEST_SEARCHED} pixels fits this network")


def check_crop_size(net: nn.Module, crop_size: int, setting: str = "data.crop_size") -> None:
    """ValueError naming ``setting`` and the smallest side that works, if ``crop_size`` is too small."""
    if final_side(net, crop_size) < 1:
        raise ValueError(
            f"{setting}={crop_size} is too small for this network: its convolutions and poolings need "
            f"at least {smallest_input(net)}x{smallest_input(net)} pixels (the paper's crop is 224)"
        )
