"""The W&B offline-run reader, on real offline runs written by wandb itself and by Lightning's WandbLogger."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from src.loggers.wandb_records import (
    find_offline_runs,
    get_value,
    image_files,
    image_path,
    media_paths,
    metric_series,
    read_config,
    read_history,
    record_log_files,
    wait_until_finished,
)
from tests.conftest import ROOT, run_env

COLOUR_MEANS = [0.125, 0.25, 0.375, 0.5]  # logged at steps 0..3
BIG = "".join(chr(ord("a") + i % 26) for i in range(100_000))  # one record over three 32 KiB blocks


def pixels(height: int, width: int, seed: int) -> np.ndarray:
    """A uint8 RGB picture with distinct values (W&B 0.31 turns float pictures black)."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(autouse=True, scope="module")
def offline_env():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_SILENT", "true")
        mp.setenv("WANDB_CONSOLE", "off")  # leave pytest's capture of stdout alone
        yield


@dataclass
class PlainRun:
    save_dir: Path
    run_dir: Path
    image: np.ndarray


@pytest.fixture(scope="module")
def plain_run(offline_env, tmp_path_factory) -> PlainRun:
    """``wandb.init`` / ``wandb.log`` / ``wandb.finish``: scalars at steps 0-3, an image at 4, more after."""
    import wandb

    save_dir = tmp_path_factory.mktemp("plain")
    image = pixels(6, 7, seed=0)
    wandb.init(mode="offline", dir=save_dir, project="t", config={"a": 1, "nested": {"b": 2}})
    for mean in COLOUR_MEANS:
        wandb.log({"kernels/tower0/colour_mean": mean, "loss": 2 * mean})
    wandb.log({"kernels/tower0": wandb.Image(image)})  # step 4
    wandb.config.update({"late": "yes"})
    wandb.log({"d": {"e": 3}, "big": BIG, "bad": float("nan")})  # step 5
    wandb.finish()
    (run_dir,) = find_offline_runs(save_dir)
    return PlainRun(save_dir, wait_until_finished(run_dir), image)


