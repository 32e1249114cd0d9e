"""Where a training step's time goes: torch.profiler over the two-tower step, grouped by what the time is for.

The step is the training default (``conf/model/two_tower.yaml``, ``conf/optimizer/sgd.yaml``): channels_last,
fused SGD with momentum 0.9 and weight decay 5e-4 (section 5), freed memory kept (``keep_freed_memory``, as
``src/train.py`` does: process-wide, so this runs in a child process of ``make bench``), at the paper's batch
of 128 (section 5).

Every profiled op's own time (its wall time minus that of the ops it called) goes to the first group that
its name or the name of an op above it matches, innermost first: a ``fill_`` inside max-pooling's backward
is pooling, the ``copy_`` of a conversion is a cast. Groups: the convolutions (forward and both gradients),
the fc layers (``addmm``/``mm``), LRN (section 3.3), ReLU (forward and backward), pooling (section 3.4's
max-pooling and the identity ``avgpool``), dropout (section 4.2), the loss, the optimizer, casts and layout
copies (autocast's weight casts, the NCHW -> NHWC input copy), and the rest (autograd's own bookkeeping).

    python -m bench.profile [--batch 128] [--precision fp32] [--steps 2]    # one JSON line on stdout
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import defaultdict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

from bench.common import autocast
from src.models.alexnet import AlexNet
from src.utils.memory import keep_freed_memory

PRECISIONS = {"fp32": "32-true", "bf16": "bf16-mixed"}
# (group, pattern on the lower-cased op name), tried in this order on each op from the innermost outwards.
GROUPS: tuple[tuple[str, str], ...] = (
    ("convolutions", r"convolution"),
    ("fc layers", r"addmm|aten::mm\b|aten::linear"),
    ("LRN", r"lrn"),
    ("ReLU", r"threshold|relu|clamp_min"),
    ("pooling", r"max_pool|maxpool|adaptive_avg_pool|adaptiveavgpool"),
    ("dropout", r"dropout|bernoulli|mulbackward"),
    ("loss", r"cross_entropy|log_softmax|nll_loss|logsoftmax|nllloss"),
    ("optimizer", r"sgd|optimizer"),
    ("casts and layout copies", r"aten::to\b|_to_copy|copy_|clone|contiguous"),
)
OTHER = "other (autograd, allocation)"


def group_of(names: list[str]) -> str:
    """The group of an op whose name and callers' names are ``names``, innermost first."""
    for name in names:
        lowered = name.lower()
        for group, pattern in GROUPS:
            if re.search(pattern, lowered):
                return group
    return OTHER


def step_runner(
    net: nn.Module, batch: int, precision: str, size: int = 224, num_classes: int = 2
) -> Callable[[], None]:
    """One training step of ``net`` (fused SGD, section 5's momentum and weight decay) on random images."""
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9, weight_decay=5e-4, fused=True)
    images = torch.randn(batch, 3, size, size)  # NCHW, as the datamodule delivers them
    labels = torch.randint(0, num_classes, (batch,))
    device = torch.device("cpu")

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, PRECISIONS[precision]):
            loss = F.cross_entropy(net(images), labels)
        loss.backward()
        optimizer.step()

    return step


def profile_step(step: Callable[[], None], steps: int) -> tuple[dict[str, float], float]:
    """Milliseconds per step in each group, and the wall milliseconds per step, over ``steps`` steps."""
    step()  # warm-up: oneDNN picks its kernels, the allocator fills
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        wall = time.perf_counter() - start
    totals: dict[str, float] = defaultdict(float)
    for event in prof.events():
        names, parent = [event.name], event.cpu_parent
        while parent is not None:
            names.append(parent.name)
            parent = parent.cpu_parent
        totals[group_of(names)] += event.self_cpu_time_total / 1000 / steps
    return dict(totals), 1000 * wall / steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="a small net on 64-pixel images (tests)")
    args = parser.parse_args(argv)
    keep_freed_memory()
    torch.manual_seed(0)
    if args.tiny:
        net, size = AlexNet(2, conv_widths=(8, 16, 16, 16, 16), fc_width=32, channels_last=True), 64
    else:
        net, size = AlexNet(2, channels_last=True), 224
    groups, wall = profile_step(step_runner(net, args.batch, args.precision, size), args.steps)
    print(json.dumps({"groups": groups, "wall_ms": wall}))


if __name__ == "__main__":
    main()
