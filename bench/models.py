"""Network speed: training steps of the AlexNet variants against their convolution ceiling, LRN, the profile.

Every figure that is compared with another is measured in turns with it (``interleaved_rates``): A, B, C, A,
B, C, ..., median of the repeats. The rows:

- GEMM: a 2048^3 matrix product (MKL's, ``torch.mm``), for reference; the fc layers run on it.
- The convolution ceiling (``bench/ceiling.py``): every conv layer of the net, forward and backward, at
  batch 32 and 128 (section 5's batch), channels_last; the step's ceiling in img/s is the net's training
  FLOPs at the convolutions' measured rate. Every training-step row says what share of its own net's
  ceiling (same precision and batch) it reaches.
- Training step (forward, backward, SGD with momentum and weight decay; batch 32 on a CPU) in images/s for the
  two-tower net (the paper's, section 3.5) in fp32 and bf16 mixed precision (autocast, as Lightning's
  ``bf16-mixed``), NCHW and channels_last, without its LRN layers (``features.norm1/2`` replaced by
  ``nn.Identity`` here, not in the model), with our eager LRN instead of the C++ kernel, with torch's
  ``nn.LocalResponseNorm`` per tower instead of ours,
  with the fused SGD kernel, compiled with ``torch.compile``; the one-tower net; and a reference "one weird
  trick" net (Krizhevsky 2014; torchvision's AlexNet: 64-192-384-256-256, no LRN, no groups) defined here.
- The training defaults (freed memory kept, fused SGD, channels_last) at batch 32 and 128, in child
  processes, with issue #18's targets at batch 128: fp32 at least 75 % of its ceiling, bf16 at least 70 %.
- FLOPs come from the layer shapes: 2 FLOPs per multiply-add; forward, gradient of the input and gradient of
  the weights each cost the forward's multiply-adds, so 3 x 2 x MACs, except conv1 (its input needs no
  gradient: 2 x 2).
- LRN forward + backward on conv1's activation (32 x 96 x 55 x 55): the C++ kernel, the eager version and
  ``nn.LocalResponseNorm``; the kernel in bf16 and channels_last too (it computes in fp32 either way).
- The profile of the fp32 channels_last step at batch 128 (``bench/profile.py``): where the time beyond the
  convolutions goes.
- The other members of the family (``member_rows``; ``bench.common.NETS``): the 64-pixel net
  (``layers="small64"``, Tiny ImageNet's 200 classes, 56-pixel crops): its parameters and forward
  multiply-adds per image with 1, 2 and 4 towers (from the layer shapes), its own convolution ceiling at
  batch 128 on 56-pixel inputs, and the training defaults' step at batch 128 (in a child process) as a share
  of it; next to it, timed in turns, the same net at the paper's widths, which its table halves for speed.

bf16 rows run only where the CPU has bf16 arithmetic (AVX512-BF16 or AMX): elsewhere oneDNN emulates it and
a step runs many times slower than fp32 (``src/utils/precision_check.py``); a row says they were skipped.
The GPU's figures come from ``make gpu-check`` (``bench/gpu_check.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.ceiling import Ceiling, ceiling_rows, measure_ceiling, share_note
from bench.common import NETS, Row, autocast, interleaved_rates
from src.models.alexnet import AlexNet
from src.models.classifier import compile_in_place
from src.models.layer_table import layer_table
from src.models.lrn import TowerLocalResponseNorm, reference_local_response_norm
from src.runs.paths import REPO_ROOT
from src.utils.memory import keep_freed_memory
from src.utils.precision_check import cpu_has_fast_bf16

CPU_BATCH = 32
PAPER_BATCH = 128  # section 5
NUM_CLASSES = 2  # the demo's two classes (conf/experiment/demo.yaml)
GEMM_SIZE = 2048
CONV1_ACTIVATION = (CPU_BATCH, 96, 55, 55)  # conv1's output at batch 32 (section 3.5: 55x55 maps)
FP32_TARGET, BF16_TARGET = 0.75, 0.70  # issue #18: shares of the conv ceiling at batch 128
NO_BF16 = (
    "skipped: this CPU has no bf16 arithmetic (no AVX512-BF16 or AMX); oneDNN emulates it and a step runs "
    "many times slower than fp32. Measured where the CPU has it"
)


# ---------------------------------------------------------------------------------------------- the networks


def one_weird_trick(num_classes: int) -> nn.Module:
    """Krizhevsky's 2014 one-tower AlexNet ("one weird trick"), as torchvision has it: no LRN, no groups."""
    net = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            relu1=nn.ReLU(inplace=True),
            pool1=nn.MaxPool2d(kernel_size=3, stride=2),
            conv2=nn.Conv2d(64, 192, kernel_size=5, padding=2),
            relu2=nn.ReLU(inplace=True),
            pool2=nn.MaxPool2d(kernel_size=3, stride=2),
            conv3=nn.Conv2d(192, 384, kernel_size=3, padding=1),
            relu3=nn.ReLU(inplace=True),
            conv4=nn.Conv2d(384, 256, kernel_size=3, padding=1),
            relu4=nn.ReLU(inplace=True),
            conv5=nn.Conv2d(256, 256, kernel_size=3, padding=1),
            relu5=nn.ReLU(inplace=True),
            pool5=nn.MaxPool2d(kernel_size=3, stride=2),
            avgpool=nn.AdaptiveAvgPool2d((6, 6)),
            flatten=nn.Flatten(),
            drop6=nn.Dropout(0.5),
            fc6=nn.Linear(256 * 6 * 6, 4096),
            relu6=nn.ReLU(inplace=True),
            drop7=nn.Dropout(0.5),
            fc7=nn.Linear(4096, 4096),
            relu7=nn.ReLU(inplace=True),
            fc8=nn.Linear(4096, num_classes),
        )
    )
    net.num_classes = num_classes
    return net


