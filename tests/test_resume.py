"""Resuming runs (``src/runs/resume.py``) and saving on SIGTERM (``src/callbacks/preemption.py``).

The end-to-end tests run ``python src/train.py`` in a subprocess on the tiny synthetic set with a small net
(so checkpoints are 1 MB, not 455 MB): one run is killed with SIGKILL at the start of its second epoch and
resumed with ``ckpt_path=last``; another gets SIGTERM in its first epoch and is resumed from the checkpoint
file it saved. Both check the merged W&B (and CSV) logs: every epoch validated once, no step logged twice.
A third gets Ctrl-C, and a resume of it that fails leaves its folder as it was.

The signals and kills wait for events, not for time: ``Pace`` holds the first training batch until the test
has sent its signal, ``KillAtEpochStart`` kills once W&B has the last validation on disk. A loaded machine
makes them slower, never wrong.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.demos.boring_classes import BoringModel

from src.callbacks.preemption import (
    INTERRUPTED_EXIT_CODE,
    PREEMPTED_EXIT_CODE,
    PreemptionCheckpoint,
    exit_when_stopped,
)
from src.data.datamodule import ImageDataModule
from src.loggers.wandb_records import find_offline_runs, iter_records, read_history, wait_until_finished
from src.loggers.wandb_run import RUN_ID_FILE, wandb_run_id
from src.runs.checkpoint_io import AtomicCheckpointIO, exit_when_write_fails
from src.runs.folders import PENDING_SUBDIR
from src.runs.overrides import merge_overrides
from src.runs.resume import commit_run_config, resolve_checkpoint, rewrite_command_line
from tests.conftest import CONF, ROOT, run_env
from tests.helpers.trainers import quiet_trainer
from tests.test_checkpoint_io import disk_full, fail_saves
from tests.test_train import TINY_DATA

SMALL_NET = ["model.conv_widths=[16,32,48,48,32]", "model.fc_width=64"]  # 121 K parameters
KILL_AT_EPOCH = "TEST_KILL_AT_EPOCH"  # KillAtEpochStart: SIGKILL this process when that epoch starts
STARTED = "training_started"  # Pace touches <run dir>/training_started at the first training batch
GO = "signal_sent"  # ... and holds that batch until the test has written <run dir>/signal_sent
EVENT_TIMEOUT = 300  # seconds: only a hung process waits this long


def wait_for(condition: Callable[[], object], what: str, timeout: float = EVENT_TIMEOUT) -> None:
    """Poll ``condition`` until it is true; AssertionError naming ``what`` after ``timeout`` s (a hang)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.05)


def validation_on_disk(run: Path) -> bool:
    """Whether W&B's record log in ``run`` holds a validation row yet (src/train.py flushes every second)."""
    try:
        return any("val/acc" in row for folder in find_offline_runs(run) for row in read_history(folder))
    except FileNotFoundError:  # no record log yet
        return False


