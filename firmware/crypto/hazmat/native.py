"""Zero-copy Python bindings of the C core (firmware._facelock_native).

Inputs may be bytes, bytearray, memoryview or C-contiguous numpy arrays of any
dtype (viewed as bytes); nothing is copied on the way in.  Outputs are fresh
uint8 numpy arrays unless an ``out`` array is given.  A -1 from C means the
arguments were wrong, which is a bug in the caller: it raises NativeError.

Set FACELOCK_NATIVE_LIB to the path of another build of the module (e.g. the
ASan/UBSan build of ``make sanitize``) to load that one instead.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import os
from typing import Any

import numpy as np

from firmware.errors import NativeError, NativeUnavailableError

Buffer = Any  # bytes-like or numpy array


def _load() -> tuple[Any, Any, str]:
    path = os.environ.get("FACELOCK_NATIVE_LIB")
    try:
        if path:
            spec = importlib.util.spec_from_file_location("firmware._facelock_native", path)
            if spec is None or spec.loader is None:
                raise ImportError(path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        else:
            from firmware import _facelock_native as mod  # type: ignore[attr-defined]
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise NativeUnavailableError(
            f"the native module is not built ({exc}); run `make install` or `pip install -e .`"
        ) from exc
    return mod.ffi, mod.lib, mod.__file__


ffi, lib, LOADED_FROM = _load()

CHAOS_LANES: int = lib.FL_CHAOS_LANES
CHAOS_BLOCKBYTES: int = lib.FL_CHAOS_BLOCKBYTES
CHAOS_SEEDBYTES: int = lib.FL_CHAOS_SEEDBYTES
CHAOS_WARMUP: int = lib.FL_CHAOS_WARMUP
CELLBYTES: int = lib.FL_CELLBYTES
CIPHER_SEEDBYTES: int = lib.FL_CIPHER_SEEDBYTES


def as_bytes_view(buf: Buffer) -> np.ndarray:
    """A flat uint8 view of ``buf`` without copying (copies only non-contiguous arrays)."""
    if isinstance(buf, np.ndarray):
        arr = np.ascontiguousarray(buf)
        return arr.reshape(-1).view(np.uint8)
    return np.frombuffer(buf, dtype=np.uint8)


def _in(arr: np.ndarray) -> Any:
    return ffi.from_buffer("uint8_t[]", arr)


def _out(n: int, out: np.ndarray | None) -> np.ndarray:
    if out is None:
        return np.empty(n, dtype=np.uint8)
    if out.dtype != np.uint8 or out.ndim != 1 or out.size != n or not out.flags.c_contiguous:
        raise NativeError(f"out must be a contiguous uint8 array of {n} bytes")
    return out


def _check(rc: int, what: str) -> None:
    if rc != 0:
        raise NativeError(f"{what}: the native core rejected its arguments")


def _seed(seed: Buffer, n: int, what: str) -> np.ndarray:
    s = as_bytes_view(seed)
    if s.size != n:
        raise NativeError(f"{what}: seed must be {n} bytes, got {s.size}")
    return s


def _state(seed: Buffer) -> Any:
    st = ffi.new("fl_chaos_state *")
    s = _seed(seed, CHAOS_SEEDBYTES, "chaos state")
    _check(lib.fl_chaos_init(st, _in(s), s.size), "fl_chaos_init")
    return st


def keystream(seed: Buffer, n: int) -> np.ndarray:
    """The first ``n`` keystream bytes of a fresh generator seeded with ``seed``."""
    st = _state(seed)
    out = np.empty(n, dtype=np.uint8)
    _check(lib.fl_chaos_keystream(st, ffi.from_buffer("uint8_t[]", out), n), "fl_chaos_keystream")
    return out


# A per-process key tags every table set perm_tables() builds, so perm_apply() can tell its own
# tables from ones a caller assembled or edited (the C core range-checks indices regardless).
_TABLE_TAG_KEY = os.urandom(32)


def _table_tag(words: bytes, length: int) -> bytes:
    return hashlib.blake2b(words, key=_TABLE_TAG_KEY, digest_size=16,
                           person=b"fl-perm-tables", salt=length.to_bytes(16, "little")).digest()


class PermTables:
    """Row/column permutation tables for one buffer length, as built by `perm_tables`.

    Immutable and opaque on purpose: `perm_apply` accepts only tables this
    module built (checked by a keyed tag), so a table of hostile indices
    cannot reach the C core through the binding.  ``np.asarray(tables)`` gives
    a read-only uint32 view for tests that compare them with the reference.
    """

    __slots__ = ("_words", "_tag", "length")

    def __init__(self) -> None:
        raise TypeError("PermTables are built by perm_tables(seed, length), not by hand")

    @classmethod
    def _built(cls, words: bytes, length: int) -> PermTables:
        obj = object.__new__(cls)
        object.__setattr__(obj, "_words", words)
        object.__setattr__(obj, "length", length)
        object.__setattr__(obj, "_tag", _table_tag(words, length))
        return obj

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("PermTables are immutable")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = np.frombuffer(self._words, dtype=np.uint32)  # read-only: backed by bytes
        return arr if dtype is None else arr.astype(dtype)

    def __len__(self) -> int:
        return len(self._words) // 4

    def _verified_words(self, length: int) -> bytes:
        if length != self.length:
            raise NativeError(f"perm_apply: tables built for {self.length} bytes, data has {length}")
        if not hmac.compare_digest(self._tag, _table_tag(self._words, self.length)):
            raise NativeError("perm_apply: these tables were not built by perm_tables() (altered)")
        return self._words


def perm_tables(seed: Buffer, length: int) -> PermTables:
    """The row/column permutation tables for a buffer of ``length`` bytes."""
    st = _state(seed)
    words = lib.fl_perm_scratch_words(length)
    tables = np.empty(words, dtype=np.uint32)
    _check(
        lib.fl_perm_build(st, length, ffi.from_buffer("uint32_t[]", tables), words), "fl_perm_build"
    )
    return PermTables._built(tables.tobytes(), length)


def perm_apply(data: Buffer, tables: PermTables, inverse: bool = False) -> np.ndarray:
    """Permute (or, with ``inverse``, un-permute) the 32-byte cells of ``data``.

    ``tables`` must come from `perm_tables` for this length (NativeError otherwise): the
    binding refuses tables it did not build, and the C core range-checks every index.
    """
    src = as_bytes_view(data)
    if not isinstance(tables, PermTables):
        raise NativeError(f"perm_apply: tables must come from perm_tables(), not {type(tables).__name__}")
    words = tables._verified_words(src.size)
    out = np.empty(src.size, dtype=np.uint8)
    _check(
        lib.fl_perm_apply(
            ffi.from_buffer("uint8_t[]", out), _in(src), src.size,
            ffi.from_buffer("uint32_t[]", words), len(words) // 4, int(inverse),
        ),
        "fl_perm_apply",
    )
    return out


def _diffusion(fn: Any, data: Buffer, seed: Buffer, iv: Buffer, direction: int) -> np.ndarray:
    src = as_bytes_view(data)
    ivv = as_bytes_view(iv)
    st = _state(seed)
    out = np.empty(src.size, dtype=np.uint8)
    _check(
        fn(ffi.from_buffer("uint8_t[]", out), _in(src), src.size, st, _in(ivv), ivv.size, direction),
        "fl_diffuse",
    )
    return out


def diffuse(data: Buffer, seed: Buffer, iv: Buffer, direction: int) -> np.ndarray:
    """One diffusion pass (0 = first to last cell, 1 = last to first)."""
    return _diffusion(lib.fl_diffuse, data, seed, iv, direction)


def undiffuse(data: Buffer, seed: Buffer, iv: Buffer, direction: int) -> np.ndarray:
    return _diffusion(lib.fl_undiffuse, data, seed, iv, direction)


def cipher_encrypt(data: Buffer, seed: Buffer, out: np.ndarray | None = None) -> np.ndarray:
    """The whole chaotic layer: permutation, forward and backward diffusion."""
    src = as_bytes_view(data)
    s = _seed(seed, CIPHER_SEEDBYTES, "cipher")
    words = lib.fl_perm_scratch_words(src.size)
    scratch = np.empty(words, dtype=np.uint32)
    dst = _out(src.size, out)
    _check(
        lib.fl_cipher_encrypt(
            ffi.from_buffer("uint8_t[]", dst, require_writable=True), _in(src), src.size,
            _in(s), s.size, ffi.from_buffer("uint32_t[]", scratch), words,
        ),
        "fl_cipher_encrypt",
    )
    return dst


def cipher_decrypt(data: Buffer, seed: Buffer, out: np.ndarray | None = None) -> np.ndarray:
    src = as_bytes_view(data)
    s = _seed(seed, CIPHER_SEEDBYTES, "cipher")
    words = lib.fl_perm_scratch_words(src.size)
    scratch = np.empty(words, dtype=np.uint32)
    work = np.empty(src.size, dtype=np.uint8)
    dst = _out(src.size, out)
    _check(
        lib.fl_cipher_decrypt(
            ffi.from_buffer("uint8_t[]", dst, require_writable=True), _in(src), src.size,
            _in(s), s.size, ffi.from_buffer("uint32_t[]", scratch), words,
            ffi.from_buffer("uint8_t[]", work), work.size,
        ),
        "fl_cipher_decrypt",
    )
    return dst


def xor(a: Buffer, b: Buffer) -> np.ndarray:
    av, bv = as_bytes_view(a), as_bytes_view(b)
    if av.size != bv.size:
        raise NativeError(f"xor: lengths differ ({av.size} != {bv.size})")
    out = np.empty(av.size, dtype=np.uint8)
    _check(lib.fl_xor(ffi.from_buffer("uint8_t[]", out), _in(av), _in(bv), av.size), "fl_xor")
    return out


def memeq_ct(a: Buffer, b: Buffer) -> bool:
    """Constant-time equality of two secrets (lengths are not secret)."""
    av, bv = as_bytes_view(a), as_bytes_view(b)
    if av.size != bv.size:
        return False
    return lib.fl_memeq_ct(_in(av), _in(bv), av.size) == 0


def simhash(features: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """Sign bits of ``projection @ features`` (int16 features, int8 rows), packed MSB first."""
    v = np.ascontiguousarray(features, dtype=np.int16)
    p = np.ascontiguousarray(projection, dtype=np.int8)
    if v.ndim != 1 or p.ndim != 2 or p.shape[1] != v.size:
        raise NativeError(f"simhash: shapes {v.shape} and {p.shape} do not fit")
    n_bits = p.shape[0]
    out = np.empty((n_bits + 7) // 8, dtype=np.uint8)
    _check(
        lib.fl_simhash_i16(
            ffi.from_buffer("uint8_t[]", out), out.size, ffi.from_buffer("int16_t[]", v), v.size,
            ffi.from_buffer("int8_t[]", p), n_bits,
        ),
        "fl_simhash_i16",
    )
    return out


def hamming(a: Buffer, b: Buffer) -> int:
    av, bv = as_bytes_view(a), as_bytes_view(b)
    if av.size != bv.size:
        raise NativeError(f"hamming: lengths differ ({av.size} != {bv.size})")
    dist = ffi.new("size_t *")
    _check(lib.fl_hamming(dist, _in(av), _in(bv), av.size), "fl_hamming")
    return int(dist[0])
