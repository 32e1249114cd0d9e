"""The split study's runs as its report reads them: per archived epoch, every measure of docs/split-study.md.

An archived run (``src/reports/run_archive.py``) is read twice over: :func:`src.reports.figure3_runs.read_run`
gives what the run logged (``val/acc`` per epoch, the ten-view ``test/acc``, the SGD step of each kernel
snapshot, the wall time, the towers and seed from ``.hydra/config.yaml``); the archive's ``weights.npz`` gives
conv1 at every snapshot and conv2 at the first and the last, from which every measure is computed here by the
one function that owns it (``src/analysis/colour.py``, ``smoothness.py``, ``branches.py``). The logged
``kernels/split`` of the last snapshot must equal the recomputed one: the two are the same function of the
same weights, and :func:`read_study_run` refuses a run where they differ, so that the report never prints a
number that disagrees with the run's own log.

A main run's folder is named ``<arm>_s<seed>`` (``A_s1``); :func:`study_runs` reads those and leaves out the
rest (the pilot, ``pilot_t2_s0``, is read by name with :func:`read_study_run`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from src.analysis.branches import frequency_split, singular_vector_separation
from src.analysis.colour import stats_for_model_kernels
from src.analysis.smoothness import low_frequency_share
from src.reports.figure3_runs import SPLIT, STEP, read_run
from src.reports.run_archive import WEIGHTS_FILE
from src.runs.folders import HYDRA_CONFIG

MAIN_RUN = re.compile(r"(?P<arm>[A-Z])_s(?P<seed>\d+)")
#: The recomputed and the logged final split may differ by float rounding only (float32 weights in both).
LOGGED_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Snapshot:
    """conv1's measures after ``epochs`` epochs (``step`` SGD steps; 0 and 0 at initialisation).

    ``p`` is the two-group Mann-Whitney p (None for four towers); ``colour_fractions`` per tower (for one
    tower, its two fixed halves); ``learning`` the mean low-frequency share of all kernels and
    ``tower_learning`` of each tower's (arm E's per-tower frequency score); ``change_split`` the split of
    conv1 minus its initial weights (0 at initialisation).
    """

    epochs: int
    step: int
    split: float
    auc: float
    p: float | None
    colour_fractions: tuple[float, ...]
    tower_learning: tuple[float, ...]
    change_split: float
    learning: float
    frequency_split: float


@dataclass(frozen=True)
class StudyRun:
    """One archived run of the study: its snapshots and final numbers."""

    name: str
    arm: str
    seed: int
    towers: int
    classes: int
    snapshots: tuple[Snapshot, ...]
    val_acc: float | None
    test_acc: float | None
    fit_s: float | None
    picture: Path | None
    singular_vector_separation: float | None  # one tower only: Distill's test on the final conv1 and conv2

    @property
    def final(self) -> Snapshot:
        return self.snapshots[-1]


def conv_snapshots(archive: Path) -> dict[str, dict[int, np.ndarray]]:
    """``{"conv1": {epochs: weights}, "conv2": {...}}`` from the archive's ``weights.npz``."""
    path = archive / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing; the split study's report needs each run's archived weights"
        )
    weights = np.load(path)
    layers: dict[str, dict[int, np.ndarray]] = {}
    for key in weights.files:
        layer, _, epochs = key.partition("_epoch_")
        layers.setdefault(layer, {})[int(epochs)] = weights[key]
    if 0 not in layers.get("conv1", {}):
        raise ValueError(f"{path}: no conv1_epoch_000 (the initial weights every change split needs)")
    return layers


def measure(conv1: torch.Tensor, initial: torch.Tensor, towers: int, epochs: int, step: int) -> Snapshot:
    """Every conv1 measure of the study for one snapshot."""
    per_tower = list(conv1.chunk(towers))
    stats = stats_for_model_kernels(per_tower)
    change = stats_for_model_kernels([k - k0 for k, k0 in zip(per_tower, initial.chunk(towers), strict=True)])
    return Snapshot(
        epochs=epochs,
        step=step,
        split=stats.split,
        auc=stats.auc,
        p=stats.p_value,
        colour_fractions=stats.fractions,
        tower_learning=stats.low_frequency,
        change_split=change.split if epochs else 0.0,
        learning=float(low_frequency_share(conv1).mean()),
        frequency_split=frequency_split(per_tower),
    )


def read_study_run(archive: Path) -> StudyRun:
    """One archived run (module docstring).

    Raises:
        FileNotFoundError: without ``.hydra/config.yaml`` or ``weights.npz``.
        ValueError: when a snapshot has no logged step, or the logged final split disagrees with the weights.
    """
    logged = read_run(archive)
    config = OmegaConf.load(archive / HYDRA_CONFIG)
    classes = int(OmegaConf.select(config, "data.num_classes", throw_on_resolution_failure=False))
    layers = conv_snapshots(archive)
    conv1 = {e: torch.from_numpy(w) for e, w in sorted(layers["conv1"].items())}
    snapshots = []
    for epochs, weights in conv1.items():
        logged_step = logged.epochs.get(epochs, {}).get(STEP)
        if logged_step is None:
            raise ValueError(
                f"{archive}: conv1 after {epochs} epochs is archived but its step was not logged"
            )
        steps = (
            int(logged_step) + 1 if epochs else 0
        )  # a validation row carries its last batch's 0-based step
        snapshots.append(measure(weights, conv1[0], logged.towers, epochs, steps))
    last = snapshots[-1]
    logged_split = logged.epochs.get(last.epochs, {}).get(SPLIT)
    if logged_split is not None and abs(logged_split - last.split) > LOGGED_TOLERANCE:
        raise ValueError(
            f"{archive}: the split recomputed from {WEIGHTS_FILE} after {last.epochs} epochs is "
            f"{last.split:.4f}, the run logged {logged_split:.4f}: the archive's weights are not the run's"
        )
    separation = None
    conv2 = layers.get("conv2", {})
    if logged.towers == 1 and last.epochs in conv2:
        separation = singular_vector_separation(conv1[last.epochs], torch.from_numpy(conv2[last.epochs]))
    match = MAIN_RUN.fullmatch(archive.name)
    return StudyRun(
        name=archive.name,
        arm=match["arm"] if match else archive.name,
        seed=logged.seed,
        towers=logged.towers,
        classes=classes,
        snapshots=tuple(snapshots),
        val_acc=logged.epochs.get(last.epochs, {}).get("val/acc"),
        test_acc=logged.test_acc,
        fit_s=logged.fit_s,
        picture=logged.picture,
        singular_vector_separation=separation,
    )


def study_runs(root: Path) -> list[StudyRun]:
    """The main runs under ``root`` (folders named ``<arm>_s<seed>``), by arm and seed."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and MAIN_RUN.fullmatch(p.name))
    return sorted((read_study_run(p) for p in folders), key=lambda r: (r.arm, r.seed))