@pytest.fixture(scope="module")
def lightning_run(offline_env, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """Lightning's WandbLogger: ``x`` and an image at global step 7."""
    from lightning.pytorch.loggers import WandbLogger

    save_dir = tmp_path_factory.mktemp("lightning")
    image = pixels(5, 4, seed=1)
    logger = WandbLogger(offline=True, save_dir=save_dir, project="t")
    logger.log_hyperparams({"lr": 0.1, "model": {"depth": 5}})
    logger.log_metrics({"x": 1.5}, step=7)
    logger.log_image(key="img", images=[image], step=7)
    logger.experiment.finish()
    (run_dir,) = find_offline_runs(save_dir)
    return wait_until_finished(run_dir), image


def test_find_offline_runs(plain_run: PlainRun, tmp_path: Path) -> None:
    run_dir = plain_run.run_dir
    assert run_dir.parent == plain_run.save_dir / "wandb"
    assert re.fullmatch(r"offline-run-\d{8}_\d{6}-\w+", run_dir.name)
    assert find_offline_runs(plain_run.save_dir / "wandb") == [run_dir]
    assert find_offline_runs(str(plain_run.save_dir)) == [run_dir]
    assert find_offline_runs(tmp_path) == []


def test_history_values_and_steps(plain_run: PlainRun) -> None:
    history = read_history(plain_run.run_dir)
    assert [row["_step"] for row in history] == [0, 1, 2, 3, 4, 5]
    for row, mean in zip(history[:4], COLOUR_MEANS, strict=True):
        assert row["kernels/tower0/colour_mean"] == mean
        assert row["loss"] == 2 * mean
        assert isinstance(row["_timestamp"], float)
    assert "kernels/tower0/colour_mean" not in history[4]
    last = history[5]
    assert last["d"] == {"e": 3}
    assert get_value(last, "d/e") == 3
    assert get_value(last, "d/missing", "default") == "default"
    assert np.isnan(last["bad"])
    assert last["big"] == BIG


def test_big_record_spans_blocks(plain_run: PlainRun) -> None:
    (log,) = record_log_files(plain_run.run_dir)
    assert log.name == f"run-{plain_run.run_dir.name.split('-')[-1]}.wandb"
    assert log.stat().st_size > 3 * 32768  # so BIG really was split into first/middle/last chunks


def test_metric_series(plain_run: PlainRun) -> None:
    history = read_history(plain_run.run_dir)
    assert metric_series(history, "kernels/tower0/colour_mean") == list(enumerate(COLOUR_MEANS))
    assert metric_series(history, "loss") == [(i, 2 * m) for i, m in enumerate(COLOUR_MEANS)]
    assert metric_series(history, "d/e") == [(5, 3)]
    assert metric_series(history, "nothing") == []


def test_image_value_file_and_pixels(plain_run: PlainRun) -> None:
    value = read_history(plain_run.run_dir)[4]["kernels/tower0"]
    assert value["_type"] == "image-file"
    assert (value["width"], value["height"]) == (7, 6)
    png = image_path(plain_run.run_dir, value)
    assert media_paths(plain_run.run_dir, value) == [png]
    assert png.is_file()
    assert png.parent == plain_run.run_dir / "files" / "media" / "images" / "kernels"
    assert re.fullmatch(r"tower0_\d+_[0-9a-f]+\.png", png.name)
    decoded = np.asarray(Image.open(png))
    assert decoded.dtype == np.uint8
    assert decoded.shape == plain_run.image.shape
    np.testing.assert_array_equal(decoded, plain_run.image)

    assert image_files(plain_run.run_dir) == [png]
    assert image_files(plain_run.run_dir, "kernels/tower0") == [png]
    assert image_files(plain_run.run_dir, "kernels/") == [png]
    assert image_files(plain_run.run_dir, "kernels/tower1") == []
    with pytest.raises(ValueError, match="not a W&B image"):
        image_path(plain_run.run_dir, {"_type": "table-file", "path": "x.json"})


def test_config(plain_run: PlainRun) -> None:
    config = read_config(plain_run.run_dir)
    assert config["a"] == 1
    assert config["nested"]["b"] == 2
    assert config["late"] == "yes"
    assert "_wandb" not in config


def test_config_yaml_fallback(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "config.yaml").write_text(
        "_wandb:\n  value:\n    cli_version: 0.31.0\n"
        "a:\n  desc: null\n  value: 1\nnested:\n  value:\n    b: 2\n"
    )
    assert read_config(tmp_path) == {"a": 1, "nested": {"b": 2}}


def test_missing_log_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path))):
        read_history(tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path))):
        read_config(tmp_path)


def test_truncated_log_reads_what_is_complete(plain_run: PlainRun, tmp_path: Path) -> None:
    run_dir = tmp_path / plain_run.run_dir.name
    shutil.copytree(plain_run.run_dir, run_dir)
    (log,) = record_log_files(run_dir)
    data = log.read_bytes()
    log.write_bytes(data[: data.index(BIG[:1000].encode()) + 5000])  # cut inside the big row
    assert [row["_step"] for row in read_history(run_dir)] == [0, 1, 2, 3, 4]
    with pytest.raises(TimeoutError, match=re.escape(str(run_dir))):
        wait_until_finished(run_dir, timeout=0.1)


def test_corrupt_log_raises(plain_run: PlainRun, tmp_path: Path) -> None:
    run_dir = tmp_path / plain_run.run_dir.name
    shutil.copytree(plain_run.run_dir, run_dir)
    (log,) = record_log_files(run_dir)
    data = bytearray(log.read_bytes())
    data[data.index(BIG[:1000].encode()) + 500] ^= 0xFF
    log.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        read_history(run_dir)
    log.write_bytes(b"not a log" + bytes(data[9:]))
    with pytest.raises(ValueError, match="not a W&B record log"):
        read_history(run_dir)


