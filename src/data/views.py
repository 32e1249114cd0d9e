"""The 224x224 views of a cached 256x256 image (paper section 4.1), as index arithmetic on the cache.

Training, section 4.1: "extracting random 224x224 patches (and their horizontal reflections) from the 256x256
images" (``random``). A Dogs vs Cats reproduction instead fixed the views offline: the four corner patches
and the centre patch, each also mirrored (``ten``), so an epoch shows every image ten times. Storing the
256x256 image once and cutting the view when it is read gives exactly that set at a fifth of the disk.
``centre`` as training views is no augmentation at all (``debug=overfit``: the same inputs every epoch).

Testing, section 4.1: "the network makes a prediction by extracting five 224x224 patches (the four corner
patches and the center patch) as well as their horizontal reflections (hence ten patches in all), and
averaging the predictions made by the network's softmax layer on the ten patches" (``ten_crop``: one item is
all ten views, stacked); ``centre`` is the centre patch alone.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from src.data.cache import ImageCache

TRAIN_VIEWS = ("random", "ten", "centre")
EVAL_VIEWS = ("ten", "centre")
VIEWS_PER_IMAGE = 10
PATCH_NAMES = ("top_left", "top_right", "bottom_left", "bottom_right", "centre")


def patch_offsets(image_size: int, crop: int) -> list[tuple[int, int]]:
    """(top, left) of the four corner patches and the centre patch, in ``PATCH_NAMES`` order."""
    far, mid = image_size - crop, (image_size - crop) // 2
    return [(0, 0), (0, far), (far, 0), (far, far), (mid, mid)]


def fixed_view(image: np.ndarray, view: int, crop: int) -> np.ndarray:
    """View ``view`` (0..9) of an (S, S, 3) image: patch ``view % 5``, mirrored when ``view >= 5``."""
    top, left = patch_offsets(image.shape[0], crop)[view % 5]
    patch = image[top : top + crop, left : left + crop]
    return patch[:, ::-1] if view >= 5 else patch


def random_view(image: np.ndarray, crop: int, generator: torch.Generator | None = None) -> np.ndarray:
    """A random ``crop`` patch of an (S, S, 3) image, mirrored with probability 1/2."""
    size = image.shape[0]
    top, left = (int(v) for v in torch.randint(0, size - crop + 1, (2,), generator=generator))
    patch = image[top : top + crop, left : left + crop]
    return patch[:, ::-1] if torch.rand((), generator=generator) < 0.5 else patch


def to_chw(patch: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> contiguous (3, H, W) uint8 tensor (one copy)."""
    return torch.from_numpy(np.ascontiguousarray(patch.transpose(2, 0, 1)))


class CachedViews(Dataset):
    """Views of the cached images ``indices``; items are ``(uint8 tensor, label)``.

    ``views``: ``random`` and ``centre`` give one (3, crop, crop) view per image; ``ten`` as a training set
    gives ten items per image (item ``i`` is view ``i % 10`` of image ``i // 10``); ``ten_crop`` gives one
    item per image holding all ten views, (10, 3, crop, crop), for averaging at test time.
    """

    MODES = ("random", "ten", "centre", "ten_crop")

    def __init__(self, cache: ImageCache, indices: np.ndarray, views: str, crop_size: int) -> None:
        if views not in self.MODES:
            raise ValueError(f"views={views!r} is not known; choose one of {', '.join(self.MODES)}")
        if crop_size > cache.image_size:
            raise ValueError(
                f"data.crop_size={crop_size} is larger than the cached images ({cache.image_size})"
            )
        self.cache = cache
        self.indices = np.asarray(indices, dtype=np.int64)
        self.views = views
        self.crop_size = crop_size

    def __len__(self) -> int:
        return len(self.indices) * (VIEWS_PER_IMAGE if self.views == "ten" else 1)

    def image_index(self, item: int) -> int:
        return int(self.indices[item // VIEWS_PER_IMAGE if self.views == "ten" else item])

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        index = self.image_index(item)
        image = self.cache.images[index]
        label = int(self.cache.labels[index])
        if self.views == "random":
            return to_chw(random_view(image, self.crop_size)), label
        if self.views == "centre":
            return to_chw(fixed_view(image, 4, self.crop_size)), label
        if self.views == "ten":
            return to_chw(fixed_view(image, item % VIEWS_PER_IMAGE, self.crop_size)), label
        views = [to_chw(fixed_view(image, v, self.crop_size)) for v in range(VIEWS_PER_IMAGE)]
        return torch.stack(views), label
