"""CaffeNet's conv1 kernels recovered from its picture, checked against the picture itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from src.analysis.reference_kernels import (
    CAFFENET_PICTURE,
    MOSAIC,
    PICTURE_SHA256,
    ZERO_SHIFT,
    Axis,
    PictureGeometry,
    caffenet_split,
    caffenet_stats,
    draw_picture,
    fit_geometry,
    padding_lines,
    picture_sha256,
    read_picture,
    recover_kernels,
    zero_level_sensitivity,
    zero_level_table,
)


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    return read_picture()


@pytest.fixture(scope="module")
def recovered():  # noqa: ANN201 - a RecoveredKernels
    return recover_kernels()


def test_the_picture_is_the_one_its_readme_describes() -> None:
    assert picture_sha256() == PICTURE_SHA256
    readme = (CAFFENET_PICTURE.parent / "README.md").read_text()
    for fact in (PICTURE_SHA256, "9b891540", "00-classification.ipynb", "BSD 2-Clause", "unrestricted"):
        assert fact in readme
    assert CAFFENET_PICTURE.stat().st_size < 64_000


def test_nine_padding_lines_each_way_and_one_step_of_about_4_66(picture: np.ndarray) -> None:
    white = (picture[..., :3] == 255).all(axis=-1)
    assert len(padding_lines(white.all(axis=0))) == 9
    assert len(padding_lines(white.all(axis=1))) == 9
    geometry = fit_geometry(picture)
    assert geometry.rows.step == pytest.approx(4.6585, abs=1e-3)
    assert geometry.columns.step == pytest.approx(geometry.rows.step, abs=1e-4)  # square mosaic pixels
    assert geometry.area == (10, 568, 28, 587)  # the opaque box of the picture


@pytest.mark.parametrize("axis", [0, 1])
def test_the_padding_lines_are_where_the_grid_says(picture: np.ndarray, axis: int) -> None:
    """Inside the drawing, a screen line is all white exactly when the grid maps it onto padding."""
    geometry = fit_geometry(picture)
    top, bottom, left, right = geometry.area
    start, stop = (top, bottom) if axis == 0 else (left, right)
    white = (picture[top:bottom, left:right, :3] == 255).all(axis=-1).all(axis=1 - axis)
    grid_axis = geometry.rows if axis == 0 else geometry.columns
    mosaic = grid_axis.mosaic_index(picture.shape[axis])[start:stop]
    on_padding = (mosaic % 12 == 11) | (mosaic < 0) | (mosaic >= MOSAIC)
    assert white.tolist() == on_padding.tolist()
    assert on_padding.sum() >= 9 * 4  # every line is 4 or 5 pixels thick


def test_redrawing_the_kernels_gives_back_every_pixel(picture: np.ndarray, recovered) -> None:  # noqa: ANN001
    redrawn = draw_picture(recovered.kernels, recovered.zero_level, recovered.geometry)
    assert redrawn.shape == picture.shape == (589, 593, 4)
    difference = np.abs(redrawn.astype(int) - picture.astype(int))
    assert difference.max() == 0  # RGB and alpha, every pixel


def test_a_moved_zero_level_redraws_the_same_picture(picture: np.ndarray) -> None:
    moved = recover_kernels(zero_shift=ZERO_SHIFT)
    assert np.array_equal(draw_picture(moved.kernels, moved.zero_level, moved.geometry), picture)


def test_kernels_shapes_channels_and_zero_level(recovered) -> None:  # noqa: ANN001
    assert recovered.kernels.shape == (96, 3, 11, 11) and recovered.codes.shape == (96, 11, 11, 3)
    assert recovered.codes.min() == 0 and recovered.codes.max() == 255  # one min-max map for all kernels
    values = (recovered.codes.astype(np.float64) + 0.5) / 255
    assert recovered.zero_level == pytest.approx(np.median(values))
    assert recovered.zero_level == pytest.approx(122.5 / 255)
    # The picture shows Caffe's BGR weights as RGB: its red channel is the kernels' blue one.
    blue = torch.from_numpy(values[..., 0] - recovered.zero_level)
    assert torch.equal(recovered.kernels[:, 2], blue)
    assert [t.shape for t in recovered.towers()] == [(48, 3, 11, 11), (48, 3, 11, 11)]
    shifted = recover_kernels(zero_shift=0.03)
    assert torch.allclose(shifted.kernels, recovered.kernels - 0.03)


def test_recovery_of_kernels_drawn_at_another_geometry(tmp_path: Path) -> None:
    """Kernels drawn at a made-up scale and offset come back to within the 8-bit code."""
    generator = torch.Generator().manual_seed(0)
    kernels = torch.rand(96, 3, 11, 11, generator=generator, dtype=torch.float64) * 0.99
    geometry = PictureGeometry(Axis(12.4, 4.37), Axis(30.7, 4.52), 560, 600, (13, 538, 31, 573))
    path = tmp_path / "drawn.png"
    Image.fromarray(draw_picture(kernels, 0.0, geometry)).save(path)

    found = recover_kernels(path)

    assert found.geometry.rows.step == pytest.approx(4.37, abs=2e-3)
    assert found.geometry.columns.step == pytest.approx(4.52, abs=2e-3)
    error = (found.kernels + found.zero_level - kernels).abs().max().item()
    assert error <= 0.5 / 255 + 1e-12


def test_a_picture_without_the_grid_is_refused(tmp_path: Path, picture: np.ndarray) -> None:
    path = tmp_path / "cropped.png"
    Image.fromarray(picture[:, :300]).save(path)  # half the columns: 4 padding lines that way
    with pytest.raises(ValueError, match="expected 9 white padding lines"):
        recover_kernels(path)


def test_caffenet_has_a_grey_tower_and_a_colour_tower() -> None:
    stats = caffenet_stats()
    assert stats.means == pytest.approx((0.0553, 0.7401), abs=1e-3)
    assert stats.fractions == pytest.approx((1 / 48, 37 / 48))
    assert stats.most_colour == 1 and stats.split == pytest.approx(0.9167, abs=1e-3)
    assert stats.auc == pytest.approx(0.9583, abs=1e-3) and stats.p_value < 1e-12


def test_the_split_hardly_moves_with_the_zero_level() -> None:
    sensitivity = zero_level_sensitivity()
    assert list(sensitivity) == [-ZERO_SHIFT, 0.0, ZERO_SHIFT]
    for shift, stats in sensitivity.items():
        assert 0.9 < stats.split < 0.95 and stats.most_colour == 1
        if shift:  # a wrong zero adds grey to every kernel: both towers' means drop
            assert stats.means[1] < sensitivity[0.0].means[1] - 0.1
            assert stats.means[0] < sensitivity[0.0].means[0]
    reference = caffenet_split()
    assert reference.low <= reference.split <= reference.high and reference.high - reference.low < 0.02
    table = zero_level_table()
    assert "| -0.03 |" in table and "| +0.03 |" in table and "0.917" in table
