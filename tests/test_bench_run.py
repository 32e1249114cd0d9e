"""bench/run.py: which parts run, and what it writes (issue #26): nothing without ``--out``; with it, the
sections of the parts measured, each with its run's machine line, the others kept, the GPU check's last."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import bench.run
from bench.common import Row, get_section, put_section, section_names
from bench.gpu_check import SECTION as GPU_SECTION
from bench.run import PARTS, mark, section_title, write_markdown
from src.runs.paths import REPO_ROOT

GPU_TEXT = "## GPU check\n\n| a | 1 | x | |"
ABOUT = {"command": "python -m bench.run --only small64", "date": "2026-12-07"}


def sections(*names: str, value: float = 12.5) -> dict[str, tuple[list[Row], float]]:
    return {
        name: ([Row(f"{name} step", value, "img/s", summary=f"{name}: 91 % of its ceiling")], 3.0)
        for name in names
    }


def test_the_64_pixel_net_is_a_part_and_has_its_sections() -> None:
    assert PARTS == ("models", "small64", "data", "epoch")
    assert section_title("small64") == "The 64-pixel net"
    assert section_title("epoch small64") == "Real epochs: the 64-pixel net"
    assert section_title("epoch paper") == "Real epochs: the two-tower net (224-pixel crops)"


def test_a_run_replaces_its_sections_and_keeps_the_others_and_the_gpu_checks(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text(put_section("# a file from before the sections\n", GPU_SECTION, GPU_TEXT))
    write_markdown(out, sections("models", "data", "epoch paper"), ABOUT)
    write_markdown(out, sections("small64", "epoch small64", value=40.0), ABOUT, note="a training run beside")
    text = out.read_text()
    assert "a file from before the sections" not in text and text.startswith("# Benchmarks\n")
    order = ["models", "data", "epoch paper", "small64", "epoch small64"]
    assert section_names(text) == [mark(s) for s in order] + [GPU_SECTION]
    assert get_section(text, GPU_SECTION) == put_section("", GPU_SECTION, GPU_TEXT).strip()
    small64 = get_section(text, mark("small64"))
    assert small64 is not None and "## The 64-pixel net\n" in small64
    assert "| small64 step | 40.00 | img/s |  |" in small64 and "Note: a training run beside" in small64
    assert "took: 3 s" in small64 and "- small64: 91 % of its ceiling" in small64
    models = get_section(text, mark("models"))
    assert models is not None and "| models step | 12.50 | img/s |  |" in models and "Note:" not in models
    assert "Before (issue #18" in models and "Before (issue #18" not in small64


def test_a_part_with_nothing_measured_keeps_its_old_figures(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    write_markdown(out, sections("epoch paper"), ABOUT)
    skipped = {"epoch paper": ([Row("real epoch rows", math.nan, "", "skipped: no data folder given")], 0.0)}
    assert write_markdown(out, skipped | sections("data"), ABOUT) == ["epoch paper"]
    text = out.read_text()
    assert "| epoch paper step | 12.50 |" in text and "skipped" not in text and "| data step |" in text


def test_an_unmeasured_part_is_written_as_skipped_where_it_had_no_figures(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    write_markdown(out, {"epoch paper": ([Row("real epoch rows", math.nan, "", "skipped: why")], 0.0)}, ABOUT)
    assert "| real epoch rows | - |  | skipped: why |" in out.read_text()


@pytest.fixture
def fake_measure(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """bench.run.measure recording its arguments and returning one row per part, at once."""
    calls: list[tuple] = []

    def measure(
        quick: bool, data: Path | None, net: str, cache_dir: Path, parts: tuple[str, ...]
    ) -> dict[str, tuple[list[Row], float]]:
        calls.append((quick, data, net, parts))
        return sections(*(f"epoch {net}" if p == "epoch" else p for p in parts))

    monkeypatch.setattr(bench.run, "measure", measure)
    return calls


def test_without_out_the_table_is_printed_and_nothing_written(
    fake_measure: list[tuple], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    tracked = bench.run.TRACKED
    before = tracked.read_text() if tracked.exists() else None
    bench.run.main(["--quick", "--only", "small64"])
    out, err = capsys.readouterr()
    assert "| small64 step | 12.50 | img/s |  |" in out and "not written anywhere" in err
    assert list(tmp_path.iterdir()) == []
    assert (tracked.read_text() if tracked.exists() else None) == before


@pytest.mark.parametrize("out", ["docs/benchmarks.md", str(bench.run.TRACKED)])
def test_quick_figures_never_go_into_the_tracked_file(
    fake_measure: list[tuple], monkeypatch: pytest.MonkeyPatch, out: str, capsys: pytest.CaptureFixture
) -> None:
    writes: list[Path] = []
    monkeypatch.setattr(bench.run, "write_text_atomic", lambda path, _: writes.append(path))
    monkeypatch.chdir(REPO_ROOT)
    bench.run.main(["--quick", "--only", "small64", "--out", out])
    assert writes == [] and "never written into" in capsys.readouterr().err
    bench.run.main(["--only", "small64", "--out", out])  # a full run: make bench writes the tracked file
    assert [path.resolve() for path in writes] == [bench.run.TRACKED.resolve()]


def test_with_out_the_sections_are_written_there(fake_measure: list[tuple], tmp_path: Path) -> None:
    out = tmp_path / "b.md"
    bench.run.main(
        ["--only", "small64,epoch", "--data", str(tmp_path), "--net", "small64", "--out", str(out)]
    )
    assert fake_measure[0][2:] == ("small64", ("small64", "epoch"))
    text = out.read_text()
    assert section_names(text) == [mark("small64"), mark("epoch small64")]
    assert "command: python -m bench.run --only small64,epoch --data" in text and "load average" in text


def test_the_data_folder_picks_the_net_unless_told(fake_measure: list[tuple], tmp_path: Path) -> None:
    (tmp_path / "prepared.json").write_text('{"dataset": "tiny_imagenet"}')
    bench.run.main(["--only", "epoch", "--data", str(tmp_path)])
    bench.run.main(["--only", "epoch", "--data", str(tmp_path), "--net", "paper"])
    bench.run.main(["--only", "epoch"])
    assert [call[2] for call in fake_measure] == ["small64", "paper", "paper"]


def test_the_command_is_shell_quoted_and_the_note_is_not_repeated() -> None:
    note = "a training run beside; load 9"
    assert bench.run.command_line(["--data", "/a b", "--note", note, "--quick"]) == (
        "python -m bench.run --data '/a b' --note '<the note below>' --quick"
    )
    assert bench.run.command_line([f"--note={note}"]) == "python -m bench.run '--note=<the note below>'"


def test_unknown_parts_are_refused(fake_measure: list[tuple]) -> None:
    with pytest.raises(SystemExit):
        bench.run.main(["--only", "models,small32"])
    assert fake_measure == []
