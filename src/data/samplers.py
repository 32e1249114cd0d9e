"""Evaluation under DDP: every validation and test image counted exactly once.

Lightning shards evaluation data with torch's ``DistributedSampler``, which pads the split with repeats of
its first images until it divides by the number of processes: on 2 processes Imagenette's 3,925 test images
become 3,926, and the accuracy printed counts one image twice, without a word (Lightning's "it is recommended
to use ``Trainer(devices=1)``" note). ``EvalShard`` gives process ``rank`` the images ``rank, rank + n, ...``
and no repeats, so the processes' shares differ by at most one image; the metrics (torchmetrics states,
summed over processes when they are computed) then cover each image once. That is safe here because
evaluation runs no per-batch collective: the net has no buffers for DDP to broadcast (no batch norm) and the
metrics are gathered once per epoch. Training keeps Lightning's padded sampler (every process must run the
same number of steps for DDP's gradient all-reduce).
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

from torch.utils.data import DistributedSampler


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
