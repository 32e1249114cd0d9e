"""Data-pipeline speed: the decoders, the cache build and reuse, the cache loader against the training step.

Targets (issue #7): the cache of 25,000 photos of 500x375 (the Kaggle Dogs vs Cats size) builds in under a
minute on 2 cores; the loader delivers uint8 batches at least 20 times as fast as the fp32 step consumes them.

The 500x375 photos are generated (smooth colour fields, hard-edged shapes, pixel noise; JPEG quality 90,
larger files than a typical Dogs vs Cats photo, so their entropy decoding costs a little more). Every file is
distinct (its own seed): a build that decoded copies of a few files would measure the same work, but this way
nothing can be shared between files. Generating 25,000 takes a while, so they are kept under
``$XDG_CACHE_HOME/alexnet-towers/bench`` (default ``~/.cache``), in a folder named after the generator's
parameters, and reused by later runs; delete the folder to reclaim the space. A run right after generating
reads them from the page cache, a later one maybe from disk: a real build does either. ``--quick`` builds
2,000 of them and projects the 25,000 figure.
"""

from __future__ import annotations

import io
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader

from bench.common import Row, median_rate
from src.data.cache import build_cache
from src.data.images import load_square_rgb, pillow_square
from src.data.layouts import LabelledFiles, find_labelled_images
from src.data.views import CachedViews
from src.datasets.synthetic import generate_dataset
from src.utils.atomic import write_atomic

BATCH = 32
PHOTO_SIZE = (500, 375)  # width x height of most Dogs vs Cats photos
BIG_SIZE = (4000, 3000)  # a 12 MP camera photo: where decoding at 1/2, 1/4, 1/8 scale matters
PHOTO_QUALITY = 90
PHOTO_VERSION = 1  # of photo_jpeg: part of the folder name, bump it when the pictures change
TARGET_IMAGES, TARGET_SECONDS = 25_000, 60.0
LOADER_TARGET = 20.0  # loader images/s as a multiple of the fp32 step's


