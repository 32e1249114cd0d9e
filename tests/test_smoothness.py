"""The learning measure: share of a kernel's energy at low spatial frequencies."""

from __future__ import annotations

import pytest
import torch

from src.analysis.colour import stats_for_model_kernels
from src.analysis.smoothness import low_frequency_share, random_level


def test_random_level_is_the_share_of_frequency_bins_in_the_disc() -> None:
    assert random_level(11, 11, 2.5) == pytest.approx(21 / 121)
    shares = low_frequency_share(torch.randn(4000, 3, 11, 11, generator=torch.Generator().manual_seed(0)))
    assert shares.mean().item() == pytest.approx(21 / 121, abs=0.005)


def test_smooth_kernels_score_high_and_fine_gratings_low() -> None:
    y, x = torch.meshgrid(torch.arange(11.0) - 5, torch.arange(11.0) - 5, indexing="ij")
    blob = torch.exp(-(x**2 + y**2) / 8).expand(3, 11, 11)
    checkerboard = ((-1.0) ** (x + y)).expand(3, 11, 11)
    slow_grating = torch.cos(2 * torch.pi * x / 11).expand(3, 11, 11)  # 1 cycle per kernel: inside the disc
    shares = low_frequency_share(torch.stack([blob, checkerboard, slow_grating, torch.zeros(3, 11, 11)]))
    assert shares[0] > 0.95 and shares[1] < 0.05
    assert shares[2] == pytest.approx(1.0, abs=1e-9)
    assert shares[3] == 0.0


def test_the_measure_is_logged_per_tower_with_the_colour_scores() -> None:
    y, x = torch.meshgrid(torch.arange(11.0) - 5, torch.arange(11.0) - 5, indexing="ij")
    smooth = torch.exp(-(x**2 + y**2) / 8).expand(48, 3, 11, 11) * torch.rand(48, 3, 1, 1)
    noisy = torch.randn(48, 3, 11, 11, generator=torch.Generator().manual_seed(1))
    logged = stats_for_model_kernels([smooth, noisy]).log_dict()
    assert logged["kernels/tower0/low_freq"] > 0.9 and logged["kernels/tower1/low_freq"] < 0.25
    assert logged["kernels/low_freq"] == pytest.approx(
        (logged["kernels/tower0/low_freq"] + logged["kernels/tower1/low_freq"]) / 2
    )


def test_the_disc_scales_with_the_kernel_width() -> None:
    """5 x 5 kernels (the 64-pixel net): DC and its four neighbours, so random kernels score 0.2, not 0.84."""
    assert random_level(11, 11) == pytest.approx(21 / 121)
    assert random_level(5, 5) == pytest.approx(5 / 25) and random_level(5, 5, 2.5) == pytest.approx(21 / 25)
    shares = low_frequency_share(torch.randn(4000, 3, 5, 5, generator=torch.Generator().manual_seed(0)))
    assert shares.mean().item() == pytest.approx(0.2, abs=0.01)
