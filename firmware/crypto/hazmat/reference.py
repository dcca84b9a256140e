"""Pure-numpy reference of the C core, held to it bit for bit by the tests.

Written for clarity, not speed: it is the specification of the wire-visible
behaviour (keystream, permutation, diffusion, hashing).  Where the C code
loops over lanes, this code uses numpy vectors of the same lanes; where the C
code carries state from cell to cell, so does this.
"""

from __future__ import annotations

import math

import numpy as np

from firmware.crypto.hazmat.native import (
    CELLBYTES,
    CHAOS_BLOCKBYTES,
    CHAOS_LANES,
    CHAOS_SEEDBYTES,
    CHAOS_WARMUP,
    CIPHER_SEEDBYTES,
    Buffer,
    as_bytes_view,
)
from firmware.errors import NativeError

_U32 = np.uint32


class ChaosState:
    """The coupled logistic-map lattice (see native/chaos.c for the why)."""

    def __init__(self, seed: Buffer) -> None:
        s = as_bytes_view(seed)
        if s.size != CHAOS_SEEDBYTES:
            raise NativeError(f"chaos state: seed must be {CHAOS_SEEDBYTES} bytes")
        words = s.view("<u4").astype(_U32)
        self.x = words[:CHAOS_LANES].copy()
        self.w = words[CHAOS_LANES : 2 * CHAOS_LANES].copy()
        self.s = words[2 * CHAOS_LANES :] | _U32(1)
        self._buf = np.empty(0, dtype=np.uint8)
        for _ in range(CHAOS_WARMUP):
            self.block()

    def block(self) -> np.ndarray:
        x = self.x
        t = x.astype(np.uint64) * (x ^ _U32(0xFFFFFFFF)).astype(np.uint64)
        y = (t >> np.uint64(30)).astype(_U32)
        self.w = self.w + self.s
        nb = np.roll(x, -1)
        rot = (nb << _U32(7)) | (nb >> _U32(25))
        self.x = (y + self.w) ^ rot
        return self.x.astype("<u4").view(np.uint8)

    def keystream(self, n: int) -> np.ndarray:
        parts = [self._buf]
        have = self._buf.size
        while have < n:
            b = self.block()
            parts.append(b)
            have += b.size
        allb = np.concatenate(parts) if len(parts) > 1 else self._buf
        out, self._buf = allb[:n].copy(), allb[n:].copy()
        return out

    def draws(self, n: int) -> np.ndarray:
        return self.keystream(4 * n).view("<u4").astype(np.uint64)


def keystream(seed: Buffer, n: int) -> np.ndarray:
    return ChaosState(seed).keystream(n)


def _perm_dims(length: int) -> tuple[int, int, int]:
    m = length // CELLBYTES
    c = math.isqrt(m)
    if c == 0:
        return 0, 0, 0
    r = m // c
    return r, c, m - r * c


def _shuffle(draws: np.ndarray, n: int) -> np.ndarray:
    p = np.arange(n, dtype=_U32)
    for k, i in enumerate(range(n, 1, -1)):
        j = int((int(draws[k]) * i) >> 32)
        p[i - 1], p[j] = p[j], p[i - 1]
    return p


def perm_tables(seed: Buffer, length: int) -> np.ndarray:
    st = ChaosState(seed)
    rows, cols, rem = _perm_dims(length)
    rowp = _shuffle(st.draws(max(rows - 1, 0)), rows)
    colp = _shuffle(st.draws(max(cols - 1, 0)), cols)
    shift = ((st.draws(rows) * np.uint64(cols)) >> np.uint64(32)).astype(_U32)
    remp = _shuffle(st.draws(max(rem - 1, 0)), rem)
    return np.concatenate([rowp, colp, shift, remp]).astype(_U32)


def _perm_index(length: int, tables: np.ndarray) -> np.ndarray:
    """src_cell[dst_cell] for the full cells."""
    rows, cols, rem = _perm_dims(length)
    rowp = tables[:rows].astype(np.int64)
    colp = tables[rows : rows + cols].astype(np.int64)
    shift = tables[rows + cols : 2 * rows + cols].astype(np.int64)
    remp = tables[2 * rows + cols : 2 * rows + cols + rem].astype(np.int64)
    src_c = (colp[None, :] + shift[:, None]) % max(cols, 1)
    grid = rowp[:, None] * cols + src_c
    return np.concatenate([grid.reshape(-1), rows * cols + remp])


