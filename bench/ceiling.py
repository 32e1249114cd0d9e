"""The convolution ceiling of a training step: every conv layer of the net, forward and backward, timed alone.

For each conv layer of the two-tower net (section 3.5, figure 2: conv1 11x11/4 on the image; conv2 5x5 and
conv4, conv5 3x3 inside each tower, ``groups=2``; conv3 3x3 across both towers) at its own input shape, in
channels_last (oneDNN's NHWC kernels, the training default):

- forward: ``F.conv2d``;
- backward: ``aten.convolution_backward``, the gradient of the weights and bias, and of the input for every
  layer but conv1 (the image needs no gradient; autograd skips it in a real step too).

Another member of the family is timed the same way at its own crop size (the 64-pixel net's conv1 5x5/2
and narrower conv2..conv5 on 56-pixel crops: ``conv_shapes(net, batch, size=56)``), so that each net's step
is a share of its own ceiling.

The layers are timed in turns (``interleaved_rates``), median of the repeats. The ceiling is what a step
would reach if everything in it ran at the convolutions' measured rate:

    conv rate (GFLOP/s)  = conv training FLOPs per image x batch / (sum of the layers' fwd+bwd times)
    ceiling (img/s)      = conv rate / training FLOPs per image of the whole net (fc layers included)

FLOPs: 2 per multiply-add; forward, input gradient and weight gradient each cost the forward's
multiply-adds (3 x 2 x MACs; 2 x 2 for conv1). The fc layers are counted at the convolutions' rate: they are
7.5 % of the net's multiply-adds (fc6-fc8: 54.6 M of 724 M with 1000 classes), and a step that ran them at
that rate would meet the ceiling exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.common import Row, interleaved_rates

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class ConvShape:
    """One conv layer at one batch: its input shape and the ``nn.Conv2d`` settings that matter for speed."""

    name: str
    input: tuple[int, int, int, int]
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    groups: int
    input_grad: bool  # conv1's input is the image: no gradient

    def output_size(self) -> tuple[int, int]:
        h, w = self.input[2:]
        return tuple(  # type: ignore[return-value]
            (size + 2 * p - k) // s + 1
            for size, p, k, s in zip((h, w), self.padding, self.kernel, self.stride, strict=True)
        )

    def forward_macs(self) -> int:
        """Multiply-adds of the forward pass of the whole batch."""
        n, c = self.input[:2]
        h, w = self.output_size()
        return n * self.out_channels * h * w * (c // self.groups) * self.kernel[0] * self.kernel[1]

    def training_flops(self) -> int:
        """FLOPs of forward + backward for the whole batch: (2 or 3) x 2 x MACs."""
        return (3 if self.input_grad else 2) * 2 * self.forward_macs()


def conv_shapes(net: nn.Module, batch: int, size: int = 224) -> list[ConvShape]:
    """The conv layers of ``net`` in the order its forward runs them, at ``batch`` images of ``size``."""
    names = {module: name.rsplit(".", 1)[-1] for name, module in net.named_modules()}
    shapes: list[ConvShape] = []

    def record(module: nn.Conv2d, inputs: tuple[torch.Tensor, ...], _: torch.Tensor) -> None:
        shapes.append(
            ConvShape(
                name=names[module],
                input=(batch, *inputs[0].shape[1:]),
                out_channels=module.out_channels,
                kernel=tuple(module.kernel_size),
                stride=tuple(module.stride),
                padding=tuple(module.padding),
                groups=module.groups,
                input_grad=bool(shapes),  # every layer but the first
            )
        )

    hooks = [m.register_forward_hook(record) for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        was_training = net.training
        with torch.no_grad():
            net.eval()(torch.zeros(1, 3, size, size))
        net.train(was_training)
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def conv_runner(shape: ConvShape, dtype: torch.dtype, device: torch.device) -> Callable[[], int]:
    """One forward and one backward of ``shape`` in channels_last: returns 1 (one batch)."""
    torch.manual_seed(0)
    nhwc = torch.channels_last
    x = torch.randn(shape.input, device=device, dtype=dtype).contiguous(memory_format=nhwc)
    c = shape.input[1] // shape.groups
    weight = torch.randn(shape.out_channels, c, *shape.kernel, device=device, dtype=dtype) * 0.01
    weight = weight.contiguous(memory_format=nhwc)
    bias = torch.zeros(shape.out_channels, device=device, dtype=dtype)
    out_shape = (shape.input[0], shape.out_channels, *shape.output_size())
    grad = torch.randn(out_shape, device=device, dtype=dtype).contiguous(memory_format=nhwc)
    mask = [shape.input_grad, True, True]

    def run() -> int:
        F.conv2d(x, weight, bias, shape.stride, shape.padding, 1, shape.groups)
        torch.ops.aten.convolution_backward(
            grad, x, weight, [shape.out_channels], shape.stride, shape.padding, [1, 1], False, [0, 0],
            shape.groups, mask,
        )  # fmt: skip
        return 1

    return run


@dataclass
class Ceiling:
    """The measured convolutions of one (batch, precision): per-layer seconds per batch, and the ceiling."""

    batch: int
    precision: str
    seconds: dict[str, float]  # layer -> fwd+bwd seconds for the batch
    conv_flops: float  # conv training FLOPs per image
    net_flops: float  # training FLOPs per image of the whole net

    @property
    def conv_rate(self) -> float:
        """GFLOP/s of all conv layers together, forward and backward."""
        return self.conv_flops * self.batch / sum(self.seconds.values()) / 1e9

    @property
    def images_per_second(self) -> float:
        """The step's convolution ceiling: every training FLOP of the net at the conv rate."""
        return self.conv_rate * 1e9 / self.net_flops

    def convs_alone(self) -> float:
        """Images/s of the conv layers alone (nothing else in the step)."""
        return self.batch / sum(self.seconds.values())


