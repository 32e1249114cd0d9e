"""Pictures of first-layer kernels, as in figure 3 of Krizhevsky et al. (NIPS 2012), section 6.1, and of their
colour scores: what the training callback logs (``src/callbacks/tower_kernels.py``).

Figure 3 shows the 96 conv1 kernels (11x11x3) as RGB images, GPU 1's 48 above GPU 2's 48, each in rows of
16. Here every kernel is min-max scaled *on its own*, jointly over its three channels (so its colour balance
is kept: a grey kernel stays grey), to 0..255; a constant kernel becomes mid-grey 128. Cells are separated
by white padding; towers are stacked top to bottom (tower 0, the paper's GPU 1, on top) with a black band
between them.

Every kernel picture returned is ``uint8`` (H, W, 3): the logger (W&B) shows float images as black.
``score_histogram`` draws the per-kernel colour scores (``src/analysis/colour.py``) as a matplotlib figure,
``histogram_image`` renders it as such a picture, and ``write_csv`` writes the scores as a table: the
training callback and the analysis command (``src/analyse.py``) write the same files with them.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from src.analysis.colour import TowerColourStats
from src.utils.atomic import write_atomic

__all__ = [
    "BAND_VALUE",
    "DEFAULT_COLUMNS",
    "FIGURE_KEY",
    "PAD_VALUE",
    "histogram_image",
    "kernel_grid",
    "save_png",
    "score_histogram",
    "towers_figure",
    "write_csv",
]

#: The key under which training logs figure 3's picture (and the name of its PNG files).
FIGURE_KEY = "kernels/figure3"

#: Kernels per row by default: figure 3 shows each GPU's 48 kernels in 3 rows of 16.
DEFAULT_COLUMNS: int = 16
#: Colour of the padding between kernels (white).
PAD_VALUE: int = 255
#: Colour of the band between towers (black): distinct from the white padding.
BAND_VALUE: int = 0


def _scaled_uint8(kernels: torch.Tensor) -> np.ndarray:
    """(k, 3, h, w) -> (k, h, w, 3) uint8, each kernel min-max scaled on its own over all its channels."""
    w = kernels.detach().to(device="cpu", dtype=torch.float64).numpy()
    lo = w.min(axis=(1, 2, 3), keepdims=True)
    hi = w.max(axis=(1, 2, 3), keepdims=True)
    span = hi - lo
    flat = span == 0
    scaled = np.where(flat, 128.0, (w - lo) / np.where(flat, 1.0, span) * 255.0)
    scaled = np.nan_to_num(scaled, nan=128.0)  # a kernel with non-finite weights: draw it grey
    return np.rint(scaled).clip(0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def _check(kernels: torch.Tensor) -> None:
    if not isinstance(kernels, torch.Tensor) or kernels.dim() != 4 or kernels.shape[1] != 3:
        shape = tuple(kernels.shape) if isinstance(kernels, torch.Tensor) else type(kernels).__name__
        raise ValueError(f"expected kernels of shape (k, 3, h, w), got {shape}")
    if kernels.shape[0] == 0:
        raise ValueError("expected at least one kernel")


def _upscale(image: np.ndarray, scale: int) -> np.ndarray:
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    return image if scale == 1 else image.repeat(scale, axis=0).repeat(scale, axis=1)


def kernel_grid(
    kernels: torch.Tensor, columns: int | None = None, pad: int = 1, scale: int = 1
) -> np.ndarray:
    """Draw kernels in a grid, row by row, like one GPU's half of figure 3 (section 6.1).

    Args:
        kernels: (k, 3, h, w), RGB on dimension 1.
        columns: kernels per row; default ``min(k, 16)`` (figure 3: 3 rows of 16 per GPU). Cells after the
            last kernel are left in the padding colour.
        pad: white pixels between cells and around the border (before scaling).
        scale: integer nearest-neighbour upscaling of the whole image, padding included.

    Returns:
        uint8 (H, W, 3) with ``H = scale * (rows * h + (rows + 1) * pad)``,
        ``W = scale * (columns * w + (columns + 1) * pad)``, ``rows = ceil(k / columns)``.
    """
    _check(kernels)
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    k, _, h, w = kernels.shape
    columns = min(k, DEFAULT_COLUMNS) if columns is None else columns
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    rows = math.ceil(k / columns)
    image = np.full((rows * h + (rows + 1) * pad, columns * w + (columns + 1) * pad, 3), PAD_VALUE, np.uint8)
    for i, cell in enumerate(_scaled_uint8(kernels)):
        r, c = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        image[y : y + h, x : x + w] = cell
    return _upscale(image, scale)


def towers_figure(
    kernels_per_tower: Sequence[torch.Tensor],
    columns: int | None = None,
    pad: int = 1,
    scale: int = 1,
    band: int = 3,
) -> np.ndarray:
    """Each tower's kernel grid, tower 0 on top, separated by black bands: figure 3 (section 6.1).

    Args:
        kernels_per_tower: one (k_t, 3, h, w) tensor per tower.
        columns: kernels per row for every tower; default ``min(max_t k_t, 16)``.
        pad: white pixels between cells (before scaling), as in :func:`kernel_grid`.
        scale: integer nearest-neighbour upscaling of the whole figure.
        band: height of the black band between towers (before scaling), >= 1.

    Returns:
        uint8 (H, W, 3); grids narrower than the widest are padded white on the right.
    """
    if len(kernels_per_tower) == 0:
        raise ValueError("need the kernels of at least one tower")
    if band < 1:
        raise ValueError(f"band must be >= 1, got {band}")
    for kernels in kernels_per_tower:
        _check(kernels)
    if columns is None:
        columns = min(max(k.shape[0] for k in kernels_per_tower), DEFAULT_COLUMNS)
    grids = [kernel_grid(k, columns=columns, pad=pad) for k in kernels_per_tower]
    width = max(g.shape[1] for g in grids)
    parts: list[np.ndarray] = []
    for t, grid in enumerate(grids):
        if t > 0:
            parts.append(np.full((band, width, 3), BAND_VALUE, np.uint8))
        right = np.full((grid.shape[0], width - grid.shape[1], 3), PAD_VALUE, np.uint8)
        parts.append(np.concatenate([grid, right], axis=1))
    return _upscale(np.concatenate(parts, axis=0), scale)


def save_png(image: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write a uint8 (H, W, 3) or (H, W) image as PNG atomically (temp file beside it, then os.replace)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {image.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    png = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(png, format="PNG")
    return write_atomic(path, png.getvalue())


def score_histogram(stats: TowerColourStats, bins: int = 40) -> Figure:
    """Histogram of the per-kernel colour scores, one outline per tower (section 6.1).

    The dotted line is the colour threshold; the shaded strip is where fresh random kernels lie (2/3 +- 2
    standard deviations of 0.035), so a tower that moved left has moved towards grey.
    """
    fig = Figure(figsize=(7, 3.5))
    ax = fig.add_subplot()
    edges = np.linspace(0.0, 1.0, bins + 1)
    ax.axvspan(2 / 3 - 0.07, 2 / 3 + 0.07, color="0.9", label="random init (2/3 +- 0.07)")
    groups = "half" if stats.halves else "tower"
    for t, scores in enumerate(stats.scores):
        ax.hist(scores.numpy(), bins=edges, histtype="step", linewidth=1.5, label=f"{groups} {t}")
    ax.axvline(stats.threshold, color="k", linestyle=":", label=f"threshold {stats.threshold:g}")
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("colour score (0 grey .. 1 opponent colour)")
    ax.set_ylabel("kernels")
    ax.set_title(f"conv1 colour scores per {groups} (split = {stats.split:.3f})")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def histogram_image(stats: TowerColourStats) -> np.ndarray:
    """The per-tower score histogram (``score_histogram``), rendered off-screen as a uint8 RGB picture."""
    canvas = FigureCanvasAgg(score_histogram(stats))
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def write_csv(path: Path, columns: list[str], rows: list[list[object]]) -> None:
    """A table as CSV (the header row, then ``rows``), written atomically: the per-kernel scores."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(columns)
    writer.writerows(rows)
    write_atomic(path, text.getvalue())
