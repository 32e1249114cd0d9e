"""AlexNet with one tower per process, as the paper trained it: section 3.2 and figure 2.

Section 3.2, "Training on multiple GPUs": "The parallelization scheme that we employ essentially puts half of
the kernels (or neurons) on each GPU, with one additional trick: the GPUs communicate only in certain layers."
``AlexNet`` (``alexnet.py``) writes the towers as grouped convolutions on one device; ``TowerParallelAlexNet``
is the same net cut along the towers for a process group of ``towers`` ranks: rank ``t`` holds only tower
``t``'s parameters (its slice of every layer's output channels / neurons) and the ranks exchange activations
exactly where figure 2 draws lines between the GPUs. Shapes below are per rank for the paper's widths, ``T``
towers, batch ``N`` (``T = 2``: the paper's 48 / 128 / 192 / 192 / 128 kernels and 2048 + 2048 neurons):

    layer  on rank t                       input                      exchange before it (forward)
    conv1  96/T  11x11x3, stride 4         the image (every rank)     none: every rank gets the same batch
    conv2  256/T 5x5x(96/T)                own conv1 maps             none (own tower)
    conv3  384/T 3x3x256                   ALL towers' conv2 maps     all-gather pool2: N x 256/T x 13 x 13
    conv4  384/T 3x3x(384/T)               own conv3 maps             none (own tower)
    conv5  256/T 3x3x(384/T)               own conv4 maps             none (own tower)
    fc6    4096/T x 9216                   ALL towers' pool5          all-gather pool5: N x (256/T * 36)
    fc7    4096/T x 4096                   ALL towers' fc6            all-gather fc6:   N x 4096/T
    fc8    num_classes x 4096 (replica)    ALL towers' fc7            all-gather fc7:   N x 4096/T

LRN (section 3.3) runs inside each tower, so on a rank it is a plain LRN over the rank's own maps; pooling
and ReLU are per channel. Backward, each all-gather that feeds a split layer (conv3, fc6, fc7) sums the
ranks' gradients for each tower's slice (a reduce-scatter, the same sizes as the forward gather), because
every rank's slice of conv3 / fc6 / fc7 reads every tower's maps; the gather that feeds fc8 sends nothing back
(see below). Communication per step, per image, each rank sending its share to the T - 1 others: forward
pool2 + pool5 + fc6 + fc7 = 21,632 + 4,608 + 2,048 + 2,048 = 30,336 numbers for ``T = 2`` (121 kB in
float32, 15.5 MB for the paper's batch of 128), backward the same without fc7 (28,288 numbers). No
parameter gradient is ever exchanged: no parameter lives on two ranks except fc8, whose replicas stay equal
by construction.

fc8. The paper gives 2048 neurons per GPU for fc6 and fc7 but only a total for fc8 (the 1000-way softmax,
fed by all of fc7 in figure 2); where its neurons lived is not stated. Here fc8 is a full replica on every
rank: every rank gathers all of fc7, computes all the logits and the same loss, and computes the same fc8
gradient from bitwise-equal inputs, so SGD keeps the replicas equal without communication (``sync_replicas_``
re-broadcasts them from rank 0 if a training loop wants a guarantee, e.g. before a checkpoint). The gather
before fc8 is special: as every rank already holds the full loss gradient for all of fc7, its backward only
keeps the rank's own slice (summing it over the ranks, as for the other gathers, would count the loss ``T``
times). The alternative, a slice of the classes per rank plus an all-gather of the logits, would need
``num_classes % T == 0`` and saves only ``num_classes x 4096 x (T-1)/T`` parameters per rank; with 2 or 1000
classes a replica is simpler and costs one redundant ``N x 4096 x num_classes`` matmul.

Every rank computes the loss of the whole batch, equal to the single-device net's, and every parameter's
gradient equal to the matching slice of the single-device gradient: ``from_grouped`` cuts a grouped
``AlexNet`` into the rank's shard and ``to_grouped`` / ``gather_grouped_state`` put the shards back, so
checkpoints stay interchangeable with ``AlexNet``. ``tests/test_tower_parallel.py`` checks both on two CPU
processes (gloo).

Feeding it: the towers look at the same images, so EVERY RANK MUST GET THE SAME BATCH, in the same order
(same sampler seed, no ``DistributedSampler`` sharding, the same augmentation draws); ``same_on_every_rank``
checks a batch with one tiny all-reduce. This is model parallelism, not data parallelism: do not wrap the
model in ``DistributedDataParallel`` (it would average gradients that belong to different neurons).

Dropout (section 4.2) on the inputs of fc6 and fc7 is applied by each rank to its OWN neurons before they are
gathered, with its own random numbers: every consumer of a neuron sees the same zero, as on one device, but
the masks differ from the single-device net's draws (as on two GPUs, each with its own random stream). The
equivalence with ``AlexNet`` is therefore exact in eval mode (or with dropout off); in training the two nets
are equal in distribution.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import nn

from src.models.alexnet import (
    DROPOUT,
    AlexNet,
    _check_widths,
    build_stacks,
    named_layer,
    network_config,
    tower_layer_weight,
)
from src.models.layer_table import layer_table
from src.models.lrn import LRN_ALPHA, LRN_BETA, LRN_K, LRN_SIZE

# Parameters that every rank holds in full (see the module docstring); every other parameter is split into
# ``towers`` equal slices along dim 0 (output channels / neurons), tower t's slice on rank t.
REPLICATED_LAYERS = ("fc8",)
SHARD_DIM = 0


def _world(group: dist.ProcessGroup | None) -> tuple[int, int]:
    return dist.get_rank(group), dist.get_world_size(group)


class _GatherForReplica(torch.autograd.Function):
    """All-gather whose consumer is replicated on every rank: backward keeps the rank's own slice.

    Every rank computes the same function of the gathered tensor (fc8 and the loss), so every rank already
    holds the full gradient; summing it over the ranks would multiply it by the number of ranks.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dim: int, group: dist.ProcessGroup | None) -> torch.Tensor:
        rank, world = _world(group)
        ctx.dim, ctx.rank, ctx.world = dim, rank, world
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x, group=group)
        return torch.cat(parts, dim=dim)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return grad.chunk(ctx.world, dim=ctx.dim)[ctx.rank].contiguous(), None, None