class TorchTowerLRN(nn.Module):
    """The LRN the project had before: ``F.local_response_norm`` on each tower (autograd through it)."""

    def __init__(self, towers: int) -> None:
        super().__init__()
        self.towers = towers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reference_local_response_norm(x, self.towers)


def layer_macs(net: nn.Module, size: int = 224) -> list[tuple[str, int]]:
    """``("conv" or "fc", forward multiply-adds per image)`` of every conv and fc layer, in the order the
    forward runs them, from the layer shapes at ``size`` pixels (a grouped conv's kernels see their own
    group's channels only)."""
    macs: list[tuple[str, int]] = []

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            macs.append(("conv", out[0].numel() * per_output))
        elif isinstance(module, nn.Linear):
            macs.append(("fc", module.in_features * module.out_features))

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.no_grad():
        was_training = net.training
        net.eval()(torch.zeros(1, 3, size, size))
        net.train(was_training)
    for hook in hooks:
        hook.remove()
    return macs


def training_flops_per_image(net: nn.Module, size: int = 224) -> float:
    """FLOPs of a training step per image: 3 x 2 x multiply-adds (2 x 2 for conv1), from the layer shapes."""
    # The first layer sees the image, which needs no gradient.
    return sum(2 * (2 if i == 0 else 3) * m for i, (_, m) in enumerate(layer_macs(net, size)))


def parameter_count(net: nn.Module) -> int:
    """The net's weights and biases (every trainable number), as section 3 counts its 60 million."""
    return sum(p.numel() for p in net.parameters())


# ------------------------------------------------------------------------------------------------ the timers


def gemm_rates(device: torch.device, size: int, repeats: int, bf16: bool = True) -> dict[str, float]:
    """GFLOP/s of a size^3 matrix product in fp32 (and bf16), timed in turns."""
    runs = {}
    for dtype in (torch.float32, torch.bfloat16) if bf16 else (torch.float32,):
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        products = 4 if device.type == "cuda" else 1

        def run(a: torch.Tensor = a, b: torch.Tensor = b, products: int = products) -> int:
            for _ in range(products):
                torch.mm(a, b)
            return products

        runs[str(dtype).removeprefix("torch.")] = run
    rates = interleaved_rates(runs, repeats)
    return {name: rate * 2 * size**3 / 1e9 for name, rate in rates.items()}


@dataclass
class Step:
    """One way of running a training step on ``net`` (whose norm layers ``lrn`` puts in place first)."""

    net: nn.Module
    optimizer: torch.optim.Optimizer
    precision: str = "32-true"
    lrn: Callable[[nn.Module], None] | None = None
    size: int = 224  # the crop side the net is made for

    def runner(
        self, batch: int, steps: int, device: torch.device, size: int | None = None
    ) -> Callable[[], int]:
        size = self.size if size is None else size
        # NCHW images, as the datamodule delivers them: a channels_last net converts them in its forward.
        images = torch.randn(batch, 3, size, size, device=device)
        labels = torch.randint(0, self.net.num_classes, (batch,), device=device)

        def run() -> int:
            if self.lrn is not None:
                self.lrn(self.net)
            self.net.train()
            for _ in range(steps):
                self.optimizer.zero_grad(set_to_none=True)
                with autocast(device, self.precision):
                    loss = F.cross_entropy(self.net(images), labels)
                loss.backward()
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)  # frees the gradients while the other variants run
            return steps * batch

        return run