class KillAtEpochStart(L.Callback):
    """Dies by SIGKILL (no handler, no cleanup: a node failure) at the start of epoch ``$TEST_KILL_AT_EPOCH``,
    as soon as W&B has the previous epoch's validation on disk (as a real epoch's length would let it)."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = os.environ.get(KILL_AT_EPOCH)
        if epoch is not None and trainer.current_epoch == int(epoch):
            wait_for(lambda: validation_on_disk(Path(trainer.default_root_dir)), "W&B's validation row")
            os.kill(os.getpid(), signal.SIGKILL)


class Pace(L.Callback):
    """Marks the start of training with a file, then holds the first training batch until the test has sent
    its signal (``<run>/signal_sent``): the signal lands in batch 0, however loaded the machine is."""

    def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        run = Path(trainer.default_root_dir)
        if not (run / GO).exists():
            (run / STARTED).touch()
            wait_for((run / GO).exists, "the test's signal")


def train_command(tmp_path: Path, *args: str) -> list[str]:
    paths = [f"paths.log_dir={tmp_path / 'outputs'}", f"paths.data_dir={tmp_path / 'data'}"]
    data = [*TINY_DATA, *SMALL_NET, f"data.root={tmp_path / 'synthetic'}"]
    return [sys.executable, str(ROOT / "src" / "train.py"), *paths, *data, *args]


def run_train(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        train_command(tmp_path, *args),
        cwd=tmp_path,
        env=run_env(tmp_path) | (env or {}),
        capture_output=True,
        text=True,
        timeout=300,
    )


def start_paced_run(tmp_path: Path, *args: str, own_group: bool = False) -> subprocess.Popen:
    """A 2-epoch training subprocess, returned once it is holding its first training batch (``Pace``).

    ``own_group``: it leads a process group of its own (as under ``setsid``, or a terminal's job), which
    its loader workers join: ``signal_first_batch(..., group=True)`` signals them all.
    """
    pace = ["+callbacks.pace._target_=tests.test_resume.Pace", "trainer.max_epochs=2"]
    process = subprocess.Popen(
        train_command(tmp_path, *args, *pace),
        cwd=tmp_path, env=run_env(tmp_path),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=own_group,
    )  # fmt: skip

    def started() -> bool:
        assert process.poll() is None, "training ended before it started: " + process.communicate()[1][-3000:]
        return bool(list((tmp_path / "outputs").glob(f"train/runs/*/{STARTED}")))

    wait_for(started, "training to start")
    return process


def signal_first_batch(process: subprocess.Popen, run: Path, signum: int, group: bool = False) -> None:
    """Send ``signum`` to a paced run holding its first batch, then let the batch go. ``group``: to its
    whole process group (``start_paced_run(..., own_group=True)``), as SLURM, ``timeout`` and a terminal
    send it; else to the main process only."""
    if group:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    (run / GO).touch()


def the_run_dir(tmp_path: Path) -> Path:
    (found,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    return found


def merged_history(run: Path, finished: int) -> list[dict]:
    """The history rows of all the run's W&B offline folders, in order; the last ``finished`` folders must
    hold their exit record (a SIGKILLed process leaves none)."""
    folders = find_offline_runs(run)
    for folder in folders[len(folders) - finished :]:
        wait_until_finished(folder)
    return [row for folder in folders for row in read_history(folder)]


def assert_each_epoch_once(rows: list[dict], epochs: int, steps_per_epoch: int) -> None:
    """val/acc once per epoch at that epoch's last step, no training step logged twice."""
    validated = [(row["epoch"], row["trainer/global_step"]) for row in rows if "val/acc" in row]
    assert validated == [(e, (e + 1) * steps_per_epoch - 1) for e in range(epochs)]
    train_steps = [row["trainer/global_step"] for row in rows if "train/loss_step" in row]
    assert len(train_steps) == len(set(train_steps)), f"a step logged twice: {sorted(train_steps)}"
    assert set(train_steps) <= set(range(epochs * steps_per_epoch))


def checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


# -- what ckpt_path means, without training ------------------------------------------------------------


def fake_run(
    runs: Path,
    name: str,
    overrides: list[str],
    started: float = 1.0,
    checkpoint: bool = True,
    net_config: dict | None = None,
) -> Path:
    """A run folder with its overrides, Hydra's config.yaml written at ``started`` and, if ``checkpoint``,
    a last.ckpt (holding ``net_config`` if given)."""
    run = runs / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run / ".hydra" / "config.yaml").write_text("{}\n")
    os.utime(run / ".hydra" / "config.yaml", (started, started))
    (run / "checkpoints").mkdir()
    if checkpoint:
        torch.save({"net_config": net_config} if net_config else {}, run / "checkpoints" / "last.ckpt")
    return run


