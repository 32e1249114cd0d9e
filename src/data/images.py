"""Decode an image file to the paper's 256x256 RGB square (done once per image, by ``cache.py``).

Section 2: "we down-sampled the images to a fixed resolution of 256 x 256. Given a rectangular image, we first
rescaled the image such that the shorter side was of length 256, and then cropped out the central 256x256
patch". The 224x224 patches of section 4.1 are cut from the cached square by ``views.py``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SIZE = 256  # section 2

# A file whose header declares more pixels than this is refused as "too large" (~134 MP, e.g. 16384x8192):
# decoding a non-JPEG of that size takes ~400 MB as RGB. A 12000x9000 photo (108 MP) still decodes, JPEGs
# cheaply in draft mode. Pillow's own decompression-bomb check (2 x Image.MAX_IMAGE_PIXELS, ~179 MP by
# default) is reported as "too large" as well; its warning (above ~89 MP) is silenced, this limit replaces it.
MAX_PIXELS = 2**27
# JPEGs are decoded in draft mode, scaled by 1/2, 1/4 or 1/8 in the DCT domain, as long as the decoded
# image stays at least DRAFT_GAP times the size of the square's scaled image (Pillow's thumbnail does so).
DRAFT_GAP = 2


class ImageDecodeError(OSError):
    """A file that cannot be decoded to an image; ``reason`` says why, without the path."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"cannot decode image {path}: {reason}")
        self.path = str(path)
        self.reason = reason


def load_square_rgb(path: str | Path, size: int = IMAGE_SIZE) -> np.ndarray:
    """Decode ``path``, convert to RGB, scale the short side to ``size``, keep the centre square (section 2).

    Returns a uint8 array of shape (size, size, 3). Greyscale, palette, CMYK and RGBA images are converted
    (alpha is dropped); images smaller than ``size`` are scaled up. Large JPEGs are decoded at 1/2, 1/4 or
    1/8 scale when that still leaves at least ``DRAFT_GAP`` times the pixels needed (deterministic: same file,
    same bytes). A file that cannot be decoded, or declares more than ``MAX_PIXELS`` pixels, raises an
    ``ImageDecodeError`` (an ``OSError``) naming it.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(path)
        with opened as image:
            width, height = image.size
            if width < 1 or height < 1:
                raise ImageDecodeError(path, f"empty image ({width}x{height})")
            if width * height > MAX_PIXELS:
                raise ImageDecodeError(
                    path, f"too large: {width}x{height} = {width * height:,} pixels, limit {MAX_PIXELS:,}"
                )
            scale = DRAFT_GAP * size / min(width, height)
            image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))  # JPEG only
            image = image.convert("RGB")
            width, height = image.size
            scale = size / min(width, height)
            new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
            image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
            left, top = (new_w - size) // 2, (new_h - size) // 2
            image = image.crop((left, top, left + size, top + size))
            return np.array(image, dtype=np.uint8)  # a writable copy
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(path, f"too large: {error}") from error
    except UnidentifiedImageError as error:
        empty = Path(path).is_file() and Path(path).stat().st_size == 0
        reason = "empty file (0 bytes)" if empty else "not an image (Pillow cannot identify its format)"
        raise ImageDecodeError(path, reason) from error
    except (OSError, ValueError, SyntaxError, EOFError, IndexError) as error:
        raise ImageDecodeError(path, str(error) or type(error).__name__) from error
