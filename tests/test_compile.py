"""compile=true: torch.compile on the CPU; checkpoints keep the plain net's parameter names."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
from torch._dynamo.utils import counters

from src.config.compose import build_module, constant_rate_module
from src.models.alexnet import AlexNet
from src.models.classifier import compile_in_place, load_network
from src.runs.overrides import command_line
from tests.conftest import compose_train
from tests.helpers.trainers import quiet_trainer
from tests.test_precision import SIZE, SMALL, separable_batches, sgd


@pytest.mark.slow
def test_compiled_training_writes_plain_checkpoints(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch._dynamo.reset()
    counters.clear()
    module = constant_rate_module(AlexNet(2, towers=2, **SMALL), sgd, compile=True)
    plain_names = set(AlexNet(2, towers=2, **SMALL).state_dict())
    trainer = quiet_trainer(3)
    before = module.net.layer("conv1").weight.detach().clone()
    trainer.fit(module, train_dataloaders=separable_batches())
    assert counters["stats"]["unique_graphs"] > 0  # dynamo compiled the net's forward
    assert not torch.equal(before, module.net.layer("conv1").weight)

    path = tmp_path / "compiled.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    net_names = {k.removeprefix("net.") for k in saved if k.startswith("net.")}
    assert net_names == plain_names and not any("_orig_mod" in k for k in saved)
    loaded = load_network(path)  # an eager net, as eval.py builds it
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), module.net.eval()(x), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_compiled_gradients_match_eager() -> None:
    """Here torch 2.13's Inductor, left alone, gives zero gradients below pool5 (see compile_in_place)."""
    torch.manual_seed(0)
    eager = AlexNet(2, towers=2, **SMALL).eval()  # eval: no dropout, whose random masks differ when compiled
    compiled = AlexNet(2, towers=2, **SMALL).eval()
    compiled.load_state_dict(eager.state_dict())
    compile_in_place(compiled)
    x = torch.randn(4, 3, SIZE, SIZE)
    eager(x).square().sum().backward()
    compiled(x).square().sum().backward()
    for name in ("conv1", "conv2", "conv5", "fc6", "fc8"):
        expected = eager.layer(name).weight.grad
        assert expected.abs().sum() > 0
        torch.testing.assert_close(
            compiled.layer(name).weight.grad, expected, rtol=1e-3, atol=1e-5 * expected.abs().max()
        )


def test_compile_and_channels_last_come_from_the_config(tmp_path: Path) -> None:
    cfg = compose_train(["compile=true", "model.channels_last=true"], tmp_path)
    module = build_module(cfg)
    assert module.compile_net and module.net.channels_last
    assert not compose_train([], tmp_path).compile  # off by default
    assert command_line(["model.compile=true"]) == ["compile=true"]  # the old spelling
    net = hydra.utils.instantiate(compose_train([], tmp_path).model)
    assert build_module(compose_train([], tmp_path), net=net).compile_net is False
    assert build_module(compose_train(["compile=true"], tmp_path), net=net).compile_net