def folder_state(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_last_resumes_the_latest_started_run_in_its_folder_and_config(tmp_path: Path) -> None:
    runs = tmp_path / "outputs" / "train" / "runs"
    fake_run(runs, "2026-01-01_10-00-00-000000", ["model=one_tower"], started=1_000)
    # started earlier than the next, but resumed since (Hydra wrote its config.yaml again): the latest
    newest = fake_run(
        runs,
        "2026-01-02_10-00-00-000000",
        ["model=four_tower", "+trainer.max_time=1", "seed=3"],
        started=3_000,
    )
    fake_run(runs, "2026-01-03_10-00-00-000000", ["model=two_tower"], started=2_000)
    (runs / "not_a_run").mkdir()  # no .hydra/: not a run, whatever its age
    log_dir = f"paths.log_dir={tmp_path / 'outputs'}"
    argv = [log_dir, "ckpt_path=last", "trainer.max_time=2", "seed=4"]
    rewritten = rewrite_command_line(argv, CONF)
    assert rewritten == [
        "model=four_tower",
        log_dir,
        "ckpt_path=last",
        "++trainer.max_time=2",  # replaces a saved +key: still applies
        "seed=4",  # the new command line wins
        f"hydra.run.dir={newest}",
        f"hydra.output_subdir={PENDING_SUBDIR}",  # .hydra/ is replaced only once training starts
    ]
    # The DDP rank Lightning starts re-runs the rewritten command line plus its own hydra overrides.
    lightning = [
        f'hydra.run.dir="{newest}"',
        "hydra.job.name=train_ddp_process_1",
        "hydra.output_subdir=null",
    ]
    child = [*rewritten, *lightning]
    assert rewrite_command_line(child, CONF) == [*rewritten[:-2], *lightning]


def test_last_is_the_run_just_stopped_even_without_a_checkpoint(tmp_path: Path) -> None:
    """Ctrl-C before the first checkpoint: ``last`` must not quietly resume an older run."""
    runs = tmp_path / "outputs" / "train" / "runs"
    older = fake_run(runs, "2026-01-01_10-00-00-000000", ["seed=1"], started=1_000)
    stopped = fake_run(runs, "2026-01-02_10-00-00-000000", ["seed=2"], started=2_000, checkpoint=False)
    before = folder_state(tmp_path)
    with pytest.raises(SystemExit) as raised:
        rewrite_command_line([f"paths.log_dir={tmp_path / 'outputs'}", "ckpt_path=last"], CONF)
    message = str(raised.value)
    assert f"the latest run, {stopped}, has no checkpoints/last.ckpt" in message
    assert f"to resume an older run, name it: ckpt_path={older}" in message
    assert folder_state(tmp_path) == before


def test_last_with_no_run_to_resume_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=f"no run under {tmp_path / 'outputs' / 'train' / 'runs'}"):
        rewrite_command_line([f"paths.log_dir={tmp_path / 'outputs'}", "ckpt_path=last"], CONF)


def test_a_folder_that_is_not_a_run_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"x")
    with pytest.raises(SystemExit, match=f"{tmp_path / 'photos'} is not a run folder"):
        rewrite_command_line([f"ckpt_path={tmp_path / 'photos'}"], CONF)
    with pytest.raises(SystemExit, match=f"no checkpoint file at {tmp_path / 'none.ckpt'}"):
        rewrite_command_line([f"ckpt_path={tmp_path / 'none.ckpt'}"], CONF)
    assert folder_state(tmp_path) == {"photos/cat.jpg": b"x"}


