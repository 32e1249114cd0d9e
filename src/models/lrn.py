"""Local response normalisation, applied inside each tower (paper section 3.3).

The paper writes the normalised activity of kernel map ``i`` at one position as

    b_i = a_i / (k + alpha * sum_{j = i - n/2}^{i + n/2} a_j^2) ** beta

with k=2, n=5, alpha=1e-4, beta=0.75. Krizhevsky's cuda-convnet, which trained the published net, divides
``alpha`` by ``n`` (it averages the squares instead of summing them), and so does
``torch.nn.LocalResponseNorm``. We follow the code that produced the paper's numbers: ``alpha=1e-4`` here
means ``alpha / n = 2e-5`` per squared neighbour. The sum is clipped at the first and last map, as in both
implementations.

On two GPUs each GPU normalised its own kernel maps: the neighbours of a map never come from the other tower.
A plain ``nn.LocalResponseNorm`` over all 96 conv1 maps would let maps 46-47 of tower 0 see maps 48-49 of
tower 1, so here the channels are split into ``towers`` equal groups and each group is normalised alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Section 3.3: "k = 2, n = 5, alpha = 10^-4, and beta = 0.75".
LRN_SIZE = 5
LRN_ALPHA = 1e-4
LRN_BETA = 0.75
LRN_K = 2.0


class TowerLocalResponseNorm(nn.Module):
    """Cross-channel LRN in the cuda-convnet convention, restricted to each tower's own channels."""

    def __init__(
        self,
        towers: int = 1,
        size: int = LRN_SIZE,
        alpha: float = LRN_ALPHA,
        beta: float = LRN_BETA,
        k: float = LRN_K,
    ) -> None:
        super().__init__()
        self.towers = towers
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.towers == 1:
            return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)
        n, c, h, w = x.shape
        per_tower = x.reshape(n * self.towers, c // self.towers, h, w)
        out = F.local_response_norm(per_tower, self.size, self.alpha, self.beta, self.k)
        return out.reshape(n, c, h, w)

    def extra_repr(self) -> str:
        return f"towers={self.towers}, size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
