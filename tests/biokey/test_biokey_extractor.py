"""The fuzzy extractor on generated embeddings (unit vectors with controlled angular noise)."""

from __future__ import annotations

import numpy as np
import pytest

from firmware.biokey import (
    BiokeyParams,
    HelperData,
    HelperDataError,
    InvalidEmbeddingError,
    WrongFaceError,
    enroll,
    extractor,
    quantize,
    reproduce,
)
from firmware.crypto.hazmat import reference

DIM = 128


def unit(rng, d=DIM):
    v = rng.standard_normal(d)
    return v / np.linalg.norm(v)


def at_cosine(rng, x, cos):
    z = rng.standard_normal(x.size)
    z -= z.dot(x) * x
    z /= np.linalg.norm(z)
    return cos * x + np.sqrt(1 - cos**2) * z


def test_same_face_regenerates_the_key():
    rng = np.random.default_rng(1)
    x = unit(rng)
    key, helper = enroll(x)
    assert len(key) == 32
    assert reproduce(x, helper) == key
    assert reproduce(at_cosine(rng, x, 0.8), helper) == key  # a close capture


def test_other_face_is_a_typed_error():
    rng = np.random.default_rng(2)
    key, helper = enroll(unit(rng))
    for _ in range(20):
        with pytest.raises(WrongFaceError):
            reproduce(unit(rng), helper)


def test_noise_sweep_is_monotone_and_separates():
    """Close captures regenerate, distant ones fail: the acceptance rate falls with the angle."""
    rng = np.random.default_rng(3)
    rates = []
    for cos in (0.85, 0.65, 0.2):
        ok = 0
        for _ in range(15):
            x = unit(rng)
            key, helper = enroll(x)
            try:
                ok += reproduce(at_cosine(rng, x, cos), helper) == key
            except WrongFaceError:
                pass
        rates.append(ok / 15)
    assert rates[0] == 1.0 and rates[2] == 0.0 and rates[0] >= rates[1] >= rates[2]


def test_each_enrollment_is_fresh_and_unlinkable():
    rng = np.random.default_rng(4)
    x = unit(rng)
    k1, h1 = enroll(x)
    k2, h2 = enroll(x)
    assert k1 != k2
    assert h1.seed != h2.seed and h1.salt != h2.salt and h1.offset != h2.offset
    # old helper data regenerates the old key only: renewal makes it useless for the new one
    assert reproduce(x, h1) == k1 != reproduce(x, h2)


def test_helper_round_trip_and_no_raw_embedding_inside():
    rng = np.random.default_rng(5)
    x = unit(rng).astype(np.float32)
    key, helper = enroll(x)
    raw = helper.to_bytes()
    again = HelperData.from_bytes(raw)
    assert reproduce(x, again) == key
    assert x.tobytes()[:16] not in raw and quantize(x).tobytes()[:16] not in raw
    assert key not in raw


@pytest.mark.parametrize("cut", [0, 10, 100, -1])
def test_truncated_helper_is_a_typed_error(cut):
    _, helper = enroll(unit(np.random.default_rng(6)))
    raw = helper.to_bytes()
    with pytest.raises(HelperDataError):
        HelperData.from_bytes(raw[:cut])


def test_bad_helper_fields_are_typed_errors():
    _, helper = enroll(unit(np.random.default_rng(7)))
    raw = bytearray(helper.to_bytes())
    bad_magic = b"XXXX" + bytes(raw[4:])
    with pytest.raises(HelperDataError, match="magic"):
        HelperData.from_bytes(bad_magic)
    bad_version = bytes(raw[:4]) + b"\x09" + bytes(raw[5:])
    with pytest.raises(HelperDataError, match="version"):
        HelperData.from_bytes(bad_version)


def test_flipped_offset_bits_break_the_key_not_silently():
    rng = np.random.default_rng(8)
    x = unit(rng)
    key, helper = enroll(x)
    off = bytearray(helper.offset)
    for i in range(0, len(off), 2):
        off[i] ^= 0xFF
    tampered = HelperData(helper.params, helper.dim, helper.seed, helper.salt, helper.check, helper.rows, bytes(off))
    with pytest.raises(WrongFaceError):
        reproduce(x, tampered)


@pytest.mark.parametrize(
    "bad", [np.zeros(DIM), np.full(DIM, np.nan), np.ones((2, DIM)), np.ones(4), np.array([np.inf] * DIM)]
)
def test_invalid_embeddings(bad):
    with pytest.raises(InvalidEmbeddingError):
        enroll(bad)


def test_dimension_mismatch_is_a_typed_error():
    _, helper = enroll(unit(np.random.default_rng(9)))
    with pytest.raises(InvalidEmbeddingError, match="enrollment used"):
        reproduce(unit(np.random.default_rng(10), 64), helper)


def test_native_simhash_agrees_with_reference():
    rng = np.random.default_rng(11)
    xq = quantize(unit(rng))
    W = extractor.projection(b"s" * 32, 64, DIM)
    from firmware.crypto.hazmat import native

    assert np.array_equal(native.simhash(xq, W), reference.simhash(xq, W))
    assert W.min() >= -127  # symmetric int8 projection


def test_custom_params():
    p = BiokeyParams(m=8, t=30, candidates=2)
    rng = np.random.default_rng(12)
    x = unit(rng)
    key, helper = enroll(x, p)
    assert HelperData.from_bytes(helper.to_bytes()).params == p
    assert reproduce(x, helper) == key


def test_reprs_do_not_show_template_material():
    """A HelperData or Candidate that ends up in a log line or traceback shows no template bytes."""
    import dataclasses

    from firmware.templates import Candidate

    rng = np.random.default_rng(11)
    x = unit(rng)
    _, helper = enroll(x)
    text = repr(helper)
    for secret in (helper.seed, helper.salt, helper.check, helper.offset):
        assert repr(secret)[2:20] not in text and secret.hex()[:16] not in text
    assert "rows=" not in text and "offset=" not in text
    cand = Candidate("u1", "ada", x[None].astype(np.float32))
    assert "embeddings" not in repr(cand) and f"{x[0]:.4f}"[:6] not in repr(cand)
    assert dataclasses.replace(cand).embeddings is cand.embeddings
