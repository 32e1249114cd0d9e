"""AlexNet with N towers, wired as in Krizhevsky, Sutskever & Hinton (NIPS 2012), section 3.5 and figure 2.

The paper split the net over two GTX 580s, one "tower" per GPU, and let the towers talk only at some layers.
With ``towers=2`` and the paper's widths this module is that net, on one device, the towers written as
grouped convolutions:

    layer  kernels (per tower)   size/stride  sees                    then
    conv1  96  (2 x 48)          11x11 / 4    the image               ReLU, LRN, max-pool 3/2
    conv2  256 (2 x 128)         5x5 pad 2    own tower only          ReLU, LRN, max-pool 3/2
    conv3  384 (2 x 192)         3x3 pad 1    both towers             ReLU
    conv4  384 (2 x 192)         3x3 pad 1    own tower only          ReLU
    conv5  256 (2 x 128)         3x3 pad 1    own tower only          ReLU, max-pool 3/2
    fc6    4096 (2 x 2048)                    both towers             ReLU   (dropout 0.5 on its input)
    fc7    4096 (2 x 2048)                    both towers             ReLU   (dropout 0.5 on its input)
    fc8    num_classes                        both towers             (softmax in the loss)

LRN: section 3.3 (see ``lrn.py``), n=5, k=2, alpha=1e-4, beta=0.75, inside each tower. Overlapping pooling:
section 3.4 (size 3, stride 2). Dropout: section 4.2. Initialisation: section 5 (``init="paper"``).

The LRN constants are arguments (``lrn_size``, ``lrn_k``, ``lrn_alpha``, ``lrn_beta``), because the
published Caffe weights were trained with Caffe's LRN, whose default ``k`` is 1, not the paper's 2
(``caffe_weights.py``, ``conf/model/bvlc_alexnet.yaml``). ``lrn_after_pool`` is CaffeNet's variant
(``bvlc_reference_caffenet``): conv1 and conv2 are pooled before they are normalised.

Input: 224x224 crops (section 4.1) with 2 pixels of zero padding at conv1, so (224 + 4 - 11) // 4 + 1 = 55,
the paper's 55x55 maps; a 227 crop with no padding gives the same sizes. Spatial sizes: 55 -> pool 27 -> 27
-> pool 13 -> 13 -> 13 -> 13 -> pool 6, so fc6 sees 256 x 6 x 6 = 9216 inputs. ``avgpool`` (as in
torchvision) is the identity at that size, where ``forward`` skips it, and lets other input sizes through.

Tower ``t`` owns the ``t``-th equal slice of every layer's output channels (and of fc6/fc7's neurons, as the
paper put 2048 of each on a GPU). ``towers=1`` keeps the widths and connects everything; ``towers=4``
splits each layer four ways.

With 1000 classes and two towers the net has 60,965,224 parameters (section 3: "60 million").
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from src.models.lrn import LRN_ALPHA, LRN_BETA, LRN_K, LRN_SIZE, TowerLocalResponseNorm

# Section 3.5 / figure 2: kernels per conv layer (both towers together) and neurons per hidden fc layer.
PAPER_CONV_WIDTHS = (96, 256, 384, 384, 256)
PAPER_FC_WIDTH = 4096
DROPOUT = 0.5  # section 4.2
CONV1_PADDING = 2  # 224 input -> 55x55 maps (see the module docstring)
POOLED_SIZE = 6  # pool5 output is 6x6 at the paper's input size

# Section 5: "We initialized the weights in each layer from a zero-mean Gaussian distribution with standard
# deviation 0.01. We initialized the neuron biases in the second, fourth, and fifth convolutional layers, as
# well as in the fully-connected hidden layers, with the constant 1 ... the remaining layers with 0."
PAPER_INIT_STD = 0.01
PAPER_BIAS_ONE_LAYERS = ("conv2", "conv4", "conv5", "fc6", "fc7")
# kaiming_paper_conv1: He et al. 2015 everywhere but conv1, which keeps section 5's N(0, 0.01). Kaiming's
# conv1 std is sqrt(2 / 363) = 0.074: random kernels that large take far longer than a short run to wash
# out, so a Kaiming conv1 still looks (and scores) random after epochs of training (README, "Training
# defaults").
INIT_SCHEMES = ("paper", "kaiming", "kaiming_paper_conv1")

CONV_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv5")
FC_NAMES = ("fc6", "fc7", "fc8")
# Which conv layers see only their own tower (section 3.5: "the kernels of layers 2, 4, and 5 are connected
# only to those kernel maps in the previous layer which reside on the same GPU").
OWN_TOWER_LAYERS = ("conv2", "conv4", "conv5")


class AlexNet(nn.Module):
    """The 2012 network with ``towers`` towers (the paper's is ``towers=2``).

    Args:
        num_classes: outputs of fc8 (1000 for ImageNet).
        towers: number of towers; every width must divide by it.
        conv_widths: kernels of conv1..conv5, all towers together.
        fc_width: neurons of fc6 and fc7, all towers together.
        dropout: dropout probability on the inputs of fc6 and fc7.
        init: ``"paper"`` (section 5) or ``"kaiming"`` (He et al. 2015, zero biases).
        lrn_size, lrn_k, lrn_alpha, lrn_beta: LRN's n, k, alpha, beta (section 3.3: 5, 2, 1e-4, 0.75; alpha
            in cuda-convnet's and Caffe's convention, divided by n: see ``lrn.py``).
        lrn_after_pool: pool conv1 and conv2 before normalising them (CaffeNet); the paper normalises first.
        channels_last: keep weights and activations in NHWC memory order (inputs are converted in
            ``forward``). The same outputs, within float rounding; oneDNN's bf16 convolutions on CPUs are
            faster in this order. Not part of ``config()``: it says how to run the net, not what it is.
            (``torch.compile`` is the LightningModule's to apply: ``TowerClassifier(compile=True)``.)
    """

    def __init__(
        self,
        num_classes: int,
        towers: int = 2,
        conv_widths: Sequence[int] = PAPER_CONV_WIDTHS,
        fc_width: int = PAPER_FC_WIDTH,
        dropout: float = DROPOUT,
        init: str = "kaiming",
        lrn_size: int = LRN_SIZE,
        lrn_k: float = LRN_K,
        lrn_alpha: float = LRN_ALPHA,
        lrn_beta: float = LRN_BETA,
        lrn_after_pool: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        conv_widths = tuple(int(w) for w in conv_widths)
        _check_widths(towers, conv_widths, fc_width, num_classes)
        if init not in INIT_SCHEMES:
            raise ValueError(f"model.init={init!r} is not known; choose one of {', '.join(INIT_SCHEMES)}")
        self.num_classes = num_classes
        self.towers = towers
        self.conv_widths = conv_widths
        self.fc_width = fc_width
        self.dropout = dropout
        c1, c2, c3, c4, c5 = conv_widths

        def own(name: str) -> int:
            return towers if name in OWN_TOWER_LAYERS else 1

        def norm_and_pool(i: int) -> list[tuple[str, nn.Module]]:
            norm = TowerLocalResponseNorm(towers, lrn_size, lrn_alpha, lrn_beta, lrn_k)
            steps = [(f"norm{i}", norm), (f"pool{i}", nn.MaxPool2d(kernel_size=3, stride=2))]
            return steps[::-1] if lrn_after_pool else steps

        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(3, c1, kernel_size=11, stride=4, padding=CONV1_PADDING)),
                    ("relu1", nn.ReLU(inplace=True)),
                    *norm_and_pool(1),
                    ("conv2", nn.Conv2d(c1, c2, kernel_size=5, padding=2, groups=own("conv2"))),
                    ("relu2", nn.ReLU(inplace=True)),
                    *norm_and_pool(2),
                    ("conv3", nn.Conv2d(c2, c3, kernel_size=3, padding=1, groups=own("conv3"))),
                    ("relu3", nn.ReLU(inplace=True)),
                    ("conv4", nn.Conv2d(c3, c4, kernel_size=3, padding=1, groups=own("conv4"))),
                    ("relu4", nn.ReLU(inplace=True)),
                    ("conv5", nn.Conv2d(c4, c5, kernel_size=3, padding=1, groups=own("conv5"))),
                    ("relu5", nn.ReLU(inplace=True)),
                    ("pool5", nn.MaxPool2d(kernel_size=3, stride=2)),
                ]
            )
        )
        self.avgpool = nn.AdaptiveAvgPool2d((POOLED_SIZE, POOLED_SIZE))
        self.classifier = nn.Sequential(
            OrderedDict(
                drop6=nn.Dropout(dropout),
                fc6=nn.Linear(c5 * POOLED_SIZE * POOLED_SIZE, fc_width),
                relu6=nn.ReLU(inplace=True),
                drop7=nn.Dropout(dropout),
                fc7=nn.Linear(fc_width, fc_width),
                relu7=nn.ReLU(inplace=True),
                fc8=nn.Linear(fc_width, num_classes),
            )
        )
        self.init = init
        self.reset_parameters(init)
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.features(x)
        if x.shape[-2:] != (POOLED_SIZE, POOLED_SIZE):  # at the paper's size it is the identity: skip it
            x = self.avgpool(x)  # (its backward cost 0.3 % of a batch-128 fp32 step: bench/profile.py)
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
    computes. Checkpoints written before these keys existed rebuild with the defaults, which are what those
    nets computed.
    """
    norm = net.features.norm1
    names = list(net.features._modules)
    return {
        "num_classes": net.num_classes,
        "towers": net.towers,
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
