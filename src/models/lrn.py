"""Local response normalisation, applied inside each tower (paper section 3.3).

The paper writes the normalised activity of kernel map ``i`` at one position as

    b_i = a_i / (k + alpha * sum_{j = i - n/2}^{i + n/2} a_j^2) ** beta

with k=2, n=5, alpha=1e-4, beta=0.75. Krizhevsky's cuda-convnet, which trained the published net, divides
``alpha`` by ``n`` (it averages the squares instead of summing them), and so does
``torch.nn.LocalResponseNorm``. We follow the code that produced the paper's numbers: ``alpha=1e-4`` here
means ``alpha / n = 2e-5`` per squared neighbour. The sum is clipped at the first and last map, as in both
implementations. Caffe's ``LRN`` layer (``ACROSS_CHANNELS``) computes the same formula, also with
``alpha / n``, but its ``k`` defaults to 1 and BVLC's AlexNet and CaffeNet leave it there:
``AlexNet(lrn_k=1.0)`` for their weights (``caffe_weights.py``).

On two GPUs each GPU normalised its own kernel maps: the neighbours of a map never come from the other tower.
A plain ``nn.LocalResponseNorm`` over all 96 conv1 maps would let maps 46-47 of tower 0 see maps 48-49 of
tower 1, so here the channels are split into ``towers`` equal groups and each group is normalised alone.

Speed. ``F.local_response_norm`` builds the window sum from a padded copy and a 3-d average pool, and autograd
differentiates every step: on the conv1 activation that is a large share of a CPU training step (measured:
docs/benchmarks.md). Writing ``s_i = k + alpha/n * sum_{j in W(i)} a_j^2``
for the scale and ``b_i = a_i s_i^-beta`` for the output, the backward is

    d loss / d a_m = g_m s_m^-beta - (2 alpha beta / n) a_m sum_{i : m in W(i)} g_i b_i / s_i

(the second sum runs over the maps whose window holds ``m``: the same window, mirrored). Two implementations
of these formulas, with the same numbers (tests):

- On the CPU, the C++ kernel ``csrc/tower_lrn.cpp`` (built on first use, ``lrn_kernel.py``): forward and
  backward each read their inputs once and write their result once, in fp32 arithmetic for any input dtype;
  the backward recomputes the scale from the input, so nothing beyond the input (which the ReLU before keeps
  anyway) is saved. torch.compile calls it inside its graph. Its speed against ``nn.LocalResponseNorm``,
  with and without freed memory kept (as ``train`` does): ``make bench``, docs/benchmarks.md.
- Elsewhere (GPU, float64, or where the kernel cannot be built) ``_TowerLRN``: the same formulas in ~20
  elementwise torch passes with a hand-written backward; it keeps the scale as one extra activation; still
  faster than ``nn.LocalResponseNorm``.

bf16 (autocast): the scale ``2 + 2e-5 * sum`` differs from 2 by less than bf16 can resolve near 2 (its
spacing there is 1/64) for all but large activations, so both always compute in fp32, and the output is
the fp32 result rounded once to the input's dtype.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import FunctionCtx, once_differentiable

from src.models import lrn_kernel

# Section 3.3: "k = 2, n = 5, alpha = 10^-4, and beta = 0.75".
LRN_SIZE = 5
LRN_ALPHA = 1e-4
LRN_BETA = 0.75
LRN_K = 2.0

_MAP_DIM = 2  # the channel dimension of the (batch, towers, maps per tower, ...) view


class TowerLocalResponseNorm(nn.Module):
    """Cross-channel LRN in the cuda-convnet convention, restricted to each tower's own channels."""

    def __init__(
        self,
        towers: int = 1,
        size: int = LRN_SIZE,
        alpha: float = LRN_ALPHA,
        beta: float = LRN_BETA,
        k: float = LRN_K,
        kernel: bool = True,
    ) -> None:
        super().__init__()
        self.towers = towers
        self.kernel = kernel
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tower_local_response_norm(
            x, self.towers, self.size, self.alpha, self.beta, self.k, self.kernel
        )

    def extra_repr(self) -> str:
        shape = f"towers={self.towers}, size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
        return shape if self.kernel else f"{shape}, kernel=False"


def tower_local_response_norm(
    x: torch.Tensor,
    towers: int = 1,
    size: int = LRN_SIZE,
    alpha: float = LRN_ALPHA,
    beta: float = LRN_BETA,
    k: float = LRN_K,
    kernel: bool = True,
) -> torch.Tensor:
    """LRN of ``x`` (batch, channels, ...) over the channels of each of ``towers`` equal channel groups.

    ``towers=1`` is ``F.local_response_norm(x, size, alpha, beta, k)``; any memory format works. ``kernel``:
    use the C++ kernel where it applies (``kernel_applies``); False always takes the eager version.
    """
    if x.dim() < 3:
        raise ValueError(
            f"LRN needs a (batch, channels, ...) input with spatial dims, got shape {tuple(x.shape)}"
        )
    if x.shape[1] % towers:
        raise ValueError(f"{x.shape[1]} channels do not split into {towers} equal towers")
    if kernel and kernel_applies(x):
        return lrn_kernel.forward(x, towers, size, alpha, beta, k)
    return _TowerLRN.apply(x, towers, size, alpha, beta, k)


_KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def kernel_applies(x: torch.Tensor) -> bool:
    """CPU fp32/bf16/fp16 tensors, where the kernel is built (eager or under torch.compile)."""
    return x.device.type == "cpu" and x.dtype in _KERNEL_DTYPES and lrn_kernel.available()


def reference_local_response_norm(
    x: torch.Tensor,
    towers: int = 1,
    size: int = LRN_SIZE,
    alpha: float = LRN_ALPHA,
    beta: float = LRN_BETA,
    k: float = LRN_K,
) -> torch.Tensor:
    """The same as ``tower_local_response_norm``, by ``F.local_response_norm`` on each tower (slow; tests)."""
    n, c = x.shape[:2]
    per_tower = x.reshape(n * towers, c // towers, *x.shape[2:])
    return F.local_response_norm(per_tower, size, alpha, beta, k).reshape(x.shape)


class _TowerLRN(torch.autograd.Function):
    """Forward and backward of tower LRN in a few elementwise passes (formulas in the module docstring)."""

    @staticmethod
    def forward(
        ctx: FunctionCtx, x: torch.Tensor, towers: int, size: int, alpha: float, beta: float, k: float
    ) -> torch.Tensor:
        maps = _tower_view(x, towers).to(_compute_dtype(x))  # a copy only for bf16/fp16 input
        squares = torch.addcmul(maps.new_zeros(()), maps, maps, value=alpha / size)  # one pass: alpha/n a^2
        scale = torch.add(squares, k)
        _add_window_(scale, squares, before=size // 2, after=(size - 1) // 2)
        out = _inverse_power(scale, beta, out=squares).mul_(maps)  # the squares' buffer, reused
        # For fp32 input, x and out are the tensors the ReLU before and the max-pool after keep anyway. For
        # bf16 input, keeping their fp32 versions saves two conversions (and allocations) in the backward.
        ctx.save_for_backward(maps, out, scale)
        ctx.lrn = (size, alpha, beta)
        return out.to(x.dtype).flatten(1, 2)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        maps, out, scale = ctx.saved_tensors
        size, alpha, beta = ctx.lrn
        # Mixed-dtype elementwise ops are much slower on CPU than converting first, so convert first.
        grad_maps = grad.unflatten(1, maps.shape[1:3]).to(scale.dtype)
        ratio = torch.div(out, scale).mul_(grad_maps)  # g_i b_i / s_i
        grad_x = _inverse_power(scale, beta).mul_(grad_maps)  # g_m s_m^-beta
        # - 2 alpha beta / n * a_m * (sum of ratio_i over the maps i whose window holds m: the mirror window)
        _add_window_products_(grad_x, maps, ratio, -2.0 * alpha * beta / size, (size - 1) // 2, size // 2)
        return grad_x.to(grad.dtype).flatten(1, 2), None, None, None, None, None


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """fp32 for bf16/fp16 input: near k = 2 their spacing (1/64 for bf16) would swallow the sum."""
    return torch.float32 if x.dtype in (torch.bfloat16, torch.float16) else x.dtype


def _tower_view(x: torch.Tensor, towers: int) -> torch.Tensor:
    """(batch, channels, ...) as (batch, towers, channels per tower, ...), a view in any memory format."""
    return x.unflatten(1, (towers, x.shape[1] // towers))


def _add_window_(total: torch.Tensor, terms: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Add to ``total[..., i, ...]`` the ``terms`` of maps ``i - before .. i + after`` other than ``i``.

    Shifted slices of the map axis: windows are clipped at each tower's first and last map, never crossing
    into the next tower. ``total`` must already hold ``terms[i]`` (or ``terms[i]`` plus a constant).
    """
    maps = terms.shape[_MAP_DIM]
    for shift in range(1, min(before, maps - 1) + 1):
        total.narrow(_MAP_DIM, shift, maps - shift).add_(terms.narrow(_MAP_DIM, 0, maps - shift))
    for shift in range(1, min(after, maps - 1) + 1):
        total.narrow(_MAP_DIM, 0, maps - shift).add_(terms.narrow(_MAP_DIM, shift, maps - shift))
    return total


def _add_window_products_(
    total: torch.Tensor, factor: torch.Tensor, terms: torch.Tensor, value: float, before: int, after: int
) -> torch.Tensor:
    """Add ``value * factor[i] * terms[j]`` to ``total[i]`` for the maps ``j = i - before .. i + after``."""
    maps = terms.shape[_MAP_DIM]
    total.addcmul_(factor, terms, value=value)
    for shift in range(1, min(before, maps - 1) + 1):
        total.narrow(_MAP_DIM, shift, maps - shift).addcmul_(
            factor.narrow(_MAP_DIM, shift, maps - shift), terms.narrow(_MAP_DIM, 0, maps - shift), value=value
        )
    for shift in range(1, min(after, maps - 1) + 1):
        total.narrow(_MAP_DIM, 0, maps - shift).addcmul_(
            factor.narrow(_MAP_DIM, 0, maps - shift), terms.narrow(_MAP_DIM, shift, maps - shift), value=value
        )
    return total


def _inverse_power(scale: torch.Tensor, beta: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """``scale ** -beta`` into ``out``; the paper's beta = 3/4 as 1 / sqrt(s * sqrt(s)), cheaper than pow."""
    if beta == 0.75:
        return torch.sqrt(scale, out=out).mul_(scale).rsqrt_()
    return torch.pow(scale, -beta, out=out)
