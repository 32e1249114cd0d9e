"""``python src/eval.py``: centre-crop and ten-crop testing of a checkpoint (paper section 4.1), on the test
split or (``split=val``) on the validation images the training run held out."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.test_train import TINY_DATA, TINY_GENERATED, run_dir

RESULT = re.compile(r"^((?:test|val)/\w+) = ([0-9.]+)$", flags=re.MULTILINE)

# What Lightning printed when eval restored a training checkpoint through trainer.test(ckpt_path=...).
CHECKPOINT_CALLBACK_WARNINGS = (
    "callbacks used to create the checkpoint need to be provided",
    "The dirpath has changed from",
)


@pytest.mark.slow
@pytest.mark.long
def test_eval_reports_centre_and_ten_crop_accuracy(tmp_path: Path, train_cli, eval_cli) -> None:
    data = f"data.root={tmp_path / 'synthetic'}"
    trained = train_cli(*TINY_DATA, data, "trainer.max_epochs=1", "logger=csv")
    assert trained.returncode == 0, trained.stderr[-3000:]
    checkpoint = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    result = eval_cli(f"ckpt_path={checkpoint}", data, *TINY_GENERATED, "data.batch_size=4", "trainer=cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    values = dict(RESULT.findall(result.stdout))
    assert set(values) == {"test/centre_acc", "test/centre_loss", "test/ten_crop_acc", "test/ten_crop_loss"}
    for name in ("centre", "ten_crop"):
        accuracy = float(values[f"test/{name}_acc"])
        assert accuracy * 8 == round(accuracy * 8)  # 8 test images: a multiple of 1/8
    assert values["test/centre_loss"] != values["test/ten_crop_loss"]  # ten views are not the centre alone
    assert "wrote" not in result.stdout  # the data the run trained on, not a regenerated set
    assert f"last.ckpt: trained on {tmp_path / 'synthetic'} (classes ['cat', 'dog'])" in result.stdout
    output = result.stdout + result.stderr
    for warning in CHECKPOINT_CALLBACK_WARNINGS:  # the training run's callbacks are not restored
        assert warning not in output, output[-3000:]
    assert "last.ckpt on " in result.stdout and "ten_crop: the ten views, softmax averaged" in result.stdout
    assert "Test metric" not in result.stdout  # not Lightning's two alike test/acc tables
    (metrics,) = (tmp_path / "outputs" / "eval" / "runs").glob("*/csv/version_0/metrics.csv")
    header, *rows = metrics.read_text().splitlines()
    assert set(header.split(",")) - {"step", "epoch"} == set(values)  # no unlabelled test/acc column
    assert len(rows) == 1

    # split=val: the validation images the run held out of train/ (its data.val_fraction=0.25, read from
    # the run's .hydra/config.yaml: 3 of each class's 12), for data without test/.
    shutil.copytree(tmp_path / "synthetic" / "train", tmp_path / "train_only" / "train")
    train_only = ["data=catsdogs", f"data.root={tmp_path / 'train_only'}", "trainer=cpu", "data.batch_size=4"]
    validated = eval_cli(f"ckpt_path={checkpoint}", *train_only, "split=val")
    assert validated.returncode == 0, validated.stderr[-3000:]
    assert "data.val_fraction=0.25 data.split_seed=0, as the training run had it" in validated.stdout
    val = dict(RESULT.findall(validated.stdout))
    assert set(val) == {"val/centre_acc", "val/centre_loss", "val/ten_crop_acc", "val/ten_crop_loss"}
    assert all(float(val[f"val/{name}_acc"]) * 6 % 1 == 0 for name in ("centre", "ten_crop"))  # 6 images
    history = [r for r in csv.DictReader((run_dir(tmp_path) / "csv" / "version_0" / "metrics.csv").open())]
    (trained_val,) = [r["val/acc"] for r in history if r.get("val/acc")]  # the run validated on the centre
    assert float(val["val/centre_acc"]) == pytest.approx(float(trained_val))  # the same 6 images

    # The same test images in a dataset without train/: the pixel statistics come from the checkpoint,
    # so the figures are exactly the same.
    shutil.copytree(tmp_path / "synthetic" / "test", tmp_path / "test_only" / "test")
    alone = eval_cli(
        f"ckpt_path={checkpoint}", "data=catsdogs", f"data.root={tmp_path / 'test_only'}", "trainer=cpu"
    )
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert dict(RESULT.findall(alone.stdout)) == values

    # A test set with other classes (here: another data= than the run's) is refused, naming both lists.
    for cls in ("crow", "owl"):
        (tmp_path / "birds" / "test" / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (260, 260), (60 * i, 90, 30)).save(
                tmp_path / "birds" / "test" / cls / f"{i}.png"
            )
    birds = ["data=folders", f"data.root={tmp_path / 'birds'}", "data.num_classes=2", "trainer=cpu"]
    refused = eval_cli(f"ckpt_path={checkpoint}", *birds)
    assert refused.returncode != 0
    assert "the checkpoint was trained on the classes ['cat', 'dog']" in refused.stderr
    assert "has the classes ['crow', 'owl']" in refused.stderr and "test/centre_acc" not in refused.stdout


def test_eval_missing_checkpoint_names_it(tmp_path: Path, eval_cli) -> None:
    result = eval_cli(f"ckpt_path={tmp_path / 'nothing.ckpt'}")
    assert result.returncode != 0
    assert f"ckpt_path={tmp_path / 'nothing.ckpt'} is not a file" in result.stderr


def test_data_without_a_test_split_points_to_split_val_in_one_line(tmp_path: Path, eval_cli) -> None:
    """The README's ``data=catsdogs``: Kaggle's recipe lays out train/ alone."""
    (tmp_path / "catsdogs" / "train").mkdir(parents=True)
    checkpoint = tmp_path / "last.ckpt"
    checkpoint.write_bytes(b"")  # not read: the split is checked first
    data = ["data=catsdogs", f"data.root={tmp_path / 'catsdogs'}"]
    result = eval_cli(f"ckpt_path={checkpoint}", *data)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"{tmp_path / 'catsdogs'} has no test/ split; evaluate the validation split with split=val "
        "(the images the training run held out of train/)"
    )
    assert result.stdout == ""
    unknown = eval_cli(f"ckpt_path={checkpoint}", *data, "split=train")
    assert unknown.returncode == 1 and unknown.stderr.startswith("split=train is not known: split=test")


@pytest.mark.slow
def test_eval_runs_on_an_imported_weights_file(tmp_path: Path, eval_cli) -> None:
    """``ckpt_path=<bvlc_alexnet.npy>``: published weights, imported, on a test split with no train/."""
    from src.datasets.synthetic import generate_dataset
    from src.models.alexnet import AlexNet
    from src.models.caffe_weights import CAFFE_LRN, write_caffe_weights

    net = AlexNet(2, 2, conv_widths=(96, 16, 16, 16, 8), fc_width=16, **CAFFE_LRN)
    weights = write_caffe_weights(net, tmp_path / "bvlc_alexnet_small.npy")
    generate_dataset(tmp_path / "synthetic", train_per_class=1, test_per_class=4)
    shutil.copytree(tmp_path / "synthetic" / "test", tmp_path / "test_only" / "test")
    data = ["data=catsdogs", f"data.root={tmp_path / 'test_only'}", "data.batch_size=4"]
    result = eval_cli(f"ckpt_path={weights}", *data, "trainer=cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    values = dict(RESULT.findall(result.stdout))
    assert set(values) == {"test/centre_acc", "test/centre_loss", "test/ten_crop_acc", "test/ten_crop_loss"}
    assert all(float(values[f"test/{name}_acc"]) * 8 % 1 == 0 for name in ("centre", "ten_crop"))
    output = result.stdout + result.stderr
    assert "LeafSpec" not in output and "Tip:" not in output  # Lightning's notes, dropped as in train.py


# -- eval says what it does (#27) ---------------------------------------------------------------------------


def truncated_checkpoint(path: Path) -> Path:
    """A checkpoint cut short, as a copy interrupted by a full disk leaves it."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "net_config": {}}, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue()[:2000])
    return path


