"""The offline cache: every source image decoded once into a memory-mappable uint8 array.

Section 2 of the paper: "we down-sampled the images to a fixed resolution of 256 x 256. Given a rectangular
image, we first rescaled the image such that the shorter side was of length 256, and then cropped out the
central 256x256 patch". That is the only decode the pipeline needs: the 224x224 views of section 4.1 (random
patches and reflections for training, the ten patches for testing) are index arithmetic on the square, cut
at run time (``views.py``). The Dogs vs Cats reproduction we follow precomputed its crops offline; we cache
the squares, not the crops, so that the views stay random.

Section 4.1 also needs "the set of RGB pixel values throughout the ImageNet training set": the mean that is
subtracted and the 3x3 covariance whose eigenvectors drive PCA lighting. The training split is a subset of
the cached folder chosen later (``split_by_source``), so the cache keeps, per image, the sum of its pixels
and the sum of their outer products; the statistics of any subset are then exact and cost nothing
(``ImageCache.rgb_statistics``).

A cache folder ``<cache_root>/<fingerprint>/`` holds::

    meta.json            version, decoder, image_size, fingerprint, classes, count, files, paths, labels,
                         skipped ([path, reason] pairs), build (seconds, workers, ...: not part of the data)
    images.u8            raw uint8 in C order, shape (count, S, S, 3): image i is bytes [i*S*S*3, (i+1)*S*S*3)
    labels.npy           int64 (count,)
    pixel_sums.npy       float64 (count, 3): per image, the sum of its R, G, B values
    pixel_products.npy   float64 (count, 3, 3): per image, the sum over its pixels of x x^T
    skipped.tsv          one line per file that could not be decoded: path<TAB>reason, after a header line

Only decodable images are stored, in source order. Beside the folder, ``<fingerprint>.lock`` is the build
lock (it exists only while a build runs), and ``<fingerprint>.partial/`` the folder of a build in progress
(or of one that was killed, which the next build resumes):

    build.json           what is being built (version, fingerprint, number of files, image_size)
    images.u8            one slot per source file, preallocated; workers write their chunk's slots
    chunks/<start>.npz   one record per finished chunk: start, stop, ok, sums, products, reasons
    compacted.txt        journal of the final compaction (the undecodable slots squeezed out in place)

then the files of the final folder, ``meta.json`` last, and the folder is renamed to its final name: a
cache is complete if and only if ``<cache_root>/<fingerprint>/meta.json`` exists.

Integrity: ``meta.json`` holds a CRC-32 of every ``CHECKSUM_IMAGES`` images of ``images.u8`` and of each
``.npy`` file. A cache found again (``build_cache``, from the datamodule's ``prepare_data``: once per node) is
verified before it is used: one read of the file and a CRC-32 (zlib, on up to 4 threads), seconds against
minutes per training epoch (docs/benchmarks.md). A cache whose bytes changed (same length or not),
or whose ``meta.json`` or ``.npy`` files are damaged, is an error naming the file and how to rebuild (delete
the folder; the next run builds it again). Caches built before the checksums existed are used unverified,
with a note.

Concurrency: only one process per node should build (the datamodule builds from Lightning's
``prepare_data``, which runs on one process per node; the other ranks open the finished cache in
``setup``). Two processes building the same cache at once still do not corrupt it: the build holds an
exclusive ``fcntl.flock`` on ``<fingerprint>.lock`` and re-checks for a finished cache once it has it.
(flock over NFS depends on the server; give each node its own ``cache_root`` if in doubt.)
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import multiprocessing
import os
import shutil
import signal
import time
import warnings
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from src.data.images import DECODER, IMAGE_SIZE, load_square_rgb
from src.data.layouts import LabelledFiles
from src.utils.atomic import write_atomic
from src.utils.console import say
from src.utils.locks import exclusive

# Part of the fingerprint: bump it whenever the stored pixels would change. Version 2: JPEGs decoded by
# simplejpeg and every image resized by torch's antialiased bilinear kernel (version 1: Pillow for both; the
# squares differ by one grey level in ~0.2 % of the values).
CACHE_VERSION = 2

IMAGES_FILE = "images.u8"
META_FILE = "meta.json"
REPORT_FILE = "skipped.tsv"
BUILD_FILE = "build.json"
CHUNKS_DIR = "chunks"
JOURNAL_FILE = "compacted.txt"
COMPACT_BLOCK = 256  # images moved per read/write during compaction (at most; see _compact)
CHECKSUM_IMAGES = 1024  # images per CRC-32 of images.u8 (192 MiB at 256x256)
CHECKSUM_READ = 16 * 2**20  # bytes read at a time while checksumming
ARRAY_FILES = ("labels.npy", "pixel_sums.npy", "pixel_products.npy")


class CacheSpaceError(OSError):
    """The disk filled up while a cache was built (ENOSPC): the partial build was removed, and the message
    names the folder, the bytes the cache needs and what to do."""

    def __str__(self) -> str:
        return str(self.strerror)  # the message alone, without "[Errno 28]"


class DamagedCacheError(ValueError):
    """A complete cache whose files are not what its build wrote."""


def fingerprint(files: LabelledFiles, image_size: int) -> str:
    """16 hex characters of the SHA-256 of everything the cached pixels and labels depend on.

    That is ``CACHE_VERSION``, the decoder (``images.DECODER``: which libraries, which versions, decode and
    resize), ``image_size``, the class list and, for every file in order, its path (as given), label, size in
    bytes and modification time (ns). Changing any of them gives a new cache.
    """
    digest = hashlib.sha256()
    header = {
        "version": CACHE_VERSION,
        "decoder": DECODER,
        "image_size": int(image_size),
        "classes": list(files.classes),
    }
    digest.update(json.dumps(header, sort_keys=True).encode() + b"\n")
    for path, label in zip(files.paths, files.labels, strict=True):
        stat = os.stat(path)
        digest.update(f"{os.fspath(path)}\t{int(label)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class RGBStatistics:
    """Mean and 3x3 covariance of a set of RGB pixel values, in 0..255 pixel units (float64).

    Section 4.1: the mean is "the mean activity over the training set" subtracted from each pixel; PCA
    lighting adds ``eigenvectors @ (alpha * eigenvalues)`` to every pixel of an image, with the eigenvectors
    and eigenvalues of ``covariance``.
    """

    mean: np.ndarray  # (3,)
    covariance: np.ndarray  # (3, 3)

    @property
    def eigenvalues(self) -> np.ndarray:
        """(3,) eigenvalues of the covariance, largest first."""
        return self._eigh()[0]

    @property
    def eigenvectors(self) -> np.ndarray:
        """(3, 3) unit eigenvectors, eigenvector i in column i (the order of ``eigenvalues``).

        The sign of each is fixed so that its largest-magnitude component is positive (the first such
        component on a tie), so the same covariance always gives the same matrix.
        """
        return self._eigh()[1]

    @property
    def std(self) -> np.ndarray:
        """(3,) standard deviation of each channel, ``sqrt(diag(covariance))``."""
        return np.sqrt(np.diag(np.asarray(self.covariance, dtype=np.float64)))

    def _eigh(self) -> tuple[np.ndarray, np.ndarray]:
        values, vectors = np.linalg.eigh(np.asarray(self.covariance, dtype=np.float64))
        values, vectors = values[::-1].copy(), vectors[:, ::-1].copy()
        for i in range(vectors.shape[1]):
            if vectors[np.argmax(np.abs(vectors[:, i])), i] < 0:
                vectors[:, i] = -vectors[:, i]
        return values, vectors


class ImageCache:
    """A complete cache folder, opened (see ``open_cache``).

    ``images`` is a read-only ``np.memmap`` of shape (N, S, S, 3), uint8, opened on first access. It is not
    pickled (nor are the per-image pixel sums): a DataLoader worker that receives a pickled cache maps the
    file itself on first use, which costs nothing.
    """

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder).absolute()
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"{folder} is not a complete image cache (it has no {META_FILE}); build it with build_cache"
            )
        self.folder = folder
        try:
            meta = json.loads(meta_path.read_text())
            version = meta.get("version")
        except (ValueError, AttributeError) as error:
            raise self.damaged(META_FILE, f"not a JSON object ({error})") from None
        if version != CACHE_VERSION:
            raise ValueError(
                f"{folder} is an image cache of version {version}, this code reads version "
                f"{CACHE_VERSION}; build it again"
            )
        try:
            self.fingerprint: str = meta["fingerprint"]
            self.image_size: int = int(meta["image_size"])
            self.classes: list[str] = list(meta["classes"])
            self.paths: list[str] = list(meta["paths"])
            self.skipped: list[tuple[str, str]] = [(str(p), str(r)) for p, r in meta["skipped"]]
            count = int(meta["count"])
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise self.damaged(META_FILE, f"{type(error).__name__}: {error}") from None
        self.checksums: dict[str, Any] | None = meta.get("checksums")
        self.labels: np.ndarray = self._load_array("labels.npy", (count,))
        if count and not 0 <= self.labels.min() <= self.labels.max() < len(self.classes):
            raise self._labels_do_not_fit_classes()
        expected = count * self.image_size * self.image_size * 3
        size = (folder / IMAGES_FILE).stat().st_size if (folder / IMAGES_FILE).exists() else -1
        if len(self.paths) != count or size != expected:
            raise ValueError(
                f"{folder} is a damaged image cache ({IMAGES_FILE} holds {size} bytes, {expected} expected "
                f"for {count} images); delete it and build it again"
            )
        self._images: np.ndarray | None = None
        self._pixel_sums: np.ndarray | None = None
        self._pixel_products: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def damaged(self, name: str, what: str) -> DamagedCacheError:
        """The error for a damaged file ``name`` of this cache, saying how to rebuild it."""
        return DamagedCacheError(
            f"the image cache {self.folder} is damaged: {name}: {what}. It holds only decoded copies of your "
            f"images: delete it (rm -r {self.folder}) and run again, which rebuilds it"
        )

    def _labels_do_not_fit_classes(self) -> DamagedCacheError:
        """The error for labels outside ``meta.json``'s classes, naming the file that changed: ``labels.npy``
        if its CRC-32 differs from the one its build recorded in ``meta.json``, else ``meta.json``'s classes
        (both files when the cache has no checksums)."""
        low, high = int(self.labels.min()), int(self.labels.max())
        n = len(self.classes)
        listed = f'"classes" lists {n} class{"es" if n != 1 else ""} {self.classes}'
        recorded = (self.checksums or {}).get("labels.npy")
        if recorded is None:
            return self.damaged(f"{META_FILE} or labels.npy", f"{listed}, but labels.npy holds {low}..{high}")
        if _crc32_file(self.folder / "labels.npy") == recorded:
            return self.damaged(
                META_FILE,
                f"{listed}, but labels.npy, unchanged since the build, holds labels {low}..{high} "
                f"({high + 1} classes)",
            )
        return self.damaged(
            "labels.npy",
            f"labels {low}..{high}, outside the 0..{n - 1} of the {n} classes {META_FILE} lists (its bytes "
            "changed since the cache was built)",
        )

    def _load_array(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """``<folder>/<name>``, read-only, of ``shape``; ``DamagedCacheError`` naming the file otherwise."""
        try:
            array = np.load(self.folder / name, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise self.damaged(name, f"{type(error).__name__}: {error}") from None
        if array.shape != shape:
            raise self.damaged(name, f"shape {array.shape}, {shape} expected")
        array.flags.writeable = False
        return array

    def verify(self) -> None:
        """Check every file against the CRC-32s its build recorded (module docstring); ``DamagedCacheError``
        naming the first file, and the images, that changed. A cache without checksums is noted, not checked.
        """
        if not self.checksums:
            say(f"note: the image cache {self.folder} has no checksums (an older build): not verified")
            return
        for name in ARRAY_FILES:
            if _crc32_file(self.folder / name) != self.checksums.get(name):
                raise self.damaged(name, "its bytes changed since the cache was built (CRC-32 differs)")
        try:
            images = int(self.checksums["block_images"])
            expected = [int(crc) for crc in self.checksums["images"]]
        except (KeyError, TypeError, ValueError) as error:
            raise self.damaged(META_FILE, f"its checksums: {type(error).__name__}: {error}") from None
        found = _crc32_blocks(self.folder / IMAGES_FILE, images * self.image_size * self.image_size * 3)
        changed = [i for i, (a, b) in enumerate(zip(found, expected, strict=False)) if a != b]
        if changed or len(found) != len(expected):
            first = changed[0] if changed else min(len(found), len(expected))
            raise self.damaged(
                IMAGES_FILE,
                f"the bytes of images {first * images}..{min(len(self), (first + 1) * images) - 1} changed "
                f"since the cache was built ({len(changed)} of {len(expected)} blocks differ)",
            )

    def __repr__(self) -> str:
        return f"ImageCache({str(self.folder)!r}, {len(self)} images of {self.image_size}x{self.image_size})"

    @property
    def images(self) -> np.ndarray:
        """(N, S, S, 3) uint8, read-only, memory-mapped on first access (in each process)."""
        if self._images is None:
            shape = (len(self), self.image_size, self.image_size, 3)
            if len(self) == 0:  # an empty file cannot be mapped
                empty = np.zeros(shape, np.uint8)
                empty.flags.writeable = False
                self._images = empty
            else:
                self._images = np.memmap(self.folder / IMAGES_FILE, dtype=np.uint8, mode="r", shape=shape)
        return self._images

    @property
    def pixel_sums(self) -> np.ndarray:
        """(N, 3) float64: per image, the sum of its R, G and B values over its S*S pixels (exact)."""
        if self._pixel_sums is None:
            self._pixel_sums = self._load_array("pixel_sums.npy", (len(self), 3))
        return self._pixel_sums

    @property
    def pixel_products(self) -> np.ndarray:
        """(N, 3, 3) float64: per image, the sum over its pixels x (RGB) of x x^T (exact integers)."""
        if self._pixel_products is None:
            self._pixel_products = self._load_array("pixel_products.npy", (len(self), 3, 3))
        return self._pixel_products

    def rgb_statistics(self, indices: np.ndarray | Sequence[int] | None = None) -> RGBStatistics:
        """Mean and covariance of all pixels of the images ``indices`` (all images if ``None``).

        Section 4.1's "3x3 covariance of RGB pixel values over the training split (all pixels)", and the mean
        activity that is subtracted: pass the training split's indices. Computed exactly from the per-image
        sums (integer arithmetic, then one rounding to float64), so no pixel is read.
        """
        sums, products = self.pixel_sums, self.pixel_products
        if indices is not None:
            sums, products = sums[np.asarray(indices)], products[np.asarray(indices)]
        if len(sums) == 0:
            raise ValueError(f"no images selected from the cache {self.folder}: no pixel statistics")
        pixels = len(sums) * self.image_size * self.image_size
        total = [int(v) for v in sums.astype(np.int64).sum(axis=0)]
        outer = products.astype(np.int64).sum(axis=0)
        mean = np.array([v / pixels for v in total])
        covariance = np.array(
            [
                [(pixels * int(outer[i, j]) - total[i] * total[j]) / pixels**2 for j in range(3)]
                for i in range(3)
            ]
        )
        return RGBStatistics(mean=mean, covariance=covariance)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_images"] = state["_pixel_sums"] = state["_pixel_products"] = None
        return state


def open_cache(folder: str | Path, verify: bool = False) -> ImageCache:
    """Open the complete cache in ``folder``; an error names the folder if it is not one. ``verify``: check
    its checksums too (``ImageCache.verify``)."""
    cache = ImageCache(folder)
    if verify:
        cache.verify()
    return cache


def build_cache(
    files: LabelledFiles,
    cache_root: str | Path,
    image_size: int = IMAGE_SIZE,
    *,
    workers: int | None = None,
    chunk_size: int = 128,
    progress: bool = True,
    verify: bool = True,
) -> ImageCache:
    """The cache of ``files`` at ``cache_root/<fingerprint>``: opened if it is complete, else built.

    Reusing decodes nothing. A build decodes each file once (``load_square_rgb``: section 2's short side
    ``image_size`` and central square) in chunks of ``chunk_size`` files, on ``workers`` processes
    (``None``: one per CPU; 0 or 1: in this process). Each finished chunk is recorded, so a build that is
    killed resumes where it stopped. Files that cannot be decoded (empty, truncated, not an image, too large)
    are skipped and listed in ``skipped.tsv``; they never stop a build.

    Only one process per node should call this for a given folder (Lightning's ``prepare_data``); a second
    one waits on the lock and then opens the finished cache. ``verify``: check a cache found complete
    against its checksums (the processes that open it after ``prepare_data`` did need not).

    Raises:
        ValueError: ``files`` is empty, or none of its files could be decoded (the message names the folder
            and the report).
    """
    if len(files) == 0:
        raise ValueError("no files to cache")
    if image_size < 1 or chunk_size < 1:
        raise ValueError(f"image_size ({image_size}) and chunk_size ({chunk_size}) must be positive")
    root = Path(cache_root)
    folder = _common_folder(files.paths)
    key = fingerprint(files, image_size)
    final = root / key
    if not (final / META_FILE).is_file():
        root.mkdir(parents=True, exist_ok=True)
        with exclusive(root / f"{key}.lock", final):
            if not (final / META_FILE).is_file():
                try:
                    _build(files, root, key, image_size, workers, chunk_size, progress, folder)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    raise _out_of_space(root / f"{key}.partial", folder, len(files), image_size) from None
                except KeyboardInterrupt:
                    say(
                        f"cache build of {folder} stopped by Ctrl-C; its finished chunks are kept in "
                        f"{root / key}.partial: the next run resumes from them",
                        error=True,
                    )
                    raise
                return _checked(open_cache(final), folder)
    start = time.perf_counter()
    cache = _checked(open_cache(final, verify=verify), folder)
    checked = f", verified in {time.perf_counter() - start:.1f} s" if verify and cache.checksums else ""
    say(f"using cache {final} ({len(cache)} images{checked})")
    return cache


def cache_bytes(count: int, image_size: int = IMAGE_SIZE) -> int:
    """The bytes the squares of a cache of ``count`` images take: ``count * S * S * 3`` (its labels and
    pixel moments add 104 bytes an image)."""
    return count * image_size * image_size * 3


def _out_of_space(partial: Path, folder: Path, count: int, image_size: int) -> CacheSpaceError:
    """Remove the partial build (its space back) and say in one line what the cache needs and what to do."""
    shutil.rmtree(partial, ignore_errors=True)
    need = cache_bytes(count, image_size)
    try:
        free = f", {shutil.disk_usage(partial.parent).free / 1e9:.2f} GB are free now"
    except OSError:
        free = ""
    size = f"{count:,} x {image_size}x{image_size}x3"
    return CacheSpaceError(
        errno.ENOSPC,
        f"no space left on the disk of {partial.parent} while caching {folder}: the cache needs "
        f"{need:,} bytes ({need / 1e9:.2f} GB: {size}){free}; the partial build was removed. Free that "
        "much there, or set data.cache_dir to a folder on a disk with room, and run again",
    )


def _checked(cache: ImageCache, folder: Path) -> ImageCache:
    if len(cache) == 0:
        raise ValueError(
            f"none of the {len(cache.skipped)} files of {folder} could be decoded: see "
            f"{cache.folder / REPORT_FILE} for the reasons"
        )
    return cache


def _common_folder(paths: Sequence[str | Path]) -> Path:
    parents = {os.path.dirname(os.path.abspath(p)) for p in paths}
    return Path(os.path.commonpath(sorted(parents)))


# ----------------------------------------------------------------------------------------------- the build


def _build(
    files: LabelledFiles,
    root: Path,
    key: str,
    image_size: int,
    workers: int | None,
    chunk_size: int,
    progress: bool,
    folder: Path,
) -> None:
    """Build (or resume) ``root/<key>.partial`` and rename it to ``root/<key>``."""
    start_time = time.perf_counter()
    partial, final = root / f"{key}.partial", root / key
    paths = [os.fspath(p) for p in files.paths]
    n = len(paths)
    slot = image_size * image_size * 3
    workers = (os.cpu_count() or 1) if workers is None else max(0, int(workers))
    _prepare_partial(
        partial, {"version": CACHE_VERSION, "fingerprint": key, "files": n, "image_size": image_size}
    )

    decoded = 0
    if not (partial / META_FILE).is_file():
        if not (partial / JOURNAL_FILE).is_file():  # decoding is not finished
            decoded = _decode_pending(partial, paths, image_size, workers, chunk_size, progress, folder)
        ok, sums, products, reasons = _gather(partial, n)
        _compact(partial / IMAGES_FILE, ok, slot, partial / JOURNAL_FILE)
        labels = np.asarray(files.labels, dtype=np.int64)
        skipped = [(paths[i], str(reasons[i])) for i in np.flatnonzero(~ok)]
        np.save(partial / "labels.npy", labels[ok])
        np.save(partial / "pixel_sums.npy", sums[ok])
        np.save(partial / "pixel_products.npy", products[ok])
        _write_report(partial / REPORT_FILE, skipped)
        block = CHECKSUM_IMAGES * slot
        checksums = {name: _crc32_file(partial / name) for name in ARRAY_FILES}
        checksums |= {"block_images": CHECKSUM_IMAGES, "images": _crc32_blocks(partial / IMAGES_FILE, block)}
        meta = {
            "version": CACHE_VERSION,
            "fingerprint": key,
            "decoder": DECODER,
            "image_size": image_size,
            "classes": list(files.classes),
            "count": int(ok.sum()),
            "files": n,
            "source": str(folder),
            "paths": [paths[i] for i in np.flatnonzero(ok)],
            "labels": labels[ok].tolist(),
            "skipped": [list(item) for item in skipped],
            "checksums": checksums,
            "build": {
                "seconds": round(time.perf_counter() - start_time, 3),
                "decoded_files": decoded,
                "resumed_files": n - decoded,
                "workers": workers,
                "chunk_size": chunk_size,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        }
        write_atomic(partial / META_FILE, json.dumps(meta, indent=1).encode())
    meta = json.loads((partial / META_FILE).read_text())
    shutil.rmtree(partial / CHUNKS_DIR, ignore_errors=True)
    for name in (BUILD_FILE, JOURNAL_FILE):
        (partial / name).unlink(missing_ok=True)
    for leftover in partial.glob(".*.tmp"):  # from a build killed mid-write
        leftover.unlink()
    if final.exists():  # an incomplete leftover (no meta.json): we hold the lock, so nobody is using it
        shutil.rmtree(final)
    os.replace(partial, final)

    seconds = time.perf_counter() - start_time
    line = f"cached {meta['count']} images of {folder} in {seconds:.1f} s"
    notes = []
    if meta["skipped"]:
        notes.append(f"{len(meta['skipped'])} skipped: see {final / REPORT_FILE}")
    if decoded < n:
        notes.append(f"resumed: {n - decoded} of {n} files were decoded by an earlier, interrupted build")
    say(line + (f" ({'; '.join(notes)})" if notes else ""))


def _prepare_partial(partial: Path, build: dict[str, Any]) -> None:
    """Keep a resumable ``partial`` folder of this very build, or start a fresh one."""
    if partial.exists():
        if _read_json(partial / META_FILE).get("fingerprint") == build["fingerprint"]:
            return  # finished, killed before the rename
        images = partial / IMAGES_FILE
        sized = images.is_file() and images.stat().st_size == build["files"] * build["image_size"] ** 2 * 3
        if _read_json(partial / BUILD_FILE) == build and ((partial / JOURNAL_FILE).is_file() or sized):
            return
        shutil.rmtree(partial)
    partial.mkdir()
    (partial / CHUNKS_DIR).mkdir()
    with open(partial / IMAGES_FILE, "wb") as handle:
        handle.truncate(build["files"] * build["image_size"] ** 2 * 3)  # sparse until written
    write_atomic(partial / BUILD_FILE, json.dumps(build).encode())  # last: the folder is now usable


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _load_records(partial: Path) -> list[dict[str, np.ndarray]]:
    records = []
    for path in sorted((partial / CHUNKS_DIR).glob("*.npz")):
        try:
            with np.load(path) as data:
                records.append({name: data[name] for name in data.files})
        except (OSError, ValueError, KeyError):  # cannot happen (written atomically); redo that chunk
            path.unlink()
    return records


def _pending_chunks(n: int, records: list[dict[str, np.ndarray]], chunk_size: int) -> list[tuple[int, int]]:
    """(start, stop) of the chunks still to decode: the files no record covers, in runs of chunk_size."""
    covered = np.zeros(n, dtype=bool)
    for record in records:
        covered[int(record["start"]) : int(record["stop"])] = True
    chunks = []
    index = 0
    while index < n:
        if covered[index]:
            index += 1
            continue
        stop = index
        while stop < n and stop - index < chunk_size and not covered[stop]:
            stop += 1
        chunks.append((index, stop))
        index = stop
    return chunks


def _decode_pending(
    partial: Path,
    paths: list[str],
    image_size: int,
    workers: int,
    chunk_size: int,
    progress: bool,
    folder: Path,
) -> int:
    """Decode every chunk not recorded yet; return how many files were decoded."""
    n = len(paths)
    records = _load_records(partial)
    chunks = _pending_chunks(n, records, chunk_size)
    todo = sum(stop - start for start, stop in chunks)
    workers = min(workers, len(chunks))
    if workers > 1:  # at least 4 chunks per worker, so that no worker waits long for the last one
        chunks = _pending_chunks(n, records, max(1, min(chunk_size, math.ceil(todo / (4 * workers)))))
    images = str(partial / IMAGES_FILE)

    def record(start: int, stop: int, result: tuple[np.ndarray, ...]) -> None:
        ok, sums, products, reasons = result
        buffer = _npz_bytes(start=start, stop=stop, ok=ok, sums=sums, products=products, reasons=reasons)
        write_atomic(partial / CHUNKS_DIR / f"{start:010d}.npz", buffer)

    pool, running = None, {}  # future -> (start, stop)
    if workers > 1:
        # The platform's default start method (fork on Linux before Python 3.14). With fork, the pool starts
        # all its processes on the first submit: before the progress bar's refresh thread exists.
        pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context(), initializer=_start_worker
        )
        running = {
            pool.submit(_decode_chunk, images, image_size, start, paths[start:stop]): (start, stop)
            for start, stop in chunks
        }
    try:
        with _progress_bar(progress, f"caching {folder}", n, n - todo) as advance:
            if pool is None:
                for start, stop in chunks:
                    record(start, stop, _decode_chunk(images, image_size, start, paths[start:stop]))
                    advance(stop - start)
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    start, stop = running.pop(future)
                    record(start, stop, future.result())
                    advance(stop - start)
        if pool is not None:
            pool.shutdown()  # inside the try: Ctrl-C while the idle workers exit still ends them
    except BaseException:
        if pool is not None:
            _stop_pool(pool)
        raise
    return todo


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """End the workers now (Ctrl-C, a full disk, an error): the chunks they are decoding are not recorded
    and are decoded again by the next run; waiting for them took seconds per worker.

    The shutdown waits for the pool's manager thread, which reaps the ended workers: joining them here as
    well raced with it (the loser of two ``waitpid`` calls sees the worker as still running)."""
    processes = list(
        (getattr(pool, "_processes", None) or {}).values()
    )  # CPython's: before shutdown clears it
    for process in processes:
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def _start_worker() -> None:
    """The workers are one per core already: torch's resize runs on one thread in each (and a forked child
    never starts an OpenMP pool inherited from its parent). Ctrl-C is the builder's to handle: a worker
    ignores it (the builder ends the workers), so that it prints no traceback of its own."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _decode_chunk(
    images_path: str, image_size: int, start: int, paths: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode ``paths`` into slots ``start...`` of the images file; per file: ok, sums, products, reason.

    Runs in a worker process (or in the builder's, with workers <= 1), so what it costs per image beside
    the decode counts. Each square is written with one ``pwrite`` (assigning into a memmap of the sparse file
    cost several times more, with its page faults and flush). Pixel
    sums and products are sums of integers below 2**53, so a float64 matrix product computes them exactly,
    whatever its order: the pixels go in as rows (R, G, B, 1) of a (4, S*S) matrix, one contiguous
    conversion and one 4x4 Gram product (faster than the (S*S, 4) layout).
    """
    count = len(paths)
    ok = np.zeros(count, dtype=bool)
    sums = np.zeros((count, 3), dtype=np.float64)
    products = np.zeros((count, 3, 3), dtype=np.float64)
    reasons = np.full(count, "", dtype=object)
    shape = (image_size, image_size, 3)
    slot = image_size * image_size * 3
    pixels = np.ones((4, image_size * image_size), dtype=np.float64)  # rows R, G, B and ones
    with open(images_path, "r+b") as handle:
        for i, path in enumerate(paths):
            try:
                with warnings.catch_warnings():  # EXIF, palette-transparency... notes: the pixels decode fine
                    warnings.simplefilter("ignore")
                    image = load_square_rgb(path, image_size)
                if image.shape != shape or image.dtype != np.uint8:
                    raise ValueError(f"decoded to {image.dtype} {image.shape}, not uint8 {shape}")
            except Exception as error:  # a bad file never stops the build: it is reported
                reasons[i] = _reason(error, path)
                _write_slot(handle.fileno(), bytes(slot), (start + i) * slot)
                continue
            _write_slot(handle.fileno(), np.ascontiguousarray(image).data, (start + i) * slot)
            pixels[:3] = image.reshape(-1, 3).T
            gram = pixels @ pixels.T
            ok[i], sums[i], products[i] = True, gram[:3, 3], gram[:3, :3]
    return ok, sums, products, reasons.astype(str)


def _write_slot(descriptor: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data).cast("B")
    written = 0
    while written < len(view):
        written += os.pwrite(descriptor, view[written:], offset + written)


def _reason(error: Exception, path: str) -> str:
    reason = getattr(error, "reason", None)
    if not isinstance(reason, str) or not reason:
        text = str(error).removeprefix(f"cannot decode image {path}: ")
        reason = text if isinstance(error, OSError) and text else f"{type(error).__name__}: {error}"
    return " ".join(reason.split()) or type(error).__name__  # one line, no tabs


def _gather(partial: Path, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The chunk records joined in file order; they must cover every file exactly once."""
    records = sorted(_load_records(partial), key=lambda r: int(r["start"]))
    starts = [int(r["start"]) for r in records]
    stops = [int(r["stop"]) for r in records]
    if not records or starts[0] != 0 or stops[-1] != n or starts[1:] != stops[:-1]:
        raise RuntimeError(f"the chunk records of {partial} do not cover its {n} files; delete the folder")
    ok = np.concatenate([r["ok"] for r in records]).astype(bool)
    sums = np.concatenate([r["sums"] for r in records]).astype(np.float64)
    products = np.concatenate([r["products"] for r in records]).astype(np.float64)
    reasons = np.concatenate([r["reasons"] for r in records]).astype(str)
    return ok, sums, products, reasons


def _compact(images_path: Path, ok: np.ndarray, slot: int, journal: Path) -> None:
    """Squeeze the undecodable slots out of the images file, in place, keeping source order.

    Image ``k`` of the result is slot ``ok_index[k] >= k``, so images only move towards the start. The
    journal holds ``k``: every image before it is in place. Each copy moves at most ``shift = ok_index[k] -
    k`` images, so it writes only below ``ok_index[k]``: a build killed mid-copy finds every slot from
    ``ok_index[k]`` on untouched and redoes the copy. No second copy of the file is needed on disk.
    """
    ok_index = np.flatnonzero(ok)
    kept = len(ok_index)
    if journal.is_file():
        k = int(journal.read_text())
    else:  # the images before the first undecodable file are in place already
        moved = np.flatnonzero(ok_index != np.arange(kept))
        k = int(moved[0]) if len(moved) else kept
        _write_journal(journal, k)
    with open(images_path, "r+b") as handle:
        descriptor = handle.fileno()
        while k < kept:
            source = int(ok_index[k])
            limit = min(source - k, COMPACT_BLOCK)
            count = 1
            while count < limit and k + count < kept and ok_index[k + count] == source + count:
                count += 1
            data = os.pread(descriptor, count * slot, source * slot)
            if len(data) != count * slot:
                raise RuntimeError(
                    f"{images_path} is shorter than its records say; delete {images_path.parent}"
                )
            _write_slot(descriptor, data, k * slot)
            k += count
            _write_journal(journal, k)
        handle.truncate(kept * slot)


def _write_journal(journal: Path, k: int) -> None:
    write_atomic(journal, str(k).encode())


def _write_report(path: Path, skipped: list[tuple[str, str]]) -> None:
    lines = ["path\treason"] + [f"{_one_field(p)}\t{_one_field(r)}" for p, r in skipped]
    write_atomic(path, ("\n".join(lines) + "\n").encode())


def _one_field(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _npz_bytes(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.asarray(value) for name, value in arrays.items()})
    return buffer.getvalue()


def _crc32_range(path: Path, start: int, stop: int) -> int:
    """CRC-32 of bytes [start, stop) of ``path`` (zlib releases the GIL: threads run in parallel)."""
    crc = 0
    with open(path, "rb", buffering=0) as handle:
        offset = start
        while offset < stop:
            data = os.pread(handle.fileno(), min(CHECKSUM_READ, stop - offset), offset)
            if not data:
                break
            crc = zlib.crc32(data, crc)
            offset += len(data)
    return crc


def _crc32_blocks(path: Path, block: int) -> list[int]:
    """CRC-32 of each ``block`` bytes of ``path`` (the last block may be shorter), on a few threads."""
    size = path.stat().st_size
    starts = range(0, size, block)
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        return list(pool.map(lambda start: _crc32_range(path, start, min(size, start + block)), starts))


def _crc32_file(path: Path) -> int | None:
    return _crc32_range(path, 0, path.stat().st_size) if path.is_file() else None


@contextmanager
def _progress_bar(enabled: bool, description: str, total: int, completed: int) -> Iterator[Any]:
    """A rich progress bar over files; yields ``advance(count)``."""
    if not enabled:
        yield lambda count: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(description, total=total, completed=completed)
        yield lambda count: bar.advance(task, count)
