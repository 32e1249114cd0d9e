"""Decoding to the 256x256 square (src/data/images.py, paper section 2): simplejpeg for JPEGs, Pillow for the
rest and for any JPEG simplejpeg refuses; both give the same square, within a grey level of the Pillow-only
decode of cache version 1, and every bad file is refused with a reason."""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
import torch
from PIL import Image, ImageDraw

from src.data import images
from src.data.images import (
    BOMB_PIXELS_PER_BYTE,
    MAX_PIXELS,
    ImageDecodeError,
    centre_square,
    draft_scale,
    load_square_rgb,
    pillow_square,
)


def photo(width: int, height: int, seed: int) -> Image.Image:
    """Smooth colours, hard-edged shapes and pixel noise: what JPEG coding and resizing have to handle."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 48 + 2, width // 48 + 2, 3), dtype=np.uint8)
    picture = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(picture)
    for _ in range(4):
        x, y, r = (int(v) for v in rng.integers(0, min(width, height), 3) // (1, 1, 3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    noise = rng.integers(-8, 9, (height, width, 3))
    return Image.fromarray((np.asarray(picture, dtype=np.int16) + noise).clip(0, 255).astype(np.uint8))


def save_jpeg(image: Image.Image, path: Path, **options: object) -> Path:
    image.save(path, "JPEG", **({"quality": 90} | options))
    return path


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[tuple[int, ...]]]:
    """Record every simplejpeg decode and every Pillow decode (the shape of what each returned)."""
    calls: dict[str, list[tuple[int, ...]]] = {"simplejpeg": [], "pil": []}
    decode_jpeg, decode_pil = simplejpeg.decode_jpeg, images._decode_pil

    def spy_jpeg(*args: object, **kwargs: object) -> np.ndarray:
        pixels = decode_jpeg(*args, **kwargs)
        calls["simplejpeg"].append(pixels.shape)
        return pixels

    def spy_pil(*args: object, **kwargs: object) -> np.ndarray:
        pixels = decode_pil(*args, **kwargs)
        calls["pil"].append(pixels.shape)
        return pixels

    monkeypatch.setattr(images.simplejpeg, "decode_jpeg", spy_jpeg)
    monkeypatch.setattr(images, "_decode_pil", spy_pil)
    return calls


JPEG_KINDS = {
    "landscape 500x375": (lambda p: save_jpeg(photo(500, 375, 1), p), (375, 500)),
    "portrait 375x500": (lambda p: save_jpeg(photo(375, 500, 2), p), (500, 375)),
    "progressive": (lambda p: save_jpeg(photo(500, 375, 3), p, progressive=True), (375, 500)),
    "4:4:4": (lambda p: save_jpeg(photo(400, 300, 4), p, subsampling=0), (300, 400)),
    "4:2:2": (lambda p: save_jpeg(photo(400, 300, 5), p, subsampling=1), (300, 400)),
    "greyscale": (lambda p: save_jpeg(photo(500, 375, 6).convert("L"), p), (375, 500)),
    "with EXIF": (lambda p: save_jpeg(photo(500, 375, 7), p, exif=exif_with_orientation()), (375, 500)),
    "small, scaled up": (lambda p: save_jpeg(photo(100, 80, 8), p), (80, 100)),
    "exactly 256": (lambda p: save_jpeg(photo(256, 256, 9), p), (256, 256)),
    "1100x1023, decoded whole": (lambda p: save_jpeg(photo(1100, 1023, 10), p), (1023, 1100)),
    "2049x1536, at 1/2": (lambda p: save_jpeg(photo(2049, 1536, 11), p), (768, 1025)),
    "4100x3001, at 1/4": (lambda p: save_jpeg(photo(4100, 3001, 12), p), (751, 1025)),
}


def exif_with_orientation() -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90": ignored by both decoders, as by cache version 1
    return exif


@pytest.mark.parametrize("kind", list(JPEG_KINDS))
def test_simplejpeg_and_pillow_decode_a_jpeg_to_the_same_square(
    tmp_path: Path, kind: str, decodes: dict[str, list[tuple[int, ...]]]
) -> None:
    make, decoded_size = JPEG_KINDS[kind]
    path = make(tmp_path / "photo.jpg")
    fast = load_square_rgb(path)
    assert decodes == {"simplejpeg": [(*decoded_size, 3)], "pil": []}  # at Pillow's draft scale
    slow = load_square_rgb(path, decoder="pil")
    assert decodes["pil"] == [(*decoded_size, 3)]
    assert fast.shape == (256, 256, 3) and fast.dtype == np.uint8 and fast.flags.c_contiguous
    # libjpeg-turbo under both: the same pixels, so the same square (measured: bit for bit, every kind).
    assert np.array_equal(fast, slow)
    # Against cache version 1 (Pillow's own resize): measured mean 0.000-0.005, max 1 grey level.
    difference = np.abs(fast.astype(int) - pillow_square(path))
    assert difference.max() <= 1 and difference.mean() < 0.01, (difference.mean(), difference.max())
    if kind == "greyscale":
        assert np.array_equal(fast[..., 0], fast[..., 1]) and np.array_equal(fast[..., 0], fast[..., 2])


def test_the_square_is_deterministic_whatever_the_thread_count(tmp_path: Path) -> None:
    path = save_jpeg(photo(640, 480, 20), tmp_path / "photo.jpg")
    first = load_square_rgb(path)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert np.array_equal(load_square_rgb(path), first)
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(load_square_rgb(path), first) and first.std() > 10  # a picture, not a flat grey


def test_centre_square_scales_the_short_side_and_keeps_the_middle() -> None:
    # 600x200: left third red, middle green, right third blue. Short side 200 -> 256: 768x256, and the centre
    # square is the green third (columns 256..511 of the scaled image).
    pixels = np.zeros((200, 600, 3), np.uint8)
    pixels[:, :200, 0] = pixels[:, 200:400, 1] = pixels[:, 400:, 2] = 255
    square = centre_square(pixels, 256)
    assert square.shape == (256, 256, 3)
    assert tuple(square[128, 128]) == (0, 255, 0) and tuple(square[10, 5]) == (0, 255, 0)
    tall = centre_square(np.full((900, 300, 3), 77, np.uint8), 64)  # a flat image stays flat
    assert tall.shape == (64, 64, 3) and np.all(tall == 77)


def test_cmyk_jpegs_go_to_pillow(tmp_path: Path, decodes: dict[str, list[tuple[int, ...]]]) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("RGB", (320, 300), (200, 40, 90)).convert("CMYK").save(path, quality=95)
    square = load_square_rgb(path)
    assert decodes == {"simplejpeg": [], "pil": [(300, 320, 3)]}  # Pillow's CMYK conversion, as in v1
    assert np.abs(square[128, 128].astype(int) - (200, 40, 90)).max() <= 3


def test_formats_are_told_by_their_bytes_not_their_names(
    tmp_path: Path, decodes: dict[str, list[tuple[int, ...]]]
) -> None:
    picture = photo(300, 280, 30)
    picture.save(tmp_path / "png_named.jpg", "PNG")
    save_jpeg(picture, tmp_path / "jpeg_named.png")
    for name, fmt in (
        ("photo.bmp", "BMP"),
        ("photo.gif", "GIF"),
        ("photo.tiff", "TIFF"),
        ("photo.webp", "WEBP"),
    ):
        picture.save(tmp_path / name, fmt)
    load_square_rgb(tmp_path / "png_named.jpg")
    assert decodes == {"simplejpeg": [], "pil": [(280, 300, 3)]}
    load_square_rgb(tmp_path / "jpeg_named.png")
    assert decodes == {"simplejpeg": [(280, 300, 3)], "pil": [(280, 300, 3)]}
    for name in ("photo.bmp", "photo.gif", "photo.tiff", "photo.webp"):
        square = load_square_rgb(tmp_path / name)
        assert square.shape == (256, 256, 3)
    assert len(decodes["pil"]) == 5 and len(decodes["simplejpeg"]) == 1
    lossless = load_square_rgb(tmp_path / "png_named.jpg")
    assert np.array_equal(lossless, centre_square(np.asarray(picture), 256))


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) is rewritten to declare ``width`` x ``height``."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def test_bad_files_are_refused_with_their_reason(
    tmp_path: Path, decodes: dict[str, list[tuple[int, ...]]]
) -> None:
    good = save_jpeg(photo(300, 280, 40), tmp_path / "good.jpg").read_bytes()
    files = {
        "empty.jpg": b"",
        "truncated.jpg": good[: len(good) // 3],
        "no_end_marker.jpg": good[:-2],
        "Thumbs.db": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(range(256)) * 8,
        "text.jpg": b"this is not a picture\n",
        "jpeg_magic_then_junk.jpg": b"\xff\xd8\xff\xe0" + b"junk" * 50,
        "huge.jpg": jpeg_declaring(16000, 9000),  # 144 MP declared over 632 bytes: a bomb, not decoded
        "bomb.jpg": jpeg_declaring(20000, 10000),  # 200 MP: over Pillow's bomb limit too
    }
    reasons = {}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageDecodeError, match=f"cannot decode image {tmp_path / name}: ") as error:
            load_square_rgb(tmp_path / name)
        assert isinstance(error.value, OSError) and error.value.path == str(tmp_path / name)
        reasons[name] = error.value.reason
    assert reasons["empty.jpg"] == "empty file (0 bytes)"
    # simplejpeg refuses a truncated file (libjpeg would pad it with grey); Pillow then says why.
    assert reasons["truncated.jpg"].startswith("image file is truncated")
    assert reasons["no_end_marker.jpg"].startswith("image file is truncated")
    assert reasons["Thumbs.db"].startswith("not an image") and reasons["text.jpg"].startswith("not an image")
    assert reasons["jpeg_magic_then_junk.jpg"]
    size = len(files["huge.jpg"])
    assert reasons["huge.jpg"] == (
        f"too large: 16000x9000 = 144,000,000 pixels declared in {size:,} bytes, a decompression bomb "
        f"(a real JPEG that large holds at least {144_000_000 // BOMB_PIXELS_PER_BYTE:,} bytes)"
    )
    assert (
        reasons["bomb.jpg"].startswith("too large: 20000x10000")
        and "decompression bomb" in reasons["bomb.jpg"]
    )
    assert decodes["simplejpeg"] == []  # nothing bad came back from simplejpeg as a picture

    with pytest.raises(ImageDecodeError, match="No such file"):
        load_square_rgb(tmp_path / "missing.jpg")
    with pytest.raises(ValueError, match="decoder='turbo' is not known"):
        load_square_rgb(tmp_path / "good.jpg", decoder="turbo")


@pytest.mark.parametrize(
    ("width", "height", "scale"),
    [
        (500, 375, 1),
        (1023, 1023, 1),
        (1024, 1024, 2),
        (1100, 1023, 1),
        (2049, 1536, 2),
        (4100, 3001, 4),
        (12000, 9000, 8),
        (40000, 2048, 4),
        (30, 20, 1),
    ],
)
def test_draft_scale_is_pillows_choice(width: int, height: int, scale: int) -> None:
    assert draft_scale(width, height) == scale
    with warnings.catch_warnings():  # 108 MP: Pillow's decompression-bomb warning (load_square_rgb's limit)
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        opened = Image.open(io.BytesIO(jpeg_declaring(width, height)))  # Pillow's draft on the header alone
    with opened as image:
        gap = 2 * 256 / min(width, height)
        image.draft("RGB", (math.ceil(width * gap), math.ceil(height * gap)))
        assert image.size == (-(-width // scale), -(-height // scale))


@pytest.fixture(scope="module")
def panorama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 16384x9000 JPEG (147 MP, over ``MAX_PIXELS`` declared; 18 MP at 1/8 scale), ~2 MB."""
    path = tmp_path_factory.mktemp("panorama") / "panorama.jpg"
    image = Image.new("RGB", (16384, 9000), (40, 120, 200))
    image.paste(Image.new("RGB", (4000, 3000), (250, 200, 10)), (6192, 3000))
    image.save(path, quality=85)
    return path


@pytest.mark.parametrize("decoder", ["auto", "pil"])
def test_a_large_real_jpeg_is_decoded_at_its_draft_scale_not_skipped(panorama: Path, decoder: str) -> None:
    with warnings.catch_warnings():  # Pillow's decompression-bomb warning: 147 MP declared
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        width, height = Image.open(panorama).size
    assert width * height > MAX_PIXELS  # the old limit on the declared size skipped it as "too large"
    square = load_square_rgb(panorama, decoder=decoder)
    assert square.shape == (256, 256, 3)
    assert np.abs(square[128, 128].astype(int) - (250, 200, 10)).max() <= 3  # the centre patch's colour
