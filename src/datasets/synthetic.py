"""Synthetic "cats vs dogs": the project's offline stand-in for Kaggle Dogs vs Cats.

What it is
    Every image is a photograph-like scene: a smooth, low-frequency coloured background (dark or bright,
    hue independent of the class), a few small distractor blobs of random colour and shape, one large main
    object in the middle, mild shading and pixel noise. The main object (a disc or a randomly rotated square
    of the same area, chosen at random independently of the class: a nuisance) is painted with a *stripe
    grating*, soft-edged bright and dark stripes of one colour, whose stripes run either *horizontal* or
    *vertical*. Its colour is either *warm* (red to orange) or *cool* (cyan to blue), with hue, saturation,
    brightness, stripe period, stripe phase and stripe contrast jittered alike in both families.

    The class is an XOR of colour and stripe orientation::

        cat = (horizontal and warm) or (vertical and cool)
        dog = (horizontal and cool) or (vertical and warm)

    and the four (pattern, colour) combinations are equally frequent inside each class. Both orientations
    are unchanged by a left-right flip (the training augmentation), which is why they are horizontal and
    vertical and not the two diagonals (a flip would turn one diagonal into the other, and so flip the
    label).

Why an XOR of colour and stripe orientation
    Section 6.1 / figure 3 of Krizhevsky et al. (2012) report that one tower's first-layer kernels came out
    largely colour-agnostic (grey oriented edges) and the other's largely colour-specific. To ask that
    question on a small offline data set, the first layer must have a reason to learn both kinds of kernel,
    and the two cues here are exactly what conv1 kernels detect: a colour blob (warm vs cool) and an oriented
    grey-level edge (horizontal vs vertical stripes). Neither cue alone says anything about the class: the
    mean colour of an image (or of its object) is distributed alike in both classes, and a grey-level
    picture shows the stripe orientation but not the colour family, because warm and cool objects are drawn
    with the same luminance distribution (different directions in the CbCr plane at the same luma Y, same
    chroma magnitude; the stripes are a luma pattern, the colour family a chroma direction). Only a network
    that sees both colour and grey-level orientation can solve it.

    Version 1 used the object's outline (disc vs square of equal area) as the grey-level cue. AlexNet
    trained from scratch (SGD, lr 0.001, batch 32) did not learn disc vs square within a few epochs (still
    at chance after 140 steps even with the shape made 75 % predictive on its own), while a prototype with
    stripe orientation in its place learned the pure XOR in about 80 steps; so version 2 uses orientation.

Layout (the Kaggle Dogs-vs-Cats naming, labelled by file name)::

    <root>/train/cat.0.jpg, cat.1.jpg, ..., dog.0.jpg, ...
    <root>/test/cat.0.jpg, ..., dog.N.jpg
    <root>/DATASET.json          the generator's parameters and version

Images are RGB JPEGs (quality 90), at least ``image_size`` on the short side (short side drawn from
``image_size .. 1.25 * image_size``, aspect ratio up to 4:3, landscape or portrait), so the usual
resize + centre-crop step has work to do. The object stays well inside the central 224/256 region of a
centre crop, so random 224 crops keep most of it.

Generation is deterministic: image ``i`` of a split and class is drawn from its own numpy Generator seeded
with ``(seed, split, class, i)``, so it does not depend on how many other images are generated. The build goes
to a temporary sibling directory that is renamed to ``<root>`` only once complete.

CLI::

    python -m src.datasets.synthetic ROOT --train-per-class 800 --test-per-class 200 --seed 0 \
        [--image-size 256]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

from src.utils.console import say

__all__ = ["CLASSES", "SPLITS", "VERSION", "generate_dataset", "image_attributes", "render_image"]

VERSION = 2  # bump whenever the pixels change: an existing data set with the same manifest is reused
CLASSES = ("cat", "dog")
SPLITS = ("train", "test")
PATTERNS = ("horizontal", "vertical")  # stripe orientation: the grey-level cue
SHAPES = ("disc", "square")  # outlines of the object and the distractors: a nuisance, not a cue
COLOURS = ("warm", "cool")
JPEG_QUALITY = 90
MANIFEST = "DATASET.json"
_GENERATOR = "src.datasets.synthetic"

# Colour model: full-range YCbCr (the JPEG / ITU-R 601 one, the same luma PIL uses for "L").
# Warm (red..orange) and cool (cyan..blue) hue families are near-opposite directions in the CbCr plane;
# objects get the same luma range and chroma magnitude in both families, so grey level does not reveal the
# family.
_HUE_CENTRE = {"warm": np.deg2rad(122.0), "cool": np.deg2rad(312.0)}
_HUE_JITTER = np.deg2rad(20.0)
_OBJECT_LUMA = (0.40, 0.60)  # mean luma of the object; its stripes are this +- the stripe amplitude
_OBJECT_CHROMA = (0.17, 0.24)
_STRIPE_AMPLITUDE = (0.13, 0.17)  # luma of bright and dark stripes: mean +- this (contrast 0.26-0.34)
_STRIPE_PERIOD = (10 / 256, 20 / 256)  # stripe period as a fraction of the short side (10-20 px at 256)
_STRIPE_MIN_PERIOD = 4.0  # pixels: tiny images keep resolvable stripes
_STRIPE_GAIN = 2.5  # clip(gain * sin): a square wave with soft (a few pixels wide) edges
_OBJECT_DIAMETER = (0.30, 0.55)  # disc diameter as a fraction of the short side; the square has equal area
_CENTRAL_FRACTION = 224 / 256  # the object stays inside this central part of the (short side)^2 centre crop
_SQUARE_HALF_SIDE = np.sqrt(np.pi) / 4  # half side of the square whose area equals a unit-diameter disc


def image_attributes(cls: str, index: int) -> tuple[str, str]:
    """Return the hidden ``(pattern, colour)`` of image ``index`` of class ``cls``.

    ``pattern`` is the orientation of the stripes on the main object, ``"horizontal"`` or ``"vertical"``;
    both are unchanged by a left-right flip (the training augmentation), so flipping never changes the
    label. Patterns alternate with the index (even: horizontal, odd: vertical), and the colour follows from
    the XOR rule (cat = horizontal & warm or vertical & cool), so each class holds the four combinations in
    equal numbers (exactly, for an even count per class).
    """
    if cls not in CLASSES:
        raise ValueError(f"unknown class {cls!r}; expected one of {CLASSES}")
    pattern = PATTERNS[index % 2]
    warm = (cls == "cat") == (pattern == "horizontal")
    return pattern, COLOURS[0] if warm else COLOURS[1]


def _ycbcr_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """Full-range YCbCr (values in [0, 1], chroma centred on 0) to an (..., 3) RGB array, unclipped."""
    r = y + 1.402 * cr
    g = y - 0.344136 * cb - 0.714136 * cr
    b = y + 1.772 * cb
    return np.stack(np.broadcast_arrays(r, g, b), axis=-1)


def _smooth_field(rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray, amplitude: float) -> np.ndarray:
    """A smooth random (H, W) field: three plane waves of 0.3-1.5 cycles per short side, peak ~``amplitude``.

    ``xs`` is (1, W) and ``ys`` (H, 1); cos(u + v) = cos u cos v - sin u sin v keeps the trigonometry 1-D.
    """
    field = np.zeros((ys.shape[0], xs.shape[1]), dtype=np.float32)
    for _ in range(3):
        angle, freq, phase = rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 1.5), rng.uniform(0, 2 * np.pi)
        weight = np.float32(amplitude / 3 * rng.uniform(0.5, 1.5))
        u = np.float32(2 * np.pi * freq * np.cos(angle)) * xs
        v = np.float32(2 * np.pi * freq * np.sin(angle)) * ys + np.float32(phase)
        field += (weight * np.cos(v)) * np.cos(u) - (weight * np.sin(v)) * np.sin(u)
    return field


def _shape_alpha(
    xs: np.ndarray, ys: np.ndarray, shape: str, cx: float, cy: float, diameter: float, angle: float
) -> np.ndarray:
    """Anti-aliased coverage (0..1) of a disc of ``diameter`` or an equal-area square rotated by ``angle``.

    ``xs`` is (1, W) and ``ys`` (H, 1), pixel-centre coordinates. The edge is a one-pixel linear ramp.
    """
    dx, dy = xs - np.float32(cx), ys - np.float32(cy)
    if shape == "disc":
        dist = np.sqrt(dx * dx + dy * dy) - np.float32(diameter / 2)
    else:
        c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        u, v = np.abs(c * dx + s * dy), np.abs(c * dy - s * dx)
        dist = np.maximum(u, v) - np.float32(diameter * _SQUARE_HALF_SIDE)
    return np.clip(np.float32(0.5) - dist, 0, 1)


def _bbox(cx: float, cy: float, radius: float, width: int, height: int) -> tuple[slice, slice]:
    """Row and column slices of the pixels within ``radius`` (+1) of (cx, cy), clipped to the image."""
    x0, x1 = max(int(cx - radius) - 1, 0), min(int(cx + radius) + 2, width)
    y0, y1 = max(int(cy - radius) - 1, 0), min(int(cy + radius) + 2, height)
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def _random_object_colour(rng: np.random.Generator, colour: str) -> tuple[float, float, float]:
    """Draw (mean Y, Cb, Cr) for an object of the ``warm`` or ``cool`` family (same Y and chroma ranges)."""
    hue = _HUE_CENTRE[colour] + rng.uniform(-_HUE_JITTER, _HUE_JITTER)
    chroma = rng.uniform(*_OBJECT_CHROMA)
    return rng.uniform(*_OBJECT_LUMA), chroma * np.cos(hue), chroma * np.sin(hue)


def _stripes(
    rng: np.random.Generator, bx: np.ndarray, by: np.ndarray, pattern: str, short: int
) -> np.ndarray:
    """A soft square-wave grating in -1..1 over the object's box: ``horizontal`` stripes vary along y.

    ``bx`` is (1, w) and ``by`` (h, 1); the result broadcasts against (h, w). Period 10-20 px at a short side
    of 256 (scaled with the image), random phase, edges a few pixels wide (a clipped sine).
    """
    period = max(rng.uniform(*_STRIPE_PERIOD) * short, _STRIPE_MIN_PERIOD)
    phase = rng.uniform(0, 2 * np.pi)
    coord = by if pattern == "horizontal" else bx
    wave = np.sin(np.float32(2 * np.pi / period) * coord + np.float32(phase))
    return np.clip(np.float32(_STRIPE_GAIN) * wave, -1, 1)


def render_image(seed: int, split: str, cls: str, index: int, image_size: int = 256) -> np.ndarray:
    """Render image ``index`` of ``split``/``cls`` as an (H, W, 3) uint8 RGB array (before JPEG encoding).

    Every random draw comes from one Generator seeded with ``(seed, split, class, index)``.
    """
    pattern, colour = image_attributes(cls, index)
    rng = np.random.default_rng([seed, SPLITS.index(split), CLASSES.index(cls), index])

    # Size: short side image_size..1.25*image_size, aspect ratio 1..4/3, landscape or portrait.
    short = int(rng.integers(image_size, int(image_size * 1.25) + 1))
    long = int(round(short * rng.uniform(1.0, 4 / 3)))
    height, width = (long, short) if rng.random() < 0.5 else (short, long)
    xs = np.arange(width, dtype=np.float32)[None, :] + np.float32(0.5)
    ys = np.arange(height, dtype=np.float32)[:, None] + np.float32(0.5)
    xn, yn = xs / np.float32(short), ys / np.float32(short)  # coordinates in units of the short side

    # Background: dark or bright, low saturation, random hue, smooth low-frequency variation of all three.
    bg_luma = rng.uniform(0.04, 0.18) if rng.random() < 0.5 else rng.uniform(0.82, 0.96)
    bg_hue, bg_chroma = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.08)
    y = np.float32(bg_luma) + _smooth_field(rng, xn, yn, 0.06)
    cb = np.float32(bg_chroma * np.cos(bg_hue)) + _smooth_field(rng, xn, yn, 0.03)
    cr = np.float32(bg_chroma * np.sin(bg_hue)) + _smooth_field(rng, xn, yn, 0.03)
    img = _ycbcr_to_rgb(y, cb, cr)

    # Distractors: 0-3 small blobs of random colour and shape, anywhere (the object is painted over them).
    for _ in range(int(rng.integers(0, 4))):
        d = rng.uniform(0.05, 0.12) * short
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rows, cols = _bbox(cx, cy, d * 0.75, width, height)
        blob = SHAPES[int(rng.integers(2))]
        alpha = _shape_alpha(xs[:, cols], ys[rows], blob, cx, cy, d, rng.uniform(0, np.pi / 2))
        hue, chroma = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.2)
        rgb = _ycbcr_to_rgb(rng.uniform(0.2, 0.8), chroma * np.cos(hue), chroma * np.sin(hue))
        rgb = rgb.astype(np.float32)
        patch = img[rows, cols]
        patch += alpha[..., None] * (rgb - patch)

    # Main object: outline (disc or square, independent of the class), size, position (kept inside the
    # central 224/256 of the short-side centre crop, with a margin that does not depend on the outline),
    # rotation, colour, stripes (bright and dark luma around the object's mean, same chroma), and a mild
    # linear shading across it.
    shape = SHAPES[int(rng.integers(2))]
    d = rng.uniform(*_OBJECT_DIAMETER) * short
    reach = (_CENTRAL_FRACTION * short / 2 - d * _SQUARE_HALF_SIDE * np.sqrt(2)) * 0.8
    cx = width / 2 + rng.uniform(-reach, reach)
    cy = height / 2 + rng.uniform(-reach, reach)
    rows, cols = _bbox(cx, cy, d * 0.65, width, height)
    bx, by = xs[:, cols], ys[rows]
    alpha = _shape_alpha(bx, by, shape, cx, cy, d, rng.uniform(0, np.pi / 2))
    obj_y, obj_cb, obj_cr = _random_object_colour(rng, colour)
    stripes = np.float32(rng.uniform(*_STRIPE_AMPLITUDE)) * _stripes(rng, bx, by, pattern, short)
    light = rng.uniform(0, 2 * np.pi)
    shading = np.float32(rng.uniform(0.0, 0.08) / d) * (
        np.float32(np.cos(light)) * (bx - np.float32(cx)) + np.float32(np.sin(light)) * (by - np.float32(cy))
    )
    obj = _ycbcr_to_rgb(np.float32(obj_y) + shading + stripes, np.float32(obj_cb), np.float32(obj_cr))
    patch = img[rows, cols]
    patch += alpha[..., None] * (obj - patch)

    # Mild pixel noise (integers -9..9 on the 0-255 scale, std ~0.02, from raw random bytes: cheap), then
    # quantise, in place to keep allocations down.
    noise = np.frombuffer(rng.bytes(img.size), dtype=np.uint8).reshape(img.shape) % np.uint8(19)
    img *= np.float32(255)
    img += noise
    img += np.float32(0.5 - 9)
    return np.clip(img, 0, 255, out=img).astype(np.uint8)


def _write_image(pixels: np.ndarray, path: Path) -> None:
    """Encode an RGB uint8 array as a JPEG of quality 90."""
    Image.fromarray(pixels).save(path, format="JPEG", quality=JPEG_QUALITY)


def _manifest(train_per_class: int, test_per_class: int, image_size: int, seed: int) -> dict:
    """The parameters recorded in ``DATASET.json`` (a different manifest means a different data set)."""
    return {
        "generator": _GENERATOR,
        "version": VERSION,
        "classes": list(CLASSES),
        "train_per_class": train_per_class,
        "test_per_class": test_per_class,
        "image_size": image_size,
        "seed": seed,
        "jpeg_quality": JPEG_QUALITY,
        "rule": (
            "stripes on the object: cat = (horizontal & warm) | (vertical & cool); "
            "dog = (horizontal & cool) | (vertical & warm)"
        ),
    }


def _read_manifest(root: Path) -> dict | None:
    """The manifest of an existing generated data set, or None when ``root`` is not one of ours."""
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("generator") == _GENERATOR else None


def _swap_in(tmp: Path, root: Path, manifest: dict) -> None:
    """Rename the finished build ``tmp`` to ``root``, replacing an older generated data set there.

    The old data set is moved aside first (a directory cannot be renamed onto a non-empty one) and put back if
    the second rename fails. If another process finished the same data set first, its copy is kept.
    """
    if not root.exists():
        try:
            os.replace(tmp, root)
            return
        except OSError:
            if _read_manifest(root) == manifest:  # a concurrent build of the same data set won the race
                return
            raise
    old = root.absolute().with_name(f"{root.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(root, old)
    try:
        os.replace(tmp, root)
    except OSError:
        os.replace(old, root)
        raise
    shutil.rmtree(old, ignore_errors=True)


def generate_dataset(
    root: str | Path, train_per_class: int, test_per_class: int, *, image_size: int = 256, seed: int = 0
) -> Path:
    """Write the synthetic cats-vs-dogs data set to ``root`` and return ``root`` as a Path.

    Layout: ``root/train/{cat,dog}.{i}.jpg``, ``root/test/{cat,dog}.{i}.jpg`` and ``root/DATASET.json``.
    The same arguments always give byte-identical files. If ``root`` already holds a data set made by this
    generator with the same parameters, nothing is written; if it holds one with other parameters, it is
    replaced. The build happens in a temporary sibling directory renamed to ``root`` only when complete, so
    an interrupted build never leaves a partial ``root``.

    Raises:
        FileExistsError: ``root`` exists but is not a data set made by this generator (no DATASET.json).
        ValueError: a negative count or seed, or an image size below 8.
    """
    if train_per_class < 0 or test_per_class < 0 or seed < 0 or image_size < 8:
        raise ValueError("counts and seed must be >= 0 and image_size >= 8")
    root = Path(root)
    manifest = _manifest(train_per_class, test_per_class, image_size, seed)
    if root.exists():
        existing = _read_manifest(root) if root.is_dir() else None
        if existing is None:
            raise FileExistsError(
                f"{root} exists and is not a generated synthetic dataset (no {MANIFEST} from {_GENERATOR}); "
                "it will not be overwritten"
            )
        if existing == manifest:
            say(f"dataset at {root} is up to date")
            return root

    start = time.perf_counter()
    tmp = root.absolute().with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        counts = {"train": train_per_class, "test": test_per_class}
        for split in SPLITS:
            (tmp / split).mkdir(parents=True)
            for cls in CLASSES:
                for i in range(counts[split]):
                    pixels = render_image(seed, split, cls, i, image_size)
                    _write_image(pixels, tmp / split / f"{cls}.{i}.jpg")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _swap_in(tmp, root, manifest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = 2 * (train_per_class + test_per_class)
    say(f"wrote {total} images to {root} in {time.perf_counter() - start:.1f} s")
    return root


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m src.datasets.synthetic ROOT --train-per-class N --test-per-class M``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="output directory (created or replaced atomically)")
    parser.add_argument("--train-per-class", type=int, default=800)
    parser.add_argument("--test-per-class", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=256, help="minimum short side in pixels")
    args = parser.parse_args(argv)
    generate_dataset(
        args.root, args.train_per_class, args.test_per_class, image_size=args.image_size, seed=args.seed
    )


if __name__ == "__main__":
    main()
