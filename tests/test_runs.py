"""Tests of finding, summarising and comparing training runs by their conv1 colour split (section 6.1)."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from src.analysis.kernel_images import score_histogram
from src.analysis.reference_kernels import ReferenceSplit
from src.models.alexnet import AlexNet
from src.models.caffe_weights import write_caffe_weights
from src.models.classifier import load_network
from src.reports.figures import fresh_splits, kernels_plot, split_by_towers_plot
from src.reports.summaries import RunSummary, describe_stats, first_layer, summarise_run, summary_table
from src.runs.folders import (
    checkpoint_for,
    find_runs,
    has_checkpoint,
    is_run_dir,
    latest_checkpoint,
    latest_sweep,
    run_checkpoint,
    run_dir_of,
)

#: conv1 as in the paper (96 kernels, 11x11x3); every later layer tiny, so checkpoints are small.
SMALL = {"conv_widths": (96, 8, 8, 8, 8), "fc_width": 8}
TOWERS = (1, 2, 4)
SEEDS = (0, 1)
HAND_BUILT = (2, 1)  # (towers, seed) of the run whose conv1 is grey in tower 0, opponent colour in tower 1
# Job numbers in an order unlike the (towers, seed) order, so that sorting is tested.
JOBS = {(4, 1): 0, (1, 0): 1, (2, 1): 2, (4, 0): 3, (2, 0): 4, (1, 1): 5}


def make_net(towers: int, seed: int) -> AlexNet:
    """A fresh small net, seeded without touching the global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AlexNet(2, towers, **SMALL)


@torch.no_grad()
def make_grey_and_opponent(net: AlexNet) -> AlexNet:
    """Tower 0's conv1 kernels grey (R = G = B), tower 1's opponent colour (channels minus their mean)."""
    weight = net.layer("conv1").weight
    half = weight.shape[0] // 2
    weight[:half] = weight[:half, :1].expand(-1, 3, -1, -1).clone()
    weight[half:] -= weight[half:].mean(dim=1, keepdim=True)
    return net


def write_run(run_dir: Path, net: AlexNet, seed: int | None, epoch: int = 3) -> Path:
    """A run folder as ``src/train.py`` writes it: ``checkpoints/last.ckpt`` and ``.hydra/config.yaml``."""
    checkpoint = {
        "state_dict": {"net." + k: v for k, v in net.state_dict().items()},
        "epoch": epoch,
        "global_step": 10 * epoch,
    }
    checkpoint["net_config"] = net.config()
    (run_dir / "checkpoints").mkdir(parents=True)
    torch.save(checkpoint, run_dir / "checkpoints" / "last.ckpt")
    if seed is not None:
        model = {"_target_": "src.models.alexnet.AlexNet", "num_classes": "${data.num_classes}"}
        model |= {k: v for k, v in net.config().items() if k != "num_classes"}
        config = {"seed": seed, "data": {"num_classes": net.num_classes}, "model": model}
        (run_dir / ".hydra").mkdir()
        OmegaConf.save(OmegaConf.create(config), run_dir / ".hydra" / "config.yaml")
    return run_dir


def make_sweep(root: Path) -> dict[tuple[int, int], Path]:
    """A multirun-like folder ``root/<job>/`` for towers 1, 2, 4 and seeds 0, 1, plus unrelated folders.

    The run ``HAND_BUILT`` has a grey tower 0 and an opponent-colour tower 1; the others are fresh nets.
    """
    runs = {}
    for towers in TOWERS:
        for seed in SEEDS:
            net = make_net(towers, seed)
            if (towers, seed) == HAND_BUILT:
                make_grey_and_opponent(net)
            runs[towers, seed] = write_run(root / str(JOBS[towers, seed]), net, seed)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a run\n")
    for decoy in ("no_checkpoint", "wrong_suffix", ".hidden"):  # runs, but none to find
        (root / decoy / ".hydra").mkdir(parents=True)
        (root / decoy / "checkpoints").mkdir()
    (root / "wrong_suffix" / "checkpoints" / "last.pt").write_bytes(b"")
    (root / ".hidden" / "checkpoints" / "last.ckpt").write_bytes(b"")
    (root / "not_a_run" / "checkpoints").mkdir(parents=True)  # no .hydra/: not written by src/train.py
    (root / "not_a_run" / "checkpoints" / "last.ckpt").write_bytes(b"")
    return runs


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[tuple[int, int], Path]]:
    root = tmp_path_factory.mktemp("sweep")
    return root, make_sweep(root)


