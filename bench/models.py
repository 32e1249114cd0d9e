"""Network speed: training steps of the AlexNet variants, LRN and the matrix-multiply ceiling, in one process.

Every figure that is compared with another is measured in turns with it (``interleaved_rates``): A, B, C, A,
B, C, ..., median of the repeats. The rows:

- GEMM: a 2048^3 matrix product in fp32 and bf16 (GFLOP/s), the ceiling each model figure is a share of.
- Convolution: conv3's forward (batch 32, 13x13, 256 -> 384 maps, 3x3, channels_last) in fp32 and bf16: the
  oneDNN kernels the network's convolutions run on. On AMD CPUs MKL's fp32 GEMM (torch.mm) reaches only about
  half of oneDNN's fp32 rate, so the GEMM bf16/fp32 ratio overstates what bf16 can give a convolutional
  net; the convolution ratio is the real ceiling for the bf16/fp32 step ratio.
- Training step (forward, backward, SGD with momentum and weight decay; batch 32 on a CPU) in images/s for the
  two-tower net (the paper's, section 3.5) in fp32 and bf16 mixed precision (autocast, as Lightning's
  ``bf16-mixed``), NCHW and channels_last, without its LRN layers (``features.norm1/2`` replaced by
  ``nn.Identity`` here, not in the model), with our eager LRN instead of the C++ kernel, with torch's
  ``nn.LocalResponseNorm`` per tower instead of ours,
  with the fused SGD kernel, compiled with ``torch.compile``; the one-tower net; and a reference "one weird
  trick" net (Krizhevsky 2014; torchvision's AlexNet: 64-192-384-256-256, no LRN, no groups) defined here.
- Share of the ceiling: training FLOPs per image x images/s / the GEMM rate of the same precision. FLOPs come
  from the layer shapes: 2 FLOPs per multiply-add; forward, gradient of the input and gradient of the weights
  each cost the forward's multiply-adds, so 3 x 2 x MACs, except conv1 (its input needs no gradient: 2 x 2).
  The fp32 GEMM is MKL's sgemm, which on AMD CPUs is slower than oneDNN's fp32 convolutions: shares of the
  fp32 ceiling above 100 % are possible there.
- LRN forward + backward on conv1's activation (32 x 96 x 55 x 55): the C++ kernel, the eager version and
  ``nn.LocalResponseNorm``; the kernel in bf16 and channels_last too.
- On a GPU (when there is one): batch 256, bf16, channels_last, network only and end to end from the cache
  through the project's datamodule and LightningModule, next to the GPU's bf16 matrix rate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.common import Row, autocast, interleaved_rates, sync
from src.models.alexnet import AlexNet
from src.models.classifier import compile_in_place
from src.models.lrn import TowerLocalResponseNorm, reference_local_response_norm
from src.utils.memory import keep_freed_memory

CPU_BATCH = 32
GPU_BATCH = 256
NUM_CLASSES = 2  # the demo's two classes (conf/experiment/demo.yaml)
GEMM_SIZE = 2048
GPU_GEMM_SIZE = 8192
CONV1_ACTIVATION = (CPU_BATCH, 96, 55, 55)  # conv1's output at batch 32 (section 3.5: 55x55 maps)
# conv3 (section 3.5): 384 kernels of 3x3x256 on the 13x13 maps, at batch 32.
CONV3_INPUT, CONV3_WEIGHT = (CPU_BATCH, 256, 13, 13), (384, 256, 3, 3)


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


def training_flops_per_image(net: nn.Module, size: int = 224) -> float:
    """FLOPs of a training step per image: 3 x 2 x multiply-adds (2 x 2 for conv1), from the layer shapes."""
    macs: list[int] = []  # per layer, in the order the forward runs them

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            macs.append(out[0].numel() * per_output)
        elif isinstance(module, nn.Linear):
            macs.append(module.in_features * module.out_features)

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.no_grad():
        was_training = net.training
        net.eval()(torch.zeros(1, 3, size, size))
        net.train(was_training)
    for hook in hooks:
        hook.remove()
    # The first layer sees the image, which needs no gradient.
    return sum(2 * (2 if i == 0 else 3) * m for i, m in enumerate(macs))


# ------------------------------------------------------------------------------------------------ the timers


def gemm_rates(device: torch.device, size: int, repeats: int) -> dict[str, float]:
    """GFLOP/s of a size^3 matrix product in fp32 and bf16, timed in turns."""
    runs = {}
    for dtype in (torch.float32, torch.bfloat16):
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


def conv_rates(repeats: int) -> dict[str, float]:
    """GFLOP/s of conv3's forward (channels_last, oneDNN) in fp32 and bf16, timed in turns."""
    runs = {}
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(CONV3_INPUT, dtype=dtype).contiguous(memory_format=torch.channels_last)
        w = torch.randn(CONV3_WEIGHT, dtype=dtype).contiguous(memory_format=torch.channels_last)

        def run(x: torch.Tensor = x, w: torch.Tensor = w) -> int:
            for _ in range(4):
                F.conv2d(x, w, padding=1)
            return 4

        runs[str(dtype).removeprefix("torch.")] = run
    rates = interleaved_rates(runs, repeats)
    n, c, h, w = CONV3_INPUT
    flops = 2 * n * h * w * CONV3_WEIGHT[0] * c * 9
    return {name: rate * flops / 1e9 for name, rate in rates.items()}


