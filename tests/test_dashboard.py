"""The W&B workspace a run makes (metric summaries, the kernel scalars' axis, tags, notes, checkpoints as
artifacts) read back from an offline run's files, and the same scalars and pictures in TensorBoard: one run of
``python src/train.py logger=[wandb,tensorboard]``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig

from src.loggers.wandb_records import (
    find_offline_runs,
    iter_records,
    metric_series,
    read_history,
    read_metric_definitions,
    read_run_info,
    read_summary,
)
from src.loggers.wandb_run import EPOCH_AXIS, experiment_description, run_notes
from tests.conftest import compose_train, script_runner
from tests.test_debug_configs import NARROW, NOISE
from tests.test_train import TINY_DATA, run_dir

KERNEL_SCALARS = ("kernels/tower0/colour_mean", "kernels/tower1/colour_fraction", "kernels/split")


@pytest.fixture(scope="module")
def both_loggers_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Two epochs of the demo, tiny, with W&B (offline: no key) and TensorBoard, checkpoints as artifacts."""
    tmp_path = tmp_path_factory.mktemp("dashboard")
    result = script_runner("train.py", tmp_path)(
        "experiment=demo", "logger=[wandb,tensorboard]", "tags=[demo,alpha]", "logger.wandb.log_model=true",
        *TINY_DATA, *NARROW, f"data.root={tmp_path / 'synthetic'}", "trainer.max_epochs=2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir(tmp_path), result


@pytest.fixture(scope="module")
def wandb_run(both_loggers_run) -> Path:
    from src.loggers.wandb_records import wait_until_finished

    (found,) = find_offline_runs(both_loggers_run[0])
    return wait_until_finished(found)


@pytest.mark.slow
def test_metric_definitions(wandb_run: Path) -> None:
    definitions = read_metric_definitions(wandb_run)
    assert definitions["val/acc"]["summary"] == ["max"] and definitions["val/acc_best"]["summary"] == ["max"]
    assert definitions["val/loss"]["summary"] == ["min"]
    assert definitions["val/acc"]["step_metric"] == "trainer/global_step"  # still Lightning's x-axis
    assert definitions[EPOCH_AXIS]["hidden"]
    for key in KERNEL_SCALARS:
        assert definitions[key]["step_metric"] == EPOCH_AXIS, key


@pytest.mark.slow
def test_summary_holds_the_best_accuracy_and_the_lowest_loss(wandb_run: Path) -> None:
    history = read_history(wandb_run)
    accuracies = [value for _, value in metric_series(history, "val/acc")]
    losses = [value for _, value in metric_series(history, "val/loss")]
    assert len(accuracies) == 2
    summary = read_summary(wandb_run)
    assert summary["val/acc"] == {"max": max(accuracies)} and summary["val/loss"] == {"min": min(losses)}
    assert summary["val/acc_best"] == {"max": max(accuracies)}
    assert summary["test/acc"] == metric_series(history, "test/acc")[-1][1]  # others: their last value
    # The kernel scores against the epochs trained: 0 (initialisation), 1, 2.
    epochs = [row[EPOCH_AXIS] for row in history if "kernels/split" in row]
    assert epochs == [0, 1, 2] and summary[EPOCH_AXIS] == 2


@pytest.mark.slow
def test_tags_group_and_notes(wandb_run: Path) -> None:
    info = read_run_info(wandb_run)
    assert info["tags"] == ["demo", "alpha"] and info["group"] == ""  # one run: no group
    notes = info["notes"].splitlines()
    assert notes[0] == "experiment=demo: make demo: the two-tower net on the built-in synthetic dataset, " + (
        "on the CPU, in a few minutes."
    )
    assert notes[1].startswith("model=two_tower data=synthetic optimizer=sgd scheduler=")
    assert notes[1].endswith(" trainer=cpu")
    assert "tags=[demo,alpha]" in notes[2] and "paths." not in notes[2]


@pytest.mark.slow
def test_checkpoints_are_logged_as_artifacts_when_asked(wandb_run: Path, both_loggers_run) -> None:
    records = [r.artifact for r in iter_records(wandb_run) if r.WhichOneof("record_type") == "artifact"]
    models = [a for a in records if a.type == "model"]
    assert {a.name for a in models} == {f"model-{read_run_info(wandb_run)['id']}"}
    # when fit ends: the best epoch_NNN.ckpt and last.ckpt, each as a version of the run's model artifact
    assert len(models) == 2 and all([e.path for e in a.manifest.contents] == ["model.ckpt"] for a in models)
    metadata = sorted(json.loads(a.metadata)["original_filename"] for a in models)
    checkpoints = both_loggers_run[0] / "checkpoints"
    assert metadata == sorted(p.name for p in checkpoints.iterdir()) and metadata[-1] == "last.ckpt"


@pytest.mark.slow
def test_console_is_quiet(both_loggers_run) -> None:
    _, result = both_loggers_run
    output = result.stdout + result.stderr
    assert not [noise for noise in NOISE if noise in output], output[-3000:]
    assert "final:" in result.stdout and "W&B offline run:" in result.stdout


@pytest.mark.slow
def test_tensorboard_has_the_scalars_and_kernel_pictures(both_loggers_run) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _ = both_loggers_run
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0}).Reload()
    tags = events.Tags()
    for key in ("val/acc", "val/loss", "train/loss_step", "test/acc", *KERNEL_SCALARS):
        assert key in tags["scalars"], key
    assert [event.value for event in events.Scalars("kernels/epochs_trained")] == [0, 1, 2]
    for key in ("kernels/tower0", "kernels/tower1", "kernels/figure3", "kernels/histogram"):
        assert key in tags["images"], key
    assert len(events.Images("kernels/figure3")) == 3  # at initialisation and after each epoch
    assert {"kernels/tower0/scores", "kernels/tower1/scores"} <= set(tags["histograms"])


def test_notes_name_the_experiment_or_the_defaults(tmp_path: Path) -> None:
    compose_train(["experiment=paper", "optimizer.lr=0.02", "paths.log_dir=/x"], tmp_path)
    notes = run_notes()
    assert notes.startswith("experiment=paper: The paper's ImageNet settings (sections 2, 3, 4, 5)")
    assert notes.splitlines()[-1] == "overrides: experiment=paper optimizer.lr=0.02"
    compose_train([], tmp_path)
    assert run_notes().startswith("no experiment=: the defaults of conf/train.yaml")
    HydraConfig.instance().cfg = None
    assert run_notes() is None and experiment_description("no_such_experiment") == ""