def photo_jpeg(width: int, height: int, seed: int, quality: int = PHOTO_QUALITY) -> bytes:
    """A photo-like JPEG: a smooth random colour field, six flat discs and squares, +-8 levels of noise."""
    rng = np.random.default_rng([PHOTO_VERSION, width, height, seed])
    coarse = rng.integers(0, 256, (height // 64 + 2, width // 64 + 2, 3), dtype=np.uint8)
    picture = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(picture)
    short = min(width, height)
    for _ in range(6):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(short // 20, short // 4))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x - r, y - r, x + r, y + r), fill=colour)
    noise = np.frombuffer(rng.bytes(width * height * 3), np.uint8).reshape(height, width, 3) % 17
    pixels = (np.asarray(picture, dtype=np.int16) + noise - 8).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def photo_folder(width: int, height: int, quality: int = PHOTO_QUALITY) -> Path:
    """Where the generated photos of this size and quality are kept between runs."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "alexnet-towers" / "bench"
    return root / f"photos-v{PHOTO_VERSION}-{width}x{height}-q{quality}"


def _write_photos(folder: str, width: int, height: int, quality: int, seeds: list[int]) -> None:
    for seed in seeds:
        write_atomic(Path(folder) / f"{seed:06d}.jpg", photo_jpeg(width, height, seed, quality))


def photo_set(count: int, size: tuple[int, int] = PHOTO_SIZE, quality: int = PHOTO_QUALITY) -> LabelledFiles:
    """Photos 0..count-1 of ``photo_folder`` (missing ones generated on all cores), labelled alternately."""
    width, height = size
    folder = photo_folder(width, height, quality)
    folder.mkdir(parents=True, exist_ok=True)
    present = set(os.listdir(folder))
    missing = [i for i in range(count) if f"{i:06d}.jpg" not in present]
    if missing:
        start = time.perf_counter()
        workers = os.cpu_count() or 1
        with ProcessPoolExecutor(workers) as pool:
            step = max(1, math.ceil(len(missing) / (8 * workers)))
            jobs = [
                pool.submit(_write_photos, str(folder), width, height, quality, missing[i : i + step])
                for i in range(0, len(missing), step)
            ]
            for job in jobs:
                job.result()
        print(
            f"generated {len(missing)} photos in {folder} ({time.perf_counter() - start:.0f} s)", flush=True
        )
    paths = [folder / f"{i:06d}.jpg" for i in range(count)]
    return LabelledFiles(paths, [i % 2 for i in range(count)], ["cat", "dog"])


DECODE_PATHS: dict[str, Callable[[Path], np.ndarray]] = {
    "Pillow full decode + Pillow resize": lambda path: pillow_square(path, draft=False),
    "Pillow draft + Pillow resize (cache v1)": pillow_square,
    "Pillow draft + torch resize (fallback)": lambda path: load_square_rgb(path, decoder="pil"),
    "simplejpeg + torch resize (used)": load_square_rgb,
}


def decoder_rows(path: Path, label: str, calls: int, repeats: int) -> list[Row]:
    """Milliseconds per image of each path of ``DECODE_PATHS``, timed in turn (interleaved), medians."""
    timings: dict[str, list[float]] = {name: [] for name in DECODE_PATHS}
    for decode in DECODE_PATHS.values():  # warm-up
        decode(path)
    for _ in range(repeats):
        for name, decode in DECODE_PATHS.items():
            start = time.perf_counter()
            for _ in range(calls):
                decode(path)
            timings[name].append(1000 * (time.perf_counter() - start) / calls)
    used = statistics.median(timings["simplejpeg + torch resize (used)"])
    rows = []
    for name, values in timings.items():
        ms = statistics.median(values)
        rows.append(Row(f"decode {label} JPEG to the 256 square: {name}", ms, "ms", f"{ms / used:.2f}x used"))
    return rows


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


def photo_build_rows(count: int, tmp: Path) -> list[Row]:
    """Build the cache of ``count`` generated 500x375 photos on all cores; the 25,000 target's row."""
    files = photo_set(count)
    start = time.perf_counter()
    cache = build_cache(files, tmp / "photo-cache", workers=os.cpu_count(), progress=False)
    seconds = time.perf_counter() - start
    rate = len(cache) / seconds
    width, height = PHOTO_SIZE
    rows = [Row(f"cache build, {count:,} photos of {width}x{height} (all cores)", rate, "img/s")]
    projected = TARGET_IMAGES / rate
    verdict = "pass" if projected < TARGET_SECONDS else "FAIL"
    if count == TARGET_IMAGES:
        name, note = f"cache build time, {count:,} photos of {width}x{height}", "measured"
    else:
        name, note = (
            f"cache build time, {TARGET_IMAGES:,} photos of {width}x{height}",
            f"projected from {count:,}",
        )
    rows.append(Row(name, projected, "s", f"{note}; target < {TARGET_SECONDS:.0f} s: {verdict}"))
    return rows


def data_rows(quick: bool, step_rate: float) -> list[Row]:
    """Rows for the data benchmarks; ``step_rate`` is the fp32 training step (img/s) measured in this run."""
    repeats = 3 if quick else 5
    per_class = 250 if quick else 1000
    rows: list[Row] = []

    # The decoders, on one generated photo of each size (timed in turn; ratios to the path the cache uses).
    for size, calls in ((PHOTO_SIZE, 50 if quick else 200), (BIG_SIZE, 2 if quick else 5)):
        (path,) = photo_set(1, size).paths
        rows += decoder_rows(path, f"{size[0]}x{size[1]}", calls, repeats)

    with tempfile.TemporaryDirectory() as tmp:
        rows += photo_build_rows(2_000 if quick else TARGET_IMAGES, Path(tmp))

    with tempfile.TemporaryDirectory() as tmp:
        data = generate_dataset(Path(tmp) / "synthetic", per_class, 0, seed=0)
        files = find_labelled_images(data / "train", "kaggle")

        start = time.perf_counter()
        cache = build_cache(files, Path(tmp) / "cache", workers=os.cpu_count(), progress=False)
        build_seconds = time.perf_counter() - start
        rows.append(
            Row(
                "cache build, synthetic set (decode + resize, all cores)", len(cache) / build_seconds, "img/s"
            )
        )

        start = time.perf_counter()
        build_cache(files, Path(tmp) / "cache", progress=False)
        rows.append(Row("cache reuse (fingerprint + open)", 1000 * (time.perf_counter() - start), "ms"))

        views = CachedViews(cache, np.arange(len(cache)), "random", 224)
        for workers in (0, 1):
            rate = loader_rate(views, BATCH, workers, repeats, batches=20)
            verdict = "pass" if rate >= LOADER_TARGET * step_rate else "FAIL"
            rows.append(
                Row(
                    f"cache loader, uint8 random views, {workers} workers",
                    rate,
                    "img/s",
                    f"{rate / step_rate:.0f}x the fp32 step; target >= {LOADER_TARGET:.0f}x: {verdict}",
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