def measure_ceiling(
    net: nn.Module,
    batch: int,
    precision: str,
    net_flops: float,
    repeats: int,
    device: torch.device | None = None,
    size: int = 224,
) -> tuple[Ceiling, list[ConvShape]]:
    """Time every conv layer of ``net`` at ``batch`` in ``precision`` (``fp32`` or ``bf16``), in turns."""
    device = device or torch.device("cpu")
    shapes = conv_shapes(net, batch, size)
    runs = {s.name: conv_runner(s, DTYPES[precision], device) for s in shapes}
    rates = interleaved_rates(runs, repeats)
    conv_flops = sum(s.training_flops() for s in shapes) / batch
    seconds = {name: 1 / rate for name, rate in rates.items()}
    return Ceiling(batch, precision, seconds, conv_flops, net_flops), shapes


def ceiling_rows(ceiling: Ceiling, shapes: list[ConvShape], net: str = "") -> list[Row]:
    """One row per layer (GFLOP/s) and the ceiling's rows for one (batch, precision); ``net`` names a net
    other than the paper's two-tower one in every row (``small64 net, 56-pixel crops``)."""
    tag = f"{net + ', ' if net else ''}{ceiling.precision}, channels_last, batch {ceiling.batch}"
    rows = []
    for shape in shapes:
        seconds = ceiling.seconds[shape.name]
        grads = "input+weight" if shape.input_grad else "weight"
        rows.append(
            Row(
                f"conv ceiling: {shape.name} fwd+bwd ({grads} grads), groups {shape.groups}, {tag}",
                shape.training_flops() / seconds / 1e9,
                "GFLOP/s",
                f"{1000 * seconds:.1f} ms per batch",
            )
        )
    rows += [
        Row(
            f"conv ceiling: all conv layers fwd+bwd, {tag}",
            ceiling.conv_rate,
            "GFLOP/s",
            f"{1000 * sum(ceiling.seconds.values()):.0f} ms per batch; "
            f"the convolutions alone: {ceiling.convs_alone():.1f} img/s",
        ),
        Row(
            f"conv ceiling of the training step, {tag}",
            ceiling.images_per_second,
            "img/s",
            f"{ceiling.net_flops / 1e9:.2f} GFLOP per image at the conv rate",
        ),
    ]
    return rows


def share_note(rate: float, ceiling: Ceiling | None) -> str:
    """``NN % of the <precision> conv ceiling at batch B`` for a step of ``rate`` img/s."""
    if ceiling is None:
        return ""
    return (
        f"{rate / ceiling.images_per_second:.0%} of the {ceiling.precision} conv ceiling "
        f"({ceiling.images_per_second:.0f} img/s at batch {ceiling.batch})"
    )