def gather_towers(
    x: torch.Tensor, dim: int = 1, replicated_consumer: bool = False, group: dist.ProcessGroup | None = None
) -> torch.Tensor:
    """Concatenate every rank's ``x`` along ``dim`` in tower (rank) order, differentiably.

    ``replicated_consumer=False``: what reads the result is split over the ranks (conv3, fc6, fc7), so the
    backward sums the ranks' gradients for each slice (``torch.distributed.nn.functional.all_gather``).
    ``True``: every rank computes the same thing from it (fc8), so the backward keeps the own slice.
    """
    if replicated_consumer:
        return _GatherForReplica.apply(x, dim, group)
    with warnings.catch_warnings():
        # Deprecated in favour of the functional collectives, which do not backpropagate on gloo.
        warnings.filterwarnings("ignore", message=r".*all_gather is deprecated", category=FutureWarning)
        parts = dist_nn.all_gather(x, group=group if group is not None else dist.group.WORLD)
    return torch.cat(parts, dim=dim)


class GatherTowers(nn.Module):
    """``gather_towers`` as a layer, so the forward pass reads like figure 2 (see ``gather_towers``)."""

    def __init__(self, replicated_consumer: bool = False, group: dist.ProcessGroup | None = None) -> None:
        super().__init__()
        self.replicated_consumer = replicated_consumer
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gather_towers(x, dim=1, replicated_consumer=self.replicated_consumer, group=self.group)

    def extra_repr(self) -> str:
        return f"replicated_consumer={self.replicated_consumer}"


