"""The Figure 3 experiment's config and its report (src/reports/figure3_*.py) on fake runs."""

from __future__ import annotations

import csv
import json
import os
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from lightning.pytorch.loggers import CSVLogger
from omegaconf import OmegaConf
from PIL import Image

from src.reports import figure3_report
from src.reports.figure3_references import Reference
from src.reports.figure3_report import main, write_report
from src.reports.figure3_runs import find_run_dirs, read_run
from src.runs.sweeps import summarise_sweep
from tests.conftest import compose_train

#: A fixed reference: the tests need not recover CaffeNet's kernels (src/analysis/reference_kernels.py).
REFERENCE = Reference("CaffeNet", split=0.917, low_freq=0.733, random_low_freq=0.174)
STEPS_PER_EPOCH = 10
START = 1_700_000_000.0  # the fake runs' file times
FIT_S = 600.0
JOB_S = 1000.0

#: job folder -> (towers, seed, final split, final low_freq, final tower-0 colour fraction, test/acc)
RUNS = {
    "0": (1, 0, 0.10, 0.30, 0.60, 0.70),
    "1": (2, 0, 0.50, 0.60, 0.20, 0.80),
    "2": (2, 1, 0.70, 0.50, 0.40, 0.90),
}
EPOCHS = 3


def kernel_scores(towers: int, split: float, low_freq: float, fraction: float) -> dict[str, float]:
    groups = 2 if towers == 1 else towers
    scores = {"kernels/split": split, "kernels/auc": (split + 1) / 2, "kernels/mean_gap": split / 10}
    scores |= {"kernels/low_freq": low_freq} | ({"kernels/split_p": 0.01} if groups == 2 else {})
    for t in range(groups):
        scores |= {
            f"kernels/tower{t}/colour_mean": 0.6 - t / 10,
            f"kernels/tower{t}/colour_fraction": fraction if t == 0 else 1.0,
            f"kernels/tower{t}/low_freq": low_freq,
        }
    return scores


def fake_run(
    folder: Path, towers: int, seed: int, split: float, low_freq: float, fraction: float, test: float
):
    """A run folder as src/train.py writes it: the CSV through Lightning's own CSVLogger, in the order the
    callbacks log (kernels at step 0, health rows without an epoch, steps, then val/acc with the kernels)."""
    logger = CSVLogger(save_dir=str(folder), name="csv")
    start = kernel_scores(towers, 0.05, 0.174, 1.0)
    logger.log_metrics(start | {"kernels/epochs_trained": 0.0, "epoch": 0}, step=0)
    pictures = folder / "kernels"
    pictures.mkdir(parents=True)
    for epoch in range(EPOCHS):
        step = (epoch + 1) * STEPS_PER_EPOCH - 1
        logger.log_metrics({"health/conv1/grad_norm": 1.0, "health/logit_spread": 0.5}, step=step - 5)
        logger.log_metrics({"lr": 0.005, "train/loss_step": 2.0, "epoch": epoch}, step=step - 1)
        done = (epoch + 1) / EPOCHS  # the scores move linearly to their final values
        scores = kernel_scores(
            towers, 0.05 + done * (split - 0.05), 0.174 + done * (low_freq - 0.174), fraction
        )
        val = {"val/acc": 0.3 + epoch / 10, "val/acc_best": 0.3 + epoch / 10, "val/loss": 1.5}
        logger.log_metrics(scores | val | {"kernels/epochs_trained": epoch + 1.0, "epoch": epoch}, step=step)
        logger.log_metrics({"train/acc": 0.4, "train/loss_epoch": 1.8, "epoch": epoch}, step=step)
    logger.log_metrics({"test/acc": test, "test/loss": 1.0, "epoch": EPOCHS}, step=EPOCHS * STEPS_PER_EPOCH)
    logger.finalize("success")
    for epoch in range(EPOCHS + 1):
        picture = np.full((20, 40, 3), 40 * epoch, dtype=np.uint8)
        Image.fromarray(picture).save(pictures / f"epoch_{epoch:03d}_figure3.png")
    os.utime(pictures / "epoch_000_figure3.png", (START, START))
    os.utime(pictures / f"epoch_{EPOCHS:03d}_figure3.png", (START + FIT_S, START + FIT_S))
    hydra = folder / ".hydra"
    hydra.mkdir()
    OmegaConf.save(
        OmegaConf.create({"seed": seed, "model": {"towers": towers}, "tags": ["figure3"]}),
        hydra / "config.yaml",
    )
    (hydra / "overrides.yaml").write_text(f"- experiment=figure3\n- model.towers={towers}\n- seed={seed}\n")
    os.utime(hydra / "config.yaml", (START - 100, START - 100))
    metrics = folder / "csv" / "version_0" / "metrics.csv"
    os.utime(metrics, (START - 100 + JOB_S, START - 100 + JOB_S))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("figure3")
    sweep = root / "multiruns" / "2026-12-04_10-00-00"
    for job, values in RUNS.items():
        fake_run(sweep / job, *values)
    write_report(find_run_dirs([sweep]), root / "docs", band_seeds=3, reference=REFERENCE, command="test")
    return root


