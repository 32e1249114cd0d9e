"""The network: sizes, parameter counts, tower wiring (section 3.5), LRN (3.3) and initialisation (5)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from src.models.alexnet import AlexNet
from src.models.lrn import TowerLocalResponseNorm

THREE_TOWER = {"conv_widths": (96, 255, 384, 384, 255), "fc_width": 4095}  # conf/model/three_tower.yaml


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def capture(net: AlexNet, names: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs of the named layers for input ``x`` (eval mode: no dropout)."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        net.layer(name).register_forward_hook(
            lambda _m, _i, out, name=name: seen.__setitem__(name, out.clone())
        )
        for name in names
    ]
    with torch.no_grad():
        net.eval()(x)
    for hook in hooks:
        hook.remove()
    return seen


def test_parameter_counts_match_the_paper() -> None:
    assert n_params(AlexNet(num_classes=1000, towers=2)) == 60_965_224
    assert n_params(AlexNet(num_classes=2, towers=2)) == 56_876_418
    conv_params = sum(n_params(AlexNet(1000, 2).layer(f"conv{i}")) for i in range(1, 6))
    assert conv_params == 2_334_080


@pytest.mark.parametrize(("towers", "widths"), [(1, {}), (2, {}), (3, THREE_TOWER), (4, {})])
def test_shapes_for_each_tower_count(towers: int, widths: dict) -> None:
    net = AlexNet(num_classes=5, towers=towers, **widths)
    x = torch.randn(2, 3, 224, 224)
    sizes = {n: t.shape for n, t in capture(net, ["conv1", "conv2", "conv3", "conv4", "conv5"], x).items()}
    c1, c2, c3, c4, c5 = net.conv_widths
    assert sizes == {
        "conv1": (2, c1, 55, 55),
        "conv2": (2, c2, 27, 27),
        "conv3": (2, c3, 13, 13),
        "conv4": (2, c4, 13, 13),
        "conv5": (2, c5, 13, 13),
    }
    assert net(x).shape == (2, 5)
    assert net.layer("conv2").groups == towers and net.layer("conv3").groups == 1
    kernels = net.tower_kernels("conv1")
    assert len(kernels) == towers
    assert all(k.shape == (96 // towers, 3, 11, 11) for k in kernels)
    assert torch.equal(torch.cat(kernels), net.layer("conv1").weight)


def test_227_input_without_padding_gives_the_same_sizes() -> None:
    net = AlexNet(num_classes=2)
    net.features.conv1.padding = (0, 0)
    assert capture(net, ["conv1"], torch.randn(1, 3, 227, 227))["conv1"].shape == (1, 96, 55, 55)


def test_widths_that_towers_cannot_share_name_the_layer() -> None:
    with pytest.raises(ValueError, match=r"conv2 has 256 units, which 3 towers cannot share.*255 or 258"):
        AlexNet(num_classes=2, towers=3)
    with pytest.raises(ValueError, match="fc6 has 4097 units"):
        AlexNet(num_classes=2, towers=2, fc_width=4097)
    with pytest.raises(ValueError, match="model.init='xavier'"):
        AlexNet(num_classes=2, init="xavier")


def perturb_tower(x: torch.Tensor, tower: int, towers: int) -> torch.Tensor:
    """``x`` with the channels (or features) of ``tower`` replaced by noise."""
    y = x.clone()
    width = x.shape[1] // towers
    y[:, tower * width : (tower + 1) * width] = torch.randn_like(y[:, tower * width : (tower + 1) * width])
    return y


def tower_slice(x: torch.Tensor, tower: int, towers: int) -> torch.Tensor:
    width = x.shape[1] // towers
    return x[:, tower * width : (tower + 1) * width]


@pytest.mark.parametrize("towers", [2, 4])
@pytest.mark.parametrize("name", ["conv2", "conv4", "conv5"])
def test_own_tower_layers_ignore_other_towers(name: str, towers: int) -> None:
    torch.manual_seed(0)
    layer = AlexNet(num_classes=2, towers=towers).layer(name)
    x = torch.randn(2, layer.in_channels, 13, 13)
    changed = perturb_tower(x, tower=towers - 1, towers=towers)
    with torch.no_grad():
        before, after = layer(x), layer(changed)
    for t in range(towers - 1):
        assert torch.equal(tower_slice(before, t, towers), tower_slice(after, t, towers))
    assert not torch.allclose(tower_slice(before, towers - 1, towers), tower_slice(after, towers - 1, towers))


@pytest.mark.parametrize("name", ["conv3", "fc6", "fc7"])
def test_cross_tower_layers_see_every_tower(name: str) -> None:
    torch.manual_seed(0)
    layer = AlexNet(num_classes=2, towers=2).layer(name)
    shape = (2, layer.in_channels, 13, 13) if isinstance(layer, nn.Conv2d) else (2, layer.in_features)
    x = torch.randn(shape)
    with torch.no_grad():
        before, after = layer(x), layer(perturb_tower(x, tower=1, towers=2))
    assert not torch.allclose(tower_slice(before, 0, 2), tower_slice(after, 0, 2))


def test_whole_net_keeps_towers_apart_until_conv3() -> None:
    """Changing tower 1's conv1 kernels changes nothing in tower 0 before conv3, LRN and pooling included."""
    torch.manual_seed(0)
    net = AlexNet(num_classes=2, towers=2)
    x = torch.randn(2, 3, 224, 224)
    names = ["conv1", "conv2", "conv3"]
    before = capture(net, names, x)
    with torch.no_grad():
        net.layer("conv1").weight[48:] += 0.05 * torch.randn_like(net.layer("conv1").weight[48:])
    after = capture(net, names, x)
    for name in ("conv1", "conv2"):
        assert torch.equal(tower_slice(before[name], 0, 2), tower_slice(after[name], 0, 2)), name
        assert not torch.allclose(tower_slice(before[name], 1, 2), tower_slice(after[name], 1, 2)), name
    assert not torch.allclose(tower_slice(before["conv3"], 0, 2), tower_slice(after["conv3"], 0, 2))


def test_tower_lrn_is_torch_lrn_inside_each_tower() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 96, 7, 7) * 50  # large enough that the normalisation matters
    ours = TowerLocalResponseNorm(towers=2)(x)
    reference = nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)
    expected = torch.cat([reference(x[:, :48]), reference(x[:, 48:])], dim=1)
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=1e-6)
    # One tower is exactly torch's LRN over all channels, and the boundary differs from it for two towers.
    torch.testing.assert_close(TowerLocalResponseNorm(towers=1)(x), reference(x))
    assert not torch.allclose(ours[:, 46:50], reference(x)[:, 46:50])


def test_lrn_matches_the_cuda_convnet_formula() -> None:
    """b_i = a_i / (k + alpha/n * sum of a_j^2 over the n maps around i) ** beta (section 3.3)."""
    torch.manual_seed(0)
    a = torch.rand(1, 8, 2, 2, dtype=torch.float64) * 100
    b = TowerLocalResponseNorm(towers=1)(a)
    i = 3
    expected = a[0, i] / (2.0 + 1e-4 / 5 * (a[0, i - 2 : i + 3] ** 2).sum(0)) ** 0.75
    torch.testing.assert_close(b[0, i], expected)


def test_paper_initialisation() -> None:
    torch.manual_seed(0)
    net = AlexNet(num_classes=1000, towers=2, init="paper")
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        weight, bias = net.layer(name).weight, net.layer(name).bias
        assert abs(weight.mean().item()) < 1e-3, name
        assert weight.std().item() == pytest.approx(0.01, rel=0.05), name
        expected_bias = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        assert torch.all(bias == expected_bias), name


def test_kaiming_initialisation() -> None:
    torch.manual_seed(0)
    net = AlexNet(num_classes=2, towers=2, init="kaiming")
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"):
        layer = net.layer(name)
        fan_in = layer.weight[0].numel()
        assert layer.weight.std().item() == pytest.approx((2.0 / fan_in) ** 0.5, rel=0.1), name
        assert torch.all(layer.bias == 0), name
    # fc8 keeps N(0, 0.01), so untrained logits stay near unit scale (Kaiming there would give ~1.8).
    logits = net.eval()(torch.randn(8, 3, 224, 224))
    assert 0.3 < logits.std().item() < 1.3


def test_unknown_layer_and_fc8_have_no_tower() -> None:
    net = AlexNet(num_classes=2)
    with pytest.raises(KeyError, match="no layer 'conv9'"):
        net.layer("conv9")
    with pytest.raises(KeyError, match="fc8 belongs to no tower"):
        net.tower_kernels("fc8")
    assert [k.shape for k in net.tower_kernels("conv2")] == [(128, 48, 5, 5)] * 2


SMALL_WIDTHS = {"conv_widths": (96, 16, 16, 16, 16), "fc_width": 16}


def test_lrn_constants_are_model_config() -> None:
    """Caffe's weights need k = 1 (section 3.3: 2): n, k, alpha, beta reach both LRN layers and config()."""
    net = AlexNet(10, 2, lrn_size=3, lrn_k=1.0, lrn_alpha=2e-4, lrn_beta=0.5, **SMALL_WIDTHS)
    for norm in (net.features.norm1, net.features.norm2):
        assert (norm.towers, norm.size, norm.k, norm.alpha, norm.beta) == (2, 3, 1.0, 2e-4, 0.5)
    config = net.config()
    assert {k: config[k] for k in ("lrn_size", "lrn_k", "lrn_alpha", "lrn_beta", "lrn_after_pool")} == {
        "lrn_size": 3,
        "lrn_k": 1.0,
        "lrn_alpha": 2e-4,
        "lrn_beta": 0.5,
        "lrn_after_pool": False,
    }
    assert AlexNet(**config).config() == config


def test_a_config_from_before_the_lrn_keys_builds_the_paper_lrn() -> None:
    """Checkpoints written before the LRN keys existed hold no lrn_*: they rebuild what they computed."""
    paper = AlexNet(10, 2, **SMALL_WIDTHS).config()
    assert (paper["lrn_size"], paper["lrn_k"], paper["lrn_alpha"], paper["lrn_beta"]) == (5, 2.0, 1e-4, 0.75)
    old = {k: v for k, v in paper.items() if not k.startswith("lrn_")}
    assert AlexNet(**old).config() == paper


def test_caffenet_order_pools_before_normalising() -> None:
    torch.manual_seed(0)
    caffenet = AlexNet(10, 2, lrn_after_pool=True, lrn_k=1.0, **SMALL_WIDTHS).eval()
    names = list(caffenet.features._modules)
    assert names[:8] == ["conv1", "relu1", "pool1", "norm1", "conv2", "relu2", "pool2", "norm2"]
    assert caffenet.config()["lrn_after_pool"] is True
    alexnet = AlexNet(10, 2, lrn_k=1.0, **SMALL_WIDTHS).eval()
    alexnet.load_state_dict(caffenet.state_dict())  # the same parameter names in either order
    x = torch.rand(2, 3, 224, 224) * 100
    with torch.no_grad():
        a, b = alexnet(x), caffenet(x)
    assert a.shape == b.shape == (2, 10) and not torch.allclose(a, b)
