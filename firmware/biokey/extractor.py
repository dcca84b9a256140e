"""Fuzzy extractor: a stable 32-byte key from a noisy face embedding (code-offset construction).

Enrollment (embedding x, fresh randomness every time):

1. x is L2-normalised and quantised to int16 (x * 32767).
2. A per-enrollment seed expands (SHAKE-256) into ``candidates * n`` random
   int8 projection rows.  The ``n`` rows with the largest |w.x| are kept:
   those bits are the ones a small change of the face is least likely to flip
   ("reliable bit selection"), which is what lets a code of useful dimension
   absorb genuine noise while impostors stay near 50 % disagreement.
3. The native SimHash (``sign(W x)``, packed) gives an n-bit string b.
4. A random codeword c of a BCH(n, k, t) code is drawn; the helper data
   stores ``b XOR c`` (the offset), the seed and the selected row indices.
5. key = HKDF-SHA256(c, salt, "facelock biokey v1"); a separate HKDF output
   is kept as a check value so a failed regeneration is a clear error and not
   a silently wrong key.

Verification recomputes b' from the probe with the same rows,
decodes ``b' XOR offset`` to the nearest codeword and re-derives the key: it
succeeds iff the probe's bits differ from the enrolled bits in at most about
t places.  A new enrollment draws a new seed, codeword and salt, so old helper
data is useless for the new key (renewable, unlinkable across enrollments).

Leakage (see README "Keys and templates"): the offset leaks n-k bits about b
and the row selection leaks the axis of x, so helper data must itself be kept
encrypted at rest (the template store does that).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from firmware.biokey.bch import bch_code
from firmware.biokey.errors import HelperDataError, InvalidEmbeddingError, WrongFaceError
from firmware.crypto.hazmat import native

KEY_BYTES = 32
QSCALE = 32767
_MAGIC = b"FLBK"
_VERSION = 1
_HEAD = struct.Struct(">4sBBHHH32s16s16s")  # magic ver m t dim candidates seed salt check
_INFO_KEY = b"facelock biokey v1"
_INFO_CHECK = b"facelock biokey check v1"


@dataclass(frozen=True)
class BiokeyParams:
    """Code and projection sizes.  Defaults calibrated in README "Keys and templates"."""

    m: int = 9  # BCH length n = 2^m - 1 = 511 bits
    # corrects up to t bit errors (15.9 % of n); k = 76 information bits (the same code as t = 64..84,
    # a wider decoding radius).  Chosen on a held-out split (README "Keys and templates"); an existing
    # enrollment keeps the t stored in its helper data until re-enrolled.
    t: int = 81
    candidates: int = 4  # projection rows drawn per kept row

    @property
    def n(self) -> int:
        return (1 << self.m) - 1


@dataclass(frozen=True)
class HelperData:
    """Public-ish per-enrollment data (keep it encrypted at rest anyway; see module doc)."""

    params: BiokeyParams
    dim: int
    # repr=False: a logged or printed HelperData must not show what it leaks about the template
    seed: bytes = field(repr=False)
    salt: bytes = field(repr=False)
    check: bytes = field(repr=False)
    rows: np.ndarray = field(repr=False)  # uint16 indices of the kept projection rows, length n
    offset: bytes = field(repr=False)  # packed (n bits, MSB first) enrolled bits XOR codeword

    def to_bytes(self) -> bytes:
        p = self.params
        head = _HEAD.pack(_MAGIC, _VERSION, p.m, p.t, self.dim, p.candidates, self.seed, self.salt, self.check)
        return head + self.rows.astype(">u2").tobytes() + self.offset

    @classmethod
    def from_bytes(cls, raw: bytes) -> HelperData:
        if len(raw) < _HEAD.size:
            raise HelperDataError("helper data truncated")
        magic, ver, m, t, dim, cand, seed, salt, check = _HEAD.unpack_from(raw)
        if magic != _MAGIC:
            raise HelperDataError("not FaceLock helper data (bad magic)")
        if ver != _VERSION:
            raise HelperDataError(f"helper data version {ver} unsupported (this build reads {_VERSION})")
        try:
            params = BiokeyParams(m=m, t=t, candidates=cand)
            bch_code(m, t)
        except ValueError as exc:
            raise HelperDataError(f"helper data has invalid code parameters: {exc}") from None
        n = params.n
        nbytes = (n + 7) // 8
        if len(raw) != _HEAD.size + 2 * n + nbytes or dim < 1 or cand < 1:
            raise HelperDataError("helper data length does not match its parameters")
        rows = np.frombuffer(raw, dtype=">u2", count=n, offset=_HEAD.size).astype(np.int64)
        if rows.max(initial=0) >= cand * n or np.unique(rows).size != n:
            raise HelperDataError("helper data row indices out of range")
        return cls(params, dim, seed, salt, check, rows, raw[_HEAD.size + 2 * n :])


def quantize(embedding: np.ndarray) -> np.ndarray:
    """L2-normalise and scale to int16 (the native SimHash input)."""
    v = np.asarray(embedding, dtype=np.float64)
    if v.ndim != 1 or v.size < 8 or v.size > 65535:
        raise InvalidEmbeddingError(f"an embedding must be a 1-D vector of 8..65535 values, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise InvalidEmbeddingError("embedding has non-finite values")
    norm = float(np.linalg.norm(v))
    if norm == 0.0:
        raise InvalidEmbeddingError("embedding is all zeros")
    return np.round(v / norm * QSCALE).astype(np.int16)


def projection(seed: bytes, rows: int, dim: int) -> np.ndarray:
    """``rows x dim`` int8 matrix expanded from ``seed`` (uniform in -127..127; stable across numpy versions)."""
    raw = np.frombuffer(hashlib.shake_256(b"facelock biokey projection v1" + seed).digest(rows * dim), np.int8)
    m = raw.reshape(rows, dim).copy()
    m[m == -128] = -127  # keep the distribution symmetric
    return m


def _bits(packed: np.ndarray, n: int) -> np.ndarray:
    return np.unpackbits(packed)[:n]


def _derive(codeword: np.ndarray, salt: bytes, info: bytes, length: int) -> bytes:
    return HKDF(hashes.SHA256(), length, salt, info).derive(np.packbits(codeword).tobytes())


def select_rows(xq: np.ndarray, seed: bytes, params: BiokeyParams) -> tuple[np.ndarray, np.ndarray]:
    """(sorted indices, int8 rows) of the n projection rows with the largest |w.x| ("reliable bits").

    Depends on the seed, n and ``candidates`` but not on t, which is what lets an evaluation measure
    every t from one enrollment.
    """
    n = params.n
    W = projection(seed, params.candidates * n, xq.size)
    strength = np.abs(W.astype(np.int64) @ xq.astype(np.int64))
    rows = np.sort(np.argsort(-strength, kind="stable")[:n])
    return rows, W[rows]


def enroll(embedding: np.ndarray, params: BiokeyParams | None = None) -> tuple[bytes, HelperData]:
    """(biometric key, helper data) for one enrollment; every call uses fresh randomness."""
    p = params or BiokeyParams()
    code = bch_code(p.m, p.t)
    xq = quantize(embedding)
    dim, n = xq.size, p.n
    seed = secrets.token_bytes(32)
    salt = secrets.token_bytes(16)
    rows, W = select_rows(xq, seed, p)
    b = _bits(native.simhash(xq, W), n)
    message = np.frombuffer(secrets.token_bytes(code.k), np.uint8) & 1
    c = code.encode(message)
    offset = np.packbits(b ^ c).tobytes()
    key = _derive(c, salt, _INFO_KEY, KEY_BYTES)
    check = _derive(c, salt, _INFO_CHECK, 16)
    return key, HelperData(p, dim, seed, salt, check, rows.astype(np.int64), offset)


def probe_bits(embedding: np.ndarray, helper: HelperData) -> np.ndarray:
    """The probe's n selected SimHash bits under this enrollment's projection."""
    xq = quantize(embedding)
    if xq.size != helper.dim:
        raise InvalidEmbeddingError(f"embedding has {xq.size} values, the enrollment used {helper.dim}")
    W = projection(helper.seed, helper.params.candidates * helper.params.n, helper.dim)
    return _bits(native.simhash(xq, W[helper.rows]), helper.params.n)


def distance(embedding: np.ndarray, helper: HelperData) -> int:
    """Bit errors between the probe and the enrollment as the decoder sees them (only for evaluation)."""
    code = bch_code(helper.params.m, helper.params.t)
    word = probe_bits(embedding, helper) ^ _bits(np.frombuffer(helper.offset, np.uint8), helper.params.n)
    c = code.decode(word)
    if c is None:
        return helper.params.n
    return int(np.count_nonzero(c ^ word))


def reproduce(embedding: np.ndarray, helper: HelperData) -> bytes:
    """Regenerate the biometric key from a probe embedding, or raise WrongFaceError."""
    p = helper.params
    code = bch_code(p.m, p.t)
    word = probe_bits(embedding, helper) ^ _bits(np.frombuffer(helper.offset, np.uint8), p.n)
    c = code.decode(word)
    if c is None or not hmac.compare_digest(_derive(c, helper.salt, _INFO_CHECK, 16), helper.check):
        raise WrongFaceError("this face does not regenerate the enrolled biometric key")
    return _derive(c, helper.salt, _INFO_KEY, KEY_BYTES)
