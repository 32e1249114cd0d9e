"""``python src/analyse.py source=...``: the colour numbers and pictures of any first layer (section 6.1)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from PIL import Image

from src.analyse import analyse
from src.analysis.colour import stats_for_model_kernels
from src.models.caffe_weights import write_caffe_weights
from tests.conftest import CONF, script_runner
from tests.test_runs import make_grey_and_opponent, make_net, write_run

OUTPUTS = ("figure3.png", "tower0.png", "tower1.png", "histogram.png", "scores.csv")


def compose_analyse(source: str, output_dir: Path) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="analyse", overrides=[f"source={source}"], return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def printed(text: str) -> dict[str, float]:
    return {k: float(v) for k, v in re.findall(r"^(kernels/\S+) = (\S+)$", text, flags=re.MULTILINE)}


def test_a_run_folder_is_scored_as_the_callback_scores_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net = make_grey_and_opponent(make_net(2, 0))
    run = write_run(tmp_path / "run", net, seed=0)

    stats = analyse(compose_analyse(str(run), tmp_path / "out"))

    expected = stats_for_model_kernels(net.tower_kernels("conv1")).log_dict()
    assert stats.log_dict() == expected
    values = printed(capsys.readouterr().out)
    assert values.keys() == expected.keys()
    assert all(values[k] == pytest.approx(v, rel=1e-5, abs=1e-12) for k, v in expected.items())
    assert values["kernels/split"] == 1.0
    for name in OUTPUTS:
        assert (tmp_path / "out" / name).is_file(), name
    figure = Image.open(tmp_path / "out" / "figure3.png")
    assert figure.width == 4 * (16 * 11 + 17)  # the callback's picture: 16 columns, scale 4


def test_a_weights_file_is_imported_and_scored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = make_grey_and_opponent(make_net(2, 0))
    weights = write_caffe_weights(net, tmp_path / "weights.npy")
    stats = analyse(compose_analyse(str(weights), tmp_path / "out"))
    assert stats.split == 1.0 and stats.most_colour == 1
    assert "published weights" in capsys.readouterr().out


@pytest.mark.slow
def test_the_reference_through_the_command_line(tmp_path: Path) -> None:
    result = script_runner("analyse.py", tmp_path)("source=caffenet")
    assert result.returncode == 0, result.stderr[-3000:]
    values = printed(result.stdout)
    assert values["kernels/tower0/colour_mean"] == pytest.approx(0.0553, abs=1e-3)
    assert values["kernels/tower1/colour_mean"] == pytest.approx(0.7401, abs=1e-3)
    assert values["kernels/split"] == pytest.approx(0.9167, abs=1e-3) and values["kernels/split_p"] < 1e-12
    assert "| -0.03 |" in result.stdout and "| +0.03 |" in result.stdout
    (out,) = (tmp_path / "outputs" / "analyse" / "runs").iterdir()
    for name in OUTPUTS:
        assert f"wrote {out / name}" in result.stdout
        assert (out / name).is_file()
