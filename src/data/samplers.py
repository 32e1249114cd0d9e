"""The order and the sharding of evaluation: class-mixed batches, and under DDP every image counted once.

**Order.** A split's images are listed in file order, class after class, so a loader read in order gives
batches of one class: a run that validates or tests on a few batches (``trainer.limit_val_batches=2``,
``debug=limit``, ``trainer.overfit_batches``) then measured an accuracy of exactly 0 or 1 (a net that
predicts one class is right on every image of a one-class batch, or on none). ``mixed_order`` reads a split
in a fixed random order instead: the permutation ``numpy.random.default_rng(seed)`` draws, the same every
epoch and every run of a config (the datamodule passes ``data.split_seed``), so the first batches hold every
class in about its share, and two runs validate on the same batches. The metrics over a whole split do not
depend on the order (accuracy is a count; the loss is a mean).

**Sharding.** Lightning shards evaluation data with torch's ``DistributedSampler``, which pads the split with
repeats of its first images until it divides by the number of processes: on 2 processes Imagenette's 3,925
test images become 3,926, and the accuracy printed counts one image twice, without a word (Lightning's "it is
recommended to use ``Trainer(devices=1)``" note). ``EvalShard`` gives process ``rank`` the items ``rank,
rank + n, ...`` of the (mixed) split and no repeats, so the processes' shares differ by at most one image;
the metrics (torchmetrics states, summed over processes when they are computed) then cover each image once.
That is safe here because evaluation runs no per-batch collective: the net has no buffers for DDP to
broadcast (no batch norm) and the metrics are gathered once per epoch. Training keeps Lightning's padded
sampler (every process must run the same number of steps for DDP's gradient all-reduce).
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import TypeVar

import numpy as np
from torch.utils.data import Dataset, DistributedSampler, Subset

T = TypeVar("T")


def mixed_order(dataset: Dataset[T], seed: int) -> Subset[T]:
    """``dataset`` read in the fixed random order ``numpy.random.default_rng(seed).permutation(len)``: each
    item once, the same order for the same ``seed`` and length (see the module docstring)."""
    order = np.random.default_rng(seed).permutation(len(dataset))  # type: ignore[arg-type]
    return Subset(dataset, order.tolist())


class EvalShard(DistributedSampler):
    """Indices ``rank, rank + num_replicas, ...`` of ``dataset``, in order, without padding."""

    def __init__(self, dataset: Sized, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)  # type: ignore[arg-type]
        self.num_samples = len(range(rank, len(dataset), num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples
