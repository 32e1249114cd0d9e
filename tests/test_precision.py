"""bf16 mixed precision and channels_last: the same network, trained through Lightning on the CPU."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from src.config.compose import constant_rate_module
from src.models.alexnet import AlexNet
from src.models.classifier import TowerClassifier
from tests.helpers.trainers import quiet_trainer

SMALL = {"conv_widths": (16, 32, 48, 48, 32), "fc_width": 64}  # the paper's wiring at a fraction of its width
SIZE = 67  # conv1 11/4 (padding 2) -> 16 -> pool 7 -> 7 -> pool 3 -> pool5 1; the adaptive pool makes 6x6


def separable_batches(n: int = 32, seed: int = 0) -> DataLoader:
    """Two classes a small net learns in a few steps: images brighter or darker than average."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.randn(n, 3, SIZE, SIZE, generator=generator) + (labels.float() * 2 - 1).view(-1, 1, 1, 1)
    return DataLoader(TensorDataset(images, labels), batch_size=16, shuffle=False)


def sgd(params, **_):
    return torch.optim.SGD(params, lr=0.01, momentum=0.9)


def trainer(precision: str, steps: int) -> L.Trainer:
    return quiet_trainer(steps, devices=1, precision=precision)


def losses(module: TowerClassifier, data: DataLoader) -> list[float]:
    module.eval()
    with torch.no_grad():
        values = [module._step(batch)[0].item() for batch in data]
    module.train()
    return values


@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_mixed_trains_on_cpu(channels_last: bool) -> None:
    torch.manual_seed(0)
    module = constant_rate_module(AlexNet(2, towers=2, channels_last=channels_last, **SMALL), sgd)
    before = copy.deepcopy(module.net.state_dict())
    data = separable_batches()
    first = sum(losses(module, data))
    trainer("bf16-mixed", steps=12).fit(module, train_dataloaders=data)
    last = sum(losses(module, data))
    assert all(p.dtype == torch.float32 for p in module.net.parameters())  # mixed: fp32 master weights
    assert torch.isfinite(torch.tensor(last)) and last < first
    changed = [name for name, w in module.net.state_dict().items() if not torch.equal(w, before[name])]
    assert "features.conv1.weight" in changed and "classifier.fc8.weight" in changed


def test_channels_last_computes_the_same_network() -> None:
    torch.manual_seed(0)
    plain = AlexNet(3, towers=2, **SMALL)
    nhwc = AlexNet(3, towers=2, channels_last=True, **SMALL)
    nhwc.load_state_dict(plain.state_dict())
    assert nhwc.layer("conv2").weight.is_contiguous(memory_format=torch.channels_last)
    assert nhwc.config() == plain.config()  # a run option, not part of what the checkpoint rebuilds
    x = torch.randn(4, 3, SIZE, SIZE)
    out_plain, out_nhwc = plain.eval()(x), nhwc.eval()(x)
    torch.testing.assert_close(out_nhwc, out_plain, rtol=1e-4, atol=1e-5)
    out_plain.square().sum().backward()
    out_nhwc.square().sum().backward()
    for name in ("conv1", "conv2", "conv5", "fc6"):
        torch.testing.assert_close(
            nhwc.layer(name).weight.grad, plain.layer(name).weight.grad, rtol=1e-3, atol=1e-5
        )


def test_bf16_autocast_is_close_to_fp32() -> None:
    torch.manual_seed(0)
    net = AlexNet(2, towers=2, **SMALL).eval()
    x = torch.randn(8, 3, SIZE, SIZE)
    with torch.no_grad():
        fp32 = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = net(x)
    assert bf16.dtype == torch.bfloat16
    assert (bf16.float() - fp32).abs().max() < 0.05 * fp32.abs().max()