@pytest.fixture(scope="module")
def summaries(sweep: tuple[Path, dict[tuple[int, int], Path]]) -> dict[tuple[int, int], RunSummary]:
    return {key: summarise_run(run) for key, run in sweep[1].items()}


# --- finding runs ---------------------------------------------------------------------------------------


def test_find_runs_finds_exactly_the_runs(sweep: tuple[Path, dict[tuple[int, int], Path]]) -> None:
    root, runs = sweep
    found = find_runs(root)
    assert found == [root / str(job) for job in range(len(runs))]
    assert set(found) == set(runs.values())


def test_find_runs_sorts_job_numbers_numerically(tmp_path: Path) -> None:
    for job in ("10", "2", "1"):
        (tmp_path / job / ".hydra").mkdir(parents=True)
        (tmp_path / job / "checkpoints").mkdir(parents=True)
        (tmp_path / job / "checkpoints" / "epoch_000.ckpt").write_bytes(b"")
    assert [p.name for p in find_runs(tmp_path)] == ["1", "2", "10"]


def test_a_run_is_a_folder_with_hydra_and_the_filters_ask_for_more(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    assert is_run_dir(run) and not has_checkpoint(run)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert has_checkpoint(run) and find_runs(tmp_path) == [run]
    with pytest.raises(FileNotFoundError, match="no folder there holds csv/version_"):
        find_runs(tmp_path, having=lambda folder: False, wanted="csv/version_*/metrics.csv")
    nested = run / "inner"  # a run's own subfolders are not searched, even when they look like a run
    (nested / ".hydra").mkdir(parents=True)
    (nested / "checkpoints").mkdir()
    (nested / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert find_runs(tmp_path) == [run]


def test_find_runs_accepts_a_run_folder(sweep: tuple[Path, dict[tuple[int, int], Path]]) -> None:
    run = sweep[1][2, 0]
    assert find_runs(run) == [run]


def test_find_runs_searches_any_depth(tmp_path: Path) -> None:
    deep = write_run(tmp_path / "train" / "multiruns" / "2026-01-01_00-00-00" / "0", make_net(2, 0), seed=0)
    assert find_runs(tmp_path) == [deep]


def test_find_runs_errors_name_the_folder(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        find_runs(missing)
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "empty"))):
        find_runs(tmp_path / "empty")


def test_run_checkpoint_prefers_last_else_newest(tmp_path: Path) -> None:
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    for name, mtime in (("epoch_001.ckpt", 2_000), ("epoch_000.ckpt", 1_000)):
        (folder / name).write_bytes(b"")
        os.utime(folder / name, (mtime, mtime))
    assert run_checkpoint(tmp_path / "run") == folder / "epoch_001.ckpt"
    (folder / "last.ckpt").write_bytes(b"")
    os.utime(folder / "last.ckpt", (10, 10))
    assert run_checkpoint(tmp_path / "run") == folder / "last.ckpt"


def test_run_checkpoint_error_names_the_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "run"))):
        run_checkpoint(tmp_path / "run")


def test_latest_checkpoint_is_the_newest_one(tmp_path: Path) -> None:
    old = write_run(tmp_path / "train" / "runs" / "b", make_net(1, 0), seed=0)
    new = write_run(tmp_path / "train" / "runs" / "a", make_net(1, 1), seed=1)
    os.utime(old / "checkpoints" / "last.ckpt", (1_000, 1_000))
    os.utime(new / "checkpoints" / "last.ckpt", (2_000, 2_000))
    assert latest_checkpoint(tmp_path) == new / "checkpoints" / "last.ckpt"
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nothing"))):
        latest_checkpoint(tmp_path / "nothing")


def test_latest_sweep(tmp_path: Path) -> None:
    assert latest_sweep(tmp_path) is None
    sweeps = tmp_path / "train" / "multiruns"
    old = write_run(sweeps / "2026-01-01" / "0", make_net(1, 0), seed=0).parent
    new = write_run(sweeps / "2026-01-02" / "0", make_net(1, 0), seed=0).parent
    (sweeps / "2026-01-03").mkdir()  # newest, but holds no run
    os.utime(old, (1_000, 1_000))
    os.utime(new, (2_000, 2_000))
    assert latest_sweep(tmp_path) == new


