"""Measures of branch specialisation beyond the colour split, for the split study (docs/split-study.md).

- :func:`frequency_split`: do the towers differ in spatial frequency? ``2 * AUC - 1`` of the kernels'
  low-frequency shares (``smoothness.low_frequency_share``) between the towers with the highest and the
  lowest mean share; the frequency twin of ``colour.TowerColourStats.split``. Voss et al. (Distill 2021,
  "Branch Specialization") saw four first-layer branches differ by colour *and* frequency.
- :func:`singular_vector_separation`: Distill's test on an unbranched net, as this project reads it. conv2's
  absolute weights, summed over the kernel's positions, form a (conv2 units x conv1 units) matrix of how
  strongly each conv2 unit reads each conv1 unit; its leading right singular vector, after each row is centred
  (so the vector follows how conv2 units *differ* in what they read, not their common magnitude), gives every
  conv1 kernel a coordinate. The measure is the absolute Spearman correlation of those coordinates with the
  kernels' colour specificity (``colour.colour_specificity``): 1 when the leading direction of conv2's wiring
  sorts the kernels by colour, 0.75 when it puts grey and colour kernels apart with no order inside each
  group (two equal groups), 0 when it ignores colour (the sign of a singular vector is arbitrary, hence
  the absolute value). A rank correlation rather than an AUC at a colour threshold: random kernels score
  about 2/3, so at initialisation a threshold leaves a handful of kernels on one side (or none) and the
  AUC's chance band is nearly as wide as its range.
- :func:`fresh_bands`: each measure on untrained nets of a given table and tower count, seeds 0..n-1: the
  band a trained run must leave before anything it shows counts as learned structure.
"""

from __future__ import annotations

import torch

from src.analysis.colour import auc, colour_specificity, stats_for_model_kernels
from src.analysis.smoothness import low_frequency_share


def frequency_split(kernels_per_tower: list[torch.Tensor]) -> float:
    """``2 * AUC - 1`` of the low-frequency shares between the extreme towers (two halves for one tower)."""
    groups = kernels_per_tower if len(kernels_per_tower) > 1 else list(kernels_per_tower[0].chunk(2))
    shares = [low_frequency_share(k) for k in groups]
    means = [float(s.mean()) for s in shares]
    high = max(range(len(means)), key=means.__getitem__)
    low = min(range(len(means)), key=means.__getitem__)
    value = auc(shares[high], shares[low])
    return 2.0 * max(value, 1.0 - value) - 1.0


def singular_vector_separation(conv1: torch.Tensor, conv2: torch.Tensor) -> float:
    """Distill's test (see the module docstring), in [0, 1].

    Args:
        conv1: (k, 3, h, w) kernels of an unbranched conv1.
        conv2: (m, k, h2, w2) weights of the conv2 that reads all ``k`` of them.
    """
    if conv2.shape[1] != conv1.shape[0]:
        raise ValueError(
            f"conv2 reads {conv2.shape[1]} maps but conv1 has {conv1.shape[0]} kernels: the test needs an "
            "unbranched conv2 (one tower)"
        )
    strength = conv2.detach().double().abs().sum(dim=(2, 3))  # (m, k)
    centred = strength - strength.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return abs(spearman(vh[0], colour_specificity(conv1)))


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two 1-d tensors (ties broken by position: continuous scores)."""
    ranks = [x.double().argsort().argsort().double() for x in (a, b)]
    centred = [r - r.mean() for r in ranks]
    return float((centred[0] * centred[1]).sum() / (centred[0].norm() * centred[1].norm()))


def fresh_bands(layers: str, towers: int, seeds: int) -> dict[str, list[float]]:
    """Per measure, its values on ``seeds`` untrained ``AlexNet(layers=..., towers=...)`` (the project's
    initialisation, seeds 0..seeds-1): ``split`` (colour), ``frequency_split`` and, for one tower,
    ``singular_vector_separation``."""
    from src.models.alexnet import AlexNet

    bands: dict[str, list[float]] = {"split": [], "frequency_split": []}
    if towers == 1:
        bands["singular_vector_separation"] = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        net = AlexNet(num_classes=2, towers=towers, layers=layers, fc_width=towers)
        kernels = net.tower_kernels("conv1")
        bands["split"].append(stats_for_model_kernels(kernels).split)
        bands["frequency_split"].append(frequency_split(kernels))
        if towers == 1:
            bands["singular_vector_separation"].append(
                singular_vector_separation(kernels[0], net.layer("conv2").weight)
            )
    return bands