def tiny_data(tmp_path: Path) -> list[str]:
    return [*TINY_GENERATED, f"data.root={tmp_path / 'synthetic'}", "data.num_workers=0"]


def test_a_truncated_checkpoint_is_named_in_one_line(tmp_path: Path, eval_cli) -> None:
    checkpoint = truncated_checkpoint(tmp_path / "cut.ckpt")
    result = eval_cli(f"ckpt_path={checkpoint}", *tiny_data(tmp_path))
    assert result.returncode == 1, result.stderr[-3000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"ckpt_path: {checkpoint} cannot be read (") and "damaged" in line, line


def test_a_model_setting_is_refused_not_ignored(tmp_path: Path, eval_cli) -> None:
    checkpoint = truncated_checkpoint(tmp_path / "cut.ckpt")  # not read: the setting is refused first
    result = eval_cli(f"ckpt_path={checkpoint}", "+model=one_tower", *tiny_data(tmp_path))
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("model: src/eval.py builds the network the checkpoint holds"), line
    assert "test/centre_acc" not in result.stdout


def test_ckpt_path_last_and_a_run_folder_mean_what_they_mean_to_train_py(tmp_path: Path, eval_cli) -> None:
    runs = tmp_path / "outputs" / "train" / "runs"
    none = eval_cli("ckpt_path=last", *tiny_data(tmp_path))
    assert none.returncode == 1
    assert none.stderr.strip() == (
        f"ckpt_path=last: no run under {runs}; name a checkpoint or a run folder (ckpt_path=<run dir>)"
    )
    run = runs / "2026-01-01_10-00-00-000000"
    (run / ".hydra").mkdir(parents=True)
    last = truncated_checkpoint(run / "checkpoints" / "last.ckpt")  # read, so named: the file it resolved to
    for ckpt_path in ("last", str(run)):
        result = eval_cli(f"ckpt_path={ckpt_path}", *tiny_data(tmp_path))
        assert f"ckpt_path={ckpt_path}: evaluating {last}" in result.stdout, result.stderr[-3000:]
        assert result.stderr.strip().startswith(f"ckpt_path: {last} cannot be read ("), result.stderr[-3000:]
