"""PCA colour augmentation, "fancy PCA" (paper section 4.1, second form of data augmentation).

"We perform PCA on the set of RGB pixel values throughout the ImageNet training set. To each training image,
we add multiples of the found principal components, with magnitudes proportional to the corresponding
eigenvalues times a random variable drawn from a Gaussian with mean zero and standard deviation 0.1.
Therefore to each RGB image pixel I_xy = [R, G, B]^T we add the following quantity:
[p1, p2, p3][a1 l1, a2 l2, a3 l3]^T where p_i and l_i are the ith eigenvector and eigenvalue of the 3x3
covariance matrix of RGB pixel values, respectively, and a_i is the aforementioned random variable. Each a_i
is drawn only once for all the pixels of a particular training image until that image is used for training
again, at which point it is re-drawn."

Units. The paper does not say in which units it took the covariance. Its eigenvalues are variances, so in
0..255 pixel units an eigenvalue of ~4,000 times a_i ~ 0.1 would shift pixels by hundreds of levels. As the
widely used reimplementations do (fb.resnet.torch, with eigenvalues 0.2175, 0.0188, 0.0045), we take the
covariance of pixel values scaled to [0, 1], form the shift there and scale it back to 0..255: the shift
along p_i has standard deviation ``255 * 0.1 * l_i`` levels (about 5 levels for ImageNet's first component).
"""

from __future__ import annotations

import torch

from src.data.cache import RGBStatistics

PCA_STD = 0.1  # section 4.1: a_i ~ N(0, 0.1)
PIXEL_SCALE = 255.0


class PCALighting(torch.nn.Module):
    """Adds ``[p1 p2 p3][a1 l1, a2 l2, a3 l3]^T`` to every pixel of each image, fresh a_i per image."""

    def __init__(self, statistics: RGBStatistics, std: float = PCA_STD) -> None:
        super().__init__()
        unit_scale = PIXEL_SCALE**2  # covariance of pixel values in [0, 1]
        self.std = std
        self.register_buffer("eigenvalues", torch.as_tensor(statistics.eigenvalues / unit_scale).float())
        self.register_buffer("eigenvectors", torch.as_tensor(statistics.eigenvectors).float())

    def shifts(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(batch, 3) RGB shifts in 0..255 units, one per image."""
        alpha = torch.randn(batch, 3, generator=generator, device=self.eigenvalues.device) * self.std
        return PIXEL_SCALE * (alpha * self.eigenvalues) @ self.eigenvectors.T

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images``: float (B, 3, H, W) in 0..255 units; returns them with each image's shift added."""
        if self.std == 0:
            return images
        return images + self.shifts(images.shape[0]).to(images.dtype)[:, :, None, None]
