"""The reference first layer: CaffeNet's 96 conv1 kernels, recovered from the picture Caffe's notebook drew.

CaffeNet (``bvlc_reference_caffenet``) is BVLC's replication of Krizhevsky et al. (NIPS 2012), trained on
ImageNet with ``group: 2`` in conv2, conv4 and conv5 as in the paper's section 3.5: kernels 0-47 feed conv2's
first group (tower 0, the paper's GPU 1), kernels 48-95 the second (tower 1). Its weights cannot be had
here, but the picture of its conv1 can (``reference/caffenet_conv1.png``; source, commit and licence in
``reference/README.md``). This module turns that picture back into the kernels.

How the picture was drawn (``examples/00-classification.ipynb``, ``vis_square``): the (96, 3, 11, 11)
weights, channels in Caffe's BGR order, were transposed to (96, 11, 11, 3) and shown as if RGB; all of them
were mapped together by one affine map to [0, 1], ``(w - min) / (max - min)``; each kernel got one white
pixel of padding on its right and bottom, and the kernels were laid row by row into a 10 x 10 grid, a
120 x 120 mosaic (the last 4 cells white); matplotlib drew it with nearest-neighbour interpolation at about
4.66 screen pixels per mosaic pixel, converting each value ``v`` to the 8-bit code ``floor(255 v)``.

Recovery (:func:`recover_kernels`), each step undoing one of those:

1. The white padding lines: runs of all-white screen columns (rows) between the margins, 9 each way.
2. The grid: a mosaic coordinate ``u`` sits at screen position ``origin + step * u``. A least-squares fit to
   the padding lines' edges places every boundary between mosaic pixels within a pixel; each boundary is
   then located exactly where the screen pixels change, and ``origin``, ``step`` are taken from the middle of
   the range that puts every one of the 119 boundaries on its observed pixel (a nearest-neighbour drawing
   puts mosaic pixel ``u`` on the screen pixels whose centres fall in
   ``[origin + step u, origin + step (u + 1))``).
3. Sampling: the screen pixel under each mosaic pixel's centre gives its code (the padding must be white).
4. Undoing the display: a code ``p`` stands for values in ``[p/255, (p+1)/255)``; we take the middle,
   ``v = (p + 0.5) / 255``, then reverse the channels (BGR -> RGB) and subtract the **zero level**: the one
   grey level at which the weight was 0, the same for all kernels. It is not in the picture; we estimate it
   as the median of all 34,848 values, because most of a trained conv1's weights are near 0 (the kernels'
   grey surrounds) and a median is not pulled by the few strong ones. The scale is lost too (kernels come out
   in units of ``max - min`` of the weights); the colour score does not depend on it.

:func:`draw_picture` redraws recovered kernels at the picture's geometry; the tests compare it with the
picture pixel for pixel. :func:`zero_level_sensitivity` shows how the tower statistics move when the zero
level moves by :data:`ZERO_SHIFT` of the range either way.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from src.analysis.colour import TowerColourStats, stats_for_model_kernels

__all__ = [
    "CAFFENET_PICTURE",
    "CAFFENET_TOWERS",
    "PICTURE_SHA256",
    "ZERO_SHIFT",
    "Axis",
    "PictureGeometry",
    "RecoveredKernels",
    "ReferenceSplit",
    "caffenet_split",
    "caffenet_stats",
    "caffenet_towers",
    "draw_picture",
    "fit_geometry",
    "padding_lines",
    "read_picture",
    "recover_kernels",
    "zero_level_sensitivity",
    "zero_level_table",
]

REFERENCE_DIR = Path(__file__).with_name("reference")
#: CaffeNet's conv1 as drawn by Caffe's ``examples/00-classification.ipynb`` (see ``reference/README.md``).
CAFFENET_PICTURE = REFERENCE_DIR / "caffenet_conv1.png"
PICTURE_SHA256 = "d7a8c8c8177403f802e4ef5f3ce4e0a42f6def6fb0ac1bdcd19f386ddb73a321"
#: CaffeNet's towers: conv2, conv4 and conv5 have ``group: 2``, so kernels 0-47 and 48-95.
CAFFENET_TOWERS = 2
#: How far the zero level is moved either way, in units of the weights' range, to show its effect.
ZERO_SHIFT = 0.03

KERNELS, CHANNELS, SIZE = 96, 3, 11
GRID = 10  # vis_square: n = ceil(sqrt(96)) cells a side
CELL = SIZE + 1  # a kernel and its one white padding pixel on the right and bottom
MOSAIC = GRID * CELL  # 120 mosaic pixels a side
WHITE = 255
_STEP_SEARCH = 0.01  # the exact fit looks for the step within this of the least-squares one
_STEP_SAMPLES = 4001


@dataclass(frozen=True)
class Axis:
    """Where mosaic coordinate ``u`` lands on one screen axis: ``origin + step * u`` (pixels)."""

    origin: float
    step: float

    def centres(self) -> np.ndarray:
        """The screen pixel under the centre of each mosaic pixel, 0 .. MOSAIC - 1."""
        return np.floor(self.origin + self.step * (np.arange(MOSAIC) + 0.5)).astype(int)

    def mosaic_index(self, pixels: int) -> np.ndarray:
        """For screen pixels 0 .. pixels - 1, the mosaic pixel under each centre (may be out of range)."""
        return np.floor((np.arange(pixels) + 0.5 - self.origin) / self.step).astype(int)


@dataclass(frozen=True)
class PictureGeometry:
    """The grid of a ``vis_square`` picture: an :class:`Axis` per direction and the drawn area.

    ``area`` is (top, bottom, left, right), half-open: the axes' box, outside which nothing is drawn
    (transparent white in the picture; matplotlib clips the image to it).
    """

    rows: Axis
    columns: Axis
    height: int
    width: int
    area: tuple[int, int, int, int]


@dataclass(frozen=True)
class RecoveredKernels:
    """The kernels read from a picture.

    Attributes:
        kernels: (96, 3, 11, 11) float64, RGB, in units of the weights' range (``max - min``), zero at
            ``zero_level``.
        codes: (96, 11, 11, 3) uint8, the picture's codes per kernel, in the picture's channel order (BGR).
        zero_level: the display value (0..1) taken as weight 0, shift included.
        geometry: the grid the codes were sampled on.
    """

    kernels: torch.Tensor
    codes: np.ndarray
    zero_level: float
    geometry: PictureGeometry

    def towers(self) -> list[torch.Tensor]:
        """The kernels per tower: 0-47 (tower 0, the paper's GPU 1) and 48-95."""
        return list(self.kernels.chunk(CAFFENET_TOWERS, dim=0))


# --- reading the picture ---------------------------------------------------------------------------------


def read_picture(path: str | os.PathLike[str] = CAFFENET_PICTURE) -> np.ndarray:
    """The picture as (H, W, 4) uint8 RGBA (opaque when the file has no alpha)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGBA")).copy()


def picture_sha256(path: str | os.PathLike[str] = CAFFENET_PICTURE) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def padding_lines(all_white: np.ndarray) -> list[tuple[int, int]]:
    """The white padding lines along one axis: half-open runs of all-white lines between the margins.

    Args:
        all_white: (n,) bool, whether each screen column (or row) is white all the way across.

    Raises:
        ValueError: unless there are exactly ``GRID - 1`` such runs between two white margins.
    """
    edges = np.flatnonzero(np.diff(np.concatenate([[0], all_white.astype(np.int8), [0]])))
    runs = list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))
    if len(runs) != GRID + 1 or runs[0][0] != 0 or runs[-1][1] != len(all_white):
        raise ValueError(
            f"expected {GRID - 1} white padding lines between two white margins, found {len(runs)} "
            f"white runs {runs}: not a vis_square picture of {KERNELS} kernels"
        )
    return runs[1:-1]


def _rough_axis(lines: list[tuple[int, int]], last_kernel_end: int) -> Axis:
    """Least squares on the padding lines' edges: line j spans mosaic [12 j + 11, 12 j + 12)."""
    positions = [edge for line in lines for edge in line] + [last_kernel_end]
    mosaic = [m for j in range(len(lines)) for m in (CELL * j + SIZE, CELL * (j + 1))] + [MOSAIC - 1]
    design = np.stack([np.ones(len(mosaic)), np.asarray(mosaic, float)], axis=1)
    (origin, step), *_ = np.linalg.lstsq(design, np.asarray(positions, float), rcond=None)
    return Axis(float(origin), float(step))


def _boundaries(changes: np.ndarray, rough: Axis) -> np.ndarray:
    """The first screen pixel of mosaic pixels 1 .. MOSAIC - 1: where the picture changes most near the fit.

    ``changes[i]``: the share of lines across the drawing in which screen pixel ``i`` differs from ``i - 1``.
    """
    found = []
    for m in range(1, MOSAIC):
        guess = int(round(rough.origin + rough.step * m))
        window = np.arange(max(guess - 2, 1), min(guess + 3, len(changes)))
        found.append(int(window[np.argmax(changes[window])]))
    return np.asarray(found)


def _exact_axis(boundaries: np.ndarray, rough: Axis) -> Axis:
    """The middle of the (origin, step) range that puts every boundary on its observed pixel.

    Mosaic pixel m starts at screen pixel b when pixel b's centre is the first at or after
    ``origin + step m``: ``b - 0.5 < origin + step m <= b + 0.5``.
    """
    m = np.arange(1, MOSAIC, dtype=float)
    steps = rough.step + np.linspace(-_STEP_SEARCH, _STEP_SEARCH, _STEP_SAMPLES)
    low = (boundaries[None] - 0.5 - steps[:, None] * m[None]).max(axis=1)
    high = (boundaries[None] + 0.5 - steps[:, None] * m[None]).min(axis=1)
    feasible = np.flatnonzero(high > low)
    if feasible.size == 0:
        raise ValueError(
            "no grid puts every mosaic pixel where the picture has it: not a nearest-neighbour drawing"
        )
    middle = feasible[feasible.size // 2]
    return Axis(float((low[middle] + high[middle]) / 2), float(steps[middle]))


def _drawn_area(picture: np.ndarray) -> tuple[int, int, int, int]:
    opaque = picture[..., 3] > 0
    if opaque.all() or not opaque.any():
        return 0, picture.shape[0], 0, picture.shape[1]
    rows, columns = np.flatnonzero(opaque.any(axis=1)), np.flatnonzero(opaque.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1


def fit_geometry(picture: np.ndarray) -> PictureGeometry:
    """Find the padding lines, fit the grid to them, then pin it on every mosaic boundary (see the module)."""
    rgb = picture[..., :3]
    white = (rgb == WHITE).all(axis=-1)
    area = _drawn_area(picture)
    axes = []
    for axis in (0, 1):  # rows: lines are screen rows (white across axis 1); then columns
        all_white = white.all(axis=1 - axis)
        lines = padding_lines(all_white)
        last_kernel_end = int(np.flatnonzero(~all_white)[-1]) + 1
        rough = _rough_axis(lines, last_kernel_end)
        differs = (np.diff(rgb.astype(np.int16), axis=axis) != 0).any(axis=-1)
        changes = np.concatenate([[0.0], differs.mean(axis=1 - axis)])
        axes.append(_exact_axis(_boundaries(changes, rough), rough))
    return PictureGeometry(axes[0], axes[1], picture.shape[0], picture.shape[1], area)


# --- picture <-> kernels ---------------------------------------------------------------------------------


def _mosaic_cells(mosaic: np.ndarray) -> np.ndarray:
    """(120, 120, 3) mosaic -> (100, 11, 11, 3) cells, checking that the padding between them is white."""
    grid = (
        mosaic.reshape(GRID, CELL, GRID, CELL, CHANNELS).transpose(0, 2, 1, 3, 4).reshape(-1, CELL, CELL, 3)
    )
    padding = np.concatenate([grid[:, SIZE, :].reshape(-1, 3), grid[:, :, SIZE].reshape(-1, 3)])
    if not (padding == WHITE).all():
        raise ValueError("the sampled mosaic's padding is not white: the grid does not fit the picture")
    if not (grid[KERNELS:] == WHITE).all():
        raise ValueError(f"cells after the {KERNELS}th are not white: the grid does not fit the picture")
    return grid[:KERNELS, :SIZE, :SIZE]


def recover_kernels(
    path: str | os.PathLike[str] = CAFFENET_PICTURE, zero_shift: float = 0.0
) -> RecoveredKernels:
    """CaffeNet's conv1 kernels from the picture (steps in the module docstring).

    Args:
        path: a ``vis_square`` picture of 96 11x11 kernels.
        zero_shift: moves the zero level (the display value taken as weight 0) by this, in units of the
            weights' range; 0 uses the median estimate.
    """
    picture = read_picture(path)
    geometry = fit_geometry(picture)
    mosaic = picture[geometry.rows.centres()][:, geometry.columns.centres(), :3]
    codes = _mosaic_cells(mosaic)
    values = (codes.astype(np.float64) + 0.5) / 255.0
    zero = float(np.median(values)) + zero_shift
    kernels = torch.from_numpy(values - zero).permute(0, 3, 1, 2).flip(1)  # (96, 3, 11, 11), BGR -> RGB
    return RecoveredKernels(kernels.contiguous(), codes, zero, geometry)


def draw_picture(kernels: torch.Tensor, zero_level: float, geometry: PictureGeometry) -> np.ndarray:
    """(96, 3, 11, 11) RGB kernels drawn as ``vis_square`` and matplotlib did, at ``geometry``: (H, W, 4).

    Values are ``kernels + zero_level`` shown as BGR, coded ``floor(255 v)``; outside the drawn area the
    picture is transparent white.
    """
    values = (kernels.detach().double().flip(1).permute(0, 2, 3, 1) + zero_level).numpy()
    codes = np.clip(np.floor(values * 255.0), 0, WHITE).astype(np.uint8)
    cells = np.full((GRID * GRID, CELL, CELL, CHANNELS), WHITE, np.uint8)
    cells[:KERNELS, :SIZE, :SIZE] = codes
    mosaic = (
        cells.reshape(GRID, GRID, CELL, CELL, CHANNELS).transpose(0, 2, 1, 3, 4).reshape(MOSAIC, MOSAIC, 3)
    )
    picture = np.full((geometry.height, geometry.width, 4), WHITE, np.uint8)
    picture[..., 3] = 0
    top, bottom, left, right = geometry.area
    rows = geometry.rows.mosaic_index(geometry.height)[top:bottom]
    columns = geometry.columns.mosaic_index(geometry.width)[left:right]
    inside_rows = (rows >= 0) & (rows < MOSAIC)
    inside_columns = (columns >= 0) & (columns < MOSAIC)
    drawn = picture[top:bottom, left:right]
    drawn[..., 3] = WHITE
    block = mosaic[rows.clip(0, MOSAIC - 1)][:, columns.clip(0, MOSAIC - 1)]
    inside = inside_rows[:, None] & inside_columns[None, :]
    drawn[..., :3] = np.where(inside[..., None], block, WHITE)
    return picture


# --- the reference's numbers -----------------------------------------------------------------------------


def caffenet_towers(zero_shift: float = 0.0) -> list[torch.Tensor]:
    """CaffeNet's conv1 kernels per tower, RGB: two (48, 3, 11, 11) tensors (tower 0 = kernels 0-47)."""
    return recover_kernels(zero_shift=zero_shift).towers()


def caffenet_stats(zero_shift: float = 0.0) -> TowerColourStats:
    """The colour measure of CaffeNet's towers: the same :func:`stats_for_model_kernels` as training logs."""
    return stats_for_model_kernels(caffenet_towers(zero_shift))


def zero_level_sensitivity(shift: float = ZERO_SHIFT) -> dict[float, TowerColourStats]:
    """:func:`caffenet_stats` with the zero level moved by ``-shift``, 0 and ``+shift`` of the range."""
    return {s: caffenet_stats(s) for s in (-shift, 0.0, shift)}


@dataclass(frozen=True)
class ReferenceSplit:
    """A reference's split, with its range over the zero levels of :func:`zero_level_sensitivity`."""

    name: str
    split: float
    low: float
    high: float


def caffenet_split(shift: float = ZERO_SHIFT) -> ReferenceSplit:
    """CaffeNet's split between its towers, and its range when the zero level moves by ``shift``."""
    sensitivity = zero_level_sensitivity(shift)
    splits = [stats.split for stats in sensitivity.values()]
    return ReferenceSplit("CaffeNet (ImageNet)", sensitivity[0.0].split, min(splits), max(splits))


def zero_level_table(shift: float = ZERO_SHIFT) -> str:
    """CaffeNet's numbers with the zero level moved by -shift, 0, +shift of the weights' range."""
    lines = [
        f"zero level moved by -/+{shift:g} of the range (estimate: the median of all values):",
        "| zero shift | tower means | colour fractions | split | AUC | p |",
        "|---|---|---|---|---|---|",
    ]
    for moved, stats in zero_level_sensitivity(shift).items():
        means = " / ".join(f"{m:.3f}" for m in stats.means)
        fractions = " / ".join(f"{f:.3f}" for f in stats.fractions)
        numbers = f"{stats.split:.3f} | {stats.auc:.3f} | {stats.p_value:.1e}"
        lines.append(f"| {moved:+.2f} | {means} | {fractions} | {numbers} |")
    return "\n".join(lines)
