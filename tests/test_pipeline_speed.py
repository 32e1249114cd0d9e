"""The offline cache pays for itself: building it costs less than one training epoch over the same images, and
its decode is cheap enough for 25,000 photos of 500x375 in under a minute on 2 cores (issue #7).

Both compare CPU time, not wall time: a machine shared with other jobs stretches wall time by any factor,
but not the CPU seconds the work itself takes."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from src.data.cache import build_cache
from src.data.layouts import LabelledFiles, find_labelled_images
from src.datasets.synthetic import generate_dataset
from src.models.alexnet import AlexNet


def seconds_per_image_of_training(batch: int = 32, steps: int = 2) -> float:
    """CPU seconds (all threads) of a forward + backward + SGD step of the two-tower net, per image, after one
    warm-up step."""
    net = AlexNet(num_classes=2)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    images, labels = torch.randn(batch, 3, 224, 224), torch.randint(0, 2, (batch,))
    timings = []
    for _ in range(steps + 1):
        start = time.process_time()
        optimizer.zero_grad()
        F.cross_entropy(net(images), labels).backward()
        optimizer.step()
        timings.append(time.process_time() - start)
    return min(timings[1:]) / batch


@pytest.mark.slow
def test_building_the_cache_of_2000_images_takes_less_than_one_epoch(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "synthetic", train_per_class=1000, test_per_class=0)
    files = find_labelled_images(root / "train", "kaggle")
    start = cpu_seconds()
    cache = build_cache(files, tmp_path / "cache", progress=False)
    build_seconds = cpu_seconds() - start
    assert len(cache) == 2000
    epoch_seconds = len(cache) * seconds_per_image_of_training()
    print(f"cache build {build_seconds:.1f} s of CPU, one training epoch {epoch_seconds:.0f} s of CPU")
    assert build_seconds < epoch_seconds


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished (waited-for) children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def test_the_cache_build_costs_under_4_ms_of_cpu_per_500x375_photo(tmp_path: Path) -> None:
    """25,000 photos in 60 s on 2 cores is 4.8 ms of CPU per photo with both cores busy all along.

    CPU time (the builder's and its workers'), unlike wall time, barely grows when other processes share the
    cores, so this bound does not flake on a loaded machine; ``make bench`` measures the wall time. Measured:
    about 1.3 ms per photo (decode ~0.55, resize ~0.25, pixel sums ~0.2, write ~0.06, the rest overheads).
    """
    rng = np.random.default_rng(0)
    paths = []
    for i in range(240):  # photo-like: smooth colours and noise, JPEG quality 90 (~45 KB, as bench/data.py's)
        coarse = rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((500, 375), Image.Resampling.BICUBIC), np.int16)
        pixels = (smooth + rng.integers(-8, 9, smooth.shape)).clip(0, 255).astype(np.uint8)
        paths.append(tmp_path / "photos" / f"{i:03d}.jpg")
        paths[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(pixels).save(paths[-1], quality=90)
    files = LabelledFiles(paths, [i % 2 for i in range(len(paths))], ["cat", "dog"])
    start = cpu_seconds()
    cache = build_cache(files, tmp_path / "cache", workers=2, progress=False)
    per_photo = (cpu_seconds() - start) / len(paths)
    assert len(cache) == len(paths)
    print(f"cache build: {1000 * per_photo:.2f} ms of CPU per 500x375 photo")
    assert per_photo < 0.004, f"{1000 * per_photo:.2f} ms of CPU per photo: 25,000 would take over 50 s"
