"""Lightning's model summary with the network's FLOPs counted, instead of "Total FLOPs: 0".

Lightning counts FLOPs only by running the module's ``example_input_array`` through it at the start of fit;
ours has none, on purpose: that forward pass would make a ``compile=true`` net compile a graph for a
batch of one, and under ``trainer=towers`` it would need every rank at once. Here the net's forward pass over
one ``input_size`` crop runs on the meta device (shapes only: no data, no memory, no time) under torch's
``FlopCounterMode``, which counts 2 FLOPs per multiply-add of the conv and linear layers: 1.45 GFLOP per image
for the two-tower net with 1000 classes (724.4 M multiply-adds). ``src/train.py`` puts it in place of
Lightning's default summary (``use_flop_counting_summary``), so ``trainer.enable_model_summary=false`` still
turns the summary off. Only the plain ``AlexNet`` is counted: under ``trainer=towers`` each rank holds a
``TowerParallelAlexNet`` whose forward pass gathers from the other ranks, which rank 0 alone must not start
(that summary keeps Lightning's 0).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import RichModelSummary
from lightning.pytorch.utilities.model_summary import get_human_readable_count
from torch.utils.flop_counter import FlopCounterMode

from src.models.alexnet import AlexNet
from src.utils.console import say


def forward_flops(net: torch.nn.Module, input_size: int) -> int | None:
    """FLOPs of ``net``'s forward pass over one ``(3, input_size, input_size)`` image; None if it cannot run
    on the meta device (a net whose forward pass talks to other ranks)."""
    meta = {
        name: torch.empty_like(tensor, device="meta")
        for name, tensor in [*net.named_parameters(), *net.named_buffers()]
    }
    image = torch.empty(1, 3, input_size, input_size, device="meta")
    compiled = net.__dict__.get("_compiled_call_impl")  # nn.Module.compile: count the plain forward
    net._compiled_call_impl = None
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            torch.func.functional_call(net, meta, (image,))
    except Exception:
        return None
    finally:
        net._compiled_call_impl = compiled
    return counter.get_total_flops()


class FlopCountingSummary(RichModelSummary):
    """``RichModelSummary`` whose FLOPs are those of ``pl_module.net`` over one image (module docstring).

    Args:
        input_size: the side of the square crop the net is fed (``data.crop_size``).
    """

    def __init__(self, input_size: int = 224, max_depth: int = 1, **summarize_kwargs: Any) -> None:
        super().__init__(max_depth=max_depth, **summarize_kwargs)
        self.input_size = input_size
        self.flops: int | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        net = getattr(pl_module, "net", None)
        if trainer.is_global_zero and isinstance(net, AlexNet):  # not a net that talks to other ranks
            self.flops = forward_flops(net, self.input_size)
        super().on_fit_start(trainer, pl_module)

    def summarize(  # type: ignore[override]  (Lightning's is a staticmethod; it is called on self)
        self, summary_data: list[tuple[str, list[str]]], *args: Any, total_flops: int, **kwargs: Any
    ) -> None:
        if self.flops is not None:
            columns = dict(summary_data)
            columns["FLOPs"] = [
                get_human_readable_count(self.flops) if name == "net" else flops
                for name, flops in zip(columns["Name"], columns["FLOPs"], strict=True)
            ]
            summary_data = list(columns.items())
            total_flops = self.flops
        RichModelSummary.summarize(summary_data, *args, total_flops=total_flops, **kwargs)
        if self.flops is not None:
            say(f"(FLOPs: the net's forward pass over one {self.input_size}x{self.input_size} image)")


def use_flop_counting_summary(trainer: L.Trainer, input_size: int) -> None:
    """Put ``FlopCountingSummary`` in place of the summary Lightning added by itself (if it added one)."""
    trainer.callbacks = [
        FlopCountingSummary(input_size) if type(cb) is RichModelSummary else cb for cb in trainer.callbacks
    ]
