"""The offline cache (src/data/cache.py): decoded once (paper section 2), reused, resumed, robust to bad
files, and the exact pixel statistics of section 4.1."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from src.data import cache as cache_module
from src.data import images as images_module
from src.data.cache import (
    CACHE_VERSION,
    DamagedCacheError,
    ImageCache,
    RGBStatistics,
    build_cache,
    fingerprint,
    open_cache,
)
from src.data.images import DECODER, load_square_rgb
from src.data.layouts import LabelledFiles, find_labelled_images
from tests.conftest import ROOT

CHILD = ROOT / "tests" / "helpers" / "cache_build_child.py"
DATA_FILES = ("images.u8", "labels.npy", "pixel_sums.npy", "pixel_products.npy", "skipped.tsv")


def write_photo(path: Path, size: tuple[int, int], seed: int, fmt: str | None = None) -> None:
    """A smooth random picture with some noise (so JPEG and resizing have something to do)."""
    rng = np.random.default_rng(seed)
    width, height = size
    coarse = rng.integers(0, 256, (height // 32 + 2, width // 32 + 2, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
    pixels = (smooth + rng.integers(-12, 13, smooth.shape)).clip(0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, fmt, **({"quality": 90} if path.suffix == ".jpg" else {}))


def write_truncated_jpeg(path: Path, seed: int = 99) -> None:
    write_photo(path, (300, 280), seed)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def png_header_only(path: Path, width: int, height: int) -> None:
    """A valid PNG header declaring width x height, and a token IDAT: Pillow refuses it before decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def make_folder(folder: Path, per_class: int = 4, broken: tuple[int, ...] = ()) -> LabelledFiles:
    """``folder/{cat,dog}/NN.jpg`` (sizes 256..330 px, PNGs in between); the ``broken`` indices truncated."""
    index = 0
    for cls in ("cat", "dog"):
        for i in range(per_class):
            suffix = ".png" if i % 3 == 2 else ".jpg"
            path = folder / cls / f"{i:02d}{suffix}"
            if index in broken:
                write_truncated_jpeg(path.with_suffix(".jpg"))
            else:
                write_photo(path, (256 + 23 * i % 75, 330 - 17 * i % 70), seed=index)
            index += 1
    return find_labelled_images(folder, "folders")


def the_cache_folder(cache: ImageCache) -> dict[str, bytes]:
    """Every data file of a cache, and its meta.json without the build's own record (timings)."""
    contents = {name: (cache.folder / name).read_bytes() for name in DATA_FILES}
    meta = json.loads((cache.folder / "meta.json").read_text())
    del meta["build"]
    contents["meta"] = json.dumps(meta, sort_keys=True).encode()
    return contents


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    decoded: list[str] = []

    def counting(path: str, size: int) -> np.ndarray:
        decoded.append(path)
        return load_square_rgb(path, size)

    monkeypatch.setattr(cache_module, "load_square_rgb", counting)
    return decoded