@dataclass
class Step:
    """One way of running a training step on ``net`` (whose norm layers ``lrn`` puts in place first)."""

    net: nn.Module
    optimizer: torch.optim.Optimizer
    precision: str = "32-true"
    lrn: Callable[[nn.Module], None] | None = None

    def runner(self, batch: int, steps: int, device: torch.device) -> Callable[[], int]:
        # NCHW images, as the datamodule delivers them: a channels_last net converts them in its forward.
        images = torch.randn(batch, 3, 224, 224, device=device)
        labels = torch.randint(0, NUM_CLASSES, (batch,), device=device)

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


def cpu_step_rows(quick: bool, gemm: dict[str, float]) -> tuple[list[Row], float]:
    """Training-step rows on the CPU, and the two-tower fp32 step rate."""
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
    runs = {name: v.runner(CPU_BATCH, steps, device) for name, v in variants.items()}
    rates = interleaved_rates(runs, repeats)
    flops = {"two": training_flops_per_image(plain), "one": training_flops_per_image(one)}
    flops["trick"] = training_flops_per_image(trick)

    def share(name: str) -> str:
        kind = "trick" if "weird" in name else "one" if name.startswith("one") else "two"
        precision = "bfloat16" if "bf16" in name else "float32"
        return f"{rates[name] * flops[kind] / 1e9 / gemm[precision]:.0%} of the {precision} GEMM rate"

    rows = [
        Row(f"training step, {name}, batch {CPU_BATCH}", rate, "img/s", share(name))
        for name, rate in rates.items()
    ]
    step = rates["two towers, fp32"]
    ratios = [
        (
            "with LRN / without, two towers, fp32",
            "two towers, fp32",
            "two towers, fp32, no LRN",
        ),
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
    rows += [Row(name, rates[a] / rates[b], "ratio") for name, a, b in ratios]
    rows.append(Row("training FLOPs per image, two towers (3 x 2 x MACs)", flops["two"] / 1e9, "GFLOP"))
    return rows, step


def compile_rows(repeats: int) -> list[Row]:
    """torch.compile against eager: fp32 NCHW and bf16 channels_last, each pair timed in turns."""
    device = torch.device("cpu")
    rows = []
    for label, precision, channels_last in (
        ("fp32", "32-true", False),
        ("bf16-mixed channels_last", "bf16-mixed", True),
    ):
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


def allocator_rows(pairs: int, repeats: int) -> list[Row]:
    """What glibc keeping freed memory (``keep_freed_memory``) and fused SGD give, each in child processes.

    The allocator setting is process-wide, so the fp32 step with and without it runs in alternating child
    processes (``pairs`` each); a last child measures the targets' ratios with both settings on.
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
    best = _child("keep", "targets", repeats)
    fp32, bf16 = best["two towers, fp32, fused SGD"], best["two towers, bf16-mixed, channels_last, fused SGD"]
    fp32_nhwc = best["two towers, fp32, channels_last, fused SGD"]
    note = "glibc keeping freed memory, fused SGD: the training defaults"
    rows += [
        Row(f"training step, two towers, fp32 ({note})", fp32, "img/s"),
        Row(f"training step, two towers, fp32, channels_last ({note})", fp32_nhwc, "img/s"),
        Row(f"training step, two towers, bf16-mixed, channels_last ({note})", bf16, "img/s"),
        Row(
            f"with LRN / without, two towers, fp32 ({note}; target >= 0.9)",
            fp32 / best["two towers, fp32, fused SGD, no LRN"],
            "ratio",
        ),
        Row(
            f"with LRN / without, two towers, bf16-mixed channels_last ({note})",
            bf16 / best["two towers, bf16-mixed, channels_last, fused SGD, no LRN"],
            "ratio",
        ),
        Row(f"bf16-mixed channels_last / fp32, two towers ({note}; target >= 2)", bf16 / fp32, "ratio"),
        Row(f"bf16-mixed channels_last / fp32 channels_last, two towers ({note})", bf16 / fp32_nhwc, "ratio"),
    ]
    return rows


def _child(mode: str, variants: str, repeats: int) -> dict[str, float]:
    command = [sys.executable, "-m", "bench.models", "--child", mode, variants, str(repeats)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _child_main(mode: str, variants: str, repeats: int) -> None:
    if mode == "keep":
        keep_freed_memory()
    cpu = torch.device("cpu")
    plain = two_tower()
    if variants == "step":
        steps = {"two towers, fp32": Step(plain, sgd(plain))}
    else:
        nhwc = two_tower(channels_last=True)
        plain_sgd, nhwc_sgd = sgd(plain, fused=True), sgd(nhwc, fused=True)
        ours, none = norm_layers("ours"), norm_layers("none")
        steps = {
            "two towers, fp32, fused SGD": Step(plain, plain_sgd, lrn=ours),
            "two towers, fp32, fused SGD, no LRN": Step(plain, plain_sgd, lrn=none),
            "two towers, fp32, channels_last, fused SGD": Step(nhwc, nhwc_sgd, lrn=ours),
            "two towers, bf16-mixed, channels_last, fused SGD": Step(nhwc, nhwc_sgd, "bf16-mixed", lrn=ours),
            "two towers, bf16-mixed, channels_last, fused SGD, no LRN": Step(
                nhwc, nhwc_sgd, "bf16-mixed", lrn=none
            ),
        }
    print(json.dumps(interleaved_rates({k: v.runner(CPU_BATCH, 1, cpu) for k, v in steps.items()}, repeats)))


def gpu_rows(quick: bool) -> list[Row]:
    """Batch 256, bf16, channels_last on the GPU: the network alone and end to end from the cache."""
    device = torch.device("cuda")
    repeats = 3 if quick else 5
    gemm = gemm_rates(device, GPU_GEMM_SIZE, repeats)["bfloat16"]
    net = two_tower(channels_last=True).to(device)
    flops = training_flops_per_image(two_tower())
    network = interleaved_rates(
        {"net": Step(net, sgd(net, fused=True), "bf16-mixed").runner(GPU_BATCH, 10, device)}, repeats
    )["net"]
    del net
    end_to_end, batches = end_to_end_rate(device, GPU_BATCH, steps=60 if quick else 200)
    return [
        Row(f"GPU GEMM {GPU_GEMM_SIZE}^3, bf16 ({torch.cuda.get_device_name()})", gemm, "GFLOP/s"),
        Row(
            f"GPU training step, two towers, bf16-mixed, channels_last, batch {GPU_BATCH}, network only",
            network,
            "img/s",
            f"{network * flops / 1e9 / gemm:.0%} of the bf16 GEMM rate",
        ),
        Row(
            f"GPU training, same, end to end from the cache (datamodule, Lightning), batch {GPU_BATCH}",
            end_to_end,
            "img/s",
            f"{batches} batches timed",
        ),
        Row("GPU end to end / network only (target >= 0.9)", end_to_end / network, "ratio"),
    ]


def end_to_end_rate(device: torch.device, batch: int, steps: int) -> tuple[float, int]:
    """Images/s of ``Trainer.fit`` on the built-in synthetic dataset's cache, timed from batch 10 on."""
    import lightning as L

    from src.data.datamodule import ImageDataModule
    from src.datasets.synthetic import generate_dataset
    from src.models.classifier import TowerClassifier

    class Clock(L.Callback):
        """When each batch ended, and its size (an epoch's last batch may be short)."""

        def __init__(self) -> None:
            self.times: list[float] = []
            self.sizes: list[int] = []

        def on_train_batch_end(
            self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, *_
        ) -> None:
            sync()
            self.times.append(time.perf_counter())
            self.sizes.append(len(batch[1]))

    with tempfile.TemporaryDirectory() as tmp:
        per_class = max(8 * batch, 500)  # several batches per epoch
        datamodule = ImageDataModule(
            root=Path(tmp) / "synthetic",
            num_classes=NUM_CLASSES,
            batch_size=batch,
            source=partial(generate_dataset, train_per_class=per_class, test_per_class=1, seed=0),
            val_fraction=0.01,
        )
        module = TowerClassifier(two_tower(channels_last=True), optimizer=sgd_params)
        clock = Clock()
        trainer = L.Trainer(
            accelerator=device.type,
            devices=1,
            precision="bf16-mixed",
            max_steps=steps,
            limit_val_batches=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[clock],
        )
        trainer.fit(module, datamodule=datamodule)
    first = 10  # after warm-up
    images = sum(clock.sizes[first + 1 :])
    return images / (clock.times[-1] - clock.times[first]), len(clock.times) - first - 1


def sgd_params(params: object) -> torch.optim.Optimizer:
    """What TowerClassifier.configure_optimizers calls: SGD on its parameter groups (fused on a GPU)."""
    return torch.optim.SGD(
        params, lr=0.001, momentum=0.9, weight_decay=5e-4, fused=torch.cuda.is_available() or None
    )


def model_rows(quick: bool) -> tuple[list[Row], float]:
    """Rows for the network benchmarks, and the two-tower fp32 step rate (img/s) the data rows compare to."""
    repeats = 3 if quick else 7
    gemm = gemm_rates(torch.device("cpu"), GEMM_SIZE, repeats)
    rows = [Row(f"GEMM {GEMM_SIZE}^3, {name}", rate, "GFLOP/s") for name, rate in gemm.items()]
    rows.append(Row("GEMM bf16 / fp32", gemm["bfloat16"] / gemm["float32"], "ratio"))
    conv = conv_rates(repeats)
    shape = "x".join(str(d) for d in CONV3_INPUT)
    rows += [
        Row(f"conv3 forward, {shape} -> 384 maps, channels_last, {name}", rate, "GFLOP/s")
        for name, rate in conv.items()
    ]
    rows += [
        Row(
            "conv3 forward bf16 / fp32 (the ceiling for bf16 / fp32 steps)",
            conv["bfloat16"] / conv["float32"],
            "ratio",
        ),
        Row("conv3 forward fp32 / fp32 GEMM (oneDNN vs MKL)", conv["float32"] / gemm["float32"], "ratio"),
    ]
    rows += lrn_rows(repeats)
    step_rows, step = cpu_step_rows(quick, gemm)
    rows += step_rows
    if quick:
        print("--quick: torch.compile and allocator rows skipped (make bench measures them)", file=sys.stderr)
    else:
        rows += compile_rows(repeats=5)
        rows += allocator_rows(pairs=2, repeats=5)
    if torch.cuda.is_available():
        rows += gpu_rows(quick)
    else:
        print("no GPU: the batch-256 bf16 GPU rows are skipped", file=sys.stderr)
    return rows, step


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a child process of allocator_rows")
    parser.add_argument(
        "--child", nargs=3, metavar=("keep|default", "step|targets", "REPEATS"), required=True
    )
    mode, variants, repeats = parser.parse_args().child
    _child_main(mode, variants, int(repeats))
