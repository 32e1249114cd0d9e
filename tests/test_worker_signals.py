"""Loader workers leave SIGINT and SIGTERM to the main process, which saves and stops (preemption.py).

SLURM and ``timeout`` signal the whole process group: a worker that died of SIGTERM made the main process
crash at its next batch with "DataLoader worker ... killed by signal: Terminated", saving nothing.
"""

from __future__ import annotations

import signal

import torch
from torch.utils.data import DataLoader, Dataset

from src.data.datamodule import worker_init


class SignalDispositions(Dataset):
    """Each item: the worker's SIGINT and SIGTERM handlers, as 1 where ignored."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> torch.Tensor:
        ignored = [signal.getsignal(sig) == signal.SIG_IGN for sig in (signal.SIGINT, signal.SIGTERM)]
        return torch.tensor(ignored, dtype=torch.int64)


def test_a_loader_worker_ignores_sigint_and_sigterm() -> None:
    def init(worker_id: int) -> None:
        worker_init(worker_id, rank=0)

    loader = DataLoader(SignalDispositions(), batch_size=1, num_workers=1, worker_init_fn=init)
    assert [batch.tolist() for batch in loader] == [[[1, 1]], [[1, 1]]]
