"""The C core against its numpy reference, bit for bit, and its own contracts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.crypto.hazmat import native as N
from firmware.crypto.hazmat import reference as R
from firmware.errors import NativeError

EDGE_LENGTHS = [0, 1, 2, 3, 31, 32, 33, 63, 64, 65, 255, 256, 257, 1023, 1025, 4097, 32 * 37 + 5]


def _bytes(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, n, dtype=np.uint8)


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(20261121)


@pytest.mark.parametrize("n", EDGE_LENGTHS)
def test_keystream_matches_reference(rng, n):
    seed = _bytes(rng, N.CHAOS_SEEDBYTES)
    assert np.array_equal(N.keystream(seed, n), R.keystream(seed, n))


def test_keystream_is_a_stream_not_blocks(rng):
    """Reading 1000 bytes in odd-sized pieces gives the same bytes as one read."""
    seed = _bytes(rng, N.CHAOS_SEEDBYTES)
    st_ref = R.ChaosState(seed)
    pieces = np.concatenate([st_ref.keystream(k) for k in (1, 7, 250, 300, 442)])
    assert np.array_equal(pieces, N.keystream(seed, 1000))


@pytest.mark.parametrize("n", EDGE_LENGTHS)
def test_permutation_matches_reference_and_inverts(rng, n):
    seed = _bytes(rng, N.CHAOS_SEEDBYTES)
    data = _bytes(rng, n)
    t_c, t_r = N.perm_tables(seed, n), R.perm_tables(seed, n)
    assert np.array_equal(t_c, t_r)
    fwd = N.perm_apply(data, t_c)
    assert np.array_equal(fwd, R.perm_apply(data, t_r))
    assert np.array_equal(N.perm_apply(fwd, t_c, inverse=True), data)
    assert np.array_equal(R.perm_apply(fwd, t_r, inverse=True), data)
    assert sorted(fwd.tolist()) == sorted(data.tolist())  # a permutation moves, never changes, bytes


@pytest.mark.parametrize("direction", [0, 1])
@pytest.mark.parametrize("n", EDGE_LENGTHS)
def test_diffusion_matches_reference_and_inverts(rng, n, direction):
    seed, iv, data = _bytes(rng, N.CHAOS_SEEDBYTES), _bytes(rng, N.CELLBYTES), _bytes(rng, n)
    c = N.diffuse(data, seed, iv, direction)
    assert np.array_equal(c, R.diffuse(data, seed, iv, direction))
    assert np.array_equal(N.undiffuse(c, seed, iv, direction), data)
    assert np.array_equal(R.undiffuse(c, seed, iv, direction), data)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=0, max_size=3000), seed=st.binary(min_size=2368, max_size=2368))
def test_cipher_matches_reference_and_round_trips(data, seed):
    c = N.cipher_encrypt(data, seed)
    assert np.array_equal(c, R.cipher_encrypt(data, seed))
    assert N.cipher_decrypt(c, seed).tobytes() == data
    assert R.cipher_decrypt(c, seed).tobytes() == data


def test_cipher_on_image_shaped_arrays_is_zero_copy_input(rng):
    img = rng.integers(0, 256, (37, 41, 3), dtype=np.uint8)
    seed = _bytes(rng, N.CIPHER_SEEDBYTES)
    out = np.empty(img.size, dtype=np.uint8)
    res = N.cipher_encrypt(img, seed, out=out)
    assert res is out
    assert np.array_equal(out, R.cipher_encrypt(img, seed))
    assert np.array_equal(N.cipher_decrypt(out, seed).reshape(img.shape), img)


def test_one_changed_byte_changes_almost_every_byte(rng):
    """Diffusion reaches both directions: NPCR near the ideal 99.61 % wherever the change is."""
    seed = _bytes(rng, N.CIPHER_SEEDBYTES)
    data = _bytes(rng, 64 * 1024)
    base = N.cipher_encrypt(data, seed)
    for pos in (0, 1, 32 * 1024, 64 * 1024 - 1):
        other = data.copy()
        other[pos] ^= 0x80  # a top-bit-only difference is the hardest case for add/xor mixing
        npcr = float(np.mean(base != N.cipher_encrypt(other, seed))) * 100
        assert npcr > 99.4, (pos, npcr)


def test_different_keys_give_unrelated_ciphertexts(rng):
    data = _bytes(rng, 16384)
    s1 = _bytes(rng, N.CIPHER_SEEDBYTES)
    for where in (0, N.CHAOS_SEEDBYTES + 5, N.CIPHER_SEEDBYTES - 1):  # perm seed, keystream, backward IV
        s2 = s1.copy()
        s2[where] ^= 1
        assert np.mean(N.cipher_encrypt(data, s1) != N.cipher_encrypt(data, s2)) > 0.99, where


@pytest.mark.parametrize("n", EDGE_LENGTHS)
def test_xor_hamming_memeq(rng, n):
    a, b = _bytes(rng, n), _bytes(rng, n)
    assert np.array_equal(N.xor(a, b), R.xor(a, b))
    assert N.hamming(a, b) == R.hamming(a, b)
    assert N.memeq_ct(a, a.copy())
    if n:
        c = a.copy()
        c[-1] ^= 1
        assert not N.memeq_ct(a, c)
        assert N.hamming(a, c) == 1


def test_memeq_ct_lengths_differ():
    assert not N.memeq_ct(b"abc", b"abcd")


@settings(max_examples=80, deadline=None)
@given(dim=st.integers(1, 300), bits=st.integers(1, 300), seed=st.integers(0, 2**32 - 1))
def test_simhash_matches_reference(dim, bits, seed):
    rng = np.random.default_rng(seed)
    v = rng.integers(-32768, 32768, dim, dtype=np.int16)
    proj = rng.integers(-128, 128, (bits, dim), dtype=np.int8)
    assert np.array_equal(N.simhash(v, proj), R.simhash(v, proj))


def test_simhash_is_locality_sensitive(rng):
    """Near vectors share most bits; unrelated ones about half."""
    proj = rng.integers(-127, 128, (512, 192), dtype=np.int8)
    v = rng.normal(size=192)
    near = v + 0.05 * rng.normal(size=192)
    far = rng.normal(size=192)
    q = lambda x: np.round(x / np.linalg.norm(x) * 8191).astype(np.int16)  # noqa: E731
    h, hn, hf = (N.simhash(q(x), proj) for x in (v, near, far))
    assert N.hamming(h, hn) < 40
    assert 180 < N.hamming(h, hf) < 330


def test_bad_arguments_raise_native_error(rng):
    with pytest.raises(NativeError):
        N.keystream(b"short", 10)
    with pytest.raises(NativeError):
        N.cipher_encrypt(b"data", b"x" * 10)
    with pytest.raises(NativeError):
        N.diffuse(b"data", _bytes(rng, N.CHAOS_SEEDBYTES), b"short iv", 0)
    with pytest.raises(NativeError):
        N.diffuse(b"data", _bytes(rng, N.CHAOS_SEEDBYTES), _bytes(rng, 32), 2)
    with pytest.raises(NativeError):
        N.xor(b"ab", b"abc")
    with pytest.raises(NativeError):
        N.simhash(np.zeros(3, np.int16), np.zeros((4, 5), np.int8))
    with pytest.raises(NativeError):
        N.cipher_encrypt(b"abcd", _bytes(rng, N.CIPHER_SEEDBYTES), out=np.empty(3, np.uint8))


def test_c_rejects_overlapping_buffers(rng):
    """Checked in C itself, below the Python wrapper."""
    buf = _bytes(rng, 256)
    seed = _bytes(rng, N.CIPHER_SEEDBYTES)
    scratch = np.empty(N.lib.fl_perm_scratch_words(128), dtype=np.uint32)
    ffi = N.ffi
    rc = N.lib.fl_cipher_encrypt(
        ffi.from_buffer("uint8_t[]", buf[64:]), ffi.from_buffer("uint8_t[]", buf), 128,
        ffi.from_buffer("uint8_t[]", seed), seed.size, ffi.from_buffer("uint32_t[]", scratch), scratch.size,
    )
    assert rc == -1


def test_the_requested_build_is_the_one_loaded():
    """`make sanitize` points FACELOCK_NATIVE_LIB at the ASan build; make sure that is what runs."""
    import os

    wanted = os.environ.get("FACELOCK_NATIVE_LIB")
    if wanted:
        assert os.path.samefile(N.LOADED_FROM, wanted)
    else:
        assert "_facelock_native" in os.path.basename(N.LOADED_FROM)
