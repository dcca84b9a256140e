"""firmware.vision.imgops reproduces the OpenCV calls it replaces bit for bit (so accuracy cannot move)."""

from __future__ import annotations

import numpy as np
import pytest

from firmware.vision import imgops

cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def every_colour() -> np.ndarray:
    v = np.arange(1 << 24, dtype=np.uint32)
    rgb = np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], axis=1).astype(np.uint8)
    return rgb.reshape(4096, 4096, 3)


@pytest.mark.parametrize(("mine", "code"), [
    (imgops.rgb_to_gray, "COLOR_RGB2GRAY"),
    (imgops.rgb_to_ycrcb, "COLOR_RGB2YCrCb"),
    (imgops.rgb_to_hsv, "COLOR_RGB2HSV"),
])
def test_colour_conversions_match_opencv_on_every_colour(every_colour, mine, code):
    ref = cv2.cvtColor(every_colour, getattr(cv2, code))
    got = mine(every_colour)
    assert got.shape == ref.shape and got.dtype == ref.dtype
    assert np.array_equal(got, ref), f"{int((got != ref).sum())} values differ"


def test_pad_edge_matches_replicate_border():
    rng = np.random.default_rng(0)
    for shape, p in [((480, 640, 3), 160), ((7, 5, 3), 3), ((250, 250, 3), 62), ((9, 4), 2)]:
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        assert np.array_equal(imgops.pad_edge(img, p), cv2.copyMakeBorder(img, p, p, p, p, cv2.BORDER_REPLICATE))


def test_invert_affine_matches_opencv():
    rng = np.random.default_rng(1)
    for _ in range(500):
        m = rng.normal(0, 3, (2, 3))
        assert np.array_equal(imgops.invert_affine(m), cv2.invertAffineTransform(m))
    assert np.array_equal(imgops.invert_affine(np.zeros((2, 3))), cv2.invertAffineTransform(np.zeros((2, 3))))


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="uint8 RGB"):
        imgops.rgb_to_hsv(np.zeros((4, 4), np.uint8))
