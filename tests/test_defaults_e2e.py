"""The defaults as a user meets them (issue #26): the net's initialisation, the dead-run detector's settings,
exit code 3 for a dead run and SIGTERM during the last validation, end to end.

- The default initialisation, as docs/training-defaults.md states it: conv1 at the paper's N(0, 0.01) with
  zero biases, He's (kaiming normal, fan_in, ReLU gain) everywhere else with zero biases, except fc8 at
  N(0, 0.01); for ``AlexNet(num_classes=...)`` with no ``init`` and for the net the composed default config
  builds.
- ``callbacks.training_health``: 25 / 0.01 / 8 in the file, in the composed config, in the instantiated
  callback and in the class's own defaults.
- ``python src/train.py`` with a run that dies: exit code 3, the one-line reason, ``DIED.txt``, no traceback.
- ``python src/train.py`` that gets SIGTERM during its last validation: the validation finishes, the epoch's
  ``last.ckpt`` is whole, no test runs, exit code 143 with the line that says how to go on; that command
  then only tests.

The runs share one build of the C++ LRN kernel (``XDG_CACHE_HOME``), so that only the first one builds it.
"""

from __future__ import annotations

import csv
import inspect
import math
import re
from pathlib import Path

import hydra
import pytest
import torch
import yaml
from torch import nn

from src.callbacks.preemption import PREEMPTED_EXIT_CODE
from src.callbacks.training_health import DIED_EXIT_CODE, DIED_FILE, WHAT_TO_TRY, TrainingHealth
from src.models.alexnet import PAPER_INIT_STD, AlexNet
from src.models.layer_table import CONV_NAMES, FC_NAMES
from src.train import build_callbacks
from tests.conftest import CONF, compose_train
from tests.helpers.sigterm_in_validation import SIGNALLED, VALIDATED
from tests.test_resume import checkpoint, run_train, the_run_dir

HE_LAYERS = ("conv2", "conv3", "conv4", "conv5", "fc6", "fc7")
PAPER_LAYERS = ("conv1", "fc8")


# -- the default initialisation -------------------------------------------------------------------------


def he_std(layer: nn.Conv2d | nn.Linear) -> float:
    """He et al. 2015's std for a ReLU layer: sqrt(2 / fan_in), fan_in = one output unit's inputs."""
    return math.sqrt(2.0 / layer.weight[0].numel())


def assert_gaussian(weight: torch.Tensor, std: float, name: str) -> None:
    """``weight`` looks like N(0, std^2): its std within 3 % (more for small layers: 6 standard errors of a
    sample std, 1 / sqrt(2n)), its mean within 6 standard errors of 0. Holds for any seed."""
    values = weight.detach().float().flatten()
    n = values.numel()
    measured = values.std().item()
    tolerance = max(0.03, 6 / math.sqrt(2 * n))
    assert measured == pytest.approx(std, rel=tolerance), f"{name}: std {measured:.5g}, expected {std:.5g}"
    assert abs(values.mean().item()) < 6 * std / math.sqrt(n), f"{name}: mean {values.mean().item():.3g}"


def assert_default_initialisation(net: AlexNet) -> None:
    assert net.init == "kaiming_paper_conv1"
    for name in CONV_NAMES + FC_NAMES:
        layer = net.layer(name)
        expected = PAPER_INIT_STD if name in PAPER_LAYERS else he_std(layer)
        assert_gaussian(layer.weight, expected, name)
        assert torch.count_nonzero(layer.bias) == 0, f"{name}: biases not all zero"
    # conv1 is the paper's, not He's (0.074 for 11x11x3 kernels, 0.163 for 5x5x3): far below it.
    conv1 = net.layer("conv1")
    assert conv1.weight.std().item() < he_std(conv1) / 4


def test_the_default_initialisation_of_alexnet_with_no_init_argument() -> None:
    net = AlexNet(num_classes=10)
    assert net.layer("conv1").weight.shape == (96, 3, 11, 11)  # 34,848 weights: the std within 3 %
    assert he_std(net.layer("conv1")) == pytest.approx(0.0742, abs=1e-4)
    assert_default_initialisation(net)


