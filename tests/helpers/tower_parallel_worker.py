"""One rank of the two-process run in ``tests/test_tower_parallel.py`` (a script, started by that test).

    python tests/tower_parallel_worker.py DIR RANK WORLD_SIZE PORT

Reads ``DIR/inputs.pt`` (a grouped ``AlexNet``'s config and state_dict, the batches, the SGD settings), joins
a gloo process group on ``127.0.0.1:PORT``, runs ``SCRIPT`` on its tower and writes ``DIR/rank<RANK>.pt``.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from src.models.alexnet import AlexNet
from src.models.tower_parallel import (
    TowerParallelAlexNet,
    from_grouped,
    gather_grouped_state,
    same_on_every_rank,
)

TIMEOUT = timedelta(seconds=60)  # a collective that waits longer than this fails instead of hanging
DROPOUT_SEED = 1000  # plus the rank: the ranks draw different dropout masks on purpose


def load_model(inputs: dict[str, Any], rank: int) -> TowerParallelAlexNet:
    """Tower ``rank`` of the parent's grouped net, in eval mode (no dropout)."""
    net = AlexNet(**inputs["config"]).to(inputs["dtype"])
    net.load_state_dict(inputs["state"])
    return from_grouped(net, rank).eval()


def wrong_rank_error(model: TowerParallelAlexNet, x: torch.Tensor) -> str:
    """The error of a forward pass by the other rank's tower on this rank (before any collective)."""
    config = model.config() | {"rank": (model.rank + 1) % model.towers}
    try:
        TowerParallelAlexNet(**config).to(x.dtype)(x)
    except RuntimeError as error:
        return str(error)
    return ""


def gradients(model: TowerParallelAlexNet) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()}


def script(inputs: dict[str, Any], rank: int) -> dict[str, Any]:
    """Loss and gradients on the first batch, SGD steps over all batches, then a training-mode forward."""
    model = load_model(inputs, rank)
    batches = inputs["batches"]
    x, y = batches[0]
    out: dict[str, Any] = {
        "same_batch": same_on_every_rank(x),
        "rank_dependent_batch": same_on_every_rank(x + rank),
        "wrong_rank_error": wrong_rank_error(model, x),
    }
    optimizer = torch.optim.SGD(model.parameters(), **inputs["sgd"])
    losses = []
    for step, (x, y) in enumerate(batches):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        if step == 0:
            out["grads"] = gradients(model)
        optimizer.step()
        losses.append(loss.detach())
    out["losses"] = torch.stack(losses)
    out["shard"] = model.state_dict()
    out["grouped"] = gather_grouped_state(model)
    with torch.no_grad():
        out["eval_logits"] = model(batches[0][0])
        torch.manual_seed(DROPOUT_SEED + rank)
        out["train_logits"] = model.train()(batches[0][0])
    out["masks"] = dropout_masks(model, batches[0][0], DROPOUT_SEED + rank)
    return out


def dropout_masks(model: TowerParallelAlexNet, x: torch.Tensor, seed: int) -> list[torch.Tensor]:
    """The masks (0 or 1/(1-p)) that drop6 and drop7 drew on this rank after ``torch.manual_seed(seed)``.

    Drawn again from the same seed, in the same order and shapes: nothing else in the forward pass uses the
    random number generator, and dropout draws one Bernoulli per element whatever the element's value.
    """
    p = model.dropout
    torch.manual_seed(seed)
    own_features = x.shape[0], model.conv_widths[-1] // model.towers * model.pooled_size**2
    own_neurons = x.shape[0], model.fc_width // model.towers
    return [
        F.dropout(torch.ones(shape, dtype=x.dtype), p, training=True) for shape in (own_features, own_neurons)
    ]


def main(directory: Path, rank: int, world_size: int, port: int) -> None:
    torch.set_num_threads(1)  # two processes on two cores
    os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=TIMEOUT)
    try:
        inputs = torch.load(directory / "inputs.pt")
        torch.save(script(inputs, rank), directory / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()  # without it, processes abort at exit (shared/ENVIRONMENT.md)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
