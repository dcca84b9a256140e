"""Binary BCH codes over GF(2^m) in pure Python/numpy: generator, encoder, bounded-distance decoder.

WHY our own: the fuzzy extractor needs codes that correct a large fraction
of bit errors (15-25 %) with a usable dimension.  The kernel BCH wrapped by
`bchlib` spends m parity bits per corrected error (so it cannot go past 1/m
of the block), and galois drags in numba; a true narrow-sense BCH code, with
its real dimension from the cyclotomic cosets, is ~150 lines.

Decoding is Berlekamp-Massey plus a Chien search, vectorised with numpy.  It
returns the nearest codeword when at most ``t`` bits are wrong and ``None``
when it detects more (a decoder failure); with more than ``t`` errors it may
also land on a wrong codeword, which the fuzzy extractor's check value then
rejects.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

# Primitive polynomials (bit i = coefficient of x^i) for GF(2^m).
PRIMITIVE = {4: 0x13, 5: 0x25, 6: 0x43, 7: 0x89, 8: 0x11D, 9: 0x211, 10: 0x409, 11: 0x805, 12: 0x1053}


class BCHCode:
    """Narrow-sense binary BCH code of length n = 2^m - 1 correcting ``t`` errors."""

    def __init__(self, m: int, t: int) -> None:
        if m not in PRIMITIVE:
            raise ValueError(f"BCH: m must be one of {sorted(PRIMITIVE)}")
        n = (1 << m) - 1
        if not 1 <= t < n // 2:
            raise ValueError(f"BCH: t must be in 1..{n // 2 - 1} for m={m}")
        self.m, self.t, self.n = m, t, n
        exp = np.zeros(2 * n, dtype=np.int64)
        log = np.full(n + 1, -1, dtype=np.int64)
        x = 1
        for i in range(n):
            exp[i] = x
            log[x] = i
            x <<= 1
            if x & (1 << m):
                x ^= PRIMITIVE[m]
        exp[n:] = exp[:n]
        self._exp, self._log = exp, log
        self.generator = self._generator()  # GF(2) coefficients, lowest degree first
        self.k = n - (len(self.generator) - 1)
        if self.k < 1:
            raise ValueError(f"BCH(m={m}, t={t}) has no information bits")

    # ---- construction --------------------------------------------------------------------------
    def _gf_mul(self, a: int, b: int) -> int:
        if a == 0 or b == 0:
            return 0
        return int(self._exp[(self._log[a] + self._log[b]) % self.n])

    def _generator(self) -> np.ndarray:
        n = self.n
        g = np.array([1], dtype=np.uint8)
        seen: set[int] = set()
        for i in range(1, 2 * self.t + 1):
            if i in seen:
                continue
            coset, c = [], i
            while c not in coset:
                coset.append(c)
                c = (c * 2) % n
            seen.update(coset)
            poly = [1]  # minimal polynomial of alpha^i: prod (x + alpha^c), coefficients in GF(2^m)
            for c in coset:
                root = int(self._exp[c])
                nxt = [0] * (len(poly) + 1)
                for j, a in enumerate(poly):
                    nxt[j + 1] ^= a
                    nxt[j] ^= self._gf_mul(a, root)
                poly = nxt
            if any(a not in (0, 1) for a in poly):  # pragma: no cover - arithmetic invariant
                raise ArithmeticError("minimal polynomial is not binary")
            g = np.convolve(g, np.array(poly, dtype=np.uint8)).astype(np.uint8) & 1
        return g

    # ---- encode --------------------------------------------------------------------------------
    def encode(self, message: np.ndarray) -> np.ndarray:
        """k message bits -> n codeword bits (non-systematic: c(x) = m(x) g(x))."""
        msg = np.asarray(message, dtype=np.uint8)
        if msg.shape != (self.k,) or msg.max(initial=0) > 1:
            raise ValueError(f"BCH encode needs {self.k} bits")
        c = np.convolve(msg, self.generator).astype(np.int64) & 1
        out = np.zeros(self.n, dtype=np.uint8)
        out[: c.size] = c
        return out

    def is_codeword(self, word: np.ndarray) -> bool:
        return not np.any(self._syndromes(np.asarray(word, dtype=np.uint8)))

    # ---- decode --------------------------------------------------------------------------------
    def _syndromes(self, r: np.ndarray) -> np.ndarray:
        pos = np.flatnonzero(r)
        if pos.size == 0:
            return np.zeros(2 * self.t, dtype=np.int64)
        js = np.arange(1, 2 * self.t + 1, dtype=np.int64)
        vals = self._exp[np.outer(js, pos) % self.n]
        return np.bitwise_xor.reduce(vals, axis=1)

    def decode(self, received: np.ndarray) -> np.ndarray | None:
        """The codeword within distance t of ``received``, or None when the decoder detects failure."""
        r = np.asarray(received, dtype=np.uint8)
        if r.shape != (self.n,):
            raise ValueError(f"BCH decode needs {self.n} bits")
        s = self._syndromes(r)
        if not np.any(s):
            return r.copy()
        exp, log, n = self._exp, self._log, self.n
        # Berlekamp-Massey over GF(2^m): C is the error-locator polynomial.
        C = np.zeros(2 * self.t + 2, dtype=np.int64)
        B = np.zeros_like(C)
        C[0] = B[0] = 1
        L, shift, b = 0, 1, 1
        for k in range(2 * self.t):
            d = int(s[k])
            if L:
                cs = C[1 : L + 1]
                ss = s[k - 1 :: -1][:L] if k >= 1 else s[:0]
                ss = ss[: cs.size]
                mask = (cs[: ss.size] != 0) & (ss != 0)
                if mask.any():
                    d ^= int(np.bitwise_xor.reduce(exp[(log[cs[: ss.size][mask]] + log[ss[mask]]) % n]))
            if d == 0:
                shift += 1
                continue
            coef = int(exp[(log[d] - log[b]) % n])  # d / b
            nzb = np.flatnonzero(B[: C.size - shift])
            upd = np.zeros_like(C)
            upd[nzb + shift] = exp[(log[B[nzb]] + log[coef]) % n]
            if 2 * L <= k:
                T = C.copy()
                C ^= upd
                L, B, b, shift = k + 1 - L, T, d, 1
            else:
                C ^= upd
                shift += 1
        if L > self.t:
            return None
        # Chien search: error at position p  <=>  C(alpha^-p) == 0.
        idx = np.flatnonzero(C[: L + 1])
        p = np.arange(n, dtype=np.int64)
        terms = exp[(log[C[idx]][:, None] - np.outer(idx, p)) % n]
        roots = np.flatnonzero(np.bitwise_xor.reduce(terms, axis=0) == 0)
        if roots.size != L:
            return None
        out = r.copy()
        out[roots] ^= 1
        if np.any(self._syndromes(out)):  # pragma: no cover - cannot happen when roots == L
            return None
        return out


@lru_cache(maxsize=8)
def bch_code(m: int, t: int) -> BCHCode:
    """Cached constructor (building the generator costs a few ms)."""
    return BCHCode(m, t)