@pytest.mark.parametrize(
    ("overrides", "conv1_shape"),
    [([], (96, 3, 11, 11)), (["model=two_tower_64"], (96, 3, 5, 5))],
    ids=["paper", "two_tower_64"],
)
def test_the_default_initialisation_of_the_net_the_default_config_builds(
    overrides: list[str], conv1_shape: tuple[int, ...], tmp_path: Path
) -> None:
    cfg = compose_train(overrides, tmp_path)
    assert cfg.model.init == inspect.signature(AlexNet).parameters["init"].default  # config and class agree
    net = hydra.utils.instantiate(cfg.model)
    assert isinstance(net, AlexNet) and net.layers == ("small64" if overrides else "paper")
    assert net.layer("conv1").weight.shape == conv1_shape
    assert_default_initialisation(net)


# -- the dead-run detector's defaults -------------------------------------------------------------------

HEALTH_DEFAULTS = {"every_n_steps": 25, "min_logit_spread": 0.01, "patience": 8}


def test_the_dead_run_detector_defaults_agree_in_file_config_callback_and_class(tmp_path: Path) -> None:
    in_file = yaml.safe_load((CONF / "callbacks" / "default.yaml").read_text())["training_health"]
    assert in_file["_target_"] == "src.callbacks.training_health.TrainingHealth"
    assert {key: in_file[key] for key in HEALTH_DEFAULTS} == HEALTH_DEFAULTS
    composed = compose_train([], tmp_path).callbacks.training_health
    assert {key: composed[key] for key in HEALTH_DEFAULTS} == HEALTH_DEFAULTS
    # The callback src/train.py builds from the default config carries them.
    (health,) = [c for c in build_callbacks(compose_train([], tmp_path)) if isinstance(c, TrainingHealth)]
    assert {key: getattr(health, key) for key in HEALTH_DEFAULTS} == HEALTH_DEFAULTS
    # ... and so does the class by itself (a test or notebook that builds it bare gets the same detector).
    parameters = inspect.signature(TrainingHealth).parameters
    assert {key: parameters[key].default for key in HEALTH_DEFAULTS} == HEALTH_DEFAULTS
    assert HEALTH_DEFAULTS["every_n_steps"] * HEALTH_DEFAULTS["patience"] == 200  # "200 steps" in the docs


# -- end to end: python src/train.py --------------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel_cache(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One cache for the C++ LRN kernel (``src/models/lrn_kernel.py``) for this module's runs: built once."""
    return {"XDG_CACHE_HOME": str(tmp_path_factory.mktemp("xdg_cache"))}


def metrics_rows(run: Path) -> list[dict[str, str]]:
    (metrics,) = run.glob("csv/version_*/metrics.csv")
    with open(metrics) as file:
        return list(csv.DictReader(file))