def test_build_stores_the_decoded_squares_labels_and_exact_statistics(tmp_path: Path) -> None:
    files = make_folder(tmp_path / "train", per_class=5)
    cache = build_cache(files, tmp_path / "cache", workers=1, chunk_size=4, progress=False)

    assert cache.folder == (tmp_path / "cache" / fingerprint(files, 256)).absolute()
    assert sorted(p.name for p in cache.folder.iterdir()) == sorted((*DATA_FILES, "meta.json"))
    assert len(cache) == 10 and cache.image_size == 256 and cache.skipped == []
    assert cache.classes == ["cat", "dog"] and cache.paths == [str(p) for p in files.paths]
    assert cache.labels.dtype == np.int64 and cache.labels.tolist() == [0] * 5 + [1] * 5
    images = cache.images
    assert isinstance(images, np.memmap) and images.shape == (10, 256, 256, 3) and images.dtype == np.uint8
    for i, path in enumerate(files.paths):
        assert np.array_equal(images[i], load_square_rgb(path, 256)), path
    with pytest.raises(ValueError, match="read-only"):
        images[0, 0, 0, 0] = 1
    assert (cache.folder / "skipped.tsv").read_text() == "path\treason\n"

    # Section 4.1: mean and covariance of all pixels, exactly as numpy computes them from the pixels.
    for indices in (None, np.array([0, 3, 4, 8])):
        chosen = images if indices is None else images[indices]
        pixels = chosen.reshape(-1, 3).astype(np.float64)
        stats = cache.rgb_statistics(indices)
        np.testing.assert_allclose(stats.mean, pixels.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(stats.covariance, np.cov(pixels.T, bias=True), rtol=1e-9, atol=1e-6)
        np.testing.assert_allclose(stats.std, pixels.std(axis=0), rtol=1e-9)
        values, vectors = np.linalg.eigh(stats.covariance)
        np.testing.assert_allclose(stats.eigenvalues, values[::-1], rtol=1e-12)
        assert np.all(np.diff(stats.eigenvalues) <= 0)
        for i in range(3):  # eigenvector i in column i, up to sign; its largest component positive
            assert abs(abs(stats.eigenvectors[:, i] @ vectors[:, 2 - i]) - 1) < 1e-9
            assert stats.eigenvectors[np.argmax(np.abs(stats.eigenvectors[:, i])), i] > 0
        rebuilt = stats.eigenvectors @ np.diag(stats.eigenvalues) @ stats.eigenvectors.T
        np.testing.assert_allclose(rebuilt, stats.covariance, rtol=1e-10)
    whole, part = cache.rgb_statistics(), cache.rgb_statistics([0, 3, 4, 8])
    assert not np.allclose(whole.covariance, part.covariance)  # the subset really is a subset
    with pytest.raises(ValueError, match="no images selected"):
        cache.rgb_statistics(np.array([], dtype=np.int64))


def test_eigenvectors_are_columns_in_descending_order_with_fixed_signs() -> None:
    rng = np.random.default_rng(0)
    flipped = 0
    for _ in range(20):
        basis = rng.normal(size=(3, 3))
        covariance = basis @ basis.T + 0.1 * np.eye(3)
        stats = RGBStatistics(mean=np.zeros(3), covariance=covariance)
        values, vectors = np.linalg.eigh(covariance)
        np.testing.assert_allclose(stats.eigenvalues, values[::-1], rtol=1e-12)
        for i in range(3):
            column = stats.eigenvectors[:, i]
            np.testing.assert_allclose(covariance @ column, stats.eigenvalues[i] * column, atol=1e-9)
            assert column[np.argmax(np.abs(column))] > 0
            flipped += bool(column @ vectors[:, 2 - i] < 0)
        np.testing.assert_allclose(stats.eigenvectors.T @ stats.eigenvectors, np.eye(3), atol=1e-12)
    assert flipped > 0  # the convention did change some of numpy's signs


def test_second_build_decodes_nothing_and_changes_make_new_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    files = make_folder(tmp_path / "train", per_class=3)
    first = build_cache(files, tmp_path / "cache", workers=1, progress=False)
    assert "cached 6 images of" in capsys.readouterr().out

    def no_decoding(path: str, size: int) -> np.ndarray:
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(cache_module, "load_square_rgb", no_decoding)
    again = build_cache(files, tmp_path / "cache", workers=2, progress=True)
    # Opened, not built: its checksums are verified (the time varies, the rest does not).
    assert re.fullmatch(
        rf"using cache {re.escape(str(first.folder))} \(6 images, verified in [0-9.]+ s\)",
        capsys.readouterr().out.strip(),
    )
    assert again.folder == first.folder and the_cache_folder(again) == the_cache_folder(first)
    assert np.array_equal(again.images, first.images) and again.labels.tolist() == first.labels.tolist()
    monkeypatch.undo()

    key = fingerprint(files, 256)
    assert fingerprint(files, 256) == key and len(key) == 16
    assert fingerprint(files, 224) != key
    monkeypatch.setattr(cache_module, "DECODER", "Pillow 1.0; resize: Pillow BILINEAR")  # another decoder
    assert fingerprint(files, 256) != key
    monkeypatch.undo()
    assert fingerprint(LabelledFiles(files.paths, files.labels[::-1], files.classes), 256) != key
    assert fingerprint(LabelledFiles(files.paths, files.labels, ["kitten", "puppy"]), 256) != key
    stat = os.stat(files.paths[0])
    os.utime(files.paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    touched = build_cache(files, tmp_path / "cache", workers=1, progress=False)
    assert touched.folder.name == fingerprint(files, 256) != key
    write_photo(tmp_path / "train" / "dog" / "99.jpg", (280, 300), seed=7)
    grown = build_cache(
        find_labelled_images(tmp_path / "train", "folders"), tmp_path / "cache", progress=False
    )
    assert len(grown) == 7 and grown.folder.name not in (key, touched.folder.name)
    small = build_cache(files, tmp_path / "cache", 128, workers=1, progress=False)
    assert small.images.shape == (6, 128, 128, 3) and small.folder.name not in (key, touched.folder.name)
    assert np.array_equal(small.images[2], load_square_rgb(files.paths[2], 128))
    assert len(list((tmp_path / "cache").glob("*.partial"))) == 0


def test_parallel_and_serial_builds_are_byte_identical(tmp_path: Path) -> None:
    files = make_folder(tmp_path / "train", per_class=7, broken=(2, 9))
    serial = build_cache(files, tmp_path / "serial", workers=1, chunk_size=5, progress=False)
    parallel = build_cache(files, tmp_path / "parallel", workers=2, chunk_size=3, progress=False)
    assert len(serial) == 12 and [Path(p).name for p, _ in serial.skipped] == ["02.jpg", "02.jpg"]
    assert the_cache_folder(parallel) == the_cache_folder(serial)


def test_killed_build_resumes_from_its_finished_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = make_folder(tmp_path / "train", per_class=9, broken=(5,))
    key = fingerprint(files, 256)
    chunks = tmp_path / "cache" / f"{key}.partial" / "chunks"
    # The child decodes 6 files (3 chunks of 2), then hangs in its 7th decode until it is killed.
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(tmp_path / "train"), str(tmp_path / "cache"), "0", "2", "6"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 300  # a hang, not a slow machine
        while len(list(chunks.glob("*.npz"))) < 3:
            assert child.poll() is None, child.communicate()[0].decode()
            assert time.monotonic() < deadline, "the child recorded no chunks"
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not (tmp_path / "cache" / key).exists()
    finished = sum(int(np.load(path)["stop"] - np.load(path)["start"]) for path in chunks.glob("*.npz"))
    assert finished == 6

    decoded = count_decodes(monkeypatch)
    resumed = build_cache(files, tmp_path / "cache", workers=1, chunk_size=2, progress=False)
    assert len(decoded) == 18 - finished  # only the chunks the killed build had not finished
    assert not (tmp_path / "cache" / f"{key}.partial").exists()
    assert json.loads((resumed.folder / "meta.json").read_text())["build"]["resumed_files"] == finished
    monkeypatch.undo()
    whole = build_cache(files, tmp_path / "uninterrupted", workers=2, chunk_size=4, progress=False)
    assert the_cache_folder(resumed) == the_cache_folder(whole)
    assert len(whole) == 17 and whole.skipped[0][0].endswith("05.jpg")


def test_interrupted_compaction_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 12 files, 4 undecodable: the 8 good images move left by 1, 1, 3, 3, 4, 4, 4 slots, in 4 copies.
    files = make_folder(tmp_path / "train", per_class=6, broken=(1, 4, 5, 8))
    reference = build_cache(files, tmp_path / "reference", workers=1, progress=False)
    write_journal = cache_module._write_journal
    for crash_at in range(1, 6):  # the journal is written 5 times: killed before each in turn
        journal_writes = []

        def crash(journal: Path, k: int, crash_at: int = crash_at, writes: list = journal_writes) -> None:
            writes.append(k)
            if len(writes) == crash_at:
                raise KeyboardInterrupt("killed while compacting")
            write_journal(journal, k)

        monkeypatch.setattr(cache_module, "_write_journal", crash)
        root = tmp_path / f"crash{crash_at}"
        with pytest.raises(KeyboardInterrupt):
            build_cache(files, root, workers=1, chunk_size=3, progress=False)
        monkeypatch.undo()
        assert (root / f"{reference.folder.name}.partial").is_dir()
        decoded = count_decodes(monkeypatch)
        resumed = build_cache(files, root, workers=1, chunk_size=3, progress=False)
        monkeypatch.undo()
        assert decoded == []  # every chunk was recorded: only the compaction was left to do
        assert the_cache_folder(resumed) == the_cache_folder(reference), f"killed at journal write {crash_at}"


def test_build_killed_just_before_its_rename_is_finished_without_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = make_folder(tmp_path / "train", per_class=2, broken=(1,))
    done = build_cache(files, tmp_path / "cache", workers=1, progress=False)
    expected = the_cache_folder(done)
    os.replace(done.folder, done.folder.with_name(done.folder.name + ".partial"))  # the state just before
    decoded = count_decodes(monkeypatch)
    again = build_cache(files, tmp_path / "cache", workers=1, progress=False)
    assert decoded == [] and the_cache_folder(again) == expected


@pytest.fixture(scope="module")
def huge_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("huge") / "huge.jpg"
    image = Image.new("RGB", (12000, 9000), (40, 120, 200))
    image.paste(Image.new("RGB", (4000, 3000), (250, 200, 10)), (4000, 3000))
    image.save(path, quality=80)
    return path


def test_bad_files_are_skipped_and_reported_odd_ones_converted(
    tmp_path: Path, huge_jpeg: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    write_photo(folder / "a_good.jpg", (320, 280), seed=1)
    write_photo(folder / "b_good.png", (280, 320), seed=2)
    (folder / "c_empty.jpg").write_bytes(b"")
    write_truncated_jpeg(folder / "d_truncated.jpg")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(range(256)) * 8)
    (folder / "e_text.jpg").write_text("this is not a picture\n")
    png_header_only(folder / "f_too_large.png", 12000, 12000)  # 144 MP: over our limit
    png_header_only(folder / "g_bomb.png", 20000, 10000)  # 200 MP: over Pillow's bomb limit too
    write_photo(folder / "h_cmyk.jpg", (300, 270), seed=3)
    Image.open(folder / "h_cmyk.jpg").convert("CMYK").save(folder / "h_cmyk.jpg")
    Image.new("L", (300, 260), 90).save(folder / "i_grey.png")
    Image.open(folder / "a_good.jpg").convert("P", palette=Image.Palette.ADAPTIVE).save(
        folder / "j_palette.png"
    )
    palette = Image.open(folder / "j_palette.png")
    palette.save(folder / "k_palette_transparent.png", transparency=0)
    rgba = Image.open(folder / "b_good.png").convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "l_rgba.png")
    write_photo(folder / "m_small.jpg", (100, 80), seed=4)
    os.link(huge_jpeg, folder / "n_huge.jpg")
    paths = sorted(folder.iterdir())
    files = LabelledFiles(paths, [i % 2 for i in range(len(paths))], ["x", "y"])

    cache = build_cache(files, tmp_path / "cache", workers=2, chunk_size=4, progress=False)
    report = cache.folder / "skipped.tsv"
    assert f"(6 skipped: see {report})" in capsys.readouterr().out
    reasons = {Path(path).name: reason for path, reason in cache.skipped}
    assert sorted(reasons) == [
        "Thumbs.db",
        "c_empty.jpg",
        "d_truncated.jpg",
        "e_text.jpg",
        "f_too_large.png",
        "g_bomb.png",
    ]
    assert reasons["c_empty.jpg"] == "empty file (0 bytes)"
    assert "truncated" in reasons["d_truncated.jpg"]
    assert reasons["Thumbs.db"].startswith("not an image") and reasons["e_text.jpg"].startswith(
        "not an image"
    )
    whole = "decoded at once (a PNG is decoded whole; as a JPEG it would be decoded at 1/2 to 1/8 scale)"
    assert (
        reasons["f_too_large.png"].startswith("too large: 12000x12000")
        and whole in reasons["f_too_large.png"]
    )
    assert reasons["g_bomb.png"].startswith("too large: 20000x10000") and whole in reasons["g_bomb.png"]
    lines = report.read_text().splitlines()
    assert lines == ["path\treason"] + [f"{path}\t{reason}" for path, reason in cache.skipped]

    kept = [p for p in paths if p.name not in reasons]
    assert cache.paths == [str(p) for p in kept]  # source order
    assert cache.labels.tolist() == [paths.index(p) % 2 for p in kept]
    assert cache.images.shape == (9, 256, 256, 3) and cache.images.dtype == np.uint8
    for i, path in enumerate(kept):
        assert np.array_equal(cache.images[i], load_square_rgb(path)), path
    assert tuple(cache.images[kept.index(folder / "i_grey.png"), 100, 100]) == (90, 90, 90)
    centre = cache.images[kept.index(folder / "n_huge.jpg"), 128, 128].astype(int)
    assert np.abs(centre - (250, 200, 10)).max() <= 3

    resized_from = []
    centre_square = images_module.centre_square

    def spy(pixels: np.ndarray, size: int) -> np.ndarray:
        resized_from.append(pixels.shape)
        return centre_square(pixels, size)

    monkeypatch.setattr(images_module, "centre_square", spy)
    for decoder in ("auto", "pil"):  # both decoded it at 1/8 scale, in the DCT domain (~0.07 s, not ~1 s)
        load_square_rgb(huge_jpeg, decoder=decoder)
    assert resized_from == [(1125, 1500, 3)] * 2

    junk = tmp_path / "junk"
    junk.mkdir()
    for name in ("c_empty.jpg", "e_text.jpg", "Thumbs.db"):
        (junk / name).write_bytes((folder / name).read_bytes())
    junk_files = LabelledFiles(sorted(junk.iterdir()), [0, 0, 0], ["x"])
    message = rf"none of the 3 files of {junk} could be decoded: see .*skipped\.tsv"
    with pytest.raises(ValueError, match=message):
        build_cache(junk_files, tmp_path / "cache", workers=1, progress=False)
    with pytest.raises(ValueError, match=message):  # and again, from the finished (empty) cache
        build_cache(junk_files, tmp_path / "cache", workers=1, progress=False)


def test_pickled_cache_carries_no_pixels(tmp_path: Path) -> None:
    files = make_folder(tmp_path / "train", per_class=4)
    cache = build_cache(files, tmp_path / "cache", workers=1, progress=False)
    assert cache.images.nbytes > 1_500_000
    cache.rgb_statistics()  # loads the per-image sums too
    data = pickle.dumps(cache)
    assert len(data) < 20_000
    copy = pickle.loads(data)
    assert copy._images is None and copy.folder == cache.folder
    assert np.array_equal(copy.images, cache.images) and copy.labels.tolist() == cache.labels.tolist()
    np.testing.assert_array_equal(copy.rgb_statistics().covariance, cache.rgb_statistics().covariance)


def test_open_cache_names_what_is_not_a_cache(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path} is not a complete image cache"):
        open_cache(tmp_path)
    files = make_folder(tmp_path / "train", per_class=2)
    cache = build_cache(files, tmp_path / "cache", workers=1, progress=False)
    assert open_cache(cache.folder).paths == cache.paths
    meta = json.loads((cache.folder / "meta.json").read_text())
    assert meta["version"] == CACHE_VERSION and meta["count"] == 4 and meta["labels"] == [0, 0, 1, 1]
    assert meta["decoder"] == DECODER and "simplejpeg" in DECODER and "torch" in DECODER
    (cache.folder / "meta.json").write_text(json.dumps(meta | {"version": 1}))  # decoded by Pillow alone
    with pytest.raises(
        ValueError, match="image cache of version 1, this code reads version 2; build it again"
    ):
        open_cache(cache.folder)
    (cache.folder / "meta.json").write_text(json.dumps(meta))
    with open(cache.folder / "images.u8", "r+b") as handle:
        handle.truncate(1000)
    with pytest.raises(ValueError, match="damaged image cache"):
        open_cache(cache.folder)


def test_a_cache_whose_bytes_changed_is_refused_naming_the_file(tmp_path: Path, capsys) -> None:
    files = make_folder(tmp_path / "train", per_class=3)
    cache = build_cache(files, tmp_path / "cache", workers=1, progress=False)
    folder = cache.folder
    capsys.readouterr()
    build_cache(files, tmp_path / "cache", workers=1, progress=False)  # whole: used, after a check
    assert f"using cache {folder} (6 images, verified in" in capsys.readouterr().out
    rebuild = rf"delete it \(rm -r {folder}\) and run again, which rebuilds it"

    # One byte of image 4 changed, the length the same: found on reuse, the images named.
    original = (folder / "images.u8").read_bytes()
    with open(folder / "images.u8", "r+b") as handle:
        handle.seek(4 * 256 * 256 * 3 + 1000)
        handle.write(bytes([original[4 * 256 * 256 * 3 + 1000] ^ 1]))
    with pytest.raises(DamagedCacheError, match=rf"images.u8: the bytes of images 0..5 changed .*{rebuild}"):
        build_cache(files, tmp_path / "cache", workers=1, progress=False)
    (folder / "images.u8").write_bytes(original)

    # Damaged metadata: a message naming the file and the fix, never a raw JSONDecodeError or IndexError.
    meta_text = (folder / "meta.json").read_text()
    for name, damage, message in [
        ("meta.json", lambda p: p.write_text(meta_text[:200]), "meta.json: not a JSON object"),
        ("meta.json", lambda p: p.write_text(json.dumps({"version": CACHE_VERSION})), "meta.json: KeyError"),
        (
            "meta.json",
            lambda p: p.write_text(meta_text.replace('"skipped": []', '"skipped": [[1]]')),
            "meta.json",
        ),
        ("labels.npy", lambda p: p.write_bytes(p.read_bytes()[:60]), "labels.npy: "),
        ("labels.npy", lambda p: np.save(p, np.full(6, 7)), "labels.npy: labels 7..7, outside the 0..1"),
        ("pixel_sums.npy", lambda p: np.save(p, np.load(p) + 1), "pixel_sums.npy: its bytes changed"),
    ]:
        path = folder / name
        kept = path.read_bytes()
        damage(path)
        with pytest.raises(DamagedCacheError, match=rf"{message}.*{rebuild}"):
            build_cache(files, tmp_path / "cache", workers=1, progress=False)
        path.write_bytes(kept)
    assert np.array_equal(open_cache(folder, verify=True).images, cache.images)


def test_classes_cut_from_meta_json_are_blamed_on_meta_json(tmp_path: Path) -> None:
    """Valid JSON, wrong content: the labels no longer fit the classes, and labels.npy is as it was built."""
    files = make_folder(tmp_path / "train", per_class=2)
    folder = build_cache(files, tmp_path / "cache", workers=1, progress=False).folder
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps(meta | {"classes": ["cat"]}))
    with pytest.raises(DamagedCacheError) as raised:
        build_cache(files, tmp_path / "cache", workers=1, progress=False)
    assert str(raised.value) == (
        f"the image cache {folder} is damaged: meta.json: \"classes\" lists 1 class ['cat'], but labels.npy, "
        "unchanged since the build, holds labels 0..1 (2 classes). It holds only decoded copies of your "
        f"images: delete it (rm -r {folder}) and run again, which rebuilds it"
    )
    del meta["checksums"]  # a cache built before the checksums: either file may be the one that changed
    (folder / "meta.json").write_text(json.dumps(meta | {"classes": ["cat"]}))
    with pytest.raises(DamagedCacheError, match=r"meta.json or labels.npy: \"classes\" lists 1 class"):
        open_cache(folder)