def perm_apply(data: Buffer, tables: np.ndarray, inverse: bool = False) -> np.ndarray:
    src = as_bytes_view(data)
    n = src.size
    m_full = (n // CELLBYTES) * CELLBYTES
    idx = _perm_index(n, tables)
    out = src.copy()
    cells_in = src[:m_full].reshape(-1, CELLBYTES)
    if idx.size:
        cells_out = np.empty_like(cells_in)
        if inverse:
            cells_out[idx] = cells_in
        else:
            cells_out[:] = cells_in[idx]
        out[:m_full] = cells_out.reshape(-1)
    return out


def _mix(prev: np.ndarray) -> np.ndarray:
    lane = np.arange(CELLBYTES)
    x = (prev[(lane + 7) % CELLBYTES] ^ prev[(lane + 16) % CELLBYTES] ^ prev).astype(np.uint8)
    rot = ((x << np.uint8(3)) | (x >> np.uint8(5))).astype(np.uint8)
    return (prev[(lane + 1) % CELLBYTES] + rot).astype(np.uint8)


def _cell_offsets(n: int, direction: int) -> list[tuple[int, int]]:
    m, r = divmod(n, CELLBYTES)
    cells = [(j * CELLBYTES if direction == 0 else n - (j + 1) * CELLBYTES, CELLBYTES) for j in range(m)]
    if r:
        cells.append((m * CELLBYTES if direction == 0 else 0, r))
    return cells


def diffuse(data: Buffer, seed: Buffer, iv: Buffer, direction: int) -> np.ndarray:
    src = as_bytes_view(data).copy()
    cells = _cell_offsets(src.size, direction)
    ks = ChaosState(seed).keystream(CELLBYTES * len(cells)).reshape(-1, CELLBYTES)
    prev = as_bytes_view(iv).copy()
    with np.errstate(over="ignore"):
        for (off, width), k in zip(cells, ks, strict=True):
            c = ((src[off : off + width] + _mix(prev)[:width]) ^ k[:width]).astype(np.uint8)
            src[off : off + width] = c
            prev = c
    return src


def undiffuse(data: Buffer, seed: Buffer, iv: Buffer, direction: int) -> np.ndarray:
    src = as_bytes_view(data)
    out = src.copy()
    cells = _cell_offsets(src.size, direction)
    ks = ChaosState(seed).keystream(CELLBYTES * len(cells)).reshape(-1, CELLBYTES)
    prev = as_bytes_view(iv).copy()
    with np.errstate(over="ignore"):
        for (off, width), k in zip(cells, ks, strict=True):
            cur = src[off : off + width]
            out[off : off + width] = ((cur ^ k[:width]) - _mix(prev)[:width]).astype(np.uint8)
            prev = cur
    return out


def _split(seed: Buffer) -> tuple[np.ndarray, ...]:
    s = as_bytes_view(seed)
    if s.size != CIPHER_SEEDBYTES:
        raise NativeError(f"cipher: seed must be {CIPHER_SEEDBYTES} bytes")
    k = CHAOS_SEEDBYTES
    return s[:k], s[k : 2 * k], s[2 * k : 3 * k], s[3 * k : 3 * k + CELLBYTES], s[3 * k + CELLBYTES :]


def cipher_encrypt(data: Buffer, seed: Buffer) -> np.ndarray:
    perm_seed, fwd, bwd, ivf, ivb = _split(seed)
    src = as_bytes_view(data)
    x = perm_apply(src, perm_tables(perm_seed, src.size))
    x = diffuse(x, fwd, ivf, 0)
    return diffuse(x, bwd, ivb, 1)


def cipher_decrypt(data: Buffer, seed: Buffer) -> np.ndarray:
    perm_seed, fwd, bwd, ivf, ivb = _split(seed)
    src = as_bytes_view(data)
    x = undiffuse(src, bwd, ivb, 1)
    x = undiffuse(x, fwd, ivf, 0)
    return perm_apply(x, perm_tables(perm_seed, src.size), inverse=True)


def xor(a: Buffer, b: Buffer) -> np.ndarray:
    return np.bitwise_xor(as_bytes_view(a), as_bytes_view(b))


def simhash(features: np.ndarray, projection: np.ndarray) -> np.ndarray:
    acc = projection.astype(np.int64) @ features.astype(np.int64)
    return np.packbits(acc > 0)


def hamming(a: Buffer, b: Buffer) -> int:
    return int(np.unpackbits(xor(a, b)).sum())


assert CHAOS_BLOCKBYTES == 4 * CHAOS_LANES
