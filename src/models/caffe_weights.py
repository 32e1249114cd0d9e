"""Published two-tower weights: BVLC's Caffe AlexNet as the NumPy file most ports load (``bvlc_alexnet.npy``).

BVLC trained ``bvlc_alexnet`` (and ``bvlc_reference_caffenet``) with Caffe, as the paper's two-tower net:
``group: 2`` in conv2, conv4 and conv5. The copy most people hold is the NumPy file made by the
caffe-tensorflow converter (github.com/ethereon/caffe-tensorflow) and loaded by many TensorFlow ports
(e.g. M. Guerzhoy's ``myalexnet_forward.py``, www.cs.toronto.edu/~guerzhoy/tf_alexnet/):

    np.save of a dict, layer name -> [weights, biases]       (newer converter versions: {"weights", "biases"})
    conv1 .. conv5   weights (kh, kw, in_channels / group, out_channels): Caffe's (out, in / group, kh, kw)
                     transposed by (2, 3, 1, 0)
    fc6, fc7, fc8    weights (in, out); fc6's 9,216 inputs reordered from Caffe's (channel, row, column) to
                     TensorFlow's (row, column, channel), the order of an NHWC pool5 flattened
    groups           conv2, conv4, conv5 in two: group g's outputs are the g-th block of out_channels and
                     read the g-th block of the input channels
    input            BGR, 0..255, minus the mean pixel (:data:`CAFFE_MEAN_PIXEL_BGR`)

Loading such a file into ``AlexNet(towers=2, num_classes=1000)``:

- conv weights are transposed by (3, 2, 0, 1). ``nn.Conv2d(groups=2)`` splits its channels in the same
  blocks, so Caffe's group 0 is our tower 0 (the paper's GPU 1) and group 1 tower 1.
- conv1's input channels are reversed, BGR -> RGB: our data pipeline feeds RGB (``src/data``).
- fc weights are transposed, and fc6's columns go back to (channel, row, column), ``torch.flatten``'s order.
- The LRN constants are Caffe's (:data:`CAFFE_LRN`): k = 1, where the paper says 2.

What is still not Caffe's net (the weights load all the same):

- conv1: we pad 224-pixel crops by 2; Caffe feeds 227-pixel crops unpadded. Both give 55x55 maps, but the
  outermost kernels see 2 pixels of zeros here, so outputs differ a little near the border.
- The mean: Caffe subtracts ImageNet's mean image (the deploy examples: its mean pixel); ``src/eval.py``
  uses :data:`CAFFE_MEAN_PIXEL_BGR` for an imported file; fine-tuning subtracts the new data's mean pixel
  and must keep the 0..255 scale (``data.normalize=mean``).
- Dropout (training only): Caffe drops the outputs of fc6 and fc7, we drop the inputs of fc6 and fc7.
- CaffeNet pools conv1 and conv2 before normalising them: ``lrn_after_pool=True``.

Facts above that this module relies on but that could not be checked against the converter's source here
(no network): the dict-of-lists layout, the transposition orders and the fc6 reordering are as the
converter's ``DataReshaper`` and the TensorFlow ports use them; the tests check our side of each mapping.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from src.models.alexnet import AlexNet
from src.models.layer_table import CONV_NAMES, FC_NAMES, PAPER

log = logging.getLogger(__name__)

__all__ = [
    "CAFFE_LRN",
    "CAFFE_MEAN_PIXEL_BGR",
    "LAYERS",
    "WEIGHTS_SUFFIX",
    "CaffeWeightsError",
    "alexnet_from_caffe_weights",
    "caffe_arrays",
    "caffe_pixel_statistics",
    "expected_shapes",
    "load_caffe_arrays",
    "network_config_for",
    "pretrained_alexnet",
    "read_caffe_weights",
    "write_caffe_weights",
]

LAYERS = CONV_NAMES + FC_NAMES
#: How a weights file is told from a checkpoint (``src/eval.py``, ``src/analyse.py``).
WEIGHTS_SUFFIX = ".npy"
#: Caffe's LRN layers in bvlc_alexnet / CaffeNet: local_size 5, alpha 1e-4, beta 0.75 and k left at Caffe's
#: default, 1 (the paper: 2). alpha is divided by n in Caffe as here (``lrn.py``).
CAFFE_LRN: dict[str, float] = {"lrn_size": 5, "lrn_k": 1.0, "lrn_alpha": 1e-4, "lrn_beta": 0.75}
#: The ImageNet mean pixel Caffe's models subtract, B, G, R in 0..255 (the mean of
#: ``ilsvrc_2012_mean.npy``, as printed by Caffe's ``examples/00-classification.ipynb``).
CAFFE_MEAN_PIXEL_BGR: tuple[float, float, float] = (104.00698793, 116.66876762, 122.67891434)
#: How each kind of layer lays out its weights in the file, for error messages.
CONV_LAYOUT = "(kh, kw, in_channels / group, out_channels)"
FC_LAYOUT = "(in, out)"

CaffeArrays = dict[str, tuple[np.ndarray, np.ndarray]]
Shapes = dict[str, tuple[tuple[int, ...], tuple[int, ...]]]


class CaffeWeightsError(ValueError):
    """A weights file that does not fit the network: names the layer, the shape found and the one expected."""


def caffe_pixel_statistics() -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) RGB pixel statistics for the datamodule that feed an imported net Caffe's input.

    Caffe's input is 0..255 minus :data:`CAFFE_MEAN_PIXEL_BGR`, not divided by anything: so the mean pixel
    in our RGB order and a standard deviation of 1 (which makes ``data.normalize`` ``mean`` and
    ``mean_std`` the same).
    """
    return np.asarray(CAFFE_MEAN_PIXEL_BGR[::-1], np.float32), np.ones(3, np.float32)