def test_two_processes_building_at_once_build_once(tmp_path: Path) -> None:
    files = make_folder(tmp_path / "train", per_class=4)
    command = [sys.executable, str(CHILD), str(tmp_path / "train"), str(tmp_path / "cache"), "0.05", "2"]
    children = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [child.communicate(timeout=120)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0]
    assert sum("cached 8 images" in out for out in outputs) == 1
    assert sum("using cache" in out for out in outputs) == 1
    cache = open_cache(tmp_path / "cache" / fingerprint(files, 256))
    for i, path in enumerate(files.paths):
        assert np.array_equal(cache.images[i], load_square_rgb(path)), path


def test_a_build_with_two_workers_caches_every_image_as_decoded(tmp_path: Path) -> None:
    """Two workers share the 200 files; every slot holds its own file's square (speed: bench/data.py)."""
    rng = np.random.default_rng(0)
    for i in range(200):
        size = (int(rng.integers(256, 321)), int(rng.integers(256, 321)))
        write_photo(tmp_path / "train" / ("cat" if i % 2 else "dog") / f"{i:03d}.jpg", size, seed=i)
    files = find_labelled_images(tmp_path / "train", "folders")
    cache = build_cache(files, tmp_path / "cache", workers=2, progress=True)
    assert len(cache) == 200
    for i in (0, 57, 123, 199):
        assert np.array_equal(cache.images[i], load_square_rgb(files.paths[i])), files.paths[i]
