"""The image container: round trips, and every kind of bad input gets a typed error."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from firmware.crypto import container as C
from firmware.crypto.errors import (
    AuthenticationError,
    ContainerFormatError,
    CryptoError,
    ImageDecodeError,
    UnsupportedVersionError,
    WrongKeyError,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))

DTYPES = st.sampled_from([np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64])


def _png(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arr=hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=9)),
       aead=st.sampled_from(sorted(C.AEADS)))
def test_array_round_trip(arr, aead):
    token = C.seal_array(KEY, arr, aead=aead, metadata={"camera": "replay"})
    opened = C.open_(KEY, token)
    assert opened.array is not None and opened.data is None
    assert opened.array.shape == arr.shape
    assert opened.array.dtype == arr.dtype.newbyteorder("<") or opened.array.dtype == arr.dtype
    np.testing.assert_array_equal(opened.array, arr)
    assert opened.metadata == {"camera": "replay"}


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_file_round_trip_is_bit_exact(fmt):
    rng = np.random.default_rng(1)
    data = _png(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), fmt)
    token = C.seal_file_bytes(KEY, data)
    opened = C.open_(KEY, token)
    assert opened.data == data
    assert opened.metadata["image"]["format"] == fmt
    assert opened.metadata["image"]["width"] == 64


def test_same_image_twice_gives_unrelated_tokens():
    arr = np.zeros((32, 32, 3), np.uint8)
    a, b = C.seal_array(KEY, arr), C.seal_array(KEY, arr)
    ha = C.read_header(a)
    assert ha.salt != C.read_header(b).salt and ha.nonce != C.read_header(b).nonce
    body_a, body_b = np.frombuffer(a[ha.length :], np.uint8), np.frombuffer(b[ha.length :], np.uint8)
    assert np.mean(body_a != body_b) > 0.99


def test_token_hides_the_image():
    """The body of a sealed flat image looks like noise (entropy near 8 bits/byte)."""
    from provisioning.crypto_analysis import entropy

    token = C.seal_array(KEY, np.full((128, 128, 3), 7, np.uint8))
    assert entropy(np.frombuffer(token[C.read_header(token).length :], np.uint8)) > 7.99


def test_not_an_image_is_refused():
    with pytest.raises(ImageDecodeError):
        C.seal_file_bytes(KEY, b"this is not an image at all")
    with pytest.raises(ImageDecodeError):
        C.seal_file_bytes(KEY, _png(np.zeros((8, 8), np.uint8))[:40])  # truncated PNG


def test_bad_keys_and_options():
    with pytest.raises(CryptoError):
        C.seal_array(b"short", np.zeros(3, np.uint8))
    with pytest.raises(CryptoError):
        C.seal_array(KEY, np.zeros(3, np.uint8), aead="rot13")
    with pytest.raises(CryptoError):
        C.seal_array(KEY, np.zeros(3, np.complex64))
    with pytest.raises(CryptoError):
        C.seal_array(KEY, np.zeros((1, 1, 1, 1, 1), np.uint8))


def test_wrong_key_is_named():
    token = C.seal_array(KEY, np.arange(10, dtype=np.uint8))
    with pytest.raises(WrongKeyError):
        C.open_(OTHER_KEY, token)
    with pytest.raises(AuthenticationError):  # caller-managed key ids: the tag catches it
        C.open_with_key_id(OTHER_KEY, token)


def test_unknown_version_and_algorithms():
    token = bytearray(C.seal_array(KEY, np.arange(10, dtype=np.uint8)))
    for offset, value, err in [(4, 2, UnsupportedVersionError), (5, 9, UnsupportedVersionError),
                               (6, 9, UnsupportedVersionError), (7, 5, ContainerFormatError),
                               (0, ord("X"), ContainerFormatError)]:
        bad = bytearray(token)
        bad[offset] = value
        with pytest.raises(err):
            C.open_(KEY, bytes(bad))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_single_byte_change_is_rejected(data):
    token = C.seal_array(KEY, np.arange(300, dtype=np.uint16).reshape(20, 15), metadata={"k": 1})
    pos = data.draw(st.integers(0, len(token) - 1))
    delta = data.draw(st.integers(1, 255))
    bad = bytearray(token)
    bad[pos] ^= delta
    with pytest.raises(CryptoError):
        C.open_(KEY, bytes(bad))


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(0, 10_000))
def test_truncation_and_trailing_bytes_are_rejected(cut):
    token = C.seal_array(KEY, np.ones((40, 40, 3), np.uint8))
    cut %= len(token)
    with pytest.raises(ContainerFormatError):
        C.open_(KEY, token[:cut])
    with pytest.raises(ContainerFormatError):
        C.open_(KEY, token + b"\0" * (1 + cut % 7))


def test_declared_shape_cannot_force_a_huge_allocation():
    token = bytearray(C.seal_array(KEY, np.zeros(16, np.uint8)))
    hdr = C.read_header(token)
    off = C._FIXED.size
    assert hdr.shape == (16,)
    token[off : off + 4] = struct.pack(">I", 0xFFFFFFFF)
    with pytest.raises(ContainerFormatError):
        C.open_(KEY, bytes(token))


@settings(max_examples=300, deadline=None)
@given(blob=st.binary(max_size=400))
def test_garbage_gives_typed_errors_only(blob):
    with pytest.raises(CryptoError):
        C.open_(KEY, blob)
    with pytest.raises(CryptoError):
        C.open_(KEY, b"FLKC\x01\x01\x01\x00" + blob)


def test_decrypt_never_returns_partial_plaintext(monkeypatch):
    """A failed tag check returns nothing: the chaotic layer is never even run."""
    from firmware.crypto.hazmat import native

    calls = []
    monkeypatch.setattr(native, "cipher_decrypt", lambda *a, **k: calls.append(1))
    token = bytearray(C.seal_array(KEY, np.zeros(64, np.uint8)))
    token[-1] ^= 1
    with pytest.raises(AuthenticationError):
        C.open_(KEY, bytes(token))
    assert calls == []


def test_large_frame_round_trip():
    frame = np.random.default_rng(3).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert np.array_equal(C.open_(KEY, C.seal_array(KEY, frame)).array, frame)
