"""Decode an image file to the paper's 256x256 RGB square (done once per image, by ``cache.py``).

Section 2: "we down-sampled the images to a fixed resolution of 256 x 256. Given a rectangular image, we first
rescaled the image such that the shorter side was of length 256, and then cropped out the central 256x256
patch". The 224x224 patches of section 4.1 are cut from the cached square by ``views.py``.

Why this path (``bench/data.py`` measures it; the figures are in docs/benchmarks.md): decoding with
libjpeg-turbo costs the same through simplejpeg or Pillow (both give the same pixels, bit for bit), but
Pillow's antialiased bilinear resize to 341x256 costs more than the decode itself, while torch's uint8
antialiased bilinear kernel (the one written to match Pillow's BILINEAR: a triangle filter widened by the
downscale factor, so downscaling averages instead of aliasing) does it several times faster, within one grey
level of Pillow. So:

1. A JPEG (recognised by its first bytes, as Pillow does, not by its name) is decoded by simplejpeg. A large
   one is decoded at 1/2, 1/4 or 1/8 scale in the DCT domain, exactly the scale Pillow's draft mode picks.
   CMYK/YCCK JPEGs, and any JPEG simplejpeg refuses (truncated, corrupt, odd), go to Pillow, which decodes
   them or says why not, as it always did.
2. Every other format is decoded by Pillow (draft mode is a no-op for them).
3. Both are resized by the same torch kernel, then the central square is cut: a JPEG gives the same square
   whichever decoder read it.

``DECODER`` names this path and the library versions behind it; the cache's fingerprint includes it, so a
cache decoded differently (by an older version of this code, say) is never mixed with a new one.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import PIL
import simplejpeg
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

IMAGE_SIZE = 256  # section 2

# The most pixels decoded at once (~134 MP, ~400 MB as RGB): what bounds a decode's memory. It is judged on
# the pixels actually decoded: a JPEG at the 1/2, 1/4 or 1/8 scale it is decoded at (so every JPEG a camera
# or a stitcher can write decodes: 65535x65535 at 1/8 is 67 MP, and a 16384x9000 panorama takes 18 MP at
# 1/8), every other format whole (PNG, TIFF, ... have no reduced decoding): a non-JPEG declaring more than
# this is refused as "too large" with its size, before any pixel is decoded. Pillow's own decompression-bomb
# check (a limit on the declared size, 2 x Image.MAX_IMAGE_PIXELS, ~179 MP) is replaced by this one; its
# warning (above ~89 MP) is silenced.
MAX_PIXELS = 2**27
# A JPEG declaring more than MAX_PIXELS must hold at least one byte per this many declared pixels, else it is
# refused as a decompression bomb: a header declaring a huge size over a few bytes of data (which libjpeg
# would pad with grey). Real photos hold about 1 byte per 8 to 64 pixels (16384x9000 in one colour: 1 per 64).
BOMB_PIXELS_PER_BYTE = 512
# Large JPEGs are decoded at 1/2, 1/4 or 1/8 scale in the DCT domain, as long as the decoded image stays at
# least DRAFT_GAP times the size of the square's scaled image (as Pillow's thumbnail does): the antialiased
# resize then still has twice the pixels it needs.
DRAFT_GAP = 2
JPEG_MAGIC = b"\xff\xd8\xff"  # start-of-image marker and the next marker's first byte (Pillow's test too)
JPEG_COLOURSPACES = ("YCbCr", "Gray", "RGB")  # what simplejpeg converts to RGB as Pillow does
DECODERS = ("auto", "pil")
DECODER = (
    f"jpeg: simplejpeg {simplejpeg.__version__}, else Pillow {PIL.__version__}; "
    f"resize: torch {torch.__version__} uint8 antialiased bilinear; "
    f"at most {MAX_PIXELS} pixels decoded, JPEGs at their draft scale"
)


class ImageDecodeError(OSError):
    """A file that cannot be decoded to an image; ``reason`` says why, without the path."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"cannot decode image {path}: {reason}")
        self.path = str(path)
        self.reason = reason


