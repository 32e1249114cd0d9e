"""``python src/eval.py``: centre-crop and ten-crop testing of a checkpoint (paper section 4.1)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.test_train import TINY_DATA, TINY_GENERATED, run_dir

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
    values = dict(re.findall(r"^(test/\w+) = ([0-9.]+)$", result.stdout, flags=re.MULTILINE))
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
    (metrics,) = (tmp_path / "outputs" / "eval" / "runs").glob("*/csv/version_0/metrics.csv")
    assert "test/ten_crop_acc" in metrics.read_text()

    # The same test images in a dataset without train/: the pixel statistics come from the checkpoint,
    # so the figures are exactly the same.
    shutil.copytree(tmp_path / "synthetic" / "test", tmp_path / "test_only" / "test")
    alone = eval_cli(
        f"ckpt_path={checkpoint}", "data=catsdogs", f"data.root={tmp_path / 'test_only'}", "trainer=cpu"
    )
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert dict(re.findall(r"^(test/\w+) = ([0-9.]+)$", alone.stdout, flags=re.MULTILINE)) == values

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
    values = dict(re.findall(r"^(test/\w+) = ([0-9.]+)$", result.stdout, flags=re.MULTILINE))
    assert set(values) == {"test/centre_acc", "test/centre_loss", "test/ten_crop_acc", "test/ten_crop_loss"}
    assert all(float(values[f"test/{name}_acc"]) * 8 % 1 == 0 for name in ("centre", "ten_crop"))
    output = result.stdout + result.stderr
    assert "LeafSpec" not in output and "Tip:" not in output  # Lightning's notes, dropped as in train.py
