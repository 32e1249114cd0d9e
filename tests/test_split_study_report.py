"""The split study's report (docs/split-study.md, "Results"): reading archives, the rule, the document."""

from __future__ import annotations

import csv
import dataclasses
import json
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from src.analysis.colour import stats_for_model_kernels
from src.reports.split_study import DOC, STUDY, main, write_report
from src.reports.split_study_report import BEGIN, END, replace_section
from src.reports.split_study_rule import class_count, distill_test, emergence, four_towers, read_p99
from src.reports.split_study_runs import Snapshot, StudyRun, read_study_run, study_runs

P99 = {
    (1, "split"): 0.243,
    (1, "singular_vector_separation"): 0.292,
    (2, "split"): 0.265,
    (4, "split"): 0.521,
    (4, "frequency_split"): 0.549,
}
STEPS_PER_EPOCH = 704


def grey_and_colour(seed: int) -> torch.Tensor:
    """96 5x5 kernels: the first 48 the same in every channel (no colour), the rest random (colour)."""
    generator = torch.Generator().manual_seed(seed)
    grey = torch.randn(48, 1, 5, 5, generator=generator).expand(48, 3, 5, 5)
    return torch.cat([grey, torch.randn(48, 3, 5, 5, generator=generator)])


def fake_archive(
    root: Path,
    name: str,
    towers: int = 2,
    epochs: int = 2,
    logged_split: float | None = None,
    tested: bool = True,
) -> Path:
    """An archived run as src/reports/run_archive.py leaves it: config, CSV log, weights, run.json."""
    folder = root / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(
        f"seed: {name[-1]}\nmodel:\n  towers: {towers}\ndata:\n  num_classes: 200\n"
    )
    torch.manual_seed(0)
    conv1 = {e: torch.randn(96, 3, 5, 5) * 0.01 for e in range(epochs)}
    conv1[epochs] = grey_and_colour(1)
    np.savez(
        folder / "weights.npz",
        **{f"conv1_epoch_{e:03d}": w.numpy() for e, w in conv1.items()},
        conv2_epoch_000=np.ones((128, 96 // towers, 5, 5), dtype=np.float32),
        **{f"conv2_epoch_{epochs:03d}": np.ones((128, 96 // towers, 5, 5), dtype=np.float32)},
    )
    rows = [{"epoch": 0, "step": 0, "kernels/epochs_trained": 0}]
    for e in range(1, epochs + 1):
        rows.append(
            {"epoch": e - 1, "step": e * STEPS_PER_EPOCH - 1, "kernels/epochs_trained": e, "val/acc": 0.1 * e}
        )
    final = stats_for_model_kernels(list(conv1[epochs].chunk(towers))).split
    rows[-1]["kernels/split"] = final if logged_split is None else logged_split
    if tested:
        rows.append({"epoch": epochs, "step": epochs * STEPS_PER_EPOCH, "test/acc": 0.25})
    metrics = folder / "csv" / "version_0" / "metrics.csv"
    metrics.parent.mkdir(parents=True)
    columns = ["epoch", "step", "kernels/epochs_trained", "kernels/split", "val/acc", "test/acc"]
    with metrics.open("w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        writer.writerows(rows)
    (folder / "run.json").write_text(json.dumps({"fit_s": 600.0 * epochs}))
    (folder / "kernels").mkdir()
    Image.new("RGB", (8, 4)).save(folder / "kernels" / f"epoch_{epochs:03d}_figure3.png")
    return folder


def test_an_archive_reads_as_steps_and_measures_recomputed_from_its_weights(tmp_path: Path) -> None:
    run = read_study_run(fake_archive(tmp_path, "A_s1"))
    assert (run.arm, run.seed, run.towers, run.classes) == ("A", 1, 2, 200)
    assert [s.step for s in run.snapshots] == [0, 704, 1408]
    assert [s.epochs for s in run.snapshots] == [0, 1, 2]
    assert run.final.split == pytest.approx(1.0)  # tower 0 grey, tower 1 coloured
    assert run.final.colour_fractions[0] == 0.0
    assert run.snapshots[0].change_split == 0.0
    assert run.final.change_split > 0.9  # the change is the grey/colour kernels minus tiny initial ones
    assert run.final.p is not None and run.final.p < 1e-10
    assert (run.test_acc, run.val_acc, run.fit_s) == (0.25, pytest.approx(0.2), 1200.0)
    assert run.singular_vector_separation is None  # two towers: Distill's test is for the control


def test_an_archive_whose_weights_disagree_with_its_log_is_refused(tmp_path: Path) -> None:
    folder = fake_archive(tmp_path, "A_s1", logged_split=0.5)
    with pytest.raises(ValueError, match=r"A_s1.*recomputed.*1\.0000.*logged 0\.5000"):
        read_study_run(folder)


def test_the_one_tower_control_gets_distills_test_and_main_runs_are_found_by_name(tmp_path: Path) -> None:
    fake_archive(tmp_path, "C_s2", towers=1)
    fake_archive(tmp_path, "A_s1")
    fake_archive(tmp_path, "pilot_t2_s0")
    runs = study_runs(tmp_path)
    assert [r.name for r in runs] == ["A_s1", "C_s2"]
    control = runs[1]
    assert control.singular_vector_separation is not None
    assert 0.0 <= control.singular_vector_separation <= 1.0
    assert control.final.p is not None  # the two halves of the one tower


def study_run(arm: str, seed: int, split: float, change: float | None = None, **final: float) -> StudyRun:
    snapshot = Snapshot(
        epochs=15,
        step=10560,
        split=split,
        auc=(split + 1) / 2,
        p=0.01,
        colour_fractions=(0.5, 0.1),
        tower_learning=(0.5, 0.5),
        change_split=split if change is None else change,
        learning=final.get("learning", 0.5),
        frequency_split=final.get("frequency_split", 0.1),
    )
    return StudyRun(
        name=f"{arm}_s{seed}",
        arm=arm,
        seed=seed,
        towers={"A": 2, "B": 2, "C": 1, "E": 4}[arm],
        classes=200,
        snapshots=(snapshot,),
        val_acc=0.25,
        test_acc=final.get("test_acc", 0.27),
        fit_s=4000.0,
        picture=None,
        singular_vector_separation=final.get("separation"),
    )


def arms(a: list[float], c: list[float], a_change: list[float] | None = None) -> list[StudyRun]:
    changes = a_change or a
    runs = [study_run("A", i + 1, s, change) for i, (s, change) in enumerate(zip(a, changes, strict=True))]
    return runs + [study_run("C", i + 1, s) for i, s in enumerate(c)]


def test_the_rule_waits_for_every_planned_run() -> None:
    finding = emergence(arms([0.5, 0.6], [0.1, 0.1, 0.1]), P99)
    assert finding.verdict == "pending"
    assert finding.reasons == ("arm A has 2 of its 3 runs finished",)


@pytest.mark.parametrize(
    ("a", "c", "a_change", "verdict"),
    [
        ([0.5, 0.6, 0.2], [0.1, 0.2, 0.15], None, "the split emerges"),  # 2 of 3 above 0.265, median > C
        ([0.5, 0.2, 0.2], [0.1, 0.2, 0.15], None, "it does not emerge"),  # condition 1 fails
        (
            [0.5, 0.6, 0.4],
            [0.1, 0.2, 0.7],
            None,
            "it does not emerge",
        ),  # condition 2: a C run above A's median
        ([0.5, 0.6, 0.2], [0.1, 0.2, 0.15], [0.2, 0.2, 0.2], "inconclusive"),  # 3: the change does not split
    ],
)
def test_emergence_follows_the_rules_three_conditions(
    a: list[float], c: list[float], a_change: list[float] | None, verdict: str
) -> None:
    assert emergence(arms(a, c, a_change), P99).verdict == verdict


def test_a_run_that_did_not_learn_makes_the_verdict_inconclusive_and_is_named() -> None:
    runs = arms([0.5, 0.6, 0.7], [0.1, 0.1, 0.1])
    runs[4] = dataclasses.replace(runs[4], test_acc=0.04)  # C_s2: under ten times chance
    finding = emergence(runs, P99)
    assert finding.verdict == "inconclusive"
    assert "C_s2" in finding.reasons[0]


@pytest.mark.parametrize(
    ("b", "verdict"),
    [
        ([0.3, 0.35], "fewer classes weaken it"),
        ([0.45, 0.55], "no effect seen"),
        ([0.3, 0.5], "unclear with two seeds"),
    ],
)
def test_the_class_count_is_read_against_as_range(b: list[float], verdict: str) -> None:
    runs = arms([0.4, 0.5, 0.6], [0.1, 0.1, 0.1]) + [study_run("B", i + 1, s) for i, s in enumerate(b)]
    emerged = emergence(runs, P99)
    assert emerged.verdict == "the split emerges"
    assert class_count(runs, emerged).verdict == verdict


def test_the_class_count_is_not_read_unless_the_split_emerges() -> None:
    runs = arms([0.1, 0.1, 0.1], [0.1, 0.1, 0.1]) + [study_run("B", 1, 0.9), study_run("B", 2, 0.9)]
    assert class_count(runs, emergence(runs, P99)).verdict == "not read"


def test_four_towers_by_colour_and_by_frequency() -> None:
    both = [study_run("E", 1, 0.6, frequency_split=0.6), study_run("E", 2, 0.7, frequency_split=0.56)]
    assert four_towers(both, P99).verdict == "splits by colour and by frequency"
    one_low = [study_run("E", 1, 0.6, frequency_split=0.6), study_run("E", 2, 0.5, frequency_split=0.3)]
    assert four_towers(one_low, P99).verdict == "no colour split, not by frequency"


def test_distills_test_needs_two_of_three_control_runs_above_the_band() -> None:
    control = [study_run("C", i + 1, 0.1, separation=v) for i, v in enumerate((0.5, 0.3, 0.1))]
    assert distill_test(control, P99).verdict == "holds the colour structure"
    control[1] = dataclasses.replace(control[1], singular_vector_separation=0.29)
    assert distill_test(control, P99).verdict == "does not hold it"


def test_the_bands_csv_gives_the_rules_thresholds() -> None:
    p99 = read_p99(STUDY / "fresh_bands.csv")
    assert p99[(2, "split")] == 0.2645
    rule = DOC.read_text().split(BEGIN)[0]
    for key in [(2, "split"), (4, "split"), (4, "frequency_split"), (1, "singular_vector_separation")]:
        quoted = Decimal(str(p99[key])).quantize(Decimal("0.001"), ROUND_HALF_UP)
        assert f" {quoted}" in rule, key  # the rule quotes the CSV's numbers to 3 digits


def test_the_section_between_the_markers_is_replaced_and_nothing_else(tmp_path: Path) -> None:
    document = f"# rule\nkeep\n{BEGIN}\nold\n{END}\ntail\n"
    assert replace_section(document, "new", tmp_path) == f"# rule\nkeep\n{BEGIN}\nnew\n{END}\ntail\n"
    with pytest.raises(ValueError, match="expected one line"):
        replace_section("# rule only\n", "new", tmp_path / "doc.md")


def test_the_command_writes_the_section_and_the_figure_and_check_sees_staleness(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "study" / "runs"
    fake_archive(runs, "A_s1")
    fake_archive(runs, "A_s2", tested=False)
    doc = tmp_path / "study.md"
    doc.write_text(f"# The rule\n\n{BEGIN}\n{END}\n")
    bands = STUDY / "fresh_bands.csv"
    assert write_report(runs, bands, doc) == 0
    text = doc.read_text()
    assert text.startswith("# The rule\n")
    assert "| A_s1 | 1 | 2 | 1,408 | 20 min | 1.000 |" in text
    assert "`A_s2` (2 epochs archived)" in text  # not tested yet: in progress, outside the verdict
    assert "arm A has 1 of its 3 runs finished" in text
    assert "![split against steps](study/results/split_vs_step.png)" in text
    assert "| ![conv1 of A_s1](study/runs/A_s1/kernels/epoch_002_figure3.png) |" in text
    assert (tmp_path / "study" / "results" / "split_vs_step.png").stat().st_size > 10_000
    with (tmp_path / "study" / "results" / "snapshots.csv").open() as file:
        snapshots = list(csv.DictReader(file))
    assert [(r["run"], r["epochs"], r["step"]) for r in snapshots][:3] == [
        ("A_s1", "0", "0"),
        ("A_s1", "1", "704"),
        ("A_s1", "2", "1408"),
    ]
    assert float(snapshots[2]["split"]) == pytest.approx(1.0) and snapshots[2]["colour_fraction_t0"] == "0.0"
    check = ["report", "--runs", str(runs), "--bands", str(bands), "--doc", str(doc), "--check"]
    with pytest.raises(SystemExit) as fresh:
        main(check)
    assert fresh.value.code == 0
    doc.write_text(text.replace("1,408", "1,409"))
    with pytest.raises(SystemExit) as stale:
        main(check)
    assert stale.value.code == 1
    assert f"{doc}: not what the archives in {runs} give" in capsys.readouterr().out
    assert "1,409" in doc.read_text()  # --check writes nothing


def test_the_committed_results_section_is_what_the_committed_archives_give(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert write_report(STUDY / "runs", STUDY / "fresh_bands.csv", DOC, check=True) == 0, (
        capsys.readouterr().out
    )


def test_four_towers_read_with_a_score_per_tower_and_no_p(tmp_path: Path) -> None:
    run = read_study_run(fake_archive(tmp_path, "E_s1", towers=4))
    assert (run.arm, run.towers) == ("E", 4)
    assert len(run.final.colour_fractions) == len(run.final.tower_learning) == 4
    assert run.final.p is None  # picking the extreme pair of four makes a two-group p invalid
    assert run.final.split == pytest.approx(1.0)  # towers 0-1 grey, 2-3 coloured: the extremes separate
    assert run.singular_vector_separation is None
