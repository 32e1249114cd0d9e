"""Tower LRN (section 3.3): the C++ kernel and the eager version against torch's LocalResponseNorm, per tower.

Every behaviour test runs twice: ``kernel=True`` (csrc/tower_lrn.cpp, the CPU default) and ``kernel=False``
(the eager torch version used on GPUs, under torch.compile and where no compiler is found).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from src.models.lrn import (
    LRN_ALPHA,
    LRN_BETA,
    LRN_K,
    LRN_SIZE,
    TowerLocalResponseNorm,
    kernel_applies,
    reference_local_response_norm,
    tower_local_response_norm,
)
from src.models.lrn_kernel import kernel_ops

IMPLEMENTATIONS = pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "eager"])

# (shape, towers, size): conv1-like, odd channel counts, batch 1, an even window, a window wider than a tower,
# 1-d and 3-d "spatial" dims.
CASES = [
    ((2, 96, 7, 7), 2, LRN_SIZE),
    ((2, 96, 7, 7), 1, LRN_SIZE),
    ((1, 7, 5, 3), 1, LRN_SIZE),
    ((3, 15, 4, 6), 3, LRN_SIZE),
    ((1, 33, 2, 2), 1, 4),
    ((2, 12, 3, 3), 4, 7),
    ((2, 10, 6), 2, LRN_SIZE),
    ((2, 6, 3, 3, 3), 2, LRN_SIZE),
]


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def forward_backward(fn, x: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_()
    out = fn(x)
    out.backward(grad)
    return out.detach(), x.grad


def test_the_kernel_is_built_and_used_for_cpu_float_tensors() -> None:
    """The speed targets rest on it: a machine with a C++ compiler must build it (no silent fallback here)."""
    assert kernel_ops() is not None
    assert kernel_applies(torch.zeros(1, 2, 1, 1)) and kernel_applies(torch.zeros(1, 2, 1, 1).bfloat16())
    assert not kernel_applies(torch.zeros(1, 2, 1, 1, dtype=torch.float64))  # gradcheck's dtype: eager
    x = (torch.rand(1, 8, 2, 2) * 50).requires_grad_()
    assert "alexnet_towers_lrn_forward" in type(tower_local_response_norm(x, 2).grad_fn).__name__
    assert type(tower_local_response_norm(x, 2, kernel=False).grad_fn).__name__ == "_TowerLRNBackward"


@IMPLEMENTATIONS
@pytest.mark.parametrize(("shape", "towers", "size"), CASES, ids=[f"{s}-t{t}-n{n}" for s, t, n in CASES])
def test_matches_torch_lrn_forward_and_backward(
    shape: tuple[int, ...], towers: int, size: int, kernel: bool
) -> None:
    torch.manual_seed(0)
    x = torch.rand(shape) * 60  # ReLU outputs, large enough that the normalisation matters (scale up to ~5)
    grad = torch.randn(shape)
    ours = forward_backward(lambda t: tower_local_response_norm(t, towers, size, kernel=kernel), x, grad)
    if towers == 1:
        expected = forward_backward(
            lambda t: F.local_response_norm(t, size, LRN_ALPHA, LRN_BETA, LRN_K), x, grad
        )
    else:  # torch's LRN on each tower's channels alone
        expected = forward_backward(lambda t: reference_local_response_norm(t, towers, size), x, grad)
    assert relative_error(ours[0], expected[0]) < 1e-5
    assert relative_error(ours[1], expected[1]) < 1e-5
    assert not torch.allclose(ours[0], x * LRN_K**-LRN_BETA, rtol=1e-3)  # the sum did matter
    if x.dim() == 4:  # the same in channels_last, which the kernel reads along each pixel's maps
        cl = torch.channels_last
        nhwc = forward_backward(
            lambda t: tower_local_response_norm(t, towers, size, kernel=kernel),
            x.contiguous(memory_format=cl),
            grad.contiguous(memory_format=cl),
        )
        assert relative_error(nhwc[0], expected[0]) < 1e-5
        assert relative_error(nhwc[1], expected[1]) < 1e-5


def test_reference_is_torch_lrn_on_each_tower() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 96, 5, 5) * 50
    torch_lrn = torch.nn.LocalResponseNorm(LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K)
    expected = torch.cat([torch_lrn(x[:, :48]), torch_lrn(x[:, 48:])], dim=1)
    torch.testing.assert_close(reference_local_response_norm(x, towers=2), expected)


def test_gradcheck_in_float64() -> None:
    torch.manual_seed(0)
    for towers, size, beta in [(2, 5, 0.75), (1, 4, 0.6), (3, 3, 1.0)]:
        x = (torch.rand(2, 12, 3, 2, dtype=torch.float64) * 40).requires_grad_()
        # alpha 1e-2 makes the second (neighbour) term of the gradient large enough to check.
        assert torch.autograd.gradcheck(
            lambda t, n=size, b=beta, w=towers: tower_local_response_norm(t, w, n, 1e-2, b), (x,)
        )


@IMPLEMENTATIONS
def test_towers_never_see_each_other(kernel: bool) -> None:
    """Changing tower 1's maps changes nothing in tower 0's output or gradients, even at the boundary."""
    torch.manual_seed(0)
    x = torch.rand(2, 96, 4, 4) * 50
    grad = torch.randn_like(x)
    lrn = TowerLocalResponseNorm(towers=2, kernel=kernel)
    out, x_grad = forward_backward(lrn, x, grad)
    changed = x.clone()
    changed[:, 48:] *= 3
    out2, x_grad2 = forward_backward(lrn, changed, grad)
    assert torch.equal(out[:, :48], out2[:, :48]) and torch.equal(x_grad[:, :48], x_grad2[:, :48])
    assert not torch.allclose(out[:, 48:], out2[:, 48:])
    # One LRN over all 96 maps would let maps 46-47 see maps 48-49.
    whole = F.local_response_norm(x, LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K)
    assert not torch.allclose(out[:, 46:48], whole[:, 46:48], rtol=1e-6, atol=0)


@IMPLEMENTATIONS
@pytest.mark.parametrize("towers", [1, 2])
def test_channels_last_input_gives_the_same_result_in_the_same_layout(kernel: bool, towers: int) -> None:
    torch.manual_seed(0)
    x = torch.rand(3, 96, 7, 5) * 50
    grad = torch.randn_like(x)
    lrn = TowerLocalResponseNorm(towers=towers, kernel=kernel)
    out, x_grad = forward_backward(lrn, x, grad)
    cl = torch.channels_last
    out_cl, x_grad_cl = forward_backward(
        lrn, x.contiguous(memory_format=cl), grad.contiguous(memory_format=cl)
    )
    assert out_cl.is_contiguous(memory_format=cl) and x_grad_cl.is_contiguous(memory_format=cl)
    torch.testing.assert_close(out_cl, out)
    torch.testing.assert_close(x_grad_cl, x_grad)
    expected = reference_local_response_norm(x, towers)
    assert relative_error(out_cl, expected) < 1e-5


def test_kernel_and_eager_agree_on_conv_sized_activations() -> None:
    """conv1's and conv2's maps per tower (48, 128) on small pictures, both layouts, 1e-5 relative."""
    torch.manual_seed(0)
    for shape in [(4, 96, 11, 11), (4, 256, 5, 5)]:
        x = torch.rand(shape) * 40
        grad = torch.randn(shape)
        for layout in (torch.contiguous_format, torch.channels_last):
            xs, gs = x.contiguous(memory_format=layout), grad.contiguous(memory_format=layout)
            fast = forward_backward(lambda t: tower_local_response_norm(t, 2), xs, gs)
            eager = forward_backward(lambda t: tower_local_response_norm(t, 2, kernel=False), xs, gs)
            assert relative_error(fast[0], eager[0]) < 1e-5 and relative_error(fast[1], eager[1]) < 1e-5


@IMPLEMENTATIONS
def test_bf16_input_is_normalised_in_fp32_and_returned_in_bf16(kernel: bool) -> None:
    torch.manual_seed(0)
    x = (torch.rand(2, 96, 6, 6) * 60).bfloat16()
    grad = torch.randn(2, 96, 6, 6).bfloat16()
    out, x_grad = forward_backward(lambda t: tower_local_response_norm(t, 2, kernel=kernel), x, grad)
    assert out.dtype == torch.bfloat16 and x_grad.dtype == torch.bfloat16
    # The reference: the same bf16 values, normalised in fp64.
    ref_out, ref_grad = forward_backward(
        lambda t: reference_local_response_norm(t, 2), x.double(), grad.double()
    )
    torch.testing.assert_close(out.double(), ref_out, rtol=8e-3, atol=1e-3)  # bf16 keeps ~3 digits
    torch.testing.assert_close(x_grad.double(), ref_grad, rtol=8e-3, atol=1e-3)
    # Near k = 2 bf16 cannot tell 2 from 2 + 2e-5 * sum (its spacing there is 1/64): the scale is computed in
    # fp32, so the bf16 output is the fp32 result of the same inputs, rounded once.
    assert torch.equal(out, tower_local_response_norm(x.float(), 2, kernel=kernel).bfloat16())


@IMPLEMENTATIONS
def test_under_autocast_a_conv_relu_lrn_block_trains(kernel: bool) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 16, 3)
    x = torch.randn(2, 3, 9, 9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = TowerLocalResponseNorm(towers=2, kernel=kernel)(torch.relu(conv(x)))
    assert out.dtype == torch.bfloat16
    out.float().square().sum().backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()
    assert conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("kernel", "new_tensors"), [(True, 0), (False, 1)], ids=["kernel", "eager"])
def test_backward_keeps_at_most_one_extra_activation(kernel: bool, new_tensors: int) -> None:
    """fp32: the input and output are alive anyway (ReLU before, max-pool after). The kernel saves only the
    input; the eager version also keeps the scale."""
    x = (torch.rand(2, 96, 5, 5) * 50).requires_grad_()
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = tower_local_response_norm(x, 2, kernel=kernel)
    storages = {t.untyped_storage().data_ptr() for t in saved}
    known = {x.untyped_storage().data_ptr(), out.untyped_storage().data_ptr()}
    assert saved and len(storages - known) == new_tensors


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_torch_compile_calls_the_kernel_inside_one_graph(layout: torch.memory_format) -> None:
    """Fake kernels let Dynamo and AOTAutograd trace the op: one graph, the kernel in it, eager's numbers."""
    graphs: list[str] = []

    def recording_backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):  # noqa: ANN202
        graphs.append(gm.code)
        return gm.forward

    torch.manual_seed(0)
    x = (torch.rand(2, 96, 5, 5) * 50).contiguous(memory_format=layout)
    grad = torch.randn(2, 96, 5, 5).contiguous(memory_format=layout)
    lrn = TowerLocalResponseNorm(2)
    torch._dynamo.reset()
    compiled = forward_backward(torch.compile(lrn, backend=recording_backend), x, grad)
    assert len(graphs) == 1 and "alexnet_towers_lrn.forward" in graphs[0]
    eager = forward_backward(lrn, x, grad)
    assert torch.equal(compiled[0], eager[0]) and torch.equal(compiled[1], eager[1])
    torch._dynamo.reset()
    through_aot = forward_backward(torch.compile(lrn, backend="aot_eager"), x, grad)  # the fake backward too
    assert torch.equal(through_aot[0], eager[0]) and torch.equal(through_aot[1], eager[1])


