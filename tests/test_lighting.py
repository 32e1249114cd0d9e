"""PCA lighting (paper section 4.1): the eigen-decomposition and the noise it adds."""

from __future__ import annotations

import numpy as np
import torch

from src.data.cache import RGBStatistics
from src.data.lighting import PCALighting

COVARIANCE = np.array([[3000.0, 2500.0, 2000.0], [2500.0, 2800.0, 2300.0], [2000.0, 2300.0, 2900.0]])


def statistics() -> RGBStatistics:
    return RGBStatistics(mean=np.array([120.0, 110.0, 100.0]), covariance=COVARIANCE)


def test_eigen_decomposition_matches_numpy() -> None:
    stats = statistics()
    values, vectors = np.linalg.eigh(COVARIANCE)
    np.testing.assert_allclose(stats.eigenvalues, values[::-1])
    for i in range(3):  # column i is eigenvector i, up to sign
        assert abs(abs(stats.eigenvectors[:, i] @ vectors[:, 2 - i]) - 1) < 1e-12
    rebuilt = stats.eigenvectors @ np.diag(stats.eigenvalues) @ stats.eigenvectors.T
    np.testing.assert_allclose(rebuilt, COVARIANCE, rtol=1e-10)


def test_noise_lies_in_the_eigenvector_span_with_the_paper_variance() -> None:
    stats = statistics()
    lighting = PCALighting(stats, std=0.1)
    shifts = lighting.shifts(200_000, generator=torch.Generator().manual_seed(0)).double().numpy()
    # Coordinates of each shift along p1, p2, p3 (in 0..255 units): independent, std 255 * 0.1 * l_i
    # with l_i the eigenvalues of the covariance of pixel values in [0, 1].
    coordinates = shifts @ stats.eigenvectors
    expected_std = 255 * 0.1 * stats.eigenvalues / 255**2
    np.testing.assert_allclose(coordinates.std(0), expected_std, rtol=0.01)
    np.testing.assert_allclose(coordinates.mean(0), 0, atol=0.01 * expected_std.max())
    assert abs(np.corrcoef(coordinates.T)[0, 1]) < 0.01
    # Every shift is a combination of the eigenvectors: the projection leaves nothing out.
    np.testing.assert_allclose(coordinates @ stats.eigenvectors.T, shifts, atol=1e-4)


def test_one_shift_per_image_added_to_every_pixel() -> None:
    lighting = PCALighting(statistics(), std=0.1)
    images = torch.full((4, 3, 5, 5), 100.0)
    torch.manual_seed(0)
    out = lighting(images)
    delta = out - images
    assert torch.allclose(delta, delta[:, :, :1, :1].expand_as(delta))  # constant over pixels
    assert not torch.allclose(delta[0], delta[1])  # fresh coefficients per image
    assert torch.equal(PCALighting(statistics(), std=0.0)(images), images)  # data.pca_std=0 turns it off
