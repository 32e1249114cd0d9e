"""Tests of the conv1 colour-specificity measure (section 6.1, figure 3)."""

from __future__ import annotations

import math

import pytest
import torch

from src.analysis.colour import (
    COLOUR_THRESHOLD,
    TowerColourStats,
    auc,
    colour_specificity,
    halves,
    stats_for_model_kernels,
    tower_colour_stats,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def grey_kernels(k: int, seed: int = 0, h: int = 11) -> torch.Tensor:
    """The same random pattern in all three channels."""
    pattern = torch.randn(k, 1, h, h, generator=_gen(seed), dtype=torch.float64)
    return pattern.expand(k, 3, h, h).clone()


def opponent_kernels(k: int, seed: int = 1, h: int = 11) -> torch.Tensor:
    """Random r, g and b = -(r + g): the channels sum to zero at every pixel."""
    rg = torch.randn(k, 2, h, h, generator=_gen(seed), dtype=torch.float64)
    return torch.cat([rg, -rg.sum(dim=1, keepdim=True)], dim=1)


def random_kernels(k: int, seed: int, std: float = 0.01) -> torch.Tensor:
    """The paper's initialisation, N(0, 0.01^2) (section 5)."""
    return torch.randn(k, 3, 11, 11, generator=_gen(seed)) * std


# --- colour_specificity -------------------------------------------------------------------------------------


def test_grey_kernels_score_zero() -> None:
    scores = colour_specificity(grey_kernels(20))
    assert scores.shape == (20,)
    torch.testing.assert_close(scores, torch.zeros(20, dtype=torch.float64), atol=1e-12, rtol=0)


def test_opponent_kernels_score_one() -> None:
    scores = colour_specificity(opponent_kernels(20))
    torch.testing.assert_close(scores, torch.ones(20, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    ("colour", "expected"),
    [((1.0, 1.0, 1.0), 0.0), ((1.0, 0.0, 0.0), 2 / 3), ((1.0, 1.0, 0.0), 1 / 3), ((1.0, -1.0, 0.0), 1.0)],
)
def test_single_colour_blob_scores_one_minus_cos2_to_grey(
    colour: tuple[float, float, float], expected: float
) -> None:
    pattern = torch.randn(1, 1, 11, 11, generator=_gen(3), dtype=torch.float64)
    kernel = torch.tensor(colour, dtype=torch.float64).view(1, 3, 1, 1) * pattern
    assert colour_specificity(kernel).item() == pytest.approx(expected, abs=1e-12)


def test_scores_in_unit_interval_and_invariant_to_scale_and_negation() -> None:
    k = torch.randn(50, 3, 11, 11, generator=_gen(4), dtype=torch.float64)
    k[:, 0] += 0.7 * k[:, 1]  # not just random: a spread of scores
    base = colour_specificity(k)
    assert base.min() >= 0 and base.max() <= 1
    assert base.std() > 0.01
    for factor in (1e-6, 0.01, 3.0, 1e4, -1.0, -250.0):
        torch.testing.assert_close(colour_specificity(factor * k), base, atol=1e-12, rtol=0)


def test_random_gaussian_kernels_average_two_thirds() -> None:
    scores = colour_specificity(random_kernels(10_000, seed=5))
    # Beta(121, 60.5): mean 2/3, sd 0.035, so the standard error of the mean is 0.00035.
    assert scores.mean().item() == pytest.approx(2 / 3, abs=0.002)
    assert scores.std().item() == pytest.approx(0.0349, abs=0.002)
    assert (scores > COLOUR_THRESHOLD).all()  # random init is colour-specific by this threshold


def test_zero_kernel_scores_zero() -> None:
    k = torch.cat([torch.zeros(1, 3, 11, 11), opponent_kernels(1).float()])
    scores = colour_specificity(k)
    assert not scores.isnan().any()
    assert scores[0].item() == 0.0
    assert scores[1].item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_dtypes(dtype: torch.dtype) -> None:
    grey = grey_kernels(4).to(dtype)
    opp = opponent_kernels(4).to(dtype)
    # float32 and float64 are exact; half precision rounds the opponent sums.
    atol = 1e-12 if dtype in (torch.float32, torch.float64) else 1e-2
    g, o = colour_specificity(grey), colour_specificity(opp)
    assert g.dtype == torch.float64 and o.dtype == torch.float64
    torch.testing.assert_close(g, torch.zeros(4, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(o, torch.ones(4, dtype=torch.float64), atol=atol, rtol=0)


def test_float32_agrees_with_float64() -> None:
    k = torch.randn(30, 3, 11, 11, generator=_gen(6), dtype=torch.float64)
    torch.testing.assert_close(colour_specificity(k.float()), colour_specificity(k), atol=1e-6, rtol=0)


def test_gradients_are_not_tracked() -> None:
    k = torch.randn(3, 3, 5, 5, requires_grad=True)
    assert not colour_specificity(k).requires_grad


@pytest.mark.parametrize(
    "shape", [(3, 11, 11), (4, 1, 11, 11), (4, 4, 11, 11), (2, 3, 11), (1, 2, 3, 11, 11)]
)
def test_shape_errors_name_the_expected_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(k, 3, h, w\)"):
        colour_specificity(torch.zeros(shape))


# --- auc, halves --------------------------------------------------------------------------------------------


def test_auc_counts_ties_half() -> None:
    # pairs: 1>2 no, 1>0 yes, 2=2 half, 2>0 yes -> 2.5 / 4
    assert auc(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 0.0])) == 0.625
    assert auc(torch.tensor([3.0]), torch.tensor([3.0])) == 0.5
    assert auc(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 5.0])) == 0.0


