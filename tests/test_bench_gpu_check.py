"""bench/gpu_check.py in its CPU smoke mode (tiny shapes, seconds), its section of a markdown file, and
where it writes (issue #26): only where ``--out`` says, and a smoke run never into docs/benchmarks.md."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bench.gpu_check
from bench.common import Row, get_section, put_section
from bench.gpu_check import SECTION, TRACKED
from tests.conftest import ROOT

CPU_TABLE = "# Benchmarks\n\nthe CPU rows of make bench\n"


def table_rows(text: str) -> dict[str, tuple[float, str, str]]:
    """name -> (value, unit, note) of a markdown table; NaN where the value is '-'."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("measurement", "---"):
            value = math.nan if cells[1] == "-" else float(cells[1].replace(",", ""))
            rows[cells[0]] = (value, cells[2], cells[3])
    return rows


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The smoke run's output and the file it wrote into (which held make bench's rows before)."""
    out = tmp_path_factory.mktemp("gpu") / "benchmarks.md"
    out.write_text(CPU_TABLE)
    run = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout, out.read_text()


@pytest.mark.slow
def test_smoke_mode_writes_every_row_with_finite_positive_figures(smoke: tuple[str, str]) -> None:
    _, text = smoke
    section = get_section(text, SECTION)
    assert section is not None and "## GPU check" in section
    rows = table_rows(section)
    measured = {name: row for name, row in rows.items() if not math.isnan(row[0])}
    rates = {name: value for name, (value, unit, _) in measured.items() if unit != "%"}
    assert rates and all(math.isfinite(value) and value > 0 for value in rates.values())
    (lrn,) = (value for name, (value, _, _) in measured.items() if "LRN's share" in name)
    assert math.isfinite(lrn)  # a difference of two timings: any sign and size under load
    names = " / ".join(measured)
    for wanted in (
        "bf16 matmul",
        "network only, eager",
        "network only, compiled",
        "LRN's share",
        "end to end from the cache (datamodule, Lightning), eager",
        "end to end from the cache (datamodule, Lightning), compiled",
    ):
        assert wanted in names
    shares = [note for name, (_, _, note) in measured.items() if "network only" in name]
    assert all(re.search(r"\d+% of the bf16 matmul rate", note) for note in shares)
    assert rows["GPU real epoch rows"][2].startswith("skipped")


@pytest.mark.slow
def test_the_cpu_rows_stay_and_the_table_is_printed(smoke: tuple[str, str]) -> None:
    stdout, text = smoke
    assert text.startswith(CPU_TABLE.strip())
    assert "| GPU bf16 matmul" in stdout


def test_without_out_the_check_prints_and_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(bench.gpu_check, "measure", lambda *_: [Row("GPU step", 12.5, "img/s")])
    monkeypatch.chdir(tmp_path)
    before = TRACKED.read_text() if TRACKED.exists() else None
    assert bench.gpu_check.main(["--smoke"]) == 0
    out, err = capsys.readouterr()
    assert "| GPU step | 12.50 | img/s |  |" in out and "not written anywhere" in err
    assert list(tmp_path.iterdir()) == [] and (TRACKED.read_text() if TRACKED.exists() else None) == before


@pytest.mark.parametrize("out", ["docs/benchmarks.md", str(ROOT / "docs" / "benchmarks.md")])
def test_smoke_figures_never_go_into_the_tracked_file(
    monkeypatch: pytest.MonkeyPatch, out: str, capsys: pytest.CaptureFixture
) -> None:
    writes: list[Path] = []
    monkeypatch.setattr(bench.gpu_check, "measure", lambda *_: [Row("GPU step", 12.5, "img/s")])
    monkeypatch.setattr(bench.gpu_check, "write_text_atomic", lambda path, _: writes.append(path))
    monkeypatch.chdir(ROOT)
    assert bench.gpu_check.main(["--smoke", "--out", out]) == 0
    out_text, err = capsys.readouterr()
    assert writes == [] and "never written into" in err and "| GPU step | 12.50 |" in out_text


def test_put_section_replaces_only_its_own_section() -> None:
    once = put_section("head\n", SECTION, "first")
    twice = put_section(once, SECTION, "second")
    assert twice.startswith("head\n") and "first" not in twice and twice.count("second") == 1


def test_the_short_real_epoch_runs_at_the_checks_settings(tmp_path: Path) -> None:
    from bench.gpu_check import real_epoch_rows, smoke_settings
    from src.datasets.synthetic import generate_dataset

    root = generate_dataset(tmp_path / "photos", train_per_class=60, test_per_class=1, image_size=72)
    rows = real_epoch_rows(smoke_settings(), root, tmp_path / "cache")
    assert all(r.name.startswith("GPU real epoch: ") for r in rows)
    assert all(math.isfinite(r.value) and r.value > 0 for r in rows)
    assert sum("end to end" in r.name for r in rows) == 1  # one worker count: the datamodule's default
    assert sum("share of the epoch" in r.name for r in rows) == 2
