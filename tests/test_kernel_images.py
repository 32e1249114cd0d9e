"""Tests of the kernel pictures (figure 3, section 6.1): uint8, exact layout, per-kernel scaling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from src.analysis.kernel_images import BAND_VALUE, PAD_VALUE, kernel_grid, save_png, towers_figure


def _kernels(k: int, seed: int = 0, h: int = 11) -> torch.Tensor:
    return torch.randn(k, 3, h, h, generator=torch.Generator().manual_seed(seed))


def _cell(image: np.ndarray, i: int, columns: int, pad: int, h: int, w: int) -> np.ndarray:
    r, c = divmod(i, columns)
    y, x = pad + r * (h + pad), pad + c * (w + pad)
    return image[y : y + h, x : x + w]


def test_grid_dtype_and_exact_shape() -> None:
    image = kernel_grid(_kernels(10), columns=4, pad=2, scale=3)
    assert image.dtype == np.uint8
    # rows = 3: H = 3 * (3 * 11 + 4 * 2), W = 3 * (4 * 11 + 5 * 2)
    assert image.shape == (123, 162, 3)


def test_default_columns_follow_figure_3() -> None:
    assert kernel_grid(_kernels(48)).shape == (3 * 11 + 4, 16 * 11 + 17, 3)  # 3 rows of 16
    assert kernel_grid(_kernels(5)).shape == (11 + 2, 5 * 11 + 6, 3)  # fewer than 16: one row


def test_each_kernel_is_scaled_on_its_own() -> None:
    k = _kernels(6, h=5)
    k[1] *= 1000.0  # one loud kernel must not wash out the others
    k[2] = k[2] * 1e-3 + 7.0
    image = kernel_grid(k, columns=3, pad=1)
    for i in range(6):
        cell = _cell(image, i, 3, 1, 5, 5)
        assert cell.min() == 0 and cell.max() == 255, i


def test_scaling_is_joint_over_channels() -> None:
    # a grey kernel stays grey; a kernel with a brighter red channel stays red
    pattern = torch.randn(1, 1, 5, 5, generator=torch.Generator().manual_seed(1))
    grey = pattern.expand(1, 3, 5, 5)
    red = torch.cat([pattern.abs() * 2, pattern.abs(), pattern.abs()], dim=1)
    image = kernel_grid(torch.cat([grey, red]), pad=0)
    g, r = image[:, :5], image[:, 5:]
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    assert r[..., 0].max() == 255 and r[..., 1].max() < 200


def test_constant_kernel_is_mid_grey() -> None:
    k = torch.cat([torch.full((1, 3, 11, 11), 0.3), torch.zeros(1, 3, 11, 11), _kernels(1)])
    image = kernel_grid(k, columns=3, pad=1)
    assert (_cell(image, 0, 3, 1, 11, 11) == 128).all()
    assert (_cell(image, 1, 3, 1, 11, 11) == 128).all()


def test_padding_and_empty_cells_are_white() -> None:
    image = kernel_grid(_kernels(3), columns=2, pad=1)
    assert (image[0] == PAD_VALUE).all() and (image[:, 0] == PAD_VALUE).all()
    assert (image[:, 12] == PAD_VALUE).all()  # between the columns
    assert (_cell(image, 3, 2, 1, 11, 11) == PAD_VALUE).all()  # the fourth cell has no kernel


def test_scale_is_nearest_neighbour() -> None:
    k = _kernels(7)
    small = kernel_grid(k, columns=3, pad=1)
    big = kernel_grid(k, columns=3, pad=1, scale=4)
    assert np.array_equal(big, np.kron(small, np.ones((4, 4, 1), dtype=np.uint8)))


@pytest.mark.parametrize(
    "bad", [torch.zeros(3, 11, 11), torch.zeros(2, 1, 11, 11), torch.zeros(0, 3, 11, 11)]
)
def test_grid_rejects_bad_shapes(bad: torch.Tensor) -> None:
    with pytest.raises(ValueError):
        kernel_grid(bad)


def test_towers_are_stacked_with_a_band() -> None:
    two = towers_figure([_kernels(48, 1), _kernels(48, 2)], band=3)
    grid_h = 3 * 11 + 4
    assert two.dtype == np.uint8
    assert two.shape == (2 * grid_h + 3, 16 * 11 + 17, 3)
    assert (two[grid_h : grid_h + 3] == BAND_VALUE).all()
    assert BAND_VALUE != PAD_VALUE
    assert np.array_equal(two[:grid_h], kernel_grid(_kernels(48, 1)))  # tower 0 on top
    assert np.array_equal(two[grid_h + 3 :], kernel_grid(_kernels(48, 2)))

    three = towers_figure([_kernels(48, 1), _kernels(48, 2), _kernels(48, 3)], band=3, scale=2)
    assert three.shape == (2 * (3 * grid_h + 2 * 3), 2 * (16 * 11 + 17), 3)


def test_towers_of_unequal_size_share_the_width() -> None:
    image = towers_figure([_kernels(20), _kernels(4)], columns=10, pad=1, band=2)
    assert image.shape == ((2 * 11 + 3) + 2 + (11 + 2), 10 * 11 + 11, 3)


def test_save_png_round_trips(tmp_path) -> None:
    image = towers_figure([_kernels(8, 1), _kernels(8, 2)], scale=2)
    path = save_png(image, tmp_path / "sub" / "fig.png")
    assert path == tmp_path / "sub" / "fig.png"
    with Image.open(path) as png:
        assert png.mode == "RGB"
        assert np.array_equal(np.asarray(png), image)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["fig.png"]  # no temp file left behind
    save_png(np.zeros_like(image), path)  # overwrite in place
    with Image.open(path) as png:
        assert not np.asarray(png).any()


def test_save_png_rejects_float_images(tmp_path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        save_png(np.zeros((4, 4, 3), dtype=np.float32), tmp_path / "x.png")
    assert not list(tmp_path.iterdir())