def test_a_resume_that_builds_another_network_names_the_keys_and_writes_nothing(tmp_path: Path) -> None:
    small = {"num_classes": 2, "towers": 2, "conv_widths": [16, 32, 48, 48, 32], "fc_width": 64}
    run = fake_run(tmp_path / "runs", "a", [*SMALL_NET], net_config=small)
    before = folder_state(tmp_path)
    with pytest.raises(SystemExit) as raised:
        rewrite_command_line([f"ckpt_path={run}", "model.towers=1", "data.num_classes=3"], CONF)
    message = str(raised.value)
    assert "model.towers=1 here, 2 in the checkpoint" in message
    assert "data.num_classes=3 here, 2 in the checkpoint" in message
    assert "conv_widths" not in message and "Nothing was written" in message
    assert folder_state(tmp_path) == before
    # The same settings as the checkpoint's pass; so does a file outside any run folder, checked the same way.
    assert rewrite_command_line([f"ckpt_path={run}"], CONF)[-2:] == [
        f"hydra.run.dir={run}", f"hydra.output_subdir={PENDING_SUBDIR}"
    ]  # fmt: skip
    loose = tmp_path / "loose.ckpt"
    torch.save({"net_config": small}, loose)
    with pytest.raises(SystemExit, match="model.fc_width=4096 here, 64 in the checkpoint"):
        rewrite_command_line([f"ckpt_path={loose}"], CONF)
    weights_only = tmp_path / "epoch_003.ckpt"
    torch.save({"net_config": small, "state_dict": {}, "epoch": 3}, weights_only)
    with pytest.raises(SystemExit, match="epoch_003.ckpt holds the weights only .* from checkpoints/last"):
        rewrite_command_line([f"ckpt_path={weights_only}"], CONF)
    (tmp_path / "damaged.ckpt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(SystemExit, match="damaged.ckpt cannot be read"):
        rewrite_command_line([f"ckpt_path={tmp_path / 'damaged.ckpt'}"], CONF)


def test_a_resumed_runs_new_configuration_replaces_the_old_when_committed(tmp_path: Path) -> None:
    run = fake_run(tmp_path, "run", ["seed=1"])
    (run / PENDING_SUBDIR).mkdir()
    for name, text in (("config.yaml", "seed: 2\n"), ("overrides.yaml", "- seed=2\n")):
        (run / PENDING_SUBDIR / name).write_text(text)
    commit_run_config(run)
    assert not (run / PENDING_SUBDIR).exists()
    assert (run / ".hydra" / "overrides.yaml").read_text() == "- seed=2\n"
    assert (run / ".hydra" / "config.yaml").read_text() == "seed: 2\n"


def test_given_run_dir_and_checkpoint_paths(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = fake_run(runs, "a", ["model=one_tower"])
    pending = f"hydra.output_subdir={PENDING_SUBDIR}"
    # hydra.run.dir given: that run, its overrides, no second hydra.run.dir
    argv = [f"hydra.run.dir={run}", "ckpt_path=last"]
    assert rewrite_command_line(argv, CONF) == ["model=one_tower", *argv, pending]
    # a checkpoint in <run>/checkpoints/ continues that run; a run folder means its last.ckpt
    for ckpt in (run / "checkpoints" / "last.ckpt", run):
        assert rewrite_command_line([f"ckpt_path={ckpt}"], CONF) == [
            "model=one_tower", f"ckpt_path={ckpt}", f"hydra.run.dir={run}", pending
        ]  # fmt: skip
    # branching: a checkpoint of one run, written into another (new) folder, with the first run's config
    argv = [f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={tmp_path / 'branch'}"]
    assert rewrite_command_line(argv, CONF) == ["model=one_tower", *argv]
    # a file outside a run folder, no ckpt_path, or a multirun: the command line is left alone
    loose = tmp_path / "loose.ckpt"
    torch.save({}, loose)
    for argv in (
        [f"ckpt_path={loose}"],
        ["seed=1"],
        ["-m", "ckpt_path=last", "seed=1,2"],
        ["ckpt_path=null"],
    ):
        assert rewrite_command_line(argv, CONF) == argv


def test_resolve_checkpoint(tmp_path: Path) -> None:
    assert resolve_checkpoint(None, tmp_path) is None
    assert resolve_checkpoint("last", tmp_path) is None  # nothing yet: a new run in this folder
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"")
    assert resolve_checkpoint("last", tmp_path) == last
    assert resolve_checkpoint(str(tmp_path), tmp_path / "elsewhere") == last
    with pytest.raises(FileNotFoundError, match="no_such.ckpt"):
        resolve_checkpoint(str(tmp_path / "no_such.ckpt"), tmp_path)


def test_merge_overrides_keeps_one_value_per_key() -> None:
    saved = ["model=one_tower", "+a.b=1", "trainer.max_epochs=3", "~callbacks.progress_bar"]
    new = ["trainer.max_epochs=5", "a.b=2", "model=four_tower"]
    assert merge_overrides(saved, new) == [
        "~callbacks.progress_bar", "trainer.max_epochs=5", "++a.b=2", "model=four_tower"
    ]  # fmt: skip


def test_a_saved_plus_override_of_a_key_declared_since_still_composes() -> None:
    """A run started with ``+trainer.overfit_batches=2`` before the trainer config declared the key: its
    resume replays it as ``++`` (a plain ``+`` now fails: "an item is already at 'trainer.overfit_batches'").
    """
    from hydra import compose, initialize_config_dir

    saved = ["+trainer.overfit_batches=2", "+experiment=demo", "seed=3"]
    merged = merge_overrides(saved, ["trainer.max_epochs=5"])
    assert merged == ["++trainer.overfit_batches=2", "+experiment=demo", "seed=3", "trainer.max_epochs=5"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[o for o in merged if not o.startswith("+experiment")])
        with pytest.raises(Exception, match="already at"):
            compose(config_name="train", overrides=["+trainer.overfit_batches=2"])
    assert cfg.trainer.overfit_batches == 2 and cfg.trainer.max_epochs == 5


def test_wandb_run_id_from_the_file_or_the_newest_folder(tmp_path: Path) -> None:
    assert wandb_run_id(tmp_path) is None
    for name in ("offline-run-20260101_100000-old1", "run-20260102_100000-new2", "offline-run-x-bad"):
        (tmp_path / "wandb" / name).mkdir(parents=True)
    assert wandb_run_id(tmp_path) == "new2"
    (tmp_path / RUN_ID_FILE).write_text("kept3\n")
    assert wandb_run_id(tmp_path) == "kept3"


def test_global_batch_splits_over_devices_and_accumulation(tmp_path: Path) -> None:
    dm = ImageDataModule(root=tmp_path, num_classes=2, cache_dir=tmp_path / "cache", batch_size=128)
    assert (
        dm.device_batch_size(1) == 128 and dm.device_batch_size(2) == 64 and dm.device_batch_size(4, 2) == 16
    )
    with pytest.raises(
        ValueError, match=r"data.batch_size=128 \(the global batch\) does not divide by 3 devices"
    ):
        dm.device_batch_size(3)
    with pytest.raises(ValueError, match="2 devices x 3 accumulated batches = 6"):
        dm.device_batch_size(2, 3)


class CtrlC(L.Callback):
    """Ctrl-C (SIGINT to this process) at the start of the first training batch; ``twice``: a second one
    right after, while that batch runs."""

    def __init__(self, twice: bool) -> None:
        self.twice = twice

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        if trainer.global_step == 0:
            for _ in range(2 if self.twice else 1):
                os.kill(os.getpid(), signal.SIGINT)


def test_a_ctrl_c_checkpoint_that_cannot_be_written_is_named_as_last_ckpt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """PreemptionCheckpoint writes a hidden partial file first: the message names the file it was to be."""
    fail_saves(monkeypatch, disk_full)
    trainer = quiet_trainer(
        4,
        limit_train_batches=2,
        limit_val_batches=0,
        callbacks=[PreemptionCheckpoint(tmp_path / "checkpoints"), CtrlC(twice=False)],
        plugins=[AtomicCheckpointIO()],
        default_root_dir=tmp_path,
    )
    with pytest.raises(SystemExit) as stopped, exit_when_write_fails(trainer, tmp_path, lambda code: None):
        trainer.fit(BoringModel())
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert f"error: could not write the checkpoint {last}: No space left on device (" in err
    assert "No checkpoint of this run is kept, so there is nothing to resume" in err
    assert not list(tmp_path.glob("checkpoints/*")) and not list(tmp_path.glob("checkpoints/.*"))


@pytest.mark.parametrize("second", ["during the batch", "while last.ckpt is written"])
def test_a_second_ctrl_c_stops_at_once_with_exit_code_130_and_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, second: str
) -> None:
    if second == "while last.ckpt is written":  # torch.save turns the handler's exception into its own
        fail_saves(monkeypatch, lambda: os.kill(os.getpid(), signal.SIGINT))
    sigint_handler = signal.getsignal(signal.SIGINT)
    trainer = quiet_trainer(
        4,
        limit_train_batches=2,
        limit_val_batches=0,
        callbacks=[PreemptionCheckpoint(tmp_path / "checkpoints"), CtrlC(twice=second == "during the batch")],
        plugins=[AtomicCheckpointIO()],
        default_root_dir=tmp_path,
    )
    closed: list[int] = []
    with pytest.raises(SystemExit) as stopped, exit_when_stopped(trainer, tmp_path, closed.append):
        trainer.fit(BoringModel())
    assert stopped.value.code == INTERRUPTED_EXIT_CODE and closed == [INTERRUPTED_EXIT_CODE]
    printed = capsys.readouterr()
    assert printed.err.splitlines()[-1] == (
        "stopped at once by a second Ctrl-C (exit code 130), saving nothing; run the command again to restart"
    )
    assert "KeyboardInterrupt" not in printed.out + printed.err and "Traceback" not in printed.err
    assert not list(tmp_path.glob("checkpoints/*")) and not list(tmp_path.glob("checkpoints/.*"))
    assert signal.getsignal(signal.SIGINT) == sigint_handler  # Ctrl-C given back


# -- end to end ----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.long
def test_run_killed_after_its_first_epoch_resumes_with_ckpt_path_last(tmp_path: Path) -> None:
    hard_kill = ["+callbacks.kill._target_=tests.test_resume.KillAtEpochStart", "logger=[wandb,csv]"]
    killed = run_train(tmp_path, "trainer.max_epochs=3", *hard_kill, env={KILL_AT_EPOCH: "1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run = the_run_dir(tmp_path)
    assert checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 0
    run_id = (run / RUN_ID_FILE).read_text().strip()

    # Only ckpt_path=last: the run's folder, its overrides (max_epochs=3, both loggers) and W&B run.
    command = [sys.executable, str(ROOT / "src" / "train.py"), f"paths.log_dir={tmp_path / 'outputs'}"]
    resumed = subprocess.run(
        [*command, "ckpt_path=last"], cwd=tmp_path, env=run_env(tmp_path), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert the_run_dir(tmp_path) == run  # no second run folder
    assert f"resuming from {run / 'checkpoints' / 'last.ckpt'}" in resumed.stdout
    assert "Restored all states from the checkpoint" in resumed.stdout + resumed.stderr
    overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
    assert "trainer.max_epochs=3" in overrides and "ckpt_path=last" in overrides

    final = checkpoint(run / "checkpoints" / "last.ckpt")
    steps_per_epoch = 3  # 18 training images, batch 8
    assert (final["epoch"], final["global_step"]) == (2, 3 * steps_per_epoch)
    # The plateau scheduler went on (saved before epoch 2's step: the steps of epochs 0 and 1, as in a run
    # never stopped), epoch 0's step included, which Lightning skips when it resumes from an epoch's end.
    assert final["lr_schedulers"][0]["last_epoch"] == 2
    assert "took the scheduler step of epoch 0" in resumed.stdout

    folders = find_offline_runs(run)
    assert [f.name.rsplit("-", 1)[1] for f in folders] == [run_id, run_id]  # the same W&B run, twice
    assert f"wandb sync {folders[0]} {folders[1]}" in resumed.stdout
    assert_each_epoch_once(merged_history(run, finished=1), epochs=3, steps_per_epoch=steps_per_epoch)

    # CSV: a new version per process; together every epoch validated once.
    csv_rows = [
        row for f in sorted(run.glob("csv/version_*/metrics.csv")) for row in csv.DictReader(f.open())
    ]
    assert sorted(int(row["epoch"]) for row in csv_rows if row.get("val/acc")) == [0, 1, 2]


@pytest.mark.slow
@pytest.mark.long
def test_sigterm_saves_a_checkpoint_and_the_run_resumes_from_it(tmp_path: Path) -> None:
    process = start_paced_run(tmp_path)
    run = the_run_dir(tmp_path)
    signal_first_batch(process, run, signal.SIGTERM)  # in the first of 3 batches of epoch 0
    stdout, stderr = process.communicate(timeout=EVENT_TIMEOUT)
    assert process.returncode == PREEMPTED_EXIT_CODE, stderr[-3000:]
    last = run / "checkpoints" / "last.ckpt"
    saved = checkpoint(last)
    assert saved["epoch"] == 0 and saved["global_step"] == 1  # mid-epoch, at the end of that batch
    assert not (run / "checkpoints" / "epoch_000.ckpt").exists() and not list(
        run.glob("checkpoints/.*")
    )  # no partial file
    assert f"saved {last}" in stdout and f"hydra.run.dir={run} ckpt_path=last" in stderr
    (first,) = find_offline_runs(run)
    records = list(iter_records(wait_until_finished(first)))
    assert "preempting" in {r.WhichOneof("record_type") for r in records}
    assert [r.exit.exit_code for r in records if r.WhichOneof("record_type") == "exit"] == [
        PREEMPTED_EXIT_CODE
    ]

    # Resume from the checkpoint file itself: it lies in <run>/checkpoints/, so the run goes on there.
    resumed = run_train(tmp_path, f"ckpt_path={last}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert the_run_dir(tmp_path) == run
    # The resumed run's configuration replaced the run's own once it trained.
    assert not (run / PENDING_SUBDIR).exists()
    assert f"ckpt_path={last}" in yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
    final = checkpoint(last)
    assert (final["epoch"], final["global_step"]) == (1, 6)  # epoch 0 finished its batches, then epoch 1
    folders = find_offline_runs(run)
    assert len({f.name.rsplit("-", 1)[1] for f in folders}) == 1 and len(folders) == 2
    rows = merged_history(run, finished=2)
    assert_each_epoch_once(rows, epochs=2, steps_per_epoch=3)
    logged = {row["trainer/global_step"] for row in rows if "train/loss_step" in row}
    assert len(set(range(6)) - logged) == 1  # the batch the run stopped at is the only step not logged


@pytest.mark.slow
@pytest.mark.long
def test_sigterm_to_the_whole_process_group_with_loader_workers_saves_and_exits_143(tmp_path: Path) -> None:
    """SLURM and ``timeout`` signal every process of the job: the loader worker must leave SIGTERM to the
    main process (``worker_init``), which still needs its batches to finish the step and save."""
    process = start_paced_run(tmp_path, "data.num_workers=1", "logger=csv", own_group=True)
    run = the_run_dir(tmp_path)
    signal_first_batch(process, run, signal.SIGTERM, group=True)
    stdout, stderr = process.communicate(timeout=EVENT_TIMEOUT)
    assert process.returncode == PREEMPTED_EXIT_CODE, stderr[-3000:]
    last = run / "checkpoints" / "last.ckpt"
    saved = checkpoint(last)
    assert (saved["epoch"], saved["global_step"]) == (0, 1)  # at the end of the batch the signal landed in
    assert f"saved {last}" in stdout
    go_on = f"python src/train.py hydra.run.dir={run} ckpt_path=last"
    assert f"stopped by SIGTERM (exit code 143); to go on: {go_on}" in stderr


@pytest.mark.slow
@pytest.mark.long
def test_ctrl_c_saves_a_checkpoint_and_a_resume_that_fails_changes_nothing(tmp_path: Path) -> None:
    process = start_paced_run(tmp_path)
    run = the_run_dir(tmp_path)
    signal_first_batch(process, run, signal.SIGINT)  # what a terminal sends on Ctrl-C
    stdout, stderr = process.communicate(timeout=EVENT_TIMEOUT)
    assert process.returncode == INTERRUPTED_EXIT_CODE, stderr[-3000:]
    saved = checkpoint(run / "checkpoints" / "last.ckpt")
    assert saved["epoch"] == 0 and saved["global_step"] == 1
    assert f"stopped by Ctrl-C (exit code 130); to go on: python src/train.py hydra.run.dir={run}" in stderr

    # A resume whose settings fail once Hydra has started: the run's folder, .hydra/ included, is as it was.
    before = folder_state(run)
    failed = run_train(tmp_path, "ckpt_path=last", "data.val_fraction=0")
    refused = "error: data.val_fraction=0: expected a number in (0, 1)"
    assert failed.returncode != 0 and refused in failed.stderr
    assert the_run_dir(tmp_path) == run
    unchanged = {name: data for name, data in before.items() if name != "train.log"}  # Hydra appends to it
    after = folder_state(run)
    assert {name: after.get(name) for name in unchanged} == unchanged


# -- resumes that would do something else than they say (#27) ----------------------------------------------

SMALL_CONFIG = {"num_classes": 2, "towers": 2, "conv_widths": [16, 32, 48, 48, 32], "fc_width": 64}


def full_checkpoint(path: Path, epoch: int, step: int) -> Path:
    torch.save(
        {"net_config": SMALL_CONFIG, "epoch": epoch, "global_step": step, "optimizer_states": []}, path
    )
    return path


def test_a_checkpoint_older_than_the_runs_last_is_refused_and_can_branch_into_a_new_folder(
    tmp_path: Path,
) -> None:
    run = fake_run(tmp_path / "runs", "a", [*SMALL_NET])
    full_checkpoint(run / "checkpoints" / "last.ckpt", epoch=2, step=6)
    aside = full_checkpoint(run / "checkpoints" / "aside.ckpt", epoch=0, step=2)
    copied = full_checkpoint(tmp_path / "copied.ckpt", epoch=0, step=2)
    before = folder_state(tmp_path)
    for argv in ([f"ckpt_path={aside}"], [f"hydra.run.dir={run}", *SMALL_NET, f"ckpt_path={copied}"]):
        with pytest.raises(SystemExit) as raised:
            rewrite_command_line(argv, CONF)
        message = str(raised.value)
        assert f"is older than {run / 'checkpoints' / 'last.ckpt'} (saved after step 6)" in message, message
        assert f"resume the run with ckpt_path={run}," in message and "hydra.run.dir=<new folder>" in message
    assert folder_state(tmp_path) == before
    branch = tmp_path / "branch"  # a new folder: the run's settings, no pending config, the run untouched
    argv = rewrite_command_line([f"hydra.run.dir={branch}", f"ckpt_path={aside}"], CONF)
    assert argv[-2:] == [f"hydra.run.dir={branch}", f"ckpt_path={aside}"] and SMALL_NET[0] in argv
    assert rewrite_command_line([f"ckpt_path={run}"], CONF)[-2:] == [
        f"hydra.run.dir={run}", f"hydra.output_subdir={PENDING_SUBDIR}"
    ]  # fmt: skip


def test_a_resume_that_changes_the_rate_the_batch_or_the_schedule_is_refused(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "runs", "a", [*SMALL_NET, "optimizer.lr=0.02"])
    full_checkpoint(run / "checkpoints" / "last.ckpt", epoch=2, step=6)
    before = folder_state(tmp_path)
    changes = [
        "optimizer.lr=0.5",
        "data.batch_size=64",
        "scheduler.scheduler.patience=1",
        "trainer.max_epochs=9",
    ]
    with pytest.raises(SystemExit) as raised:
        rewrite_command_line([f"ckpt_path={run}", *changes], CONF)
    message = str(raised.value)
    assert "optimizer.lr=0.5 here, 0.02 in the run" in message
    assert "data.batch_size=64 here, 128 in the run" in message
    assert "scheduler.scheduler.patience=1 here, 5 in the run" in message
    assert "max_epochs" not in message and "Nothing was written" in message and "new run" in message
    with pytest.raises(SystemExit, match="scheduler"):
        rewrite_command_line([f"ckpt_path={run}", "scheduler=constant"], CONF)
    with pytest.raises(SystemExit, match="optimizer.lr=0.5 here"):  # a branch restores them the same
        rewrite_command_line(
            [f"hydra.run.dir={tmp_path / 'b'}", f"ckpt_path={run}", "optimizer.lr=0.5"], CONF
        )
    assert folder_state(tmp_path) == before
    # Its own values again, or a longer run, resume as before.
    argv = rewrite_command_line([f"ckpt_path={run}", "optimizer.lr=0.02", "trainer.max_epochs=9"], CONF)
    assert "trainer.max_epochs=9" in argv and f"hydra.run.dir={run}" in argv


def test_a_refused_resume_of_an_older_run_leaves_last_meaning_the_latest_run(tmp_path: Path) -> None:
    runs = tmp_path / "outputs" / "train" / "runs"
    fake_run(runs, "2026-01-01_10-00-00-000000", [], started=1_000)
    latest = fake_run(runs, "2026-01-01_11-00-00-000000", [], started=2_000)
    older = runs / "2026-01-01_10-00-00-000000"
    # A resume of the older run that Hydra started and the data refused: its new config stays pending.
    (older / PENDING_SUBDIR).mkdir()
    (older / PENDING_SUBDIR / "config.yaml").write_text("{}\n")
    argv = rewrite_command_line([f"paths.log_dir={tmp_path / 'outputs'}", "ckpt_path=last"], CONF)
    assert f"hydra.run.dir={latest}" in argv
