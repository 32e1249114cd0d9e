"""Branch-specialisation measures of the split study (src/analysis/branches.py) and the fresh-net bands."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from src.analysis.branches import frequency_split, singular_vector_separation, spearman
from src.reports.split_study import BAND_COLUMNS, main


def smooth_and_noisy(k: int = 24, size: int = 5) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    smooth = torch.ones(k, 3, size, size) + 0.01 * torch.randn(k, 3, size, size, generator=generator)
    checker = (torch.arange(size)[:, None] + torch.arange(size)[None, :]) % 2 * 2.0 - 1.0
    noisy = checker.expand(k, 3, size, size) + 0.01 * torch.randn(k, 3, size, size, generator=generator)
    return [smooth, noisy]


def test_frequency_split_separates_smooth_from_fine_towers_and_not_random_ones() -> None:
    assert frequency_split(smooth_and_noisy()) == pytest.approx(1.0)
    random = list(torch.randn(96, 3, 5, 5, generator=torch.Generator().manual_seed(1)).chunk(2))
    assert frequency_split(random) < 0.4
    assert frequency_split([torch.cat(smooth_and_noisy())]) == pytest.approx(1.0)  # one tower: its halves


def test_singular_vector_separation_finds_wiring_that_follows_colour() -> None:
    generator = torch.Generator().manual_seed(0)
    conv1 = torch.randn(96, 3, 5, 5, generator=generator)
    conv1[:48] = conv1[:48, :1].expand(-1, 3, -1, -1).clone()  # grey kernels
    conv1[48:] -= conv1[48:].mean(dim=1, keepdim=True)  # opponent-colour kernels
    conv2 = 0.01 * torch.randn(64, 96, 3, 3, generator=generator)
    conv2[:32, :48] *= 20  # half of conv2 reads the grey kernels, half the colour ones
    conv2[32:, 48:] *= 20
    assert singular_vector_separation(conv1, conv2) > 0.7  # two groups apart, no order inside: 0.75
    unrelated = torch.randn(64, 96, 3, 3, generator=generator)
    assert singular_vector_separation(conv1, unrelated) < 0.4
    with pytest.raises(ValueError, match="conv2 reads 48 maps but conv1 has 96 kernels"):
        singular_vector_separation(conv1, conv2[:, :48])


def test_spearman_is_one_for_any_increasing_map() -> None:
    x = torch.randn(50, generator=torch.Generator().manual_seed(0))
    assert spearman(x, x.exp()) == pytest.approx(1.0) and spearman(x, -x) == pytest.approx(-1.0)


def test_bands_command_writes_a_plain_csv_per_tower_count_and_measure(tmp_path: Path) -> None:
    out = tmp_path / "bands.csv"
    main(["bands", "--out", str(out), "--seeds", "3"])
    rows = list(csv.DictReader(out.open()))
    assert tuple(rows[0]) == BAND_COLUMNS
    assert [(r["towers"], r["measure"]) for r in rows] == [
        ("1", "split"), ("1", "frequency_split"), ("1", "singular_vector_separation"),
        ("2", "split"), ("2", "frequency_split"), ("4", "split"), ("4", "frequency_split"),
    ]  # fmt: skip
    assert all(r["nets"] == "3" and 0.0 <= float(r["p99"]) <= float(r["max"]) <= 1.0 for r in rows)


def test_an_archive_keeps_conv1_of_every_snapshot_and_conv2_of_the_first_and_last(tmp_path: Path) -> None:
    import numpy as np

    from src.reports.run_archive import keep_weights

    snapshots = []
    for epoch in range(3):
        path = tmp_path / "kernels" / f"epoch_{epoch:03d}_weights.npz"
        path.parent.mkdir(exist_ok=True)
        np.savez(
            path,
            conv1=np.full((4, 3, 5, 5), epoch, np.float32),
            conv2=np.full((2, 2, 5, 5), epoch, np.float32),
        )
        snapshots.append(path)
    keep_weights(snapshots, tmp_path / "weights.npz")
    with np.load(tmp_path / "weights.npz") as kept:
        assert sorted(kept) == [
            "conv1_epoch_000", "conv1_epoch_001", "conv1_epoch_002", "conv2_epoch_000", "conv2_epoch_002",
        ]  # fmt: skip
        assert float(kept["conv1_epoch_001"].mean()) == 1.0 and float(kept["conv2_epoch_002"].mean()) == 2.0