def norm_layers(kind: str) -> Callable[[nn.Module], None]:
    """Put ``kind`` LRN layers in the net's ``norm1``/``norm2``: ours (kernel), our eager, torch's, none."""

    def apply(net: nn.Module) -> None:
        towers = net.towers
        for name in ("norm1", "norm2"):
            layer: nn.Module = {
                "ours": TowerLocalResponseNorm(towers),
                "eager": TowerLocalResponseNorm(towers, kernel=False),
                "torch": TorchTowerLRN(towers),
                "none": nn.Identity(),
            }[kind]
            setattr(net.features, name, layer)

    return apply


def sgd(net: nn.Module, fused: bool = False) -> torch.optim.Optimizer:
    """SGD as conf/optimizer/sgd.yaml (section 5: momentum 0.9, weight decay 5e-4), at the demo's lr."""
    return torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9, weight_decay=5e-4, fused=fused or None)


def two_tower(channels_last: bool = False, towers: int = 2) -> AlexNet:
    torch.manual_seed(0)
    return AlexNet(num_classes=NUM_CLASSES, towers=towers, channels_last=channels_last)


# --------------------------------------------------------------------------------------------------- the rows


def lrn_rows(repeats: int) -> list[Row]:
    """LRN forward + backward on conv1's activation at batch 32: kernel, eager and torch's, in turns."""
    torch.manual_seed(0)
    x = (torch.randn(CONV1_ACTIVATION).relu() * 3).requires_grad_()
    grad = torch.randn(CONV1_ACTIVATION)
    kernel, eager, theirs = (
        TowerLocalResponseNorm(2),
        TowerLocalResponseNorm(2, kernel=False),
        TorchTowerLRN(2),
    )
    x_bf16 = x.detach().bfloat16().requires_grad_()
    x_bf16_nhwc = x_bf16.detach().contiguous(memory_format=torch.channels_last).requires_grad_()

    def timed(layer: nn.Module, inputs: torch.Tensor) -> Callable[[], int]:
        upstream = torch.empty_like(inputs).copy_(grad)  # the input's dtype and memory layout

        def run() -> int:
            layer(inputs).backward(upstream)
            inputs.grad = None
            return 1

        return run

    runs = {
        "kernel": timed(kernel, x),
        "eager": timed(eager, x),
        "torch": timed(theirs, x),
        "kernel bf16": timed(kernel, x_bf16),
        "kernel bf16 channels_last": timed(kernel, x_bf16_nhwc),
    }
    rates = interleaved_rates(runs, repeats)
    shape = "x".join(str(d) for d in CONV1_ACTIVATION)
    ms = {name: 1000 / rate for name, rate in rates.items()}
    return [
        Row(f"LRN fwd+bwd, conv1 activation {shape}, C++ kernel (fp32)", ms["kernel"], "ms"),
        Row(f"LRN fwd+bwd, conv1 activation {shape}, eager (fp32)", ms["eager"], "ms"),
        Row(f"LRN fwd+bwd, conv1 activation {shape}, nn.LocalResponseNorm", ms["torch"], "ms"),
        Row("LRN fwd+bwd: nn.LocalResponseNorm / C++ kernel", ms["torch"] / ms["kernel"], "ratio"),
        Row("LRN fwd+bwd: eager / C++ kernel", ms["eager"] / ms["kernel"], "ratio"),
        Row(f"LRN fwd+bwd, conv1 activation {shape}, C++ kernel, bf16", ms["kernel bf16"], "ms"),
        Row(
            f"LRN fwd+bwd, conv1 activation {shape}, C++ kernel, bf16 channels_last",
            ms["kernel bf16 channels_last"],
            "ms",
        ),
    ]


def precisions() -> tuple[str, ...]:
    """The precisions worth timing on this CPU: bf16 only where it has bf16 arithmetic."""
    return ("fp32", "bf16") if cpu_has_fast_bf16() else ("fp32",)


Ceilings = dict[tuple[str, str, int], Ceiling]  # (net kind, fp32|bf16, batch) -> its conv ceiling


def net_kind(name: str) -> str:
    """Which net a step row's name is about: ``two`` towers, ``one`` tower or the ``trick`` net."""
    return "trick" if "weird" in name else "one" if name.startswith("one") else "two"


def precision_of(name: str) -> str:
    return "bf16" if "bf16" in name else "fp32"