def load_square_rgb(path: str | Path, size: int = IMAGE_SIZE, decoder: str = "auto") -> np.ndarray:
    """Decode ``path``, convert to RGB, scale the short side to ``size``, keep the centre square (section 2).

    Returns a uint8 array of shape (size, size, 3). Greyscale, palette, CMYK and RGBA images are converted
    (alpha is dropped); images smaller than ``size`` are scaled up. Large JPEGs are decoded at 1/2, 1/4 or
    1/8 scale when that still leaves at least ``DRAFT_GAP`` times the pixels needed. Deterministic: same
    file, same bytes. ``decoder="pil"`` decodes JPEGs with Pillow too (for comparisons; the result is the
    same). A file that cannot be decoded, or would decode to more than ``MAX_PIXELS`` pixels (a non-JPEG
    that large: JPEGs are judged at their draft scale), raises an ``ImageDecodeError`` (an ``OSError``)
    naming it.
    """
    if decoder not in DECODERS:
        raise ValueError(f"decoder={decoder!r} is not known; choose one of {', '.join(DECODERS)}")
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(JPEG_MAGIC))
            if not head:
                raise ImageDecodeError(path, "empty file (0 bytes)")
            data = head + handle.read() if head == JPEG_MAGIC else None
            nbytes = os.fstat(handle.fileno()).st_size
        pixels = _decode_jpeg(data, path, size) if data is not None and decoder == "auto" else None
        if pixels is None:
            pixels = _decode_pil(path if data is None else io.BytesIO(data), path, size, nbytes)
        return centre_square(pixels, size)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(path, f"too large: {error}") from error
    except UnidentifiedImageError as error:
        raise ImageDecodeError(path, "not an image (Pillow cannot identify its format)") from error
    except (OSError, ValueError, SyntaxError, EOFError, IndexError) as error:
        raise ImageDecodeError(path, str(error) or type(error).__name__) from error


