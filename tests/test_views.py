"""The ten fixed views, random views and the cached dataset (paper section 4.1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from src.data.views import CachedViews, fixed_view, patch_offsets, random_view


def numbered_image(size: int = 8) -> np.ndarray:
    """(size, size, 3) uint8 whose pixel (r, c) holds r * size + c in every channel."""
    values = np.arange(size * size, dtype=np.uint8).reshape(size, size)
    return np.repeat(values[:, :, None], 3, axis=2)


def test_the_ten_views_are_corners_centre_and_their_mirrors() -> None:
    image = numbered_image(8)
    assert patch_offsets(8, 4) == [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]
    views = [fixed_view(image, v, 4) for v in range(10)]
    assert views[0][0, 0, 0] == 0 and views[1][0, 0, 0] == 4 and views[2][0, 0, 0] == 32
    assert views[3][0, 0, 0] == 36 and views[4][0, 0, 0] == 18
    for v in range(5):
        np.testing.assert_array_equal(views[v + 5], views[v][:, ::-1])
    assert len({v.tobytes() for v in views}) == 10  # all different
    # The paper's geometry: 224 patches of a 256 image, the centre one at (16, 16).
    assert patch_offsets(256, 224) == [(0, 0), (0, 32), (32, 0), (32, 32), (16, 16)]


def test_random_views_cover_every_offset_and_flip_half_the_time() -> None:
    image = numbered_image(8)
    generator = torch.Generator().manual_seed(0)
    offsets, flips = set(), 0
    for _ in range(500):
        patch = random_view(image, 4, generator)
        flipped = patch[0, 0, 0] > patch[0, -1, 0]
        flips += bool(flipped)
        top_left = int(patch[0, -1, 0] if flipped else patch[0, 0, 0])
        offsets.add(divmod(top_left, 8))
    assert offsets == {(r, c) for r in range(5) for c in range(5)}
    assert 200 < flips < 300


class FakeCache:
    """Just enough of an ImageCache for CachedViews."""

    def __init__(self, n: int, size: int = 8) -> None:
        self.images = np.stack([numbered_image(size) + i for i in range(n)])
        self.labels = np.arange(n) % 2
        self.image_size = size


def test_cached_views_modes() -> None:
    cache = FakeCache(4)
    indices = np.array([3, 1])
    ten = CachedViews(cache, indices, "ten", 4)
    assert len(ten) == 20
    image, label = ten[13]  # image 1 of the subset (cache index 1), view 3
    assert image.shape == (3, 4, 4) and image.dtype == torch.uint8 and label == 1
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), fixed_view(cache.images[1], 3, 4))
    stacked, label = CachedViews(cache, indices, "ten_crop", 4)[0]
    assert stacked.shape == (10, 3, 4, 4) and label == 1
    for v in range(10):
        np.testing.assert_array_equal(stacked[v].permute(1, 2, 0).numpy(), fixed_view(cache.images[3], v, 4))
    centre, _ = CachedViews(cache, indices, "centre", 4)[1]
    np.testing.assert_array_equal(centre.permute(1, 2, 0).numpy(), cache.images[1][2:6, 2:6])
    assert len(CachedViews(cache, indices, "random", 4)) == 2
    with pytest.raises(ValueError, match="views='five' is not known"):
        CachedViews(cache, indices, "five", 4)
    with pytest.raises(ValueError, match="crop_size=9 is larger than the cached images"):
        CachedViews(cache, indices, "ten", 9)