def read_generated_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a written CSV, read as any CSV reader reads it: the first line is the header."""
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def table_row(markdown: str, heading: str, first_cell: str) -> list[str]:
    section = markdown.split(f"### {heading}")[1].split("\n\n")[1]
    rows = [line.strip("|").split("|") for line in section.splitlines()]
    return next([c.strip() for c in row] for row in rows if row[0].strip() == first_cell)


def test_tables_give_mean_and_sd_of_what_the_runs_logged(report: Path) -> None:
    markdown = (report / "docs" / "figure3.md").read_text()
    assert markdown.startswith("<!-- generated by: test")
    assert "Not made by" not in markdown  # every run has the figure3 tag
    header = table_row(markdown, "towers = 2", "seed")
    mean = dict(zip(header, table_row(markdown, "towers = 2", "**mean**"), strict=True))
    sd = dict(zip(header, table_row(markdown, "towers = 2", "**sd**"), strict=True))
    assert (mean["split"], sd["split"]) == ("0.600", "0.141")  # 0.5 and 0.7
    assert (mean["AUC"], sd["AUC"]) == ("0.800", "0.071")
    assert (mean["colour frac. tower 0"], sd["colour frac. tower 0"]) == ("0.300", "0.141")
    assert (mean["learning measure"], sd["learning measure"]) == ("0.550", "0.071")
    assert (mean["test acc"], sd["test acc"]) == ("0.850", "0.071")
    assert (mean["epochs"], mean["fit (min)"], sd["fit (min)"]) == ("3.0", "10.000", "0.000")
    assert mean["halfway"] == "2 of 2"  # 0.6 and 0.5 >= 0.4535
    header = table_row(markdown, "towers = 1", "seed")
    control = dict(zip(header, table_row(markdown, "towers = 1", "0"), strict=True))
    assert (control["split"], control["colour frac. half 0"], control["halfway"]) == (
        "0.100",
        "0.600",
        "**no**",
    )
    assert "1 of 3 runs do not pass" in markdown and "2 of 3 runs end at least halfway" in markdown
    assert "every one lies above the one-tower control's range (0.100..0.100)" in markdown


def test_the_csvs_are_plain_with_paths_relative_to_their_folder(report: Path) -> None:
    """No comment line (``pandas.read_csv`` would take it for the header), no path of this machine."""
    folder = report / "docs" / "figure3"
    for name in ("runs.csv", "epochs.csv"):
        with (folder / name).open(newline="") as file:
            header = next(csv.reader(file))
        assert header[:4] == ["run", "towers", "seed", "status" if name == "runs.csv" else "epoch"]
        assert "kernels/split" in header and "kernels/low_freq" in header
        assert "generated by" not in (folder / name).read_text()
    runs = read_generated_csv(folder / "runs.csv")
    sweep = report / "multiruns" / "2026-12-04_10-00-00"
    assert [r["path"] for r in runs] == [f"../../multiruns/2026-12-04_10-00-00/{job}" for job in RUNS]
    assert [(folder / r["path"]).resolve() for r in runs] == [(sweep / job).resolve() for job in RUNS]
    assert str(report) not in (folder / "runs.csv").read_text()


def test_every_run_and_epoch_is_in_the_csvs(report: Path) -> None:
    folder = report / "docs" / "figure3"
    runs = read_generated_csv(folder / "runs.csv")
    assert [(r["run"], r["towers"], r["seed"]) for r in runs] == [
        ("0", "1", "0"),
        ("1", "2", "0"),
        ("2", "2", "1"),
    ]
    for row in runs:
        towers, seed, split, low_freq, fraction, test = RUNS[row["run"]]
        assert float(row["kernels/split"]) == pytest.approx(split)
        assert float(row["kernels/low_freq"]) == pytest.approx(low_freq)
        assert float(row["kernels/tower0/colour_fraction"]) == fraction and float(row["test/acc"]) == test
        assert (row["epochs"], row["status"], float(row["fit_s"]), float(row["job_s"])) == (
            "3",
            "tested",
            FIT_S,
            JOB_S,
        )
    epochs = read_generated_csv(folder / "epochs.csv")
    assert [(r["run"], r["epoch"]) for r in epochs] == [(j, str(e)) for j in RUNS for e in range(EPOCHS + 1)]
    first, second = epochs[0], epochs[1]
    assert first["val/acc"] == "" and float(first["kernels/split"]) == 0.05  # at initialisation
    assert float(second["val/acc"]) == 0.3  # logged at epoch 0 of the CSV: one epoch trained
    assert "kernels/tower1/colour_mean" in first and "kernels/tower2/colour_mean" not in first


def test_plots_and_pictures_exist(report: Path) -> None:
    folder = report / "docs" / "figure3"
    for name in ("split_vs_epoch", "low_freq_vs_epoch", "kernels_towers1", "kernels_towers2"):
        with Image.open(folder / f"{name}.png") as image:
            assert image.size[0] > 0 and image.info["Comment"].startswith("generated by: test")
    with Image.open(folder / "kernels_towers2.png") as image:  # the last epoch's picture
        assert image.getpixel((0, 0)) == (40 * EPOCHS,) * 3


def test_runs_found_from_paths_and_globs_and_the_sweep_summary_lists_them(report: Path) -> None:
    sweep = next((report / "multiruns").iterdir())
    assert find_run_dirs([str(sweep / "*")]) == find_run_dirs([sweep / "0", sweep / "1", sweep / "2"])
    assert read_run(sweep / "1").towers == 2
    _, rows = summarise_sweep(sweep)
    assert sorted(Path(row["dir"]).name for row in rows) == sorted(RUNS)
    with pytest.raises(FileNotFoundError, match="no run folder"):
        find_run_dirs([report / "docs"])


def test_command_line(report: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(figure3_report, "caffenet_reference", lambda: REFERENCE)
    sweep = next((report / "multiruns").iterdir())
    main([str(sweep / "1"), str(sweep / "2"), "--out", str(tmp_path), "--band-seeds", "2"])
    markdown = (tmp_path / "figure3.md").read_text()
    assert "generated by: python -m src.reports.figure3_report" in markdown.splitlines()[0]
    assert "There are no towers=1 runs" in markdown


def test_without_out_the_report_goes_into_the_sweep_and_docs_stay_as_they_are(
    report: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m src.reports.figure3_report <sweep dir>`` as the README writes it, run from a checkout
    whose ``docs/`` holds a committed report: that report is not touched; ``--out docs`` replaces it."""
    monkeypatch.setattr(figure3_report, "caffenet_reference", lambda: REFERENCE)
    sweep = tmp_path / "multiruns" / "2026-12-05_10-00-00"
    shutil.copytree(next((report / "multiruns").iterdir()), sweep)
    checkout = tmp_path / "checkout"
    committed = {
        checkout / "docs" / "figure3.md": "# the committed report\n",
        checkout / "docs" / "figure3" / "runs.csv": "run,path\nt1_s0,runs/t1_s0\n",
        checkout / "docs" / "figure3" / "split_vs_epoch.png": "not a new plot\n",
    }
    for path, text in committed.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.chdir(checkout)

    def docs() -> dict[str, str]:
        return {
            str(p.relative_to(checkout)): p.read_text() for p in sorted(checkout.rglob("*")) if p.is_file()
        }

    before = docs()
    main([str(sweep), "--band-seeds", "2"])
    assert docs() == before
    written = sweep / "report"
    assert (written / "figure3.md").read_text().startswith("<!-- generated by: ")
    assert sorted(p.name for p in (written / "figure3").iterdir()) == [
        "epochs.csv",
        "kernels_towers1.png",
        "kernels_towers2.png",
        "low_freq_vs_epoch.png",
        "runs.csv",
        "split_vs_epoch.png",
    ]
    assert [r["run"] for r in read_generated_csv(written / "figure3" / "runs.csv")] == list(RUNS)
    # Again, from the jobs' glob: the same place; the report folder now in the sweep is not taken for a run.
    (written / "figure3.md").unlink()
    main([f"{sweep}/*", "--band-seeds", "2"])
    assert (written / "figure3.md").is_file() and docs() == before
    assert [r["run"] for r in read_generated_csv(written / "figure3" / "runs.csv")] == list(RUNS)
    # --out docs: the explicit act that updates the committed report.
    main([str(sweep), "--out", "docs", "--band-seeds", "2"])
    assert (checkout / "docs" / "figure3.md").read_text().startswith("<!-- generated by: ")
    runs = read_generated_csv(checkout / "docs" / "figure3" / "runs.csv")
    assert [r["path"] for r in runs] == [f"../../../multiruns/2026-12-05_10-00-00/{job}" for job in RUNS]


