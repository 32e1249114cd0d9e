"""``python src/split_study.py``: the study's runs in order, resumed, archived; a failure stops it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import src.split_study as driver
from src.reports.split_study_arms import ARMS, ORDER

#: Stands in for src/train.py: writes a tested run where hydra.run.dir says (exit 0), or fails (exit 7) for
#: seed=2; each call appends its arguments to calls.txt beside the runs.
FAKE_TRAIN = """
import sys
from pathlib import Path
args = dict(a.split("=", 1) for a in sys.argv[1:])
run = Path(args["hydra.run.dir"])
with (run.parent / "calls.txt").open("a") as calls:
    calls.write(" ".join(sys.argv[1:]) + "\\n")
if args["seed"] == "2":
    print("training failed")
    sys.exit(7)
(run / ".hydra").mkdir(parents=True, exist_ok=True)
(run / ".hydra" / "config.yaml").write_text(f"seed: {args['seed']}\\nmodel:\\n  towers: 2\\n")
log = run / "csv" / "version_0" / "metrics.csv"
log.parent.mkdir(parents=True, exist_ok=True)
log.write_text("epoch,step,val/acc,test/acc\\n0,9,0.5,\\n1,10,,0.5\\n")
"""


@pytest.fixture
def fake_train(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    monkeypatch.setattr(driver, "TRAIN", script)
    monkeypatch.setattr(driver, "code_commit", lambda: "abc1234")
    return tmp_path / "runs"


def test_each_run_gets_its_arms_documented_overrides() -> None:
    runs, data = Path("/r"), Path("/d")
    c = driver.train_command("C_s2", runs, data, resume=False)
    assert c[:2] == [sys.executable, str(driver.TRAIN)]
    assert c[2:] == [
        "experiment=split_study",
        "seed=2",
        "model.towers=1",
        "trainer.max_epochs=15",
        "paths.data_dir=/d",
        "paths.log_dir=/r",
        "hydra.run.dir=/r/C_s2",
    ]
    b = driver.train_command("B_s1", runs, data, resume=True)
    assert "trainer.max_epochs=294" in b and "trainer.max_epochs=15" not in b  # B counts A's steps
    assert b[-1] == "ckpt_path=last"


def test_b_runs_as_many_steps_as_a_and_validates_on_its_last() -> None:
    a_steps = 15 * 704  # 90,000 images at batch 128: 704 steps an epoch
    b_epochs, every = 294, 21
    b_steps = b_epochs * 36  # 4,500 images: 36 steps an epoch
    assert abs(b_steps - a_steps) / a_steps < 0.01
    assert b_epochs % every == 0  # the last epoch validates: the final snapshot is the tested weights
    assert f"trainer.max_epochs={b_epochs}" in ARMS["B"].overrides
    assert f"trainer.check_val_every_n_epoch={every}" in ARMS["B"].overrides


def test_the_order_runs_a_and_c_first_and_every_planned_seed_once() -> None:
    assert ORDER[:6] == ("A_s1", "A_s2", "A_s3", "C_s1", "C_s2", "C_s3")
    planned = {f"{name}_s{seed}" for name, arm in ARMS.items() for seed in arm.seeds}
    assert sorted(ORDER) == sorted(planned)


def test_runs_are_trained_archived_and_a_failure_stops_the_study(
    fake_train: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archives = tmp_path / "archives"
    status = driver.run_study(["A_s1", "A_s2", "A_s3"], fake_train, tmp_path / "data", archives)
    assert status == 7
    calls = (fake_train / "calls.txt").read_text().splitlines()
    assert [c.split()[1] for c in calls] == ["seed=1", "seed=2"]  # A_s3 never started
    record = json.loads((archives / "A_s1" / "run.json").read_text())
    assert (record["commit"], record["status"]) == ("abc1234", "tested")
    assert not (archives / "A_s2").exists()
    err = capsys.readouterr().err
    assert f"A_s2 stopped with exit status 7; see {fake_train / 'A_s2.log'}" in err
    assert "training failed" in (fake_train / "A_s2.log").read_text()
    # Again: A_s1 is archived, so only A_s2 is tried; with a checkpoint left, it resumes.
    (fake_train / "A_s2" / "checkpoints").mkdir(parents=True)
    (fake_train / "A_s2" / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert driver.run_study(["A_s1", "A_s2"], fake_train, tmp_path / "data", archives) == 7
    calls = (fake_train / "calls.txt").read_text().splitlines()
    assert len(calls) == 3 and calls[-1].endswith("ckpt_path=last")
    assert "A_s1: archived in" in capsys.readouterr().out


def test_dry_run_prints_and_runs_nothing(fake_train: Path, tmp_path: Path, capsys) -> None:
    assert (
        driver.run_study(list(ORDER), fake_train, tmp_path / "data", tmp_path / "archives", dry_run=True) == 0
    )
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines() if "experiment=split_study" in line] == list(
        ORDER
    )
    assert not fake_train.exists()


def test_a_name_outside_the_study_is_refused_before_anything_runs(fake_train: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="A_s4: not a run of the study"):
        driver.run_study(["A_s1", "A_s4"], fake_train, tmp_path / "data", tmp_path / "archives")
    assert not fake_train.exists()


def test_the_script_runs_from_any_folder(tmp_path: Path) -> None:
    script = Path(driver.__file__)
    result = subprocess.run(
        [sys.executable, str(script), "--help"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "--only RUN" in result.stdout and "--dry-run" in result.stdout