def ceiling_section(quick: bool, repeats: int) -> tuple[Ceilings, list[Row]]:
    """The two-tower net's conv ceilings at batch 32 and 128 (each precision), and the other nets' at 32."""
    nets = {"two": two_tower(channels_last=True), "one": two_tower(channels_last=True, towers=1)}
    nets["trick"] = one_weird_trick(NUM_CLASSES).to(memory_format=torch.channels_last)
    ceilings: Ceilings = {}
    rows: list[Row] = []
    for precision in precisions():
        for batch in (CPU_BATCH, PAPER_BATCH):
            ceiling, shapes = measure_ceiling(
                nets["two"], batch, precision, training_flops_per_image(nets["two"]), repeats
            )
            ceilings["two", precision, batch] = ceiling
            rows += ceiling_rows(ceiling, shapes)
    for kind in ("one", "trick"):
        net = nets[kind]
        ceiling, _ = measure_ceiling(net, CPU_BATCH, "fp32", training_flops_per_image(net), repeats)
        ceilings[kind, "fp32", CPU_BATCH] = ceiling
        label = "one tower" if kind == "one" else "one weird trick"
        rows.append(
            Row(
                f"conv ceiling of the training step, {label}, fp32, channels_last, batch {CPU_BATCH}",
                ceiling.images_per_second,
                "img/s",
            )
        )
    if "bf16" in precisions():
        for batch in (CPU_BATCH, PAPER_BATCH):
            ratio = ceilings["two", "bf16", batch].conv_rate / ceilings["two", "fp32", batch].conv_rate
            rows.append(
                Row(f"conv ceiling bf16 / fp32, batch {batch} (the bf16 / fp32 step's)", ratio, "ratio")
            )
    else:
        rows.append(Row("conv ceiling, bf16", math.nan, "", NO_BF16))
    return ceilings, rows


def step_share(name: str, rate: float, batch: int, ceilings: Ceilings) -> str:
    """The note of a step row: its share of its own net's ceiling at its precision and batch."""
    return share_note(rate, ceilings.get((net_kind(name), precision_of(name), batch)))


def cpu_step_rows(quick: bool, ceilings: Ceilings) -> tuple[list[Row], float]:
    """Training-step rows on the CPU at batch 32, and the two-tower fp32 step rate."""
    device = torch.device("cpu")
    repeats, steps = (2, 1) if quick else (5, 2)
    plain, nhwc, one = two_tower(), two_tower(channels_last=True), two_tower(towers=1)
    trick = one_weird_trick(NUM_CLASSES)
    plain_sgd, nhwc_sgd, one_sgd = sgd(plain), sgd(nhwc), sgd(one)
    ours, none, theirs = norm_layers("ours"), norm_layers("none"), norm_layers("torch")
    variants = {
        "two towers, fp32": Step(plain, plain_sgd, lrn=ours),
        "two towers, fp32, no LRN": Step(plain, plain_sgd, lrn=none),
        "two towers, fp32, eager LRN": Step(plain, plain_sgd, lrn=norm_layers("eager")),
        "two towers, fp32, nn.LocalResponseNorm": Step(plain, plain_sgd, lrn=theirs),
        "two towers, fp32, channels_last": Step(nhwc, nhwc_sgd, lrn=ours),
        "two towers, bf16-mixed": Step(plain, plain_sgd, "bf16-mixed", lrn=ours),
        "two towers, bf16-mixed, channels_last": Step(nhwc, nhwc_sgd, "bf16-mixed", lrn=ours),
        "two towers, bf16-mixed, channels_last, no LRN": Step(nhwc, nhwc_sgd, "bf16-mixed", lrn=none),
        "two towers, fp32, fused SGD": Step(plain, sgd(plain, fused=True), lrn=ours),
        "two towers, bf16-mixed, channels_last, fused SGD": Step(
            nhwc, sgd(nhwc, fused=True), "bf16-mixed", ours
        ),
        "one tower, fp32": Step(one, one_sgd, lrn=ours),
        "one tower, fp32, no LRN": Step(one, one_sgd, lrn=none),
        "one weird trick (64-192-384-256-256), fp32": Step(trick, sgd(trick)),
    }
    variants = {name: v for name, v in variants.items() if precision_of(name) in precisions()}
    runs = {name: v.runner(CPU_BATCH, steps, device) for name, v in variants.items()}
    rates = interleaved_rates(runs, repeats)
    rows = [
        Row(
            f"training step, {name}, batch {CPU_BATCH}",
            rate,
            "img/s",
            step_share(name, rate, CPU_BATCH, ceilings),
        )
        for name, rate in rates.items()
    ]
    if "bf16" not in precisions():
        rows.append(Row(f"training step, bf16-mixed, batch {CPU_BATCH}", math.nan, "", NO_BF16))
    ratios = [
        ("with LRN / without, two towers, fp32", "two towers, fp32", "two towers, fp32, no LRN"),
        (
            "with LRN / without, two towers, bf16-mixed channels_last",
            "two towers, bf16-mixed, channels_last",
            "two towers, bf16-mixed, channels_last, no LRN",
        ),
        (
            "with eager LRN / without, two towers, fp32",
            "two towers, fp32, eager LRN",
            "two towers, fp32, no LRN",
        ),
        (
            "our LRN / nn.LocalResponseNorm, two-tower fp32 step",
            "two towers, fp32",
            "two towers, fp32, nn.LocalResponseNorm",
        ),
        ("bf16-mixed / fp32, two towers", "two towers, bf16-mixed", "two towers, fp32"),
        (
            "bf16-mixed channels_last / fp32, two towers",
            "two towers, bf16-mixed, channels_last",
            "two towers, fp32",
        ),
        (
            "bf16-mixed channels_last / fp32 channels_last, two towers",
            "two towers, bf16-mixed, channels_last",
            "two towers, fp32, channels_last",
        ),
        (
            "bf16-mixed channels_last fused SGD / fp32 fused SGD, two towers",
            "two towers, bf16-mixed, channels_last, fused SGD",
            "two towers, fp32, fused SGD",
        ),
        (
            "fused SGD / for-loop SGD (CPU default), two towers, fp32",
            "two towers, fp32, fused SGD",
            "two towers, fp32",
        ),
        ("one tower / two towers, fp32", "one tower, fp32", "two towers, fp32"),
        (
            "one weird trick / two towers, fp32",
            "one weird trick (64-192-384-256-256), fp32",
            "two towers, fp32",
        ),
    ]
    rows += [Row(name, rates[a] / rates[b], "ratio") for name, a, b in ratios if a in rates and b in rates]
    rows.append(
        Row(
            "training FLOPs per image, two towers (3 x 2 x MACs)",
            training_flops_per_image(plain) / 1e9,
            "GFLOP",
        )
    )
    return rows, rates["two towers, fp32"]


