"""Decode an image file to the paper's 256x256 RGB square, and cut the paper's 224x224 patches from it.

Section 2: "we down-sampled the images to a fixed resolution of 256 x 256. Given a rectangular image, we first
rescaled the image such that the shorter side was of length 256, and then cropped out the central 256x256
patch". Section 4.1: training uses random 224x224 patches and their horizontal reflections; testing the
centre patch (ten-crop testing comes with the offline cache).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SIZE = 256  # section 2
CROP_SIZE = 224  # section 4.1


def load_square_rgb(path: str | Path, size: int = IMAGE_SIZE) -> np.ndarray:
    """Decode ``path``, convert to RGB, scale the short side to ``size``, keep the centre square.

    Returns a uint8 array of shape (size, size, 3). Greyscale, palette, CMYK and RGBA images are converted;
    a file that cannot be decoded raises an ``OSError`` naming it.
    """
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            width, height = image.size
            scale = size / min(width, height)
            new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
            image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
            left, top = (new_w - size) // 2, (new_h - size) // 2
            image = image.crop((left, top, left + size, top + size))
            return np.array(image, dtype=np.uint8)  # a writable copy
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise OSError(f"cannot decode image {path}: {error}") from error


def random_crop_flip(image: torch.Tensor, crop: int = CROP_SIZE) -> torch.Tensor:
    """A random ``crop`` x ``crop`` patch of a (3, H, W) image, mirrored left-right with probability 1/2."""
    _, height, width = image.shape
    top = int(torch.randint(0, height - crop + 1, ()))
    left = int(torch.randint(0, width - crop + 1, ()))
    patch = image[:, top : top + crop, left : left + crop]
    if torch.rand(()) < 0.5:
        patch = patch.flip(-1)
    return patch


def centre_crop(image: torch.Tensor, crop: int = CROP_SIZE) -> torch.Tensor:
    """The central ``crop`` x ``crop`` patch of a (3, H, W) image."""
    _, height, width = image.shape
    top, left = (height - crop) // 2, (width - crop) // 2
    return image[:, top : top + crop, left : left + crop]


class ImageFileDataset(torch.utils.data.Dataset):
    """Image files decoded on the fly; items are ``(uint8 tensor (3, crop, crop), label)``.

    ``train=True`` gives random crops and flips, else the centre crop. Float conversion and mean
    subtraction happen batch-wise on the model's device (see ``ImageDataModule.on_after_batch_transfer``).
    """

    def __init__(
        self,
        paths: list[Path],
        labels: list[int],
        train: bool,
        image_size: int = IMAGE_SIZE,
        crop_size: int = CROP_SIZE,
    ) -> None:
        if crop_size > image_size:
            raise ValueError(f"data.crop_size={crop_size} is larger than data.image_size={image_size}")
        self.paths = paths
        self.labels = labels
        self.train = train
        self.image_size = image_size
        self.crop_size = crop_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        square = torch.from_numpy(load_square_rgb(self.paths[index], self.image_size)).permute(2, 0, 1)
        crop = random_crop_flip if self.train else centre_crop
        return crop(square, self.crop_size).contiguous(), self.labels[index]
