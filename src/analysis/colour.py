"""How colour-specific are the first-layer kernels, and do the towers differ?

Krizhevsky et al. (NIPS 2012), section 6.1 and figure 3: of the 96 conv1 kernels (11x11x3), the 48 on GPU 1
were "largely colour-agnostic" and the 48 on GPU 2 "largely colour-specific", in every run. The paper shows
pictures; this module turns the claim into numbers.

Definition
----------
A kernel ``w`` of shape (3, h, w) is a vector in the space spanned by three colour dimensions per pixel.
Its grey part is its projection onto the grey axis, ``g = mean_c(w)`` broadcast back to the three channels:
a grey kernel (R = G = B at every pixel) sums the three channels with equal weights, so it responds to
luminance only and is blind to colour. Its chromatic part is the rest, ``w - g``, whose three channels
sum to zero at every pixel (an opponent-colour kernel: red against green, blue against yellow, ...).
The two parts are orthogonal, so ``||w||^2 = ||g||^2 + ||w - g||^2`` and the *colour specificity*

    s(w) = ||w - mean_c(w)||^2 / ||w||^2          in [0, 1]

is the share of the kernel's energy off the grey axis: 0 for a grey kernel, 1 for an opponent kernel,
invariant to scaling and negation (both leave the direction of ``w`` alone). For a kernel that is one
colour ``c`` (a 3-vector) times a spatial pattern, ``s = 1 - cos^2(c, (1, 1, 1))``, for example

    white (1, 1, 1) 0,   tinted grey (1, 1, 0.5) 0.074,   yellow (1, 1, 0) 1/3,   red (1, 0, 0) 2/3,
    blue-yellow (-1, -1, 2) 1,   red-green (1, -1, 0) 1.

A yellow (R + G) blob scores only 1/3: in the network's RGB input it is mostly a luminance detector.

An all-zero kernel has no energy and carries no colour: it scores 0 (defined, documented, no NaN).
Non-finite weights propagate to NaN scores rather than raising, so a diverged run still logs.

Random initialisation is not grey. With i.i.d. N(0, s^2) weights (the paper's initialisation, section 5)
the energy is spread evenly over the 3 colour dimensions of each pixel, 2 of which are off the grey axis:
``s ~ Beta(n/3, n/6)`` with n = 3*h*w weights, mean 2/3 and, for 11x11 kernels, standard deviation 0.035.
A tower that looks "colour-agnostic" after training has therefore moved *towards* grey.

Alternatives considered (not chosen)
------------------------------------
- Mean correlation between the spatial patterns of the kernel's channels: a single-colour blob (colour
  ``c`` times a pattern) has correlations of +-1 whatever ``c`` is, so a saturated blue blob looks grey,
  and it is undefined when a channel is constant.
- Saturation (HSV) of the kernel's mean colour: an edge or grating has a mean colour near zero, so an
  opponent red/green edge gets a noisy, meaningless saturation; HSV is also undefined for the negative
  weights of a kernel and not invariant under negation (the hue flips, clipped saturations move).
- Variance (or spread) of the three per-channel norms: an opponent kernel with channels p, q, -(p + q) of
  similar norms scores like a grey kernel, and unnormalised it depends on the kernel's scale.
- Luminance with display weights (e.g. Y = 0.299 R + 0.587 G + 0.114 B) instead of the equal-weight grey
  axis: the network sees mean-subtracted raw RGB (section 2), where the three channels are on an equal
  footing; display weights would tie the measure to a colour standard the network never used.

Threshold
---------
:data:`COLOUR_THRESHOLD` = 0.5: a kernel is called colour-specific when more of its energy lies off the
grey axis than on it (it is more than 45 degrees from the grey axis). It is fixed by the geometry, not tuned
to data: halfway between grey (0) and opponent (1), it counts a pure primary-colour blob (2/3) as colour and a
tinted grey (0.07) or a secondary-colour blob (1/3) as not. Random kernels (2/3 +- 0.035) sit above it, so at
initialisation both towers' fractions are ~1; the fraction becomes informative once training pulls kernels
towards grey. The tower comparison itself (:attr:`TowerColourStats.split`) uses no threshold.

Tower split
-----------
:func:`tower_colour_stats` compares the towers' score distributions. ``mean_gap`` is the difference between
the highest and the lowest tower mean. ``auc`` is the Mann-Whitney AUC between the scores of those two extreme
towers (ties count half), oriented so that it is >= 0.5: the probability that a kernel of the more colourful
tower scores above one of the other. ``split = 2 * auc - 1`` in [0, 1] is 0 when the towers are alike and 1
when every kernel of one tower is more colourful than every kernel of the other, which is what figure 3
claims. Under no difference, for 48 vs 48 kernels ``2 * auc - 1`` has a standard deviation of about 0.12, so
a split below ~0.3 is within chance (``p_value`` gives the two-sided normal approximation for two groups).

The control (towers = 1)
------------------------
A one-tower network has no towers to compare; :func:`halves` splits its kernels into the first and second
half of the kernel index. The index order is arbitrary, so any split between the halves measures chance
(the statistic's null level on trained kernels). :func:`stats_for_model_kernels` uses the halves when given
one tower, and then the logged ``tower0`` / ``tower1`` keys mean the two halves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from src.analysis.smoothness import low_frequency_share

__all__ = [
    "COLOUR_THRESHOLD",
    "TowerColourStats",
    "auc",
    "colour_specificity",
    "halves",
    "stats_for_model_kernels",
    "tower_colour_stats",
]

#: A kernel is colour-specific when its score exceeds this: more energy off the grey axis than on it
#: (see the module docstring for why 0.5 rather than, e.g., the random-kernel level 2/3).
COLOUR_THRESHOLD: float = 0.5


def _check_kernels(kernels: torch.Tensor) -> None:
    if not isinstance(kernels, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor of shape (k, 3, h, w), got {type(kernels).__name__}")
    if kernels.dim() != 4 or kernels.shape[1] != 3:
        raise ValueError(f"expected kernels of shape (k, 3, h, w), got {tuple(kernels.shape)}")
    if kernels.is_complex() or kernels.dtype == torch.bool:
        raise ValueError(f"expected a real-valued tensor, got dtype {kernels.dtype}")


def colour_specificity(kernels: torch.Tensor) -> torch.Tensor:
    """Share of each kernel's energy off the grey axis (section 6.1, figure 3).

    Args:
        kernels: (k, 3, h, w) first-layer kernels, RGB on dimension 1; any real dtype, any device.

    Returns:
        (k,) float64 scores on the CPU, in [0, 1]: ``||w - mean_c(w)||^2 / ||w||^2``; 0 for a grey kernel
        and for an all-zero kernel, 1 for an opponent-colour kernel (channels summing to zero per pixel).

    Raises:
        ValueError: if ``kernels`` is not (k, 3, h, w).
    """
    _check_kernels(kernels)
    w = kernels.detach().to(device="cpu", dtype=torch.float64).flatten(2)  # (k, 3, h*w)
    chroma = w - w.mean(dim=1, keepdim=True)
    total = w.square().sum(dim=(1, 2))
    off_grey = chroma.square().sum(dim=(1, 2))
    # An all-zero kernel has no colour: 0 / 0 -> 0. (Rounding can leave off_grey a hair above total.)
    zero = total == 0
    scores = torch.where(zero, 0.0, off_grey / torch.where(zero, 1.0, total))
    return scores.clamp(0.0, 1.0)  # NaN (non-finite weights) stays NaN


def auc(higher: torch.Tensor, lower: torch.Tensor) -> float:
    """Mann-Whitney AUC: P(a > b) + P(a == b) / 2 for a from ``higher``, b from ``lower`` (all pairs)."""
    a = higher.detach().to(device="cpu", dtype=torch.float64).flatten()
    b = lower.detach().to(device="cpu", dtype=torch.float64).flatten()
    if a.numel() == 0 or b.numel() == 0:
        raise ValueError("auc needs at least one score on each side")
    diff = a[:, None] - b[None, :]
    wins = (diff > 0).sum().item() + 0.5 * (diff == 0).sum().item()
    return wins / (a.numel() * b.numel())


def _p_value(auc_value: float, n1: int, n2: int) -> float:
    """Two-sided p of a Mann-Whitney AUC under no difference (normal approximation, no tie correction)."""
    sd = math.sqrt((n1 + n2 + 1) / (12.0 * n1 * n2))
    z = abs(auc_value - 0.5) / sd
    return math.erfc(z / math.sqrt(2.0))


def halves(kernels: torch.Tensor) -> list[torch.Tensor]:
    """Split one tower's kernels into two fixed halves: the first and second half of the kernel index.

    The control for a one-tower network (section 6.1 compares two towers): kernel order within a tower is
    arbitrary, so the halves should not differ beyond chance. With an odd count the second half is larger.
    """
    _check_kernels(kernels)
    k = kernels.shape[0]
    if k < 2:
        raise ValueError(f"halves needs at least 2 kernels, got {k}")
    return [kernels[: k // 2], kernels[k // 2 :]]


@dataclass(frozen=True)
class TowerColourStats:
    """Per-tower colour specificity of conv1 kernels and how strongly the towers differ (section 6.1).

    Attributes:
        scores: per tower, the (k_t,) float64 scores of :func:`colour_specificity`.
        means: per tower, the mean score.
        fractions: per tower, the fraction of kernels scoring above ``threshold``.
        threshold: the threshold used for ``fractions``.
        most_colour: index of the tower with the highest mean score (first on ties).
        least_colour: index of the tower with the lowest mean score (first on ties).
        mean_gap: ``means[most_colour] - means[least_colour]`` (>= 0).
        auc: Mann-Whitney AUC between the two extreme towers, oriented to be >= 0.5 (``max(A, 1 - A)`` with
            ``A`` the AUC of ``most_colour`` over ``least_colour``; the two orientations disagree only for
            skewed scores, and then the ranks win).
        split: ``2 * auc - 1`` in [0, 1]: 0 when the towers are alike, 1 when perfectly separated.
        p_value: two-sided p of ``auc`` under no difference (normal approximation), only for two towers;
            None for more, where picking the extreme pair makes it invalid.
        pairwise_auc: for every pair i < j, the unoriented AUC of tower i over tower j (P(s_i > s_j)).
        halves: True when the two "towers" are the halves of one tower (the towers = 1 control).
        low_frequency: per tower, the mean :func:`~src.analysis.smoothness.low_frequency_share` of its
            kernels: how far they have moved from random (about 0.17 for random 11x11 kernels).
    """

    scores: tuple[torch.Tensor, ...]
    means: tuple[float, ...]
    fractions: tuple[float, ...]
    threshold: float
    most_colour: int
    least_colour: int
    mean_gap: float
    auc: float
    split: float
    p_value: float | None
    pairwise_auc: dict[tuple[int, int], float] = field(default_factory=dict)
    halves: bool = False
    low_frequency: tuple[float, ...] = ()

    @property
    def towers(self) -> int:
        """Number of groups compared (2 for the halves control)."""
        return len(self.scores)

    def log_dict(self, prefix: str = "kernels") -> dict[str, float]:
        """Flat scalars for the logger.

        Keys (with the default prefix):

        - ``kernels/tower{t}/colour_mean``: mean colour specificity of tower t's kernels;
        - ``kernels/tower{t}/colour_fraction``: fraction of them above the threshold;
        - ``kernels/split``: 2 * AUC - 1 between the extreme towers, 0 alike .. 1 separated;
        - ``kernels/auc``: that AUC (>= 0.5);
        - ``kernels/mean_gap``: highest minus lowest tower mean;
        - ``kernels/split_p`` (two groups only): two-sided p-value of the split under no difference;
        - ``kernels/tower{t}/low_freq`` and ``kernels/low_freq``: the mean low-frequency share of tower t's
          kernels and of all of them (the learning measure, ``src/analysis/smoothness.py``).

        For the towers = 1 control (``halves`` True), tower0 / tower1 are the first / second half of the
        one tower's kernels.
        """
        out: dict[str, float] = {}
        for t, (mean, fraction) in enumerate(zip(self.means, self.fractions, strict=True)):
            out[f"{prefix}/tower{t}/colour_mean"] = float(mean)
            out[f"{prefix}/tower{t}/colour_fraction"] = float(fraction)
        out[f"{prefix}/split"] = float(self.split)
        out[f"{prefix}/auc"] = float(self.auc)
        out[f"{prefix}/mean_gap"] = float(self.mean_gap)
        if self.p_value is not None:
            out[f"{prefix}/split_p"] = float(self.p_value)
        if self.low_frequency:
            counts = [s.numel() for s in self.scores]
            for t, share in enumerate(self.low_frequency):
                out[f"{prefix}/tower{t}/low_freq"] = float(share)
            weighted = sum(share * n for share, n in zip(self.low_frequency, counts, strict=True))
            out[f"{prefix}/low_freq"] = float(weighted / sum(counts))
        return out


def tower_colour_stats(
    kernels_per_tower: Sequence[torch.Tensor], threshold: float = COLOUR_THRESHOLD, *, halves: bool = False
) -> TowerColourStats:
    """Colour specificity per tower and the tower split (section 6.1, figure 3).

    Args:
        kernels_per_tower: at least two (k_t, 3, h, w) tensors, one per tower (tower 0 = the paper's GPU 1).
        threshold: score above which a kernel counts as colour-specific, for ``fractions``.
        halves: mark the result as the one-tower control (see :func:`stats_for_model_kernels`).

    With more than two towers, ``mean_gap``, ``auc`` and ``split`` compare the extreme towers (highest and
    lowest mean score); ``pairwise_auc`` has every pair.
    """
    if len(kernels_per_tower) < 2:
        raise ValueError(
            f"need at least 2 towers, got {len(kernels_per_tower)}; use stats_for_model_kernels for one tower"
        )
    scores = tuple(colour_specificity(k) for k in kernels_per_tower)
    for t, s in enumerate(scores):
        if s.numel() == 0:
            raise ValueError(f"tower {t} has no kernels")
    means = tuple(float(s.mean()) for s in scores)
    fractions = tuple(float((s > threshold).double().mean()) for s in scores)
    most = max(range(len(means)), key=lambda t: means[t])
    least = min(range(len(means)), key=lambda t: means[t])
    raw = auc(scores[most], scores[least])
    oriented = max(raw, 1.0 - raw)
    pairwise = {
        (i, j): auc(scores[i], scores[j]) for i in range(len(scores)) for j in range(i + 1, len(scores))
    }
    p = _p_value(oriented, scores[0].numel(), scores[1].numel()) if len(scores) == 2 else None
    return TowerColourStats(
        scores=scores,
        means=means,
        fractions=fractions,
        threshold=threshold,
        most_colour=most,
        least_colour=least,
        mean_gap=means[most] - means[least],
        auc=oriented,
        split=2.0 * oriented - 1.0,
        p_value=p,
        pairwise_auc=pairwise,
        halves=halves,
        low_frequency=tuple(float(low_frequency_share(k).mean()) for k in kernels_per_tower),
    )


def stats_for_model_kernels(
    kernels_per_tower: Sequence[torch.Tensor], threshold: float = COLOUR_THRESHOLD
) -> TowerColourStats:
    """:func:`tower_colour_stats` for a model's conv1 kernels, one tensor per tower.

    With one tower (the one-GPU network) the two fixed :func:`halves` of its kernels are compared instead:
    the control, whose split measures chance. The result's ``halves`` flag says which case it is.
    """
    if len(kernels_per_tower) == 0:
        raise ValueError("need the kernels of at least one tower")
    if len(kernels_per_tower) == 1:
        return tower_colour_stats(halves(kernels_per_tower[0]), threshold, halves=True)
    return tower_colour_stats(kernels_per_tower, threshold)
