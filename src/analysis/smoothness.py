"""How far first-layer kernels have moved from random: the share of their energy at low spatial frequencies.

Trained conv1 kernels (figure 3 of the paper) are smooth: oriented gratings and edges of a few pixels'
period, and colour blobs. I.i.d. random kernels (any initialisation of section 5 or He et al.) spread their
energy evenly over all spatial frequencies. So the share of a kernel's energy (summed over its three
channels) at spatial frequencies within :data:`LOW_FREQUENCY_RADIUS` cycles per kernel width of DC measures
how far the kernel has left its random start, whatever its colour:

    share(w) = sum_{|f| <= 2.5} |W_c(f)|^2 / sum_f |W_c(f)|^2        (W_c: the 2-d DFT of channel c)

For i.i.d. weights every frequency bin holds the same expected energy, so the expected share is the share of
bins inside the radius: 21 of 121 = 0.174 for 11 x 11 kernels (:func:`random_level`); a kernel that is one
smooth blob scores near 1. The radius is fixed by the kernel grid (the bins within 2.5 cycles: DC, the first
ring and the second), not tuned to data; a grating whose period is shorter than 11 / 2.5 = 4.4 pixels counts
as high-frequency, so a trained layer does not reach 1.

Other kernel sizes (the 64-pixel net's 5 x 5 conv1) scale the radius with the kernel's width,
``2.5 * w / 11`` (1.14 cycles for 5 x 5: DC and its four neighbours, 5 of 25 bins, a random level of 0.2),
so that the disc covers the same part of the spectrum; a fixed 2.5 would hold 21 of 25 bins there and
random kernels would score 0.84.
"""

from __future__ import annotations

import torch

#: Radius, in cycles per kernel width, of the low-frequency disc around DC, for 11 x 11 kernels.
LOW_FREQUENCY_RADIUS: float = 2.5
REFERENCE_WIDTH = 11  # the paper's conv1 kernels, for which the radius above was fixed


def scaled_radius(width: int) -> float:
    """The disc's radius for kernels ``width`` wide: :data:`LOW_FREQUENCY_RADIUS` scaled with the width."""
    return LOW_FREQUENCY_RADIUS * width / REFERENCE_WIDTH


def _low_frequency_mask(height: int, width: int, radius: float) -> torch.Tensor:
    fy = torch.fft.fftfreq(height, dtype=torch.float64) * height  # integer cycles per kernel height
    fx = torch.fft.fftfreq(width, dtype=torch.float64) * width
    return fy[:, None].square() + fx[None, :].square() <= radius**2


def low_frequency_share(kernels: torch.Tensor, radius: float | None = None) -> torch.Tensor:
    """Per kernel, the share of its spectral energy within ``radius`` cycles of DC (default: the radius
    scaled to the kernels' width, :func:`scaled_radius`).

    Args:
        kernels: (k, c, h, w) kernels, any real dtype and device.

    Returns:
        (k,) float64 shares on the CPU, in [0, 1]; 0 for an all-zero kernel; NaN for non-finite weights.
    """
    if kernels.dim() != 4:
        raise ValueError(f"expected kernels of shape (k, c, h, w), got {tuple(kernels.shape)}")
    w = kernels.detach().to(device="cpu", dtype=torch.float64)
    power = torch.fft.fft2(w).abs().square().sum(dim=1)  # (k, h, w): summed over channels
    radius = scaled_radius(w.shape[-1]) if radius is None else radius
    mask = _low_frequency_mask(w.shape[-2], w.shape[-1], radius)
    total = power.sum(dim=(1, 2))
    low = (power * mask).sum(dim=(1, 2))
    zero = total == 0
    return torch.where(zero, 0.0, low / torch.where(zero, 1.0, total))


def random_level(height: int = 11, width: int = 11, radius: float | None = None) -> float:
    """The expected :func:`low_frequency_share` of i.i.d. random kernels: the share of bins in the disc."""
    radius = scaled_radius(width) if radius is None else radius
    return float(_low_frequency_mask(height, width, radius).double().mean())
