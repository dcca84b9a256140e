"""Corrupt, empty, huge, non-image and face-less inputs: typed errors or a quality reason, never a crash
and never a match."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from firmware.errors import FaceLockError
from firmware.vision import (
    Gallery,
    ImageDecodeError,
    ImageTooLargeError,
    InvalidImageError,
    decode_image,
    load_image,
)


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_round_trip_formats(astronaut):
    assert (decode_image(_png(astronaut)) == astronaut).all()
    grey = astronaut[..., 0]
    assert decode_image(_png(grey)).shape == (512, 512, 3)
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, format="PPM")  # PGM like the ORL set
    assert decode_image(buf.getvalue()).shape == (512, 512, 3)
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, format="GIF")  # like the Yale set
    assert decode_image(buf.getvalue()).shape == (512, 512, 3)


@pytest.mark.parametrize("data,err", [
    (b"", ImageDecodeError),
    (b"hello, this is text and not an image\n" * 10, ImageDecodeError),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, ImageDecodeError),
    ("not bytes", ImageDecodeError),
])
def test_undecodable_bytes(data, err):
    with pytest.raises(err):
        decode_image(data)


def test_truncated_and_corrupted_jpeg(astronaut):
    j = _jpeg(astronaut)
    with pytest.raises(ImageDecodeError):
        decode_image(j[: len(j) // 3])
    bad = bytearray(j)
    bad[2:40] = b"\xff" * 38  # smash the headers
    with pytest.raises(ImageDecodeError):
        decode_image(bytes(bad))


def test_huge_image_refused_before_decoding():
    big = _png(np.zeros((6000, 8000), np.uint8))  # 48 MP of black compresses to ~50 kB
    with pytest.raises(ImageTooLargeError):
        decode_image(big)
    with pytest.raises(ImageTooLargeError):
        decode_image(b"\x00" * (65 * 1024 * 1024))


def test_files(tmp_path, astronaut):
    with pytest.raises(ImageDecodeError, match="no such file"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageDecodeError, match="directory"):
        load_image(tmp_path)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty.jpg"):
        load_image(tmp_path / "empty.jpg")
    (tmp_path / "ok.png").write_bytes(_png(astronaut))
    assert load_image(tmp_path / "ok.png").shape == (512, 512, 3)


@pytest.mark.parametrize("arr", [
    np.zeros((480, 640, 3), np.float32),
    np.zeros((480, 640, 2), np.uint8),
    np.zeros((480,), np.uint8),
    np.zeros((8, 8, 3), np.uint8),
    np.zeros((0, 640, 3), np.uint8),
    [[1, 2, 3]],
    None,
])
def test_bad_arrays_raise_typed_errors(pipeline, arr):
    with pytest.raises(InvalidImageError):
        pipeline.process(arr)


def test_huge_array_refused(pipeline):
    arr = np.lib.stride_tricks.as_strided(np.zeros(3, np.uint8), shape=(8000, 6000, 3), strides=(0, 0, 1))
    with pytest.raises(ImageTooLargeError):
        pipeline.process(arr)


def test_grey_and_rgba_arrays_are_accepted(pipeline, astronaut):
    assert pipeline.process(astronaut[..., 0].copy()).ok
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    assert pipeline.process(rgba).ok


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=2048))
def test_random_bytes_never_crash(data):
    try:
        decode_image(data)
    except FaceLockError:
        pass


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.integers(16, 700), st.integers(16, 700), st.integers(0, 2**32 - 1))
def test_noise_frames_give_a_reason_not_a_match(pipeline, h, w, seed):
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    res = pipeline.process(img)
    g = Gallery()
    g.enroll("someone", [np.eye(192, dtype=np.float32)[0]])
    if res.ok:  # a face-like blob passed every gate: it still must not match an enrolled face
        assert not g.match(res.embedding, pipeline.threshold("unlock")).accepted
    else:
        assert res.embedding is None and res.reason.describe()