def centre_square(pixels: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8: short side scaled to ``size``, the central square kept.

    Section 2's resize, antialiased bilinear (torch's uint8 kernel, which matches Pillow's BILINEAR to
    within one grey level). The offsets of the square are rounded down, as Pillow's crop of the same box.
    """
    height, width = pixels.shape[:2]
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    # (1, 3, H, W) with channels-last strides (N's stride H*W*3, not 3 as unsqueeze would give it): torch's
    # vectorised uint8 kernel then writes a channels-last result, and the crop below is a plain copy.
    writable = pixels if pixels.flags.writeable else pixels.copy()  # torch.from_numpy wants a writable array
    image = torch.from_numpy(writable)[None].permute(0, 3, 1, 2)
    if (new_h, new_w) != (height, width):
        image = F.interpolate(
            image, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False
        )
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return np.array(image[0, :, top : top + size, left : left + size].permute(1, 2, 0).numpy(), order="C")


def draft_scale(width: int, height: int, size: int = IMAGE_SIZE) -> int:
    """1, 2, 4 or 8: the DCT-domain reduction Pillow's draft mode picks for a ``width`` x ``height`` JPEG.

    The largest power of two (at most 8) that keeps both sides at least ``DRAFT_GAP`` times their scaled
    size (``JpegImageFile.draft``'s rule, with the request ``load_square_rgb`` makes).
    """
    request_w, request_h = _draft_request(width, height, size)
    fits = min(width // request_w, height // request_h)
    return next((s for s in (8, 4, 2, 1) if fits >= s), 1)


def _draft_request(width: int, height: int, size: int) -> tuple[int, int]:
    """The smallest decoded size wanted: ``DRAFT_GAP`` times the size scaled to a short side of ``size``."""
    gap = DRAFT_GAP * size / min(width, height)
    return math.ceil(width * gap), math.ceil(height * gap)


def _check_size(
    path: str | Path, width: int, height: int, scale: int = 1, kind: str = "", nbytes: int | None = None
) -> None:
    """Refuse an empty image, one that would decode to more than ``MAX_PIXELS`` pixels at ``scale`` (a
    JPEG's draft scale; 1 for formats decoded whole, ``kind`` naming the format), or a JPEG of more than
    ``MAX_PIXELS`` declared in too few bytes (``nbytes``, the file's size) to hold them: a bomb."""
    if width < 1 or height < 1:
        raise ImageDecodeError(path, f"empty image ({width}x{height})")
    declared = width * height
    bomb = nbytes is not None and nbytes * BOMB_PIXELS_PER_BYTE < declared
    if kind == "JPEG" and declared > MAX_PIXELS and bomb:
        raise ImageDecodeError(
            path,
            f"too large: {width}x{height} = {declared:,} pixels declared in {nbytes:,} bytes, a "
            f"decompression bomb (a real JPEG that large holds at least "
            f"{declared // BOMB_PIXELS_PER_BYTE:,} bytes)",
        )
    decoded = -(-width // scale) * -(-height // scale)
    if decoded > MAX_PIXELS:
        too_large = f"too large: {width}x{height} = {declared:,} pixels"
        if scale > 1:
            why = f"{decoded:,} even at 1/{scale} scale, more than the {MAX_PIXELS:,} decoded at once"
        else:
            why = (
                f"more than the {MAX_PIXELS:,} decoded at once (a {kind or 'file of this format'} is decoded "
                "whole; as a JPEG it would be decoded at 1/2 to 1/8 scale)"
            )
        raise ImageDecodeError(path, f"{too_large}, {why}")


def _decode_jpeg(data: bytes, path: str | Path, size: int) -> np.ndarray | None:
    """libjpeg-turbo through simplejpeg, at Pillow's draft scale; ``None``: let Pillow decode (or refuse) it.

    ``strict`` decoding turns libjpeg's warnings (a truncated file, which it would pad with grey) into
    errors, so a damaged file never comes back as a plausible picture: Pillow then reports it as before.
    """
    try:
        height, width, colourspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    scale = draft_scale(width, height, size)
    _check_size(path, width, height, scale, "JPEG", len(data))
    if colourspace not in JPEG_COLOURSPACES:  # CMYK and YCCK: Pillow's conversion, as before
        return None
    # simplejpeg picks the smallest of libjpeg's scales (n/8) that keeps these minima: exactly 1/scale.
    want_h, want_w = -(-height // scale), -(-width // scale)
    try:
        pixels = simplejpeg.decode_jpeg(data, "RGB", min_height=want_h, min_width=want_w, strict=True)
    except ValueError:
        return None
    return pixels if pixels.shape == (want_h, want_w, 3) else None


def _decode_pil(
    source: str | Path | BinaryIO, path: str | Path, size: int, nbytes: int | None = None
) -> np.ndarray:
    """Pillow: any format it knows, in draft mode (JPEG only), converted to RGB."""
    with _without_pillows_bomb_check():  # _check_size below judges the pixels decoded, not those declared
        opened = Image.open(source)
    with opened as image:
        width, height = image.size
        scale = draft_scale(width, height, size) if image.format == "JPEG" else 1
        _check_size(path, width, height, scale, image.format or "", nbytes)
        image.draft("RGB", _draft_request(width, height, size))  # JPEG only: scale by draft_scale
        return np.array(image.convert("RGB"))  # writable, for torch


@contextlib.contextmanager
def _without_pillows_bomb_check() -> Iterator[None]:
    """Pillow's limit on the declared size lifted (and its warning silenced) for ``Image.open``, which reads
    the header alone; restored after."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def pillow_square(path: str | Path, size: int = IMAGE_SIZE, draft: bool = True) -> np.ndarray:
    """The cache's version 1 decode, kept as the reference the faster path is measured against (tests, bench):
    Pillow (draft mode if ``draft``), Pillow's BILINEAR resize, the centre crop."""
    with Image.open(path) as image:
        width, height = image.size
        if draft:
            gap = 2 * size / min(width, height)
            image.draft("RGB", (math.ceil(width * gap), math.ceil(height * gap)))
        image = image.convert("RGB")
        width, height = image.size
        scale = size / min(width, height)
        new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        return np.asarray(image.crop((left, top, left + size, top + size)))