# --- the file --------------------------------------------------------------------------------------------


def read_caffe_weights(path: str | os.PathLike[str]) -> CaffeArrays:
    """The layers of a caffe-tensorflow ``.npy`` file: name -> (weights, biases), float32 arrays.

    Both layouts the converter has written are read: ``{layer: [weights, biases]}`` (the widely shared
    ``bvlc_alexnet.npy``) and ``{layer: {"weights": ..., "biases": ...}}``. The file is a pickle (written by
    Python 2, hence ``encoding="latin1"``): load only files you trust.

    Raises:
        FileNotFoundError: naming ``path``.
        CaffeWeightsError: when the file is not such a dict, naming the layer whose entry is not.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file {path}")
    content = np.load(path, allow_pickle=True, encoding="latin1")
    layers = content.item() if isinstance(content, np.ndarray) and content.dtype == object else content
    if not isinstance(layers, Mapping):
        raise CaffeWeightsError(
            f"{path} holds a {type(layers).__name__}, not a dict of layer name -> [weights, biases]"
        )
    out: CaffeArrays = {}
    for key, entry in layers.items():
        name = key.decode("latin1") if isinstance(key, bytes) else str(key)
        if isinstance(entry, Mapping):
            entry = [entry.get("weights", entry.get(b"weights")), entry.get("biases", entry.get(b"biases"))]
        if not isinstance(entry, (list, tuple)) or len(entry) != 2 or any(a is None for a in entry):
            raise CaffeWeightsError(f"{path}: layer {name!r} is not [weights, biases]")
        out[name] = (np.asarray(entry[0], np.float32), np.asarray(entry[1], np.float32))
    return out


def write_caffe_weights(net: AlexNet, path: str | os.PathLike[str]) -> Path:
    """Write ``net``'s weights as a caffe-tensorflow ``.npy`` file (``{layer: [weights, biases]}``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    layers = {name: [weights, biases] for name, (weights, biases) in caffe_arrays(net).items()}
    with path.open("wb") as file:
        np.save(file, np.array(layers, dtype=object), allow_pickle=True)
    return path