def compile_rows(repeats: int) -> list[Row]:
    """torch.compile against eager: fp32 NCHW and bf16 channels_last, each pair timed in turns."""
    device = torch.device("cpu")
    rows = []
    for label, precision, channels_last in (
        ("fp32", "32-true", False),
        ("bf16-mixed channels_last", "bf16-mixed", True),
    ):
        if precision_of(label) not in precisions():
            rows.append(Row(f"torch.compile, two towers, {label}", math.nan, "", NO_BF16))
            continue
        eager, compiled = two_tower(channels_last=channels_last), two_tower(channels_last=channels_last)
        compile_in_place(compiled)
        runs = {
            "eager": Step(eager, sgd(eager), precision).runner(CPU_BATCH, 1, device),
            "compiled": Step(compiled, sgd(compiled), precision).runner(CPU_BATCH, 1, device),
        }
        first = {}
        for name, run in runs.items():  # the first two steps: compiling (forward, then backward) and one more
            start = time.perf_counter()
            run()
            run()
            first[name] = time.perf_counter() - start
        rates = interleaved_rates(runs, repeats, warmup=0)
        rows += [
            Row(f"training step, two towers, {label}, torch.compile", rates["compiled"], "img/s"),
            Row(f"torch.compile / eager, two towers, {label}", rates["compiled"] / rates["eager"], "ratio"),
            Row(
                f"torch.compile: first two steps, two towers, {label}",
                first["compiled"],
                "s",
                f"eager: {first['eager']:.1f} s",
            ),
        ]
        del eager, compiled, runs
    return rows