class TowerParallelAlexNet(nn.Module):
    """Tower ``rank`` of ``AlexNet`` with ``towers`` towers, one tower per rank (section 3.2, figure 2).

    Module and parameter names are ``AlexNet``'s (``features.conv1.weight`` ...), with the shapes of one
    tower's slice; ``GatherTowers`` layers (``features.gather2``, ``classifier.gather5/6/7``) mark the
    exchanges. The constructor leaves PyTorch's default initialisation: build it with ``from_grouped`` from
    an ``AlexNet`` made with the same seed on every rank, so it starts from the single-device net's weights
    and fc8's replicas agree.

    Args:
        rank: this process's tower, ``0 <= rank < towers``; must be its rank in ``group``.
        group: the process group of the ``towers`` ranks (default: the whole world).
        Others: as ``AlexNet`` (widths are all towers together).
    """

    def __init__(
        self,
        num_classes: int,
        towers: int,
        rank: int,
        layers: str = "paper",
        conv_widths: Sequence[int] | None = None,
        fc_width: int | None = None,
        dropout: float = DROPOUT,
        group: dist.ProcessGroup | None = None,
        init: str = "kaiming_paper_conv1",
        lrn_size: int = LRN_SIZE,
        lrn_k: float = LRN_K,
        lrn_alpha: float = LRN_ALPHA,
        lrn_beta: float = LRN_BETA,
        lrn_after_pool: bool = False,
    ) -> None:
        super().__init__()
        table = layer_table(layers)
        conv_widths = table.conv_widths if conv_widths is None else tuple(int(w) for w in conv_widths)
        fc_width = table.fc_width if fc_width is None else int(fc_width)
        _check_widths(towers, conv_widths, fc_width, num_classes)
        if not 0 <= rank < towers:
            raise ValueError(f"rank must be in [0, {towers}) for {towers} towers, got {rank}")
        self.num_classes, self.towers, self.rank, self.layers = num_classes, towers, rank, layers
        self.conv_widths, self.fc_width, self.dropout = conv_widths, fc_width, dropout
        self.pooled_size = table.pooled_size
        self.init = init  # how the grouped net it was cut from was initialised (recorded, not applied)
        lrn = {"size": lrn_size, "alpha": lrn_alpha, "beta": lrn_beta, "k": lrn_k}

        def gather(replicated_consumer: bool) -> GatherTowers:
            return GatherTowers(replicated_consumer=replicated_consumer, group=group)

        features, classifier = build_stacks(
            table, towers, conv_widths, fc_width, num_classes, dropout, lrn, lrn_after_pool, gather
        )
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((self.pooled_size, self.pooled_size))
        self.classifier = classifier
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """All the logits, ``(N, num_classes)``, equal on every rank; ``x`` must be the same on every rank."""
        self._check_group()
        x = self.features(x)
        x = self.avgpool(x)
        # Channel-major flattening keeps each tower's 256/T x 6 x 6 features in one block, in tower order:
        # the gathered vector is the single-device net's fc6 input.
        return self.classifier(torch.flatten(x, 1))

    def _check_group(self) -> None:
        """A tower on the wrong rank would compute a wrong net without any shape error: refuse it."""
        rank, world = _world(self.group)
        if (rank, world) != (self.rank, self.towers):
            raise RuntimeError(
                f"tower {self.rank} of {self.towers} runs as rank {rank} of a group of {world}: build each "
                "rank's model with from_grouped(net, rank=<its rank in the group>) and one rank per tower"
            )

    def layer(self, name: str) -> nn.Conv2d | nn.Linear:
        """This rank's part of the conv or fc layer ``name`` (``conv1`` .. ``conv5``, ``fc6`` .. ``fc8``)."""
        return named_layer(self, name)

    def config(self) -> dict[str, Any]:
        """The single-device ``AlexNet``'s arguments, as ``AlexNet.config`` gives them: a gathered checkpoint
        rebuilds ``AlexNet(**model.config())``, and ``from_grouped`` cuts it into towers again."""
        return network_config(self)

    @torch.no_grad()
    def tower_kernels(self, name: str = "conv1") -> list[torch.Tensor]:
        """Every tower's slice of layer ``name``'s weights, on every rank, as ``AlexNet.tower_kernels`` gives.

        A collective (an all-gather of one layer's weights): call it on every rank.
        """
        weight = tower_layer_weight(self, name).contiguous()
        parts = [torch.empty_like(weight) for _ in range(self.towers)]
        dist.all_gather(parts, weight, group=self.group)
        return parts

    def replicated_parameters(self) -> list[nn.Parameter]:
        """The parameters every rank holds in full (fc8's)."""
        return [p for name in REPLICATED_LAYERS for p in self.layer(name).parameters()]

    @torch.no_grad()
    def sync_replicas_(self, src: int = 0) -> None:
        """Overwrite every rank's fc8 with rank ``src``'s (a collective: call it on every rank)."""
        for p in self.replicated_parameters():
            dist.broadcast(p, src=src, group=self.group)


def is_replicated(name: str) -> bool:
    """Whether the state_dict entry ``name`` (e.g. ``classifier.fc8.weight``) is whole on every rank."""
    return name.split(".")[-2] in REPLICATED_LAYERS


def shard_of(name: str, tensor: torch.Tensor, rank: int, towers: int) -> torch.Tensor:
    """Tower ``rank``'s part of the grouped ``AlexNet`` tensor ``name`` (a weight, bias or its gradient)."""
    if is_replicated(name):
        return tensor
    return tensor.chunk(towers, dim=SHARD_DIM)[rank]


