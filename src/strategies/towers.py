"""``trainer=towers``: one tower per device, as the paper trained its net (section 3.2, figure 2).

A Lightning strategy built on ``DDPStrategy``'s process launching and process group (one process per
device, ``torch.distributed``; NCCL on GPUs, gloo on CPUs), but MODEL parallel, not data parallel:

- After the process group starts, the LightningModule's grouped ``AlexNet`` (``module.net``, built from the
  same seed on every rank) is cut with ``from_grouped``: rank ``t`` keeps tower ``t``'s slice of every layer
  and fc8's replica (``src/models/tower_parallel.py`` says what moves between the devices, and why).
- It is not wrapped in ``DistributedDataParallel`` and no parameter is broadcast or averaged: each rank's
  parameters are its own neurons, and their gradients are already complete.
- Every rank gets the SAME batch: the sampler does not shard the data (``num_replicas=1``, so
  ``data.batch_size`` is the batch of every device and of the step), and after each batch is on the device
  and augmented (``on_after_batch_transfer``: PCA lighting) rank 0's copy is broadcast to the others, so that
  loader workers and lighting draws, seeded per rank, cannot make the towers see different images.
- Dropout (section 4.2) draws different masks on each rank (the torch seed is offset by the rank after the
  model is built), as each of the paper's GPUs had its own random stream.
- Checkpoints are the single-device ``AlexNet``'s: the model's and the SGD momentum's shards are gathered to
  rank 0 before rank 0 writes, and cut again when a checkpoint is loaded, so ``eval.py``, ``load_network``
  and the analysis read them as any other checkpoint, and a run can resume on one device or on towers.
- Logged metrics are the same on every rank (every rank computes the loss of the whole batch); syncing them
  averages equal numbers.

Cost per step and image: the batch broadcast (3 x 224 x 224 float32, 602 kB, once per image, not per rank)
and the activations of figure 2 (about 121 kB forward and 113 kB backward for two towers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.fabric.utilities.optimizer import _optimizers_to_device
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.trainer.states import TrainerFn
from torch.optim import Optimizer

from src.models.alexnet import AlexNet
from src.models.tower_parallel import TowerParallelAlexNet, from_grouped, gather_grouped, shard_of

NET_PREFIX = "net."


class TowerParallelStrategy(DDPStrategy):
    """Tower ``t`` of ``module.net`` on device ``t`` (see the module docstring); one device per tower."""

    strategy_name = "towers"

    @property
    def distributed_sampler_kwargs(self) -> dict[str, Any]:
        """One copy of the data for all ranks: each rank iterates the whole dataset in the same order."""
        return {"num_replicas": 1, "rank": 0}

    @property
    def towers(self) -> int:
        return self.world_size

    def setup_environment(self) -> None:
        """Start the process group, then cut the module's grouped net into this rank's tower."""
        super().setup_environment()
        module = self.lightning_module
        net = getattr(module, "net", None)
        if isinstance(net, TowerParallelAlexNet):  # a second fit or test with the same module
            return
        if not isinstance(net, AlexNet):
            raise TypeError(
                f"trainer=towers needs a LightningModule whose .net is an AlexNet, got {type(net).__name__}"
            )
        if net.towers != self.world_size:
            raise ValueError(
                f"trainer=towers puts one tower per device: model.towers={net.towers} needs "
                f"trainer.devices={net.towers} (x trainer.num_nodes), but this run has {self.world_size} "
                "processes"
            )
        module.net = from_grouped(net, rank=self.global_rank)
        # Built from the same seed everywhere, the towers now draw their own dropout masks.
        torch.manual_seed(torch.initial_seed() + self.global_rank)

    def setup(self, trainer: L.Trainer) -> None:
        """DDP's setup without the DDP wrapper and without syncing parameters from rank 0."""
        assert self.accelerator is not None and self.model is not None
        self.accelerator.setup(trainer)
        self.precision_plugin.convert_module(self.model)
        self.model_to_device()
        fitting = trainer.state.fn == TrainerFn.FITTING
        if fitting:
            self.setup_optimizers(trainer)
        self.setup_precision_plugin()
        if fitting:
            _optimizers_to_device(self.optimizers, self.root_device)

    def batch_to_device(self, batch: Any, device: torch.device | None = None, dataloader_idx: int = 0) -> Any:
        """The batch on the device, as prepared by the data module, then rank 0's copy on every rank."""
        batch = super().batch_to_device(batch, device, dataloader_idx)
        return broadcast_tensors(batch)

    # Checkpoints hold the grouped net: gathered when saved, cut when loaded.

    def lightning_module_state_dict(self) -> dict[str, Any]:
        """The module's state with the grouped ``AlexNet`` under ``net.``, on rank 0 (a collective)."""
        state = self.lightning_module.state_dict()
        net = {name: tensor for name, tensor in state.items() if name.startswith(NET_PREFIX)}
        grouped = gather_grouped(net, dst=0)
        if grouped is not None:
            state.update(grouped)
        return state

    def load_model_state_dict(self, checkpoint: Mapping[str, Any], strict: bool = True) -> None:
        state = {
            name: self._shard(name, tensor) if name.startswith(NET_PREFIX) else tensor
            for name, tensor in checkpoint["state_dict"].items()
        }
        self.lightning_module.load_state_dict(state, strict=strict)

    def _shard(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        return shard_of(name, tensor, self.global_rank, self.towers)

    def optimizer_state(self, optimizer: Optimizer) -> dict[str, Any]:
        """The optimiser's state with each parameter's momentum as the grouped net's (a collective)."""
        optimizer = getattr(optimizer, "_optimizer", optimizer)  # a LightningOptimizer
        state = optimizer.state_dict()
        names = self._parameter_names(optimizer)
        index_of = {name: i for i, name in names.items()}
        # state_dict() hands out the optimiser's live per-parameter dicts: copy them before replacing entries.
        per_parameter = {i: dict(entry) for i, entry in state["state"].items()}
        state["state"] = per_parameter
        for key in sorted({k for entry in per_parameter.values() for k in entry if _is_shard(entry[k])}):
            shards = {names[i]: entry[key] for i, entry in sorted(per_parameter.items()) if key in entry}
            grouped = gather_grouped(shards, dst=0)
            if grouped is None:
                continue
            for name, tensor in grouped.items():
                per_parameter[index_of[name]][key] = tensor
        return state

    def load_optimizer_state_dict(self, checkpoint: Mapping[str, Any]) -> None:
        for optimizer, saved in zip(self.optimizers, checkpoint["optimizer_states"], strict=True):
            names = self._parameter_names(optimizer)
            state = dict(saved)
            state["state"] = {
                i: {
                    key: self._shard(names[i], value) if _is_shard(value) else value
                    for key, value in entry.items()
                }
                for i, entry in saved["state"].items()
            }
            optimizer.load_state_dict(state)
        _optimizers_to_device(self.optimizers, self.root_device)

    def _parameter_names(self, optimizer: Optimizer) -> dict[int, str]:
        """Index in ``optimizer.state_dict()`` -> the module's name of that parameter (``net.fc6.weight``)."""
        name_of = {id(p): name for name, p in self.lightning_module.named_parameters()}
        params = [p for group in optimizer.param_groups for p in group["params"]]
        return {i: name_of[id(p)] for i, p in enumerate(params)}


def _is_shard(value: Any) -> bool:
    """Per-parameter optimiser tensors (momentum) have the parameter's shape; scalars (a step) do not."""
    return isinstance(value, torch.Tensor) and value.dim() > 0


def broadcast_tensors(batch: Any, src: int = 0) -> Any:
    """Overwrite every tensor in ``batch`` (a tensor, or a tuple/list/dict of them) with rank ``src``'s."""
    if isinstance(batch, torch.Tensor):
        batch = batch.contiguous()
        dist.broadcast(batch, src=src)
        return batch
    if isinstance(batch, Mapping):
        return type(batch)({key: broadcast_tensors(value, src) for key, value in batch.items()})
    if isinstance(batch, (list, tuple)):
        return type(batch)(broadcast_tensors(value, src) for value in batch)
    return batch
