"""The offline cache pays for itself: building it costs less than one training epoch over the same images."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from src.data.cache import build_cache
from src.data.layouts import find_labelled_images
from src.data.synthetic import generate_dataset
from src.models.alexnet import AlexNet


def seconds_per_image_of_training(batch: int = 32, steps: int = 2) -> float:
    """Forward + backward + SGD step of the two-tower net, per image, after one warm-up step."""
    net = AlexNet(num_classes=2)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    images, labels = torch.randn(batch, 3, 224, 224), torch.randint(0, 2, (batch,))
    timings = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad()
        F.cross_entropy(net(images), labels).backward()
        optimizer.step()
        timings.append(time.perf_counter() - start)
    return min(timings[1:]) / batch


@pytest.mark.slow
def test_building_the_cache_of_2000_images_takes_less_than_one_epoch(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "synthetic", train_per_class=1000, test_per_class=0)
    files = find_labelled_images(root / "train", "kaggle")
    start = time.perf_counter()
    cache = build_cache(files, tmp_path / "cache", progress=False)
    build_seconds = time.perf_counter() - start
    assert len(cache) == 2000
    epoch_seconds = len(cache) * seconds_per_image_of_training()
    print(f"cache build {build_seconds:.1f} s, one training epoch {epoch_seconds:.0f} s")
    assert build_seconds < epoch_seconds