def test_checkpoint_for_file_run_and_folder(sweep: tuple[Path, dict[tuple[int, int], Path]]) -> None:
    root, runs = sweep
    run = runs[HAND_BUILT]
    last = run / "checkpoints" / "last.ckpt"
    assert checkpoint_for(last) == last
    assert checkpoint_for(run) == last
    assert checkpoint_for(root) in {r / "checkpoints" / "last.ckpt" for r in runs.values()}
    assert run_dir_of(last) == run
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / "missing"))):
        checkpoint_for(root / "missing")


# --- summaries -------------------------------------------------------------------------------------------


def test_hand_built_run_is_split(summaries: dict[tuple[int, int], RunSummary]) -> None:
    s = summaries[HAND_BUILT]
    assert s.split > 0.99
    assert s.auc > 0.995
    assert s.means[0] == pytest.approx(0.0, abs=1e-9)  # grey
    assert s.means[1] == pytest.approx(1.0, abs=1e-9)  # opponent colour
    assert s.fractions == (0.0, 1.0)
    assert (s.towers, s.seed, s.epoch, s.conv1_kernels, s.halves) == (2, 1, 3, 96, False)
    assert s.checkpoint.name == "last.ckpt"


def test_fresh_runs_are_not_split(summaries: dict[tuple[int, int], RunSummary]) -> None:
    fresh = [s for key, s in summaries.items() if key != HAND_BUILT]
    # One fresh split is a draw from the chance distribution (about 0.09 +- 0.07 for 2 x 48 kernels, wider for
    # 4 x 24 where the extreme pair is compared), so single runs get a loose bound and the mean the 0.35 one.
    assert all(s.split < 0.6 for s in fresh), [s.split for s in fresh]
    assert sum(s.split for s in fresh) / len(fresh) < 0.35
    for s in fresh:
        assert all(0.6 < m < 0.75 for m in s.means)  # random kernels score 2/3 +- 0.035


@pytest.mark.parametrize("towers", TOWERS)
def test_fresh_splits_are_at_chance(towers: int) -> None:
    splits = fresh_splits(towers, range(20))
    assert len(splits) == 20
    assert sum(splits) / len(splits) < 0.35
    if towers == 2:
        assert 0.03 < sum(splits) / len(splits) < 0.2  # the documented ~0.09


def test_fresh_splits_leave_the_global_random_state_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fresh_splits(2, range(2))
    torch.testing.assert_close(torch.rand(3), expected)


def test_one_tower_is_measured_over_halves(summaries: dict[tuple[int, int], RunSummary]) -> None:
    s = summaries[1, 0]
    assert s.halves and s.towers == 1 and len(s.means) == 2 and s.p_value is not None
    assert summaries[4, 0].p_value is None and len(summaries[4, 0].means) == 4