def test_the_default_out_is_the_report_folder_in_what_the_sources_share(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for job in ("0", "1"):
        (sweep / job).mkdir(parents=True)
    assert figure3_report.default_out([sweep]) == sweep / "report"
    assert figure3_report.default_out([sweep / "0", sweep / "1"]) == sweep / "report"
    assert figure3_report.default_out([f"{sweep}/*"]) == sweep / "report"
    assert figure3_report.default_out([sweep / "1"]) == sweep / "1" / "report"  # one run: in its folder


def test_archived_runs_in_the_docs_need_an_explicit_out(tmp_path: Path) -> None:
    """``python -m src.reports.figure3_report docs/figure3/runs`` must not write into ``docs/``."""
    docs = tmp_path / "docs"
    (docs / "figure3" / "runs" / "t2_s0").mkdir(parents=True)
    with pytest.raises(SystemExit, match=r"inside .*docs.*--out docs to update the committed report"):
        figure3_report.default_out([docs / "figure3" / "runs"], docs=docs)
    assert list((docs / "figure3" / "runs").iterdir()) == [docs / "figure3" / "runs" / "t2_s0"]
    with pytest.raises(SystemExit, match="--out"):  # the real docs folder, from the command line
        figure3_report.main([str(figure3_report.DOCS / "figure3" / "runs")])
    assert not (figure3_report.DOCS / "figure3" / "runs" / "report").exists()


@pytest.mark.parametrize("towers", [1, 2, 4])
def test_experiment_composes_with_towers_and_folders_data(towers: int, tmp_path: Path) -> None:
    data = ["data=folders", f"data.root={tmp_path}", "data.num_classes=10"]
    cfg = compose_train(["experiment=figure3", f"model.towers={towers}", "seed=2", *data], tmp_path)
    assert (cfg.model.towers, cfg.seed, cfg.data.num_classes, cfg.tags) == (towers, 2, 10, ["figure3"])
    assert {"csv", "wandb"} <= set(cfg.logger) and cfg.test
    assert (cfg.data.batch_size, cfg.data.image_size, cfg.data.val_views, cfg.data.test_views) == (
        64,
        256,
        "centre",
        "ten",
    )
    assert (cfg.trainer.max_epochs, cfg.trainer.precision, cfg.model.init) == (
        10,
        "auto",
        "kaiming_paper_conv1",
    )
    assert (cfg.optimizer.lr, cfg.scheduler.lr_batch, cfg.scheduler.warmup_steps) == (0.01, 128, 250)


def test_an_archived_run_reads_as_the_run_itself_with_its_times(tmp_path: Path) -> None:
    from src.reports.run_archive import RUN_FILE
    from src.reports.run_archive import main as archive_main

    run = tmp_path / "runs" / "t2_s1"
    fake_run(run, 2, 1, 0.3, 0.6, 0.5, 0.7)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x" * 1000)
    (run / "train.log").write_text("[2026-12-07 06:43:32] epoch 1/2  train/loss 3.6  1m02s\n")
    snapshot = run / "kernels" / "epoch_001_weights.npz"
    np.savez(snapshot, conv1=np.zeros((4, 3, 5, 5), np.float32), conv2=np.zeros((2, 2, 5, 5), np.float32))
    os.utime(snapshot, (START + 62, START + 62))
    archive_main([str(run), "--into", str(tmp_path / "kept"), "--commit", "abc123"])
    kept = tmp_path / "kept" / "t2_s1"
    assert not (kept / "checkpoints").exists()
    assert sorted(p.name for p in (kept / "kernels").iterdir()) == [
        "epoch_000_figure3.png",
        f"epoch_{EPOCHS:03d}_figure3.png",
    ]
    for path in kept.rglob("*"):  # what a git checkout does to file times
        os.utime(path, (START + 10**6, START + 10**6))
    original, copy = read_run(run), read_run(kept)
    assert (copy.towers, copy.seed, copy.epochs, copy.test_acc) == (
        original.towers,
        original.seed,
        original.epochs,
        original.test_acc,
    )
    assert copy.fit_s == pytest.approx(FIT_S) and copy.job_s == pytest.approx(JOB_S)
    record = json.loads((kept / RUN_FILE).read_text())
    assert record["commit"] == "abc123"
    assert (kept / "train.log").read_text().startswith("[2026-12-07 06:43:32] epoch 1/2")
    assert datetime.fromisoformat(record["snapshots"]["001"]).timestamp() == pytest.approx(START + 62)


def test_a_resumed_runs_wall_times_leave_out_the_pause(tmp_path: Path) -> None:
    """Stopped after epoch 2's picture, resumed 10,000 s later (a second csv/version_1 process): the pause
    counts neither in the fit nor in the job; the part of epoch 3 lost at the stop is left out as well."""
    run = tmp_path / "t1_s0"
    fake_run(run, 1, 0, 0.3, 0.6, 0.5, 0.7)
    version_0, version_1 = run / "csv" / "version_0", run / "csv" / "version_1"
    version_1.mkdir()
    (version_1 / "metrics.csv").write_text((version_0 / "metrics.csv").read_text())
    resumed = START + 10_000.0
    times = {
        version_0 / "hparams.yaml": START - 10,
        version_0 / "metrics.csv": START + 250,  # the last flush before the stop, inside epoch 3
        version_1 / "hparams.yaml": resumed,
        version_1 / "metrics.csv": resumed + 400,
    }
    times |= {run / "kernels" / f"epoch_{e:03d}_figure3.png": START + 100 * e for e in range(EPOCHS)}
    times[run / "kernels" / f"epoch_{EPOCHS:03d}_figure3.png"] = resumed + 150
    for path, when in times.items():
        path.touch()
        os.utime(path, (when, when))
    read = read_run(run)
    assert read.fit_s == pytest.approx(100 * (EPOCHS - 1) + 150)
    assert read.job_s == pytest.approx(260 + 400)