class AlwaysPooled(AlexNet):
    """The net as it was before ``forward`` skipped ``avgpool`` at the paper's size (the identity there)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def target_variants() -> dict[str, tuple[Step, int]]:
    """The training defaults (fused SGD, channels_last; freed memory kept by the child) at batch 32 and 128,
    without LRN, and with the identity ``avgpool`` run as before (its before/after ratio)."""
    plain, nhwc = two_tower(), two_tower(channels_last=True)
    torch.manual_seed(0)
    pooled = AlwaysPooled(num_classes=NUM_CLASSES, channels_last=True)
    plain_sgd, nhwc_sgd = sgd(plain, fused=True), sgd(nhwc, fused=True)
    ours, none = norm_layers("ours"), norm_layers("none")
    variants: dict[str, tuple[Step, int]] = {
        "two towers, fp32, fused SGD": (Step(plain, plain_sgd, lrn=ours), CPU_BATCH),
        "two towers, fp32, fused SGD, no LRN": (Step(plain, plain_sgd, lrn=none), CPU_BATCH),
    }
    for batch in (CPU_BATCH, PAPER_BATCH):
        variants[f"two towers, fp32, channels_last, fused SGD, batch {batch}"] = (
            Step(nhwc, nhwc_sgd, lrn=ours),
            batch,
        )
        if "bf16" in precisions():
            variants[f"two towers, bf16-mixed, channels_last, fused SGD, batch {batch}"] = (
                Step(nhwc, nhwc_sgd, "bf16-mixed", lrn=ours),
                batch,
            )
    if "bf16" in precisions():
        variants["two towers, bf16-mixed, channels_last, fused SGD, no LRN"] = (
            Step(nhwc, nhwc_sgd, "bf16-mixed", lrn=none),
            CPU_BATCH,
        )
    variants[f"two towers, fp32, channels_last, fused SGD, avgpool run, batch {PAPER_BATCH}"] = (
        Step(pooled, sgd(pooled, fused=True), lrn=ours),
        PAPER_BATCH,
    )
    return variants


def allocator_rows(pairs: int, repeats: int, ceilings: Ceilings) -> list[Row]:
    """What glibc keeping freed memory (``keep_freed_memory``) and fused SGD give, each in child processes.

    The allocator setting is process-wide, so the fp32 step with and without it runs in alternating child
    processes (``pairs`` each); a last child measures the training defaults at batch 32 and 128 (issue #18's
    targets) with both settings on.
    """
    rates: dict[str, list[float]] = {"keep": [], "default": []}
    for _ in range(pairs):
        for mode in rates:
            rates[mode].append(_child(mode, "step", repeats)["two towers, fp32"])
    keep, default = statistics.median(rates["keep"]), statistics.median(rates["default"])
    rows = [
        Row(
            "two-tower fp32 step: glibc keeping freed memory / glibc default",
            keep / default,
            "ratio",
            f"{keep:.1f} vs {default:.1f} img/s, {pairs} processes each",
        )
    ]
    return rows + target_rows(_child("keep", "targets", repeats), ceilings)


def target_rows(best: dict[str, float], ceilings: Ceilings) -> list[Row]:
    """The training defaults' rows: each step as a share of its ceiling, issue #18's targets at batch 128."""
    note = "glibc keeping freed memory, fused SGD: the training defaults"
    rows = []
    for precision, label, target in (("fp32", "fp32", FP32_TARGET), ("bf16", "bf16-mixed", BF16_TARGET)):
        if precision not in precisions():
            rows.append(
                Row(f"training step, two towers, {label}, channels_last ({note})", math.nan, "", NO_BF16)
            )
            continue
        for batch in (CPU_BATCH, PAPER_BATCH):
            rate = best[f"two towers, {label}, channels_last, fused SGD, batch {batch}"]
            ceiling = ceilings["two", precision, batch]
            share = rate / ceiling.images_per_second
            verdict = (
                f"; target >= {target:.0%}: {'pass' if share >= target else 'FAIL'}"
                if batch == PAPER_BATCH
                else ""
            )
            rows.append(
                Row(
                    f"training step, two towers, {label}, channels_last, batch {batch} ({note})",
                    rate,
                    "img/s",
                    share_note(rate, ceiling) + verdict,
                    f"{label} channels_last step at batch {batch}: {share:.0%} of its conv ceiling"
                    + (
                        f" (target >= {target:.0%}: {'pass' if share >= target else 'FAIL'})"
                        if verdict
                        else ""
                    ),
                )
            )
    fp32_32 = best[f"two towers, fp32, channels_last, fused SGD, batch {CPU_BATCH}"]
    rows += [
        Row(
            f"training step, two towers, fp32, NCHW, batch {CPU_BATCH} ({note})",
            best["two towers, fp32, fused SGD"],
            "img/s",
        ),
        Row(
            f"with LRN / without, two towers, fp32 ({note}; target >= 0.9)",
            best["two towers, fp32, fused SGD"] / best["two towers, fp32, fused SGD, no LRN"],
            "ratio",
        ),
        Row(
            f"batch {PAPER_BATCH} / batch {CPU_BATCH}, two towers, fp32 channels_last ({note})",
            best[f"two towers, fp32, channels_last, fused SGD, batch {PAPER_BATCH}"] / fp32_32,
            "ratio",
        ),
        Row(
            f"avgpool skipped at 6x6 / run (before this change), fp32 channels_last, batch {PAPER_BATCH}",
            best[f"two towers, fp32, channels_last, fused SGD, batch {PAPER_BATCH}"]
            / best[f"two towers, fp32, channels_last, fused SGD, avgpool run, batch {PAPER_BATCH}"],
            "ratio",
            "the same outputs: avgpool is the identity on pool5's 6x6 maps",
        ),
    ]
    if "bf16" in precisions():
        bf16 = best[f"two towers, bf16-mixed, channels_last, fused SGD, batch {CPU_BATCH}"]
        rows += [
            Row(
                f"with LRN / without, two towers, bf16-mixed channels_last ({note})",
                bf16 / best["two towers, bf16-mixed, channels_last, fused SGD, no LRN"],
                "ratio",
            ),
            Row(
                f"bf16-mixed channels_last / fp32, two towers ({note}; target >= 2)",
                bf16 / best["two towers, fp32, fused SGD"],
                "ratio",
            ),
            Row(
                f"bf16-mixed channels_last / fp32 channels_last, two towers ({note})",
                bf16 / fp32_32,
                "ratio",
            ),
        ]
    return rows


def _child(mode: str, variants: str, repeats: int) -> dict[str, float]:
    command = [sys.executable, "-m", "bench.models", "--child", mode, variants, str(repeats)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _child_main(mode: str, variants: str, repeats: int) -> None:
    if mode == "keep":
        keep_freed_memory()
    cpu = torch.device("cpu")
    if variants == "step":
        plain = two_tower()
        runs = {"two towers, fp32": Step(plain, sgd(plain)).runner(CPU_BATCH, 1, cpu)}
    else:
        chosen = target_variants() if variants == "targets" else member_variants(variants)
        runs = {name: step.runner(batch, 1, cpu) for name, (step, batch) in chosen.items()}
    print(json.dumps(interleaved_rates(runs, repeats)))


# ------------------------------------------------------------------------- the other members of the family


def member_net(name: str, towers: int = 2, **widths: object) -> AlexNet:
    """Member ``name`` of ``NETS`` as training builds it (channels_last), for its recipe's classes."""
    torch.manual_seed(0)
    spec = NETS[name]
    return AlexNet(spec.num_classes, towers=towers, layers=spec.layers, channels_last=True, **widths)


