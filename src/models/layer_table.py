"""The AlexNet family as data: one table per member, in the spirit of cuda-convnet's layer files.

A table says, layer by layer, how many kernels (or neurons) the layer has with all towers together, their
size, stride and padding, whether the layer sees its own tower or every tower, and what follows it. The
builders in ``alexnet.py`` (all towers on one device, as grouped convolutions) and ``tower_parallel.py``
(one tower per process) read nothing else, so a change of wiring, width or LRN placement is one edit here.

``PAPER`` is Krizhevsky, Sutskever & Hinton (NIPS 2012), section 3.5 and figure 2. ``SMALL_64`` is the same
net for 64-pixel photographs (Tiny ImageNet-200): the same eight layers, wiring, LRN and pooling, with
conv1's kernels and stride scaled to 56-pixel crops and the layers above conv1 at half width (see its
comment). Every member shares the layer names (conv1..conv5,
fc6..fc8), the pooling (3x3, stride 2: section 3.4) and the dropout on fc6's and fc7's inputs (section 4.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Sees = Literal["image", "own", "all"]

POOL_SIZE, POOL_STRIDE = 3, 2  # section 3.4: overlapping pooling, z = 3, s = 2


@dataclass(frozen=True)
class Layer:
    """One row of a table. ``width`` is all towers together; ``None`` (fc8 only) means the classes."""

    name: str
    width: int | None
    sees: Sees  # "image": conv1; "own": only this tower's maps (section 3.5); "all": every tower's
    then: tuple[str, ...] = ("relu",)  # in order: "relu", "lrn", "pool"
    size: int = 0  # kernel side; 0 for a fully connected layer
    stride: int = 1
    padding: int = 0
    dropout_before: bool = False  # section 4.2: dropout on the layer's input (fc6, fc7)

    @property
    def is_conv(self) -> bool:
        return self.size > 0


@dataclass(frozen=True)
class LayerTable:
    """A member of the family: its layers and the crop side it is made for."""

    name: str
    input_size: int
    layers: tuple[Layer, ...]

    @property
    def convs(self) -> tuple[Layer, ...]:
        return tuple(layer for layer in self.layers if layer.is_conv)

    @property
    def fcs(self) -> tuple[Layer, ...]:
        return tuple(layer for layer in self.layers if not layer.is_conv)

    @property
    def conv_widths(self) -> tuple[int, ...]:
        return tuple(int(layer.width) for layer in self.convs)  # type: ignore[arg-type]

    @property
    def fc_width(self) -> int:
        return int(self.fcs[0].width)  # type: ignore[arg-type]

    def spatial_sizes(self, input_size: int | None = None) -> list[tuple[str, int]]:
        """Each conv and pool output's side for square inputs of ``input_size`` (default: the table's)."""
        side = self.input_size if input_size is None else input_size
        sizes = []
        for layer in self.convs:
            side = (side + 2 * layer.padding - layer.size) // layer.stride + 1
            sizes.append((layer.name, side))
            if "pool" in layer.then:
                side = (side - POOL_SIZE) // POOL_STRIDE + 1
                sizes.append((f"pool{layer.name[-1]}", side))
        return sizes

    @property
    def pooled_size(self) -> int:
        """pool5's side at the table's input size: fc6 reads ``conv5 kernels x pooled_size**2`` numbers."""
        return self.spatial_sizes()[-1][1]


CONV1_THEN = ("relu", "lrn", "pool")


def _convs(conv1: Layer, widths: tuple[int, int, int, int]) -> tuple[Layer, ...]:
    """conv1 as given, then conv2..conv5 as section 3.5 wires them (the same in every member)."""
    c2, c3, c4, c5 = widths
    return (
        conv1,
        Layer("conv2", c2, "own", ("relu", "lrn", "pool"), size=5, padding=2),
        Layer("conv3", c3, "all", ("relu",), size=3, padding=1),
        Layer("conv4", c4, "own", ("relu",), size=3, padding=1),
        Layer("conv5", c5, "own", ("relu", "pool"), size=3, padding=1),
    )


def _fcs(width: int) -> tuple[Layer, ...]:
    return (
        Layer("fc6", width, "all", dropout_before=True),
        Layer("fc7", width, "all", dropout_before=True),
        Layer("fc8", None, "all", then=()),  # softmax in the loss
    )


# Section 3.5 / figure 2. 224 crops with 2 pixels of padding at conv1 give the paper's 55x55 maps (as a 227
# crop without padding): 55 -> pool 27 -> 27 -> pool 13 -> 13 -> 13 -> 13 -> pool 6; fc6 reads 256 x 6 x 6.
PAPER = LayerTable(
    "paper",
    224,
    _convs(
        Layer("conv1", 96, "image", ("relu", "lrn", "pool"), size=11, stride=4, padding=2),
        (256, 384, 384, 256),
    )
    + _fcs(4096),
)

# Tiny ImageNet-200: 64-pixel images cached at 64 and cropped to 56 (section 4.1's 224 of 256).
# - conv1: 5x5 kernels, stride 2. Krizhevsky's cuda-convnet CIFAR-10 nets used 5x5 first-layer kernels on
#   32 pixels; 5/2 keeps the paper's 11/4 overlap of kernel and stride; 96 kernels as in the paper (48 a
#   tower), large enough to show orientation and colour.
# - Maps: 56 -> 28 -> pool 13 -> 13 -> pool 6 -> 6 -> 6 -> 6 -> pool 2; fc6 reads conv5's kernels x 2 x 2.
# - conv2..conv5 and fc6/fc7 at half the paper's widths (one of its towers' worth): the study's budget
#   demands it. At the paper's widths the training step ran 1.9x slower (docs/benchmarks.md, "The 64-pixel
#   net"), which would leave half the epochs a run for the arms and seeds of docs/split-study.md. conv1,
#   the layer figure 3 is about, keeps its width.
SMALL_64 = LayerTable(
    "small64",
    56,
    _convs(
        Layer("conv1", 96, "image", ("relu", "lrn", "pool"), size=5, stride=2, padding=2),
        (128, 192, 192, 128),
    )
    + _fcs(2048),
)

TABLES = {table.name: table for table in (PAPER, SMALL_64)}
CONV_NAMES = tuple(layer.name for layer in PAPER.convs)
FC_NAMES = tuple(layer.name for layer in PAPER.fcs)
assert all(tuple(t.name for t in table.layers) == CONV_NAMES + FC_NAMES for table in TABLES.values())


def layer_table(name: str) -> LayerTable:
    """The table called ``name`` (``model.layers``), or a one-line error listing the known ones."""
    try:
        return TABLES[name]
    except KeyError:
        raise ValueError(
            f"model.layers={name!r} is not a known table; choose one of {', '.join(TABLES)}"
        ) from None


def describe(table: LayerTable, towers: int = 2) -> str:
    """The table as text, as the module docstrings of ``alexnet.py`` show it (a test keeps them equal)."""
    sees = {"image": "the image", "own": "own tower only", "all": "all towers"}
    rows = ["layer  kernels (per tower)   size / stride    sees             then"]
    for layer in table.layers:
        width = (
            "num_classes" if layer.width is None else f"{layer.width} ({towers} x {layer.width // towers})"
        )
        shape = f"{layer.size}x{layer.size} / {layer.stride} pad {layer.padding}" if layer.is_conv else ""
        then = ", ".join({"relu": "ReLU", "lrn": "LRN", "pool": "max-pool 3/2"}[step] for step in layer.then)
        if layer.dropout_before:
            then += " (dropout on its input)"
        rows.append(f"{layer.name:<6} {width:<21} {shape:<16} {sees[layer.sees]:<16} {then}".rstrip())
    return "\n".join(rows)