def write_record_log(path: Path, payloads: list[bytes]) -> None:
    """A LevelDB-style log as wandb-core writes it: 32 KiB blocks, chunks split across them, zero padding."""
    out = bytearray(b":W&B" + struct.pack("<HB", 0xBEE1, 0))
    for payload in payloads:
        first, rest = True, payload
        while True:
            left = 32768 - len(out) % 32768
            if left < 7:
                out += bytes(left)
                continue
            n = min(len(rest), left - 7)
            last = n == len(rest)
            kind = (1 if last else 2) if first else (4 if last else 3)
            chunk, rest, first = rest[:n], rest[n:], False
            out += struct.pack("<IHB", zlib.crc32(chunk, zlib.crc32(bytes([kind]))), n, kind) + chunk
            if last:
                break
    path.write_bytes(bytes(out))


def history_record(step: int, size: int) -> tuple[bytes, str]:
    """A serialised history Record of exactly ``size`` bytes, logging ``fill`` (a string) at ``step``."""
    from wandb.proto import wandb_internal_pb2

    for filler in range(size, 0, -1):
        record = wandb_internal_pb2.Record()
        record.history.step.num = step
        for key, value in (("_step", step), ("fill", "f" * filler)):
            item = record.history.item.add()
            item.nested_key.append(key)
            item.value_json = json.dumps(value)
        payload = record.SerializeToString()
        if len(payload) == size:
            return payload, "f" * filler
    raise AssertionError(f"no history record of {size} bytes")


def test_block_padding_and_empty_first_chunk(tmp_path: Path) -> None:
    sizes = [
        32768 - 7 - 7 - 3,  # ends 3 bytes before block 1: zero padding follows
        32768 - 7 - 7,  # ends exactly 7 bytes before block 2: the next record starts with an empty chunk
        100,
    ]
    payloads, fills = zip(*(history_record(step, size) for step, size in enumerate(sizes)), strict=True)
    write_record_log(tmp_path / "run-abc.wandb", list(payloads))
    data = (tmp_path / "run-abc.wandb").read_bytes()
    assert data[32765:32768] == bytes(3)
    assert struct.unpack_from("<IHB", data, 65529)[1:] == (0, 2)
    history = read_history(tmp_path)
    assert [row["_step"] for row in history] == [0, 1, 2]
    assert [row["fill"] for row in history] == list(fills)


def test_lightning_wandb_logger(lightning_run: tuple[Path, np.ndarray]) -> None:
    run_dir, image = lightning_run
    history = read_history(run_dir)
    assert metric_series(history, "x") == [(7, 1.5)]
    (row,) = [row for row in history if "img" in row]
    assert row["trainer/global_step"] == 7
    assert row["img"]["_type"] == "images/separated"
    png = image_path(run_dir, row["img"])
    assert image_files(run_dir, "img") == [png]
    np.testing.assert_array_equal(np.asarray(Image.open(png)), image)
    config = read_config(run_dir)
    assert config["lr"] == 0.1
    assert config["model"] == {"depth": 5}


# An offline W&B run built as src/train.py builds it (conf/logger/wandb.yaml, src/loggers/), in a process of
# its own: wandb prints a warning once per process.
PROJECT_LOGGER_RUN = """
import sys
from pathlib import Path
from src.loggers.build import build_loggers, finish
from tests.conftest import compose_train
loggers = build_loggers(compose_train(["logger=wandb"], Path(sys.argv[1])))
for logger in loggers:  # W&B, then the CSV log every logger config keeps
    logger.log_metrics({"x": 1.5}, step=3)
finish(loggers)
"""


def test_the_projects_wandb_run_prints_no_anonymous_warning(tmp_path: Path) -> None:
    output_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-c", PROJECT_LOGGER_RUN, str(output_dir)],
        cwd=ROOT, env=run_env(tmp_path), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "W&B: no API key found, logging offline" in output  # the project's own offline path
    assert "anonymous" not in output, output[-3000:]  # wandb 0.31: "The anonymous setting has no effect ..."
    (run_dir,) = find_offline_runs(output_dir)
    assert metric_series(read_history(wait_until_finished(run_dir)), "x") == [(3, 1.5)]