def paper_widths() -> dict[str, object]:
    """The paper's conv and fc widths (``layer_table.PAPER``): a member's layers at the paper's size."""
    paper = layer_table("paper")
    return {"conv_widths": paper.conv_widths, "fc_width": paper.fc_width}


def member_variants(name: str) -> dict[str, tuple[Step, int]]:
    """The training defaults' step of member ``name`` (fused SGD, channels_last; the child keeps freed
    memory) at batch 128, and in fp32 the same member at the paper's widths, which its table halved for
    speed (``layer_table.SMALL_64``'s comment): their ratio is what the narrower layers buy."""
    size = NETS[name].crop_size
    net, wide = member_net(name), member_net(name, **paper_widths())
    variants = {
        f"{name}, {precision}": (
            Step(net, sgd(net, fused=True), "bf16-mixed" if precision == "bf16" else "32-true", size=size),
            PAPER_BATCH,
        )
        for precision in precisions()
    }
    variants[f"{name} at the paper's widths, fp32"] = (
        Step(wide, sgd(wide, fused=True), size=size),
        PAPER_BATCH,
    )
    return variants


def member_size_rows(name: str) -> list[Row]:
    """Parameters and forward multiply-adds per image of member ``name`` with 1, 2 and 4 towers."""
    spec = NETS[name]
    label = f"{spec.label}, {spec.num_classes} classes"
    rows = []
    for towers in (1, 2, 4):
        net = member_net(name, towers)
        macs = layer_macs(net, spec.crop_size)
        total, convs = sum(m for _, m in macs), sum(m for kind, m in macs if kind == "conv")
        count = parameter_count(net)
        tag = f"{label}, {towers} tower{'s' if towers > 1 else ''}"
        rows += [
            Row(f"parameters, {tag}", count / 1e6, "M", f"{count:,}"),
            Row(
                f"forward multiply-adds per image, {tag}",
                total / 1e6,
                "M",
                f"{total:,}: conv layers {convs / 1e6:.1f} M, fc layers {(total - convs) / 1e6:.1f} M",
            ),
        ]
    rows.append(
        Row(
            f"training FLOPs per image, {label}, 2 towers (3 x 2 x MACs)",
            training_flops_per_image(member_net(name), spec.crop_size) / 1e9,
            "GFLOP",
        )
    )
    return rows


def member_rows(name: str, quick: bool) -> list[Row]:
    """Member ``name``'s rows: its size, its convolution ceiling at batch 128 on its own crops, and the
    training defaults' step at batch 128 as a share of that ceiling (in a child process that keeps freed
    memory), next to the same member at the paper's widths."""
    spec = NETS[name]
    rows = member_size_rows(name)
    net = member_net(name)
    flops = training_flops_per_image(net, spec.crop_size)
    ceilings = {}
    for precision in precisions():
        ceiling, shapes = measure_ceiling(
            net, PAPER_BATCH, precision, flops, 2 if quick else 5, size=spec.crop_size
        )
        ceilings[precision] = ceiling
        rows += ceiling_rows(ceiling, shapes, spec.label)
    return rows + member_step_rows(name, _child("keep", name, 3 if quick else 9), ceilings)