def test_summary_without_hydra_config_has_no_seed(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", make_net(2, 0), seed=None, epoch=7)
    s = summarise_run(run)
    assert s.seed is None and s.epoch == 7 and s.run_dir == run
    assert summarise_run(run / "checkpoints" / "last.ckpt") == s


# --- table and text --------------------------------------------------------------------------------------


def test_summary_table_one_row_per_run_in_order(summaries: dict[tuple[int, int], RunSummary]) -> None:
    table = summary_table(list(summaries.values()))
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| run")]
    assert len(rows) == len(summaries)
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert [(c[1], c[2]) for c in cells] == [
        ("1*", "0"), ("1*", "1"), ("2", "0"), ("2", "1"), ("4", "0"), ("4", "1")
    ]  # fmt: skip
    assert [c[0] for c in cells] == [str(JOBS[key]) for key in sorted(JOBS)]
    hand = cells[3]
    assert float(hand[4]) > 0.99 and hand[3] == "3" and hand[7] == "0.000 / 1.000"
    assert len(cells[4][7].split(" / ")) == 4
    assert "halves" in table


def test_summary_table_puts_runs_without_seed_last(summaries: dict[tuple[int, int], RunSummary]) -> None:
    from dataclasses import replace

    unseeded = replace(summaries[2, 0], seed=None, run_dir=Path("/x/unseeded"))
    table = summary_table([unseeded, *summaries.values()])
    runs = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")][1:]
    assert runs.index("unseeded") == 4  # after towers 1 (2 runs) and the seeded 2-tower runs


def test_describe_stats(summaries: dict[tuple[int, int], RunSummary]) -> None:
    from src.analysis.colour import stats_for_model_kernels

    net = load_network(summaries[HAND_BUILT].checkpoint)
    text = describe_stats(stats_for_model_kernels(net.tower_kernels("conv1")))
    assert "split = 1.000" in text and "tower 1: mean colour score 1.000" in text
    halves = describe_stats(stats_for_model_kernels(make_net(1, 0).tower_kernels("conv1")))
    assert "half 0" in halves and "control" in halves


# --- figures ---------------------------------------------------------------------------------------------


def _points(fig: object, gid: str) -> list[tuple[float, float]]:
    ax = fig.axes[0]  # type: ignore[attr-defined]
    return [tuple(xy) for c in ax.collections if c.get_gid() == gid for xy in c.get_offsets()]


def test_split_by_towers_plot(summaries: dict[tuple[int, int], RunSummary]) -> None:
    fig = split_by_towers_plot(list(summaries.values()), reference_seeds=3)
    runs = _points(fig, "runs")
    assert len(runs) == len(summaries)
    assert sorted(round(x) for x, _ in runs) == [1, 1, 2, 2, 4, 4]
    assert max(y for _, y in runs) > 0.99
    means = _points(fig, "means")
    assert [x for x, _ in means] == [1, 2, 4]
    ax = fig.axes[0]
    (level,) = [line for line in ax.get_lines() if line.get_gid() == "random-level"]
    assert level.get_linestyle() == "--" and list(level.get_xdata()) == [1, 2, 4]
    assert any(c.get_gid() == "random-band" for c in ax.collections)
    fig.savefig(io.BytesIO(), format="png")


def test_split_by_towers_plot_without_reference(summaries: dict[tuple[int, int], RunSummary]) -> None:
    fig = split_by_towers_plot([summaries[HAND_BUILT]], reference_seeds=0)
    assert len(_points(fig, "runs")) == 1
    assert not [line for line in fig.axes[0].get_lines() if line.get_gid() == "random-level"]
    with pytest.raises(ValueError):
        split_by_towers_plot([])


def test_kernel_and_histogram_figures() -> None:
    from src.analysis.colour import stats_for_model_kernels

    kernels = make_grey_and_opponent(make_net(2, 0)).tower_kernels("conv1")
    image = kernels_plot(kernels).axes[0].get_images()[0].get_array()
    assert image.shape[2] == 3 and image.shape[0] > 0
    fig = score_histogram(stats_for_model_kernels(kernels))
    assert len(fig.axes[0].patches) >= 2  # one outline per tower
    fig.savefig(io.BytesIO(), format="png")


def test_split_by_towers_plot_with_a_trained_reference(summaries: dict[tuple[int, int], RunSummary]) -> None:
    reference = ReferenceSplit("CaffeNet (ImageNet)", 0.917, 0.917, 0.931)
    fig = split_by_towers_plot(list(summaries.values()), reference_seeds=0, reference=reference)
    ax = fig.axes[0]
    (line,) = [line for line in ax.get_lines() if line.get_gid() == "reference"]
    assert list(line.get_ydata()) == [0.917, 0.917]
    assert line.get_label() == "CaffeNet (ImageNet): 0.92 (0.92..0.93)"
    (strip,) = [patch for patch in ax.patches if patch.get_gid() == "reference-range"]
    assert strip.get_y() == pytest.approx(0.917)
    assert strip.get_y() + strip.get_height() == pytest.approx(0.931)
    fig.savefig(io.BytesIO(), format="png")


def test_first_layer_of_every_kind_of_source(
    sweep: tuple[Path, dict[tuple[int, int], Path]], tmp_path: Path
) -> None:
    run = sweep[1][HAND_BUILT]
    label, kernels = first_layer(run)
    assert label == str(run / "checkpoints" / "last.ckpt") and [k.shape[0] for k in kernels] == [48, 48]
    assert torch.equal(kernels[1], load_network(run / "checkpoints" / "last.ckpt").tower_kernels()[1])

    net = make_grey_and_opponent(make_net(2, 0))
    weights = write_caffe_weights(net, tmp_path / "weights.npy")
    label, kernels = first_layer(weights)
    assert "published weights" in label
    assert all(torch.equal(a, b) for a, b in zip(kernels, net.tower_kernels(), strict=True))

    label, kernels = first_layer("caffenet")
    assert "caffenet_conv1.png" in label and [k.shape for k in kernels] == [(48, 3, 11, 11)] * 2
    with pytest.raises(FileNotFoundError, match="nothing"):
        first_layer(tmp_path / "nothing")
