"""AlexNet with N towers, wired as in Krizhevsky, Sutskever & Hinton (NIPS 2012), section 3.5 and figure 2.

The paper split the net over two GTX 580s, one "tower" per GPU, and let the towers talk only at some layers.
With ``towers=2`` and the paper's table (``layers="paper"``, ``layer_table.PAPER``) this module is that net,
on one device, the towers written as grouped convolutions:

    layer  kernels (per tower)   size / stride    sees             then
    conv1  96 (2 x 48)           11x11 / 4 pad 2  the image        ReLU, LRN, max-pool 3/2
    conv2  256 (2 x 128)         5x5 / 1 pad 2    own tower only   ReLU, LRN, max-pool 3/2
    conv3  384 (2 x 192)         3x3 / 1 pad 1    all towers       ReLU
    conv4  384 (2 x 192)         3x3 / 1 pad 1    own tower only   ReLU
    conv5  256 (2 x 128)         3x3 / 1 pad 1    own tower only   ReLU, max-pool 3/2
    fc6    4096 (2 x 2048)                        all towers       ReLU (dropout on its input)
    fc7    4096 (2 x 2048)                        all towers       ReLU (dropout on its input)
    fc8    num_classes                            all towers

LRN: section 3.3 (see ``lrn.py``), n=5, k=2, alpha=1e-4, beta=0.75, inside each tower. Overlapping pooling:
section 3.4 (size 3, stride 2). Dropout: section 4.2. Initialisation: section 5 (``init="paper"``).
``layers="small64"`` is the same net for 56-pixel crops of 64-pixel photographs (``layer_table.SMALL_64``).

The LRN constants are arguments (``lrn_size``, ``lrn_k``, ``lrn_alpha``, ``lrn_beta``), because the
published Caffe weights were trained with Caffe's LRN, whose default ``k`` is 1, not the paper's 2
(``caffe_weights.py``, ``conf/model/bvlc_alexnet.yaml``). ``lrn_after_pool`` is CaffeNet's variant
(``bvlc_reference_caffenet``): conv1 and conv2 are pooled before they are normalised.

``avgpool`` (as in torchvision) is the identity at the table's input size, where ``forward`` skips it, and
lets other input sizes through. Tower ``t`` owns the ``t``-th equal slice of every layer's output channels
(and of fc6/fc7's neurons, as the paper put 2048 of each on a GPU). ``towers=1`` keeps the widths and
connects everything; ``towers=4`` splits each layer four ways.

With 1000 classes and two towers the paper's net has 60,965,224 parameters (section 3: "60 million").
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from src.models.layer_table import (
    CONV_NAMES,
    FC_NAMES,
    POOL_SIZE,
    POOL_STRIDE,
    LayerTable,
    layer_table,
)
from src.models.lrn import LRN_ALPHA, LRN_BETA, LRN_K, LRN_SIZE, TowerLocalResponseNorm

DROPOUT = 0.5  # section 4.2

# Section 5: "We initialized the weights in each layer from a zero-mean Gaussian distribution with standard
# deviation 0.01. We initialized the neuron biases in the second, fourth, and fifth convolutional layers, as
# well as in the fully-connected hidden layers, with the constant 1 ... the remaining layers with 0."
PAPER_INIT_STD = 0.01
PAPER_BIAS_ONE_LAYERS = ("conv2", "conv4", "conv5", "fc6", "fc7")
# kaiming_paper_conv1: He et al. 2015 everywhere but conv1, which keeps section 5's N(0, 0.01). Kaiming's
# conv1 std is sqrt(2 / 363) = 0.074: random kernels that large take far longer than a short run to wash
# out, so a Kaiming conv1 still looks (and scores) random after epochs of training (docs/training-
# defaults.md).
INIT_SCHEMES = ("paper", "kaiming", "kaiming_paper_conv1")

# Makes the exchange layer of the one-tower-per-process net (``tower_parallel.GatherTowers``) from whether
# its consumer is replicated on every rank (fc8) or split over them.
GatherFactory = Callable[[bool], nn.Module]


def build_stacks(
    table: LayerTable,
    towers: int,
    conv_widths: Sequence[int],
    fc_width: int,
    num_classes: int,
    dropout: float,
    lrn: dict[str, float],
    lrn_after_pool: bool,
    gather: GatherFactory | None = None,
) -> tuple[nn.Sequential, nn.Sequential]:
    """``features`` and ``classifier`` as ``table`` lays them out, for every tower at once or for one.

    ``gather=None``: all towers on one device, a layer that sees only its own tower as a grouped convolution
    (``groups=towers``). Otherwise one tower's share of every layer (``width / towers`` outputs), and before
    each layer that sees all towers a ``gather(replicated)`` module that brings every tower's inputs in.
    Module names (``conv1``, ``relu1``, ``norm1``, ``pool1``, ``gather2`` .., ``drop6``, ``fc6`` ..) are
    the same in both, so their state_dicts line up.
    """
    one_tower = gather is not None
    widths = dict(zip(CONV_NAMES, conv_widths, strict=True)) | {"fc6": fc_width, "fc7": fc_width}
    features: OrderedDict[str, nn.Module] = OrderedDict()
    classifier: OrderedDict[str, nn.Module] = OrderedDict()
    previous = 3  # all towers' outputs of the layer below (the image's channels for conv1)
    for index, layer in enumerate(table.layers, start=1):
        stack = features if layer.is_conv else classifier
        out = num_classes if layer.width is None else widths[layer.name]
        if layer.dropout_before:
            stack[f"drop{index}"] = nn.Dropout(dropout)
        if one_tower and layer.sees == "all":
            stack[f"gather{index - 1}"] = gather(layer.width is None)
        own = layer.sees == "own"
        out_here = out // towers if one_tower and layer.width is not None else out
        if layer.is_conv:
            in_here = previous // towers if one_tower and own else previous
            stack[layer.name] = nn.Conv2d(
                in_here,
                out_here,
                kernel_size=layer.size,
                stride=layer.stride,
                padding=layer.padding,
                groups=towers if own and not one_tower else 1,
            )
        else:
            fan_in = previous * table.pooled_size**2 if layer.name == "fc6" else previous
            stack[layer.name] = nn.Linear(fan_in, out_here)
        steps = list(layer.then)
        if lrn_after_pool and steps[1:3] == ["lrn", "pool"]:
            steps[1:3] = ["pool", "lrn"]
        for step in steps:
            if step == "relu":
                stack[f"relu{index}"] = nn.ReLU(inplace=True)
            elif step == "lrn":
                stack[f"norm{index}"] = TowerLocalResponseNorm(1 if one_tower else towers, **lrn)
            else:
                stack[f"pool{index}"] = nn.MaxPool2d(kernel_size=POOL_SIZE, stride=POOL_STRIDE)
        previous = out
    return nn.Sequential(features), nn.Sequential(classifier)


class AlexNet(nn.Module):
    """The 2012 network with ``towers`` towers (the paper's is ``towers=2``).

    Args:
        num_classes: outputs of fc8 (1000 for ImageNet).
        towers: number of towers; every width must divide by it.
        layers: the member of the family (``layer_table.TABLES``): ``paper`` (224 crops) or ``small64``.
        conv_widths: kernels of conv1..conv5, all towers together; ``None``: the table's.
        fc_width: neurons of fc6 and fc7, all towers together; ``None``: the table's.
        dropout: dropout probability on the inputs of fc6 and fc7.
        init: ``"paper"`` (section 5), ``"kaiming"`` (He et al. 2015, zero biases) or
            ``"kaiming_paper_conv1"`` (He's, except conv1 at section 5's N(0, 0.01)).
        lrn_size, lrn_k, lrn_alpha, lrn_beta: LRN's n, k, alpha, beta (section 3.3: 5, 2, 1e-4, 0.75; alpha
            in cuda-convnet's and Caffe's convention, divided by n: see ``lrn.py``).
        lrn_after_pool: pool conv1 and conv2 before normalising them (CaffeNet); the paper normalises first.
        channels_last: keep weights and activations in NHWC memory order (inputs are converted in
            ``forward``). The same outputs, within float rounding. On by default, as in
            ``conf/model/two_tower.yaml``. Not part of ``config()``: it says how to run the net, not what it
            is. (``torch.compile`` is the LightningModule's to apply.)
    """

    def __init__(
        self,
        num_classes: int,
        towers: int = 2,
        layers: str = "paper",
        conv_widths: Sequence[int] | None = None,
        fc_width: int | None = None,
        dropout: float = DROPOUT,
        init: str = "kaiming_paper_conv1",
        lrn_size: int = LRN_SIZE,
        lrn_k: float = LRN_K,
        lrn_alpha: float = LRN_ALPHA,
        lrn_beta: float = LRN_BETA,
        lrn_after_pool: bool = False,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        table = layer_table(layers)
        conv_widths = table.conv_widths if conv_widths is None else tuple(int(w) for w in conv_widths)
        fc_width = table.fc_width if fc_width is None else int(fc_width)
        _check_widths(towers, conv_widths, fc_width, num_classes)
        if init not in INIT_SCHEMES:
            raise ValueError(f"model.init={init!r} is not known; choose one of {', '.join(INIT_SCHEMES)}")
        self.num_classes = num_classes
        self.towers = towers
        self.layers = layers
        self.pooled_size = table.pooled_size
        self.conv_widths = conv_widths
        self.fc_width = fc_width
        self.dropout = dropout
        lrn = {"size": lrn_size, "alpha": lrn_alpha, "beta": lrn_beta, "k": lrn_k}
        features, classifier = build_stacks(
            table, towers, conv_widths, fc_width, num_classes, dropout, lrn, lrn_after_pool
        )
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((self.pooled_size, self.pooled_size))
        self.classifier = classifier
        self.init = init
        self.reset_parameters(init)
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.features(x)
        if x.shape[-2:] != (self.pooled_size, self.pooled_size):  # the identity at the table's size: skip it
            x = self.avgpool(x)
        return self.classifier(torch.flatten(x, 1))

    def config(self) -> dict[str, Any]:
        """The constructor's arguments: enough to rebuild this net from a checkpoint's weights."""
        return network_config(self)

    def layer(self, name: str) -> nn.Conv2d | nn.Linear:
        """The conv or fc layer called ``name`` (``conv1`` .. ``conv5``, ``fc6`` .. ``fc8``)."""
        return named_layer(self, name)

    def tower_kernels(self, name: str = "conv1") -> list[torch.Tensor]:
        """Each tower's slice of a layer's weights, detached: ``towers`` tensors split on output channels.

        For ``conv1`` of the paper's net: two tensors of shape (48, 3, 11, 11), the kernels of figure 3.
        """
        weight = tower_layer_weight(self, name)
        return list(weight.chunk(self.towers, dim=0))

    @torch.no_grad()
    def reset_parameters(self, init: str) -> None:
        """Initialise every conv and fc layer by ``init`` (see the class docstring)."""
        for name in CONV_NAMES + FC_NAMES:
            layer = self.layer(name)
            if init == "paper":
                nn.init.normal_(layer.weight, mean=0.0, std=PAPER_INIT_STD)
                nn.init.constant_(layer.bias, 1.0 if name in PAPER_BIAS_ONE_LAYERS else 0.0)
            elif name == "fc8" or (name == "conv1" and init == "kaiming_paper_conv1"):
                # Logits start small and unbiased, so the first loss is log(num_classes).
                nn.init.normal_(layer.weight, mean=0.0, std=PAPER_INIT_STD)
                nn.init.zeros_(layer.bias)
            else:
                nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(layer.bias)


def network_config(net: nn.Module) -> dict[str, Any]:
    """``AlexNet``'s constructor arguments, read from ``net`` (an ``AlexNet`` or one tower of it).

    The LRN constants and order are read from the ``norm1`` layer itself, so the config says what the net
    computes. Checkpoints written before these keys existed (``layers``, the LRN's) rebuild with the
    defaults, which are what those nets computed.
    """
    norm = net.features.norm1
    names = list(net.features._modules)
    return {
        "num_classes": net.num_classes,
        "towers": net.towers,
        "layers": getattr(net, "layers", "paper"),
        "conv_widths": list(net.conv_widths),
        "fc_width": net.fc_width,
        "dropout": net.dropout,
        "init": net.init,
        "lrn_size": norm.size,
        "lrn_k": norm.k,
        "lrn_alpha": norm.alpha,
        "lrn_beta": norm.beta,
        "lrn_after_pool": names.index("pool1") < names.index("norm1"),
    }


def tower_layer_weight(net: nn.Module, name: str) -> torch.Tensor:
    """The detached weight of layer ``name``, which must belong to the towers (fc8 does not)."""
    if name == "fc8":
        raise KeyError("fc8 belongs to no tower: its outputs are the classes")
    return named_layer(net, name).weight.detach()


def named_layer(net: nn.Module, name: str) -> nn.Conv2d | nn.Linear:
    """Layer ``name`` of a net laid out as ``features.conv1..conv5`` and ``classifier.fc6..fc8``."""
    if name in CONV_NAMES:
        return getattr(net.features, name)
    if name in FC_NAMES:
        return getattr(net.classifier, name)
    raise KeyError(f"no layer {name!r}; layers are {', '.join(CONV_NAMES + FC_NAMES)}")


def _check_widths(towers: int, conv_widths: tuple[int, ...], fc_width: int, num_classes: int) -> None:
    if towers < 1:
        raise ValueError(f"model.towers must be at least 1, got {towers}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if len(conv_widths) != len(CONV_NAMES):
        raise ValueError(
            f"model.conv_widths needs {len(CONV_NAMES)} widths (conv1..conv5), got {conv_widths}"
        )
    widths = dict(zip(CONV_NAMES, conv_widths, strict=True)) | {"fc6": fc_width, "fc7": fc_width}
    for name, width in widths.items():
        if width % towers:
            lower, upper = width - width % towers, width - width % towers + towers
            raise ValueError(
                f"{name} has {width} units, which {towers} towers cannot share equally "
                f"({width} % {towers} = {width % towers}); use a width divisible by {towers}, "
                f"e.g. {lower or upper} or {upper} (model widths: conv {list(conv_widths)}, fc {fc_width})"
            )