def test_the_kernel_rejects_what_it_cannot_compute() -> None:
    ops = kernel_ops()
    with pytest.raises(RuntimeError, match="float32, bfloat16 or float16"):
        ops.forward(torch.zeros(1, 4, 2, 2, dtype=torch.float64), 2, 5, 1e-4, 0.75, 2.0)
    with pytest.raises(RuntimeError, match="6 channels do not split into 4 towers"):
        ops.forward(torch.zeros(1, 6, 2, 2), 4, 5, 1e-4, 0.75, 2.0)
    with pytest.raises(RuntimeError, match="must match the input"):
        ops.backward(torch.zeros(1, 4, 2, 3), torch.zeros(1, 4, 2, 2), 2, 5, 1e-4, 0.75, 2.0)


@IMPLEMENTATIONS
def test_caffe_k_of_1_matches_torch_lrn_forward_and_backward(kernel: bool) -> None:
    """Caffe's LRN (k = 1: BVLC's AlexNet and CaffeNet) in both implementations, inside each tower."""
    torch.manual_seed(0)
    x = torch.rand(2, 96, 5, 5) * 60
    grad = torch.randn(x.shape)
    ours = forward_backward(
        lambda t: tower_local_response_norm(t, 2, 5, 1e-4, 0.75, 1.0, kernel=kernel), x, grad
    )
    per_tower = forward_backward(lambda t: reference_local_response_norm(t, 2, 5, 1e-4, 0.75, 1.0), x, grad)
    assert relative_error(ours[0], per_tower[0]) < 1e-5 and relative_error(ours[1], per_tower[1]) < 1e-5
    whole = F.local_response_norm(x[:, 48:], 5, 1e-4, 0.75, 1.0)
    assert relative_error(ours[0][:, 48:], whole) < 1e-5
    paper = tower_local_response_norm(x, 2, kernel=kernel)  # k = 2
    assert not torch.allclose(ours[0], paper, rtol=1e-2)
