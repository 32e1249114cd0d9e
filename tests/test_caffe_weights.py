"""Published weights in caffe-tensorflow's NumPy format (``bvlc_alexnet.npy``): import, export, errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from src.models.alexnet import AlexNet
from src.models.caffe_weights import (
    CAFFE_LRN,
    CaffeWeightsError,
    alexnet_from_caffe_weights,
    caffe_arrays,
    caffe_pixel_statistics,
    load_caffe_arrays,
    network_config_for,
    pretrained_alexnet,
    read_caffe_weights,
    write_caffe_weights,
)

#: A small two-tower net: conv1 as the paper's (96 kernels, 2 x 48), every later layer narrow.
SMALL = {"num_classes": 10, "towers": 2, "conv_widths": (96, 16, 16, 16, 8), "fc_width": 16} | CAFFE_LRN
#: bvlc_alexnet.npy's shapes: conv (kh, kw, in_channels / group, out_channels), fc (in, out).
BVLC_SHAPES = {
    "conv1": (11, 11, 3, 96),
    "conv2": (5, 5, 48, 256),
    "conv3": (3, 3, 256, 384),
    "conv4": (3, 3, 192, 384),
    "conv5": (3, 3, 192, 256),
    "fc6": (9216, 4096),
    "fc7": (4096, 4096),
    "fc8": (4096, 1000),
}


def seeded(seed: int = 0, **config: object) -> AlexNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AlexNet(**(SMALL | config)).eval()


def save_like_the_converter(path: Path, layers: dict[str, list[np.ndarray]]) -> Path:
    """The file format, written by hand: ``np.save`` of a pickled dict, layer -> [weights, biases]."""
    np.save(path, np.array(layers, dtype=object), allow_pickle=True)
    return path


def zero_layers(net: AlexNet) -> dict[str, list[np.ndarray]]:
    """All-zero weights and biases for ``net`` in the file's layout (the shapes written out here)."""
    c1, c2, c3, c4, c5 = net.conv_widths
    g = net.towers
    shapes = {
        "conv1": (11, 11, 3, c1),
        "conv2": (5, 5, c1 // g, c2),
        "conv3": (3, 3, c2, c3),
        "conv4": (3, 3, c3 // g, c4),
        "conv5": (3, 3, c4 // g, c5),
        "fc6": (6 * 6 * c5, net.fc_width),
        "fc7": (net.fc_width, net.fc_width),
        "fc8": (net.fc_width, net.num_classes),
    }
    return {name: [np.zeros(s, np.float32), np.zeros(s[-1], np.float32)] for name, s in shapes.items()}


def test_round_trip_of_the_full_two_tower_net(tmp_path: Path) -> None:
    """AlexNet(towers=2, num_classes=1000) -> bvlc_alexnet.npy's format -> a new net: the same outputs."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = AlexNet(1000, towers=2, **CAFFE_LRN).eval()
    path = write_caffe_weights(net, tmp_path / "bvlc_alexnet.npy")

    raw = np.load(path, allow_pickle=True, encoding="latin1").item()
    assert {name: tuple(raw[name][0].shape) for name in raw} == BVLC_SHAPES
    assert all(isinstance(raw[name], list) and raw[name][1].shape == (BVLC_SHAPES[name][-1],) for name in raw)

    imported = alexnet_from_caffe_weights(path)
    assert imported.config() == net.config()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1)) * 50
    with torch.no_grad():
        difference = (imported(x) - net(x)).abs().max().item()
    print(f"round trip: largest output difference {difference:.3g}")
    assert difference <= 1e-5
    for name, value in net.state_dict().items():
        assert torch.equal(imported.state_dict()[name], value), name


def test_round_trip_of_a_small_net_is_exact(tmp_path: Path) -> None:
    net = seeded(3)
    imported = alexnet_from_caffe_weights(write_caffe_weights(net, tmp_path / "small.npy"))
    assert imported.config() == net.config()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (imported(x) - net(x)).abs().max().item() <= 1e-5


def test_a_tower_1_blue_kernel_lands_in_tower_1_blue(tmp_path: Path) -> None:
    net = seeded()
    layers = zero_layers(net)
    layers["conv1"][0][3, 4, 0, 50] = 1.0  # (row, column, B of BGR, kernel 50 = tower 1's third kernel)
    imported = alexnet_from_caffe_weights(save_like_the_converter(tmp_path / "blue.npy", layers))

    tower0, tower1 = imported.tower_kernels("conv1")
    assert tower0.abs().sum() == 0
    assert tower1[2, 2, 3, 4] == 1.0  # RGB: blue is channel 2
    assert tower1.abs().sum() == 1.0

    exported = caffe_arrays(imported)["conv1"][0]
    assert exported[3, 4, 0, 50] == 1.0 and np.abs(exported).sum() == 1.0


def test_grouped_layers_keep_caffe_group_g_in_tower_g(tmp_path: Path) -> None:
    net = seeded()
    layers = zero_layers(net)
    layers["conv2"][0][1, 2, 5, 12] = 1.0  # output 12 (group 1 of 2 x 8) reads its group's input 5
    imported = alexnet_from_caffe_weights(save_like_the_converter(tmp_path / "groups.npy", layers))
    weight = imported.layer("conv2").weight
    assert weight[12, 5, 1, 2] == 1.0 and weight.abs().sum() == 1.0
    # A grouped conv's output 12 (tower 1) reads conv1 maps 48 + 5: tower 1's own.
    x = torch.zeros(1, 96, 9, 9)
    x[0, 48 + 5, 4, 4] = 1.0
    assert imported.layer("conv2")(x)[0, 12].abs().sum() > 0


def test_fc6_inputs_are_in_row_column_channel_order_in_the_file(tmp_path: Path) -> None:
    """The file's fc6 multiplies an NHWC-flattened pool5 (TensorFlow's), ours a NCHW-flattened one."""
    net = seeded()
    layers = zero_layers(net)
    generator = np.random.default_rng(0)
    layers["fc6"][0] = generator.standard_normal(layers["fc6"][0].shape).astype(np.float32)
    imported = alexnet_from_caffe_weights(save_like_the_converter(tmp_path / "fc6.npy", layers))
    pool5 = torch.randn(1, net.conv_widths[-1], 6, 6)
    theirs = pool5.permute(0, 2, 3, 1).flatten(1) @ torch.from_numpy(layers["fc6"][0])
    with torch.no_grad():
        ours = imported.layer("fc6")(pool5.flatten(1))
    assert torch.allclose(ours, theirs, atol=1e-4)


def test_both_converter_layouts_are_read(tmp_path: Path) -> None:
    net = seeded()
    lists = {name: [w, b] for name, (w, b) in caffe_arrays(net).items()}
    dicts = {name: {"weights": w, "biases": b} for name, (w, b) in lists.items()}
    a = read_caffe_weights(save_like_the_converter(tmp_path / "lists.npy", lists))
    b = read_caffe_weights(save_like_the_converter(tmp_path / "dicts.npy", dicts))
    assert a.keys() == b.keys() == set(BVLC_SHAPES)
    assert all(np.array_equal(a[k][0], b[k][0]) and np.array_equal(a[k][1], b[k][1]) for k in a)


def test_the_network_is_read_from_the_file_shapes(tmp_path: Path) -> None:
    net = seeded()
    config = network_config_for(caffe_arrays(net))
    assert config == {
        "num_classes": 10,
        "towers": 2,
        "conv_widths": [96, 16, 16, 16, 8],
        "fc_width": 16,
        "lrn_size": 5,
        "lrn_k": 1.0,
        "lrn_alpha": 1e-4,
        "lrn_beta": 0.75,
    }
    assert network_config_for(caffe_arrays(net), lrn_after_pool=True)["lrn_after_pool"] is True


def test_a_missing_layer_is_named_with_the_shape_expected(tmp_path: Path) -> None:
    net = seeded()
    layers = zero_layers(net)
    del layers["fc7"]
    path = save_like_the_converter(tmp_path / "no_fc7.npy", layers)
    with pytest.raises(CaffeWeightsError) as error:
        load_caffe_arrays(seeded(), read_caffe_weights(path), source=path)
    message = str(error.value)
    assert str(path) in message
    assert "layer 'fc7' is missing" in message and "expected weights of shape (16, 16) (in, out)" in message


def test_a_wrong_shape_is_named_with_the_shape_found_and_expected(tmp_path: Path) -> None:
    net = seeded()
    layers = zero_layers(net)
    layers["conv2"][0] = np.zeros((5, 5, 96, 16), np.float32)  # ungrouped: 96 inputs where a group sees 48
    layers["fc8"][1] = np.zeros(7, np.float32)
    path = save_like_the_converter(tmp_path / "ungrouped.npy", layers)
    before = net.layer("conv1").weight.clone()
    with pytest.raises(CaffeWeightsError) as error:
        load_caffe_arrays(net, read_caffe_weights(path), source=path)
    message = str(error.value)
    assert re.search(
        r"layer 'conv2': weights have shape \(5, 5, 96, 16\), expected \(5, 5, 48, 16\) "
        r"\(kh, kw, in_channels / group, out_channels\)",
        message,
    )
    assert "layer 'fc8': biases have shape (7,), expected (10,)" in message
    assert torch.equal(net.layer("conv1").weight, before)  # nothing copied


def test_a_file_that_is_not_a_dict_of_layers_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "array.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(CaffeWeightsError, match="not a dict"):
        read_caffe_weights(path)
    path = save_like_the_converter(tmp_path / "odd.npy", {"conv1": [np.zeros(3)]})
    with pytest.raises(CaffeWeightsError, match="layer 'conv1' is not \\[weights, biases\\]"):
        read_caffe_weights(path)
    with pytest.raises(FileNotFoundError, match="nothing.npy"):
        read_caffe_weights(tmp_path / "nothing.npy")


def test_pretrained_net_keeps_a_fresh_fc8_for_a_new_task(tmp_path: Path) -> None:
    source = seeded(5)
    path = write_caffe_weights(source, tmp_path / "source.npy")
    args = {k: v for k, v in SMALL.items() if k != "num_classes"}

    same = pretrained_alexnet(path, 10, **args)
    for name in ("conv1", "conv5", "fc7", "fc8"):
        assert torch.equal(same.layer(name).weight, source.layer(name).weight), name

    new_task = pretrained_alexnet(path, 2, **args)
    assert new_task.num_classes == 2 and new_task.layer("fc8").weight.shape == (2, 16)
    assert torch.equal(new_task.layer("fc7").weight, source.layer("fc7").weight)

    with pytest.raises(CaffeWeightsError, match="layer 'conv2'"):
        pretrained_alexnet(path, 10, **(args | {"conv_widths": (96, 32, 16, 16, 8)}))


def test_caffe_pixel_statistics_are_its_mean_pixel_in_rgb() -> None:
    mean, std = caffe_pixel_statistics()
    assert mean.tolist() == pytest.approx([122.68, 116.67, 104.01], abs=0.01)
    assert std.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.slow
def test_fine_tuning_starts_from_the_file(tmp_path: Path, train_cli) -> None:
    """``src/train.py model=bvlc_alexnet model.pretrained=...``: with lr 0 the checkpoint is the file."""
    from tests.test_train import TINY_DATA, run_dir

    source = seeded(2, num_classes=2)
    weights = write_caffe_weights(source, tmp_path / "bvlc_alexnet_small.npy")
    result = train_cli(
        *TINY_DATA,
        f"data.root={tmp_path / 'synthetic'}",
        "model=bvlc_alexnet",
        f"model.pretrained={weights}",
        "model.conv_widths=[96,16,16,16,8]",
        "model.fc_width=16",
        "data.normalize=mean",
        "optimizer.lr=0",
        "trainer.max_epochs=1",
        "logger=csv",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = torch.load(run_dir(tmp_path) / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["net_config"]["lrn_k"] == 1.0
    trained = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    for name, value in source.state_dict().items():
        assert torch.equal(trained[name], value), name
