"""Basic randomness tests of the chaotic keystream (where its quality ends is in the README).

These are the classic first-line tests (NIST SP 800-22 style monobit, runs,
byte chi-square, serial correlation).  Passing them says the stream has no
gross bias; it says nothing about cryptographic strength, which comes from
the AEAD that always seals the chaotic layer.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from firmware.crypto.hazmat import native as N

N_BYTES = 1 << 20


@pytest.fixture(scope="module", params=[1, 2, 3])
def stream(request) -> np.ndarray:
    seed = np.random.default_rng(request.param).integers(0, 256, N.CHAOS_SEEDBYTES, dtype=np.uint8)
    return N.keystream(seed, N_BYTES)


def test_monobit(stream):
    bits = np.unpackbits(stream)
    s = abs(int(bits.sum()) * 2 - bits.size) / math.sqrt(bits.size)
    p = math.erfc(s / math.sqrt(2))
    assert p > 1e-4


def test_runs(stream):
    bits = np.unpackbits(stream[: 1 << 17]).astype(np.int8)
    n = bits.size
    pi = bits.mean()
    runs = 1 + int(np.count_nonzero(bits[1:] != bits[:-1]))
    p = math.erfc(abs(runs - 2 * n * pi * (1 - pi)) / (2 * math.sqrt(2 * n) * pi * (1 - pi)))
    assert p > 1e-4


def test_byte_histogram_chi_square(stream):
    counts = np.bincount(stream, minlength=256)
    expected = stream.size / 256
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    # 255 degrees of freedom: mean 255, sd ~22.6; 6 sd is a p-value far below 1e-6.
    assert chi2 < 255 + 6 * math.sqrt(2 * 255)


@pytest.mark.parametrize("lag", [1, 4, 32, 256])
def test_serial_correlation(stream, lag):
    x = stream.astype(np.float64)
    r = np.corrcoef(x[:-lag], x[lag:])[0, 1]
    assert abs(r) < 6 / math.sqrt(x.size)


def test_lanes_are_not_copies(stream):
    """The 64 lanes of one block differ (no lane collapsed onto a fixed point)."""
    words = stream[: 256 * 64].view("<u4").reshape(64, 64)
    assert all(len(set(col.tolist())) > 60 for col in words.T)


@pytest.mark.parametrize("bit", [0, 7, 8 * 255, 8 * 256 + 3, 8 * 767 + 7])
def test_one_seed_bit_changes_half_the_stream(bit):
    """Key sensitivity: flipping any single seed bit changes ~50 % of keystream bits from the start."""
    seed = np.random.default_rng(9).integers(0, 256, N.CHAOS_SEEDBYTES, dtype=np.uint8)
    other = seed.copy()
    other[bit // 8] ^= 1 << (bit % 8)
    a, b = N.keystream(seed, 4096), N.keystream(other, 4096)
    frac = np.unpackbits(a ^ b).mean()
    assert 0.47 < frac < 0.53