DEAD_RUNS = {
    # What a user may type: a rate far too large. The weights blow up within a few steps; whether the loss
    # turns non-finite first or the output goes constant first depends on float rounding, so both count.
    "lr_1e6": (
        ["optimizer.lr=1e6", "callbacks.training_health.patience=2"],
        r"the training loss is (nan|inf|-inf)|the network's output no longer depends on its input: .*",
    ),
    # An output that cannot depend on the input: dropout 1 zeroes fc6's and fc7's inputs in training, so the
    # logits are fc7's and fc8's biases for every image. Checks at steps 0, 1, 2: the third in a row stops it.
    "constant_output": (
        ["model.dropout=1.0", "callbacks.training_health.patience=3"],
        r"the network's output no longer depends on its input: the logits' spread across the batch was "
        r"below 0\.01 at 3 checks in a row \(about 3 steps\); last [0-9.e+-]+",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(DEAD_RUNS))
def test_a_dead_run_exits_with_code_3_and_one_line_saying_why(
    case: str, tmp_path: Path, kernel_cache: dict[str, str]
) -> None:
    overrides, reason = DEAD_RUNS[case]
    result = run_train(
        tmp_path,
        *overrides,
        "callbacks.training_health.every_n_steps=1",
        "trainer.max_epochs=3",
        "logger=csv",
        env=kernel_cache,
    )
    assert result.returncode == DIED_EXIT_CODE, result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if "training died" in line]
    kept = re.escape(f"The checkpoints already written are kept; {WHAT_TO_TRY}.")
    died = re.fullmatch(
        rf"error: training died at step (\d+), epoch 0 \(lr [0-9.e+-]+\): ({reason})\. {kept}", line
    )
    assert died, line
    if case == "constant_output":
        assert died.group(1) == "2"
        assert float(line.split("; last ")[1].split(". ")[0]) < 0.01
    run = the_run_dir(tmp_path)
    assert (run / DIED_FILE).read_text() == line.removeprefix("error: ") + "\n"
    assert "final:" not in result.stdout  # no number reported for a dead run
    assert any(row.get("health/dead") == "1.0" for row in metrics_rows(run))
    assert not list(run.glob("checkpoints/*.ckpt"))  # died in epoch 0: no epoch ended, nothing saved


@pytest.mark.slow
@pytest.mark.long
def test_sigterm_during_the_last_validation_saves_skips_the_test_and_exits_143(
    tmp_path: Path, kernel_cache: dict[str, str]
) -> None:
    sigterm = "+callbacks.sigterm._target_=tests.helpers.sigterm_in_validation.SigtermInLastValidation"
    # 12 images a class, half held out: 2 training batches of 8 and 2 validation batches (8 + 4).
    result = run_train(
        tmp_path, sigterm, "data.val_fraction=0.5", "trainer.max_epochs=1", "logger=csv", env=kernel_cache
    )
    assert result.returncode == PREEMPTED_EXIT_CODE, result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    run = the_run_dir(tmp_path)
    epoch, step, val_batches = (int(v) for v in (run / SIGNALLED).read_text().split())
    assert (epoch, step, val_batches) == (0, 2, 2)  # in the last epoch's validation, after training ended
    # The validation went on to its end after the signal, and was logged.
    assert (run / VALIDATED).read_text().split() == ["0", "1"]
    rows = metrics_rows(run)
    assert [row["epoch"] for row in rows if row.get("val/acc")] == ["0"]
    # No test ran.
    assert not any(row.get("test/acc") or row.get("test/loss") for row in rows)
    assert "final:" not in result.stdout and "test/acc" not in result.stdout
    # The epoch's checkpoints, whole: the epoch is complete, nothing half-written is left beside them.
    last = run / "checkpoints" / "last.ckpt"
    saved = checkpoint(last)
    assert (saved["epoch"], saved["global_step"]) == (0, 2)
    assert saved["state_dict"]["net.features.conv1.weight"].shape == (16, 3, 11, 11)
    assert saved["optimizer_states"] and saved["loops"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch_000.ckpt", "last.ckpt"]
    # The line that says how to go on (src/callbacks/preemption.py, exit_when_stopped).
    go_on = f"python src/train.py hydra.run.dir={run} ckpt_path=last"
    assert f"stopped by SIGTERM (exit code 143); to go on: {go_on}" in result.stderr.splitlines()
    assert f"[rank 0] SIGTERM: saving {last} " in result.stderr  # PreemptionCheckpoint's handler took it

    # Going on as told only tests: training is complete, so nothing trains, validates or is saved again.
    resumed = run_train(tmp_path, f"hydra.run.dir={run}", "ckpt_path=last", env=kernel_cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert the_run_dir(tmp_path) == run
    assert "test/acc=" in resumed.stdout
    assert (run / VALIDATED).read_text().split() == ["0", "1"]  # no validation batch ran again
    assert (checkpoint(last)["epoch"], checkpoint(last)["global_step"]) == (0, 2)