def merge_shards(name: str, shards: Sequence[torch.Tensor]) -> torch.Tensor:
    """The grouped ``AlexNet`` tensor ``name`` from every tower's part, in tower order (inverse of
    ``shard_of``); a replicated tensor is taken from tower 0."""
    return shards[0] if is_replicated(name) else torch.cat(list(shards), dim=SHARD_DIM)


def from_grouped(
    net: AlexNet, rank: int, towers: int | None = None, group: dist.ProcessGroup | None = None
) -> TowerParallelAlexNet:
    """Tower ``rank`` of the single-device ``net``, with copies of that tower's slice of every parameter.

    Needs no process group: call it on every rank with an ``AlexNet`` built from the same seed (or loaded
    from the same checkpoint), and every rank starts from the single-device net's weights.
    """
    towers = net.towers if towers is None else towers
    if towers != net.towers:
        raise ValueError(f"net has {net.towers} towers, asked to split it into {towers}")
    first = next(net.parameters())
    model = TowerParallelAlexNet(rank=rank, group=group, **(network_config(net) | {"towers": towers})).to(
        device=first.device, dtype=first.dtype
    )
    shard = {name: shard_of(name, t, rank, towers) for name, t in net.state_dict().items()}
    model.load_state_dict(shard)
    return model


def to_grouped(shards: Sequence[Mapping[str, torch.Tensor]]) -> OrderedDict[str, torch.Tensor]:
    """A grouped ``AlexNet`` state_dict from every rank's ``state_dict()`` (or gradients keyed by the same
    names), in rank order: ``AlexNet(**model.config()).load_state_dict(to_grouped(shards))``."""
    names = list(shards[0])
    for rank, shard in enumerate(shards[1:], start=1):
        if list(shard) != names:
            raise ValueError(f"rank {rank}'s entries differ from rank 0's: {sorted(set(shard) ^ set(names))}")
    return OrderedDict((name, merge_shards(name, [s[name] for s in shards])) for name in names)


def gather_grouped(
    shards: Mapping[str, torch.Tensor], group: dist.ProcessGroup | None = None, dst: int = 0
) -> OrderedDict[str, torch.Tensor] | None:
    """The grouped tensors on rank ``dst`` (``None`` on the others) from every rank's ``shards``: tensors
    named as ``AlexNet``'s state_dict entries (a prefix such as ``net.`` is allowed), the same names in the
    same order on every rank. A collective: call it on every rank. Replicated tensors (fc8's) do not travel:
    ``dst``'s copy is taken."""
    rank, world = _world(group)
    merged: OrderedDict[str, torch.Tensor] = OrderedDict()
    for name, tensor in shards.items():
        if is_replicated(name):
            merged[name] = tensor.detach().clone()
            continue
        tensor = tensor.detach().contiguous()
        parts = [torch.empty_like(tensor) for _ in range(world)] if rank == dst else None
        dist.gather(tensor, parts, dst=dst, group=group)
        if parts is not None:
            merged[name] = merge_shards(name, parts)
    return merged if rank == dst else None


def gather_grouped_state(model: TowerParallelAlexNet, dst: int = 0) -> OrderedDict[str, torch.Tensor] | None:
    """The grouped ``AlexNet`` state_dict on rank ``dst`` (``None`` on the others); call it on every rank.

    Only the split tensors travel (fc8 is taken from ``dst``'s replica): a checkpoint written from it loads
    into the single-device ``AlexNet`` and, through ``from_grouped``, back into the towers.
    """
    return gather_grouped(model.state_dict(), group=model.group, dst=dst)


def same_on_every_rank(x: torch.Tensor, group: dist.ProcessGroup | None = None) -> bool:
    """Whether ``x`` (e.g. the batch) looks the same on every rank, by two checksums and one tiny all-reduce.

    A training loop can assert it on its first batches to catch a sampler that shards the data.
    """
    flat = x.detach().double().flatten()
    weights = torch.arange(flat.numel(), dtype=torch.float64, device=flat.device).remainder_(97).add_(1)
    fingerprint = torch.stack([flat.sum(), (flat * weights).sum()])
    extremes = torch.cat([fingerprint, -fingerprint])  # max over ranks of both: the largest and the smallest
    dist.all_reduce(extremes, op=dist.ReduceOp.MAX, group=group)
    return bool(torch.equal(extremes[:2], -extremes[2:]))
