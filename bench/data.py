"""Data-pipeline speed: cache build and reuse, and the cache loader compared with the training step."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from bench.common import Row, median_rate
from src.data.cache import build_cache
from src.data.layouts import find_labelled_images
from src.data.synthetic import generate_dataset
from src.data.views import CachedViews

BATCH = 32


def loader_rate(dataset: CachedViews, batch: int, workers: int, repeats: int, batches: int) -> float:
    """uint8 images per second delivered by a shuffled DataLoader over cached views."""
    loader = DataLoader(
        dataset, batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0
    )

    def run() -> int:
        count = 0
        for i, (images, _) in enumerate(loader):
            count += len(images)
            if i + 1 == batches:
                break
        return count

    return median_rate(run, repeats)


def data_rows(quick: bool, step_rate: float) -> list[Row]:
    """Rows for the data benchmarks; ``step_rate`` is the fp32 training step (img/s) measured in this run."""
    repeats = 3 if quick else 5
    per_class = 250 if quick else 1000
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = generate_dataset(Path(tmp) / "synthetic", per_class, 0, seed=0)
        files = find_labelled_images(data / "train", "kaggle")

        start = time.perf_counter()
        cache = build_cache(files, Path(tmp) / "cache", workers=os.cpu_count(), progress=False)
        build_seconds = time.perf_counter() - start
        rows.append(Row("cache build (decode + resize, all cores)", len(cache) / build_seconds, "img/s"))

        start = time.perf_counter()
        build_cache(files, Path(tmp) / "cache", progress=False)
        rows.append(Row("cache reuse (fingerprint + open)", 1000 * (time.perf_counter() - start), "ms"))

        views = CachedViews(cache, np.arange(len(cache)), "random", 224)
        for workers in (0, 1):
            rate = loader_rate(views, BATCH, workers, repeats, batches=20)
            rows.append(
                Row(
                    f"cache loader, random views, {workers} workers",
                    rate,
                    "img/s",
                    f"{rate / step_rate:.0f}x step",
                )
            )

        epoch_seconds = len(cache) / step_rate
        rows.append(
            Row(
                f"cache build time / one training epoch ({len(cache)} images)",
                build_seconds / epoch_seconds,
                "ratio",
                f"{build_seconds:.1f} s vs {epoch_seconds:.0f} s",
            )
        )
    return rows