def test_halves_are_the_first_and_second_half() -> None:
    k = torch.arange(7 * 3 * 2 * 2, dtype=torch.float32).view(7, 3, 2, 2)
    first, second = halves(k)
    assert torch.equal(first, k[:3]) and torch.equal(second, k[3:])
    with pytest.raises(ValueError):
        halves(k[:1])


# --- tower statistics ---------------------------------------------------------------------------------------


def test_grey_tower_and_colour_tower_split_perfectly() -> None:
    stats = tower_colour_stats([grey_kernels(48), opponent_kernels(48)])
    assert isinstance(stats, TowerColourStats)
    assert stats.towers == 2 and not stats.halves
    assert stats.auc == 1.0 and stats.split == 1.0
    assert stats.mean_gap == pytest.approx(1.0, abs=1e-12)
    assert (stats.most_colour, stats.least_colour) == (1, 0)
    assert stats.fractions == (0.0, 1.0)
    assert stats.means[0] == pytest.approx(0.0, abs=1e-12)
    assert stats.pairwise_auc == {(0, 1): 0.0}
    assert stats.p_value is not None and stats.p_value < 1e-12
    # the direction does not matter for the split
    swapped = tower_colour_stats([opponent_kernels(48), grey_kernels(48)])
    assert swapped.split == 1.0 and (swapped.most_colour, swapped.least_colour) == (0, 1)


def test_random_towers_barely_split() -> None:
    # Under no difference, 2 * AUC - 1 for 48 vs 48 has sd ~0.12; over 200 seeds the split averaged 0.08
    # and exceeded 0.29 once in a hundred.
    stats = tower_colour_stats([random_kernels(48, seed=10), random_kernels(48, seed=11)])
    assert 0.0 <= stats.split < 0.35
    assert stats.auc == pytest.approx((stats.split + 1) / 2)
    assert stats.mean_gap < 0.03
    assert all(m == pytest.approx(2 / 3, abs=0.02) for m in stats.means)
    assert stats.fractions == (1.0, 1.0)
    assert stats.p_value is not None and stats.p_value > 0.01


def test_partly_coloured_towers_give_an_intermediate_split() -> None:
    # Integer-valued grey kernels score exactly 0 (float grey ones only to ~1e-17), so the grey-grey pairs are
    # exact ties. tower 0: all grey; tower 1: half grey, half opponent
    # -> AUC = (24 * 48 + 0.5 * 24 * 48) / 48^2 = 0.75.
    grey = torch.randint(-5, 6, (72, 1, 11, 11), generator=_gen(7)).expand(72, 3, 11, 11).double()
    tower1 = torch.cat([grey[48:], opponent_kernels(24, seed=8)])
    stats = tower_colour_stats([grey[:48], tower1])
    assert stats.auc == 0.75
    assert stats.split == 0.5
    assert stats.fractions == (0.0, 0.5)


def test_threshold_sets_the_fractions() -> None:
    blob = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1) * torch.randn(10, 1, 11, 11, generator=_gen(9))
    assert tower_colour_stats([blob, blob]).fractions == (1.0, 1.0)  # red scores 2/3 > 0.5
    assert tower_colour_stats([blob, blob], threshold=0.7).fractions == (0.0, 0.0)


def test_one_tower_uses_the_halves() -> None:
    one = torch.cat([grey_kernels(48), opponent_kernels(48)])
    stats = stats_for_model_kernels([one])
    assert stats.halves and stats.towers == 2
    assert stats.split == 1.0 and stats.most_colour == 1
    torch.testing.assert_close(stats.scores[0], colour_specificity(one[:48]))
    with pytest.raises(ValueError, match="stats_for_model_kernels"):
        tower_colour_stats([one])
    assert not stats_for_model_kernels([grey_kernels(4), opponent_kernels(4)]).halves


def test_four_towers_compare_the_extremes() -> None:
    towers = [random_kernels(48, 20), grey_kernels(48), opponent_kernels(48), random_kernels(48, 21)]
    stats = tower_colour_stats(towers)
    assert stats.towers == 4
    assert (stats.most_colour, stats.least_colour) == (2, 1)
    assert stats.split == 1.0 and stats.mean_gap == pytest.approx(1.0, abs=1e-12)
    assert stats.p_value is None
    assert set(stats.pairwise_auc) == {(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)}
    assert stats.pairwise_auc[(0, 1)] == 1.0 and stats.pairwise_auc[(1, 2)] == 0.0


def test_log_dict_keys_and_values() -> None:
    stats = tower_colour_stats([grey_kernels(8), opponent_kernels(8)])
    logged = stats.log_dict()
    assert set(logged) == {
        "kernels/tower0/colour_mean",
        "kernels/tower0/colour_fraction",
        "kernels/tower1/colour_mean",
        "kernels/tower1/colour_fraction",
        "kernels/split",
        "kernels/auc",
        "kernels/mean_gap",
        "kernels/split_p",
        "kernels/tower0/low_freq",
        "kernels/tower1/low_freq",
        "kernels/low_freq",
    }
    assert all(type(v) is float and math.isfinite(v) for v in logged.values())
    assert logged["kernels/split"] == 1.0 and logged["kernels/tower1/colour_mean"] == pytest.approx(1.0)

    four = tower_colour_stats([grey_kernels(4)] * 4).log_dict(prefix="k")
    assert "k/tower3/colour_fraction" in four and "k/split_p" not in four and len(four) == 11 + 5
    assert four["k/split"] == 0.0


def test_stats_are_frozen() -> None:
    stats = tower_colour_stats([grey_kernels(4), opponent_kernels(4)])
    with pytest.raises(AttributeError):
        stats.split = 0.0  # type: ignore[misc]