def member_step_rows(name: str, rates: dict[str, float], ceilings: dict[str, Ceiling]) -> list[Row]:
    """The step rows of member ``name`` from the child's ``rates`` (``member_variants``' names) and its
    ``ceilings`` (fp32, and bf16 where the CPU has it) at batch 128."""
    spec = NETS[name]
    note = "glibc keeping freed memory, fused SGD: the training defaults"
    rows = []
    for precision in precisions():
        rate, ceiling = rates[f"{name}, {precision}"], ceilings[precision]
        label = "bf16-mixed" if precision == "bf16" else "fp32"
        rows.append(
            Row(
                f"training step, {spec.label}, {label}, channels_last, batch {PAPER_BATCH} ({note})",
                rate,
                "img/s",
                share_note(rate, ceiling),
                f"{spec.label}: the {label} channels_last step at batch {PAPER_BATCH}: "
                f"{rate:.0f} img/s, {rate / ceiling.images_per_second:.0%} of its conv ceiling",
            )
        )
    if "bf16" not in precisions():
        rows.append(Row(f"training step, {spec.label}, bf16-mixed", math.nan, "", NO_BF16))
    wide = rates[f"{name} at the paper's widths, fp32"]
    flops = training_flops_per_image(member_net(name), spec.crop_size)
    wide_flops = training_flops_per_image(member_net(name, **paper_widths()), spec.crop_size)
    ratio = rates[f"{name}, fp32"] / wide
    rows += [
        Row(
            f"training step, {spec.label} at the paper's widths, fp32, channels_last, batch {PAPER_BATCH} "
            f"({note})",
            wide,
            "img/s",
            f"{wide_flops / 1e9:.2f} GFLOP per image, {wide_flops / flops:.2f}x the table's widths'",
        ),
        Row(
            f"{spec.label}: the table's widths / the paper's widths, fp32 step at batch {PAPER_BATCH}",
            ratio,
            "ratio",
            "timed in turns in one process",
            f"{spec.label}: the table's widths step {ratio:.2f}x as fast as the paper's widths",
        ),
    ]
    return rows


def profile_rows(quick: bool) -> list[Row]:
    """bench/profile.py in a child process (freed memory kept, as in training): the step's time by group."""
    batch, steps = (CPU_BATCH, 1) if quick else (PAPER_BATCH, 2)
    rows = []
    for precision in precisions():
        command = [sys.executable, "-m", "bench.profile", "--batch", str(batch), "--precision", precision]
        command += ["--steps", str(steps)]
        out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO_ROOT)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        rows += profile_table(
            result["groups"], result["wall_ms"], f"{precision}, channels_last, batch {batch}"
        )
    return rows


def profile_table(groups: dict[str, float], wall_ms: float, tag: str) -> list[Row]:
    """One row per group of the profile (ms per step, share of the step), largest first."""
    profiled = sum(groups.values())
    rows = [
        Row(f"profile of the training step, {tag}: {group}", ms, "ms", f"{ms / profiled:.1%} of the step")
        for group, ms in sorted(groups.items(), key=lambda item: -item[1])
    ]
    beyond = profiled - groups.get("convolutions", 0.0)
    parts = ", ".join(
        f"{group} {ms / profiled:.1%}" for group, ms in sorted(groups.items(), key=lambda item: -item[1])
    )
    rows.append(
        Row(
            f"profile of the training step, {tag}: all but the convolutions",
            beyond,
            "ms",
            f"{beyond / profiled:.1%} of the step ({wall_ms:.0f} ms per step under the profiler)",
            f"where the {tag} step's time goes: {parts}",
        )
    )
    return rows


def model_rows(quick: bool) -> tuple[list[Row], float]:
    """Rows for the network benchmarks, and the two-tower fp32 step rate (img/s) the data rows compare to."""
    repeats = 3 if quick else 7
    gemm = gemm_rates(torch.device("cpu"), GEMM_SIZE, repeats, bf16="bf16" in precisions())
    rows = [
        Row(f"GEMM {GEMM_SIZE}^3 (MKL, torch.mm), {name}", rate, "GFLOP/s") for name, rate in gemm.items()
    ]
    ceilings, ceiling_table = ceiling_section(quick, 2 if quick else 5)
    rows += ceiling_table
    rows += lrn_rows(repeats)
    step_rows, step = cpu_step_rows(quick, ceilings)
    rows += step_rows
    if quick:
        print("--quick: torch.compile and allocator rows skipped (make bench measures them)", file=sys.stderr)
    else:
        rows += compile_rows(repeats=5)
        rows += allocator_rows(pairs=2, repeats=5, ceilings=ceilings)
    rows += profile_rows(quick)
    return rows, step


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a child process of allocator_rows")
    parser.add_argument(
        "--child", nargs=3, metavar=("keep|default", "step|targets|NET", "REPEATS"), required=True
    )
    mode, variants, repeats = parser.parse_args().child
    _child_main(mode, variants, int(repeats))