# --- the mapping -----------------------------------------------------------------------------------------


def expected_shapes(net: AlexNet) -> Shapes:
    """Each layer's (weights, biases) shapes as the file holds them for ``net``."""
    shapes: Shapes = {}
    for name in LAYERS:
        weight = net.layer(name).weight
        if name in CONV_NAMES:
            out, in_per_group, kh, kw = weight.shape
            shapes[name] = ((kh, kw, in_per_group, out), (out,))
        else:
            out, inputs = weight.shape
            shapes[name] = ((inputs, out), (out,))
    return shapes


def _fc6_columns(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """fc6 (out, c*6*6), columns in (channel, row, column) -> (6*6*c, out), rows (row, column, channel)."""
    out = weight.shape[0]
    return (
        weight.reshape(out, channels, PAPER.pooled_size, PAPER.pooled_size)
        .permute(2, 3, 1, 0)
        .reshape(-1, out)
    )


def _fc6_rows(weights: torch.Tensor, channels: int) -> torch.Tensor:
    """The inverse of :func:`_fc6_columns`: the file's (6*6*c, out) -> our (out, c*6*6)."""
    out = weights.shape[1]
    return (
        weights.reshape(PAPER.pooled_size, PAPER.pooled_size, channels, out)
        .permute(3, 2, 0, 1)
        .reshape(out, -1)
    )


def caffe_arrays(net: AlexNet) -> CaffeArrays:
    """``net``'s weights in the file's layout: conv (kh, kw, in/group, out), conv1 BGR, fc (in, out)."""
    out: CaffeArrays = {}
    for name in LAYERS:
        layer = net.layer(name)
        weight = layer.weight.detach().float().cpu().contiguous()
        if name == "conv1":
            weight = weight.flip(1)  # RGB -> BGR
        if name in CONV_NAMES:
            weights = weight.permute(2, 3, 1, 0)
        elif name == "fc6":
            weights = _fc6_columns(weight, net.conv_widths[-1])
        else:
            weights = weight.t()
        biases = layer.bias.detach().float().cpu()
        out[name] = (np.ascontiguousarray(weights.numpy()), biases.numpy().copy())
    return out


def _problems(
    net: AlexNet, arrays: Mapping[str, tuple[np.ndarray, np.ndarray]], layers: Iterable[str]
) -> list[str]:
    expected = expected_shapes(net)
    found = ", ".join(sorted(arrays)) or "none"
    problems = []
    for name in layers:
        weights_shape, bias_shape = expected[name]
        layout = CONV_LAYOUT if name in CONV_NAMES else FC_LAYOUT
        if name not in arrays:
            problems.append(
                f"layer {name!r} is missing (layers found: {found}); expected weights of shape "
                f"{weights_shape} {layout} and biases of shape {bias_shape}"
            )
            continue
        weights, biases = arrays[name]
        if tuple(weights.shape) != weights_shape:
            problems.append(
                f"layer {name!r}: weights have shape {tuple(weights.shape)}, "
                f"expected {weights_shape} {layout}"
            )
        if tuple(biases.shape) != bias_shape:
            problems.append(f"layer {name!r}: biases have shape {tuple(biases.shape)}, expected {bias_shape}")
    return problems


@torch.no_grad()
def load_caffe_arrays(
    net: AlexNet,
    arrays: Mapping[str, tuple[np.ndarray, np.ndarray]],
    source: str | os.PathLike[str] = "the weights",
    skip: Iterable[str] = (),
) -> AlexNet:
    """Copy a file's layers into ``net`` (all of conv1 .. fc8 but ``skip``), undoing the file's layout.

    Raises:
        CaffeWeightsError: naming ``source``, every missing layer and every layer whose shape is not
            ``net``'s, with the shape found and the shape expected. Nothing is copied then.
    """
    layers = [name for name in LAYERS if name not in set(skip)]
    problems = _problems(net, arrays, layers)
    if problems:
        raise CaffeWeightsError(f"{source} does not fit this network:\n  " + "\n  ".join(problems))
    for name in layers:
        weights, biases = (torch.from_numpy(np.asarray(a, np.float32)) for a in arrays[name])
        if name in CONV_NAMES:
            weight = weights.permute(3, 2, 0, 1)
        elif name == "fc6":
            weight = _fc6_rows(weights, net.conv_widths[-1])
        else:
            weight = weights.t()
        if name == "conv1":
            weight = weight.flip(1)  # BGR -> RGB
        layer = net.layer(name)
        layer.weight.copy_(weight)  # copy_ keeps the parameter's memory format (channels_last)
        layer.bias.copy_(biases)
    return net


# --- networks from a file --------------------------------------------------------------------------------


def network_config_for(
    arrays: Mapping[str, tuple[np.ndarray, np.ndarray]], **overrides: Any
) -> dict[str, Any]:
    """``AlexNet`` arguments that fit a file: widths, classes and towers read from its shapes, Caffe's LRN.

    Towers are conv1's kernels over conv2's input channels per group (2 for ``bvlc_alexnet``). A layer that
    is missing or oddly shaped falls back to the paper's number; :func:`load_caffe_arrays` then names it.
    ``overrides`` win (e.g. ``lrn_after_pool=True`` for CaffeNet).
    """

    def dim(name: str, axis: int, default: int) -> int:
        weights = arrays.get(name, (None, None))[0]
        ok = weights is not None and weights.ndim == (4 if name in CONV_NAMES else 2)
        return int(weights.shape[axis]) if ok else default

    conv_widths = [dim(name, 3, width) for name, width in zip(CONV_NAMES, PAPER.conv_widths, strict=True)]
    in_per_group = dim("conv2", 2, conv_widths[0] // 2)
    towers = conv_widths[0] // in_per_group if in_per_group and conv_widths[0] % in_per_group == 0 else 2
    config = {
        "num_classes": dim("fc8", 1, 1000),
        "towers": towers,
        "conv_widths": conv_widths,
        "fc_width": dim("fc6", 1, PAPER.fc_width),
    }
    return config | CAFFE_LRN | overrides


def alexnet_from_caffe_weights(path: str | os.PathLike[str], **overrides: Any) -> AlexNet:
    """The network a caffe-tensorflow ``.npy`` file describes, with its weights, in eval mode, on the CPU.

    For ``bvlc_alexnet.npy``: ``AlexNet(num_classes=1000, towers=2, lrn_k=1)``. ``overrides`` are
    ``AlexNet`` arguments (``lrn_after_pool=True`` for CaffeNet's file).
    """
    arrays = read_caffe_weights(path)
    net = AlexNet(**network_config_for(arrays, **overrides))
    return load_caffe_arrays(net, arrays, source=path).eval()


def pretrained_alexnet(pretrained: str | os.PathLike[str], num_classes: int, **net_args: Any) -> AlexNet:
    """``AlexNet(num_classes, **net_args)`` starting from a caffe-tensorflow file: the fine-tuning model.

    Hydra's ``_target_`` in ``conf/model/bvlc_alexnet.yaml`` (``model.pretrained=<path>``). Every layer is
    loaded; fc8 too when the file has ``num_classes`` outputs, else it keeps its initialisation (a new task's
    classifier). The widths in ``net_args`` must be the file's (an error names the layer otherwise).
    """
    arrays = read_caffe_weights(pretrained)
    net = AlexNet(num_classes, **net_args)
    file_classes = network_config_for(arrays)["num_classes"]
    skip = () if file_classes == num_classes else ("fc8",)
    load_caffe_arrays(net, arrays, source=pretrained, skip=skip)
    log.info(
        "model: conv1..%s from %s%s",
        "fc7" if skip else "fc8",
        pretrained,
        f"; fc8 new ({num_classes} classes, the file has {file_classes})" if skip else "",
    )
    return net
