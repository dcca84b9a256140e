"""Memory-hard password KDFs with bounded parameters: the one place the bounds live.

Every FaceLock file that derives a key from a passphrase or a PIN stores its
KDF parameters next to the ciphertext (keystore ``keys.fks``, backup bundles,
PIN-protected images), and the parameters must be read *before* the key can be
derived, i.e. before anything is authenticated.  So a crafted file chooses
how much memory and CPU the reader spends.  Each reader therefore passes the
parameters through `scrypt_params` / `argon2id_params` first, which refuse
anything above `MAX_MEMORY_BYTES` (64 MiB, the figure of issue 11) or an
unreasonable amount of work, with a typed `KdfParameterError` and no
allocation.  Writers go through the same checks, so nothing FaceLock writes
can be refused by its own reader.

scrypt's memory is 128·r·N bytes (plus 128·r·p), its work grows with N·r·p;
Argon2id's memory is its ``memory_cost`` in KiB, its work memory × iterations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from firmware.crypto.errors import KdfParameterError

MAX_MEMORY_BYTES = 64 * 1024 * 1024
# Work bound: at most 4 passes over the maximum memory (scrypt p <= 4 at 64 MiB; Argon2id t <= 4 at 64 MiB),
# about a second on a Raspberry Pi 4: a crafted file cannot pin a core for minutes either.
MAX_WORK_BYTES = 4 * MAX_MEMORY_BYTES
MIN_SCRYPT_LOG2_N = 10
MAX_SCRYPT_R = 32
MAX_SCRYPT_P = 16
MAX_ARGON2_LANES = 4
MAX_ARGON2_ITERATIONS = 16
MIN_ARGON2_MEMORY_KIB = 8 * 1024  # 8 MiB: below this Argon2id stops being memory-hard in any useful sense


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise KdfParameterError(f"KDF parameter {name} must be an integer, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class ScryptParams:
    """Checked scrypt parameters (construct with `scrypt_params`)."""

    log2_n: int
    r: int
    p: int

    @property
    def memory_bytes(self) -> int:
        return 128 * self.r * ((1 << self.log2_n) + self.p)

    def derive(self, secret: bytes, salt: bytes, length: int = 32) -> bytes:
        return Scrypt(salt=salt, length=length, n=1 << self.log2_n, r=self.r, p=self.p).derive(secret)


def scrypt_params(log2_n: Any, r: Any, p: Any) -> ScryptParams:
    """Bound-check scrypt parameters read from a file or a config; KdfParameterError if out of bounds."""
    log2_n, r, p = _int("log2(N)", log2_n), _int("r", r), _int("p", p)
    if not MIN_SCRYPT_LOG2_N <= log2_n <= 30 or not 1 <= r <= MAX_SCRYPT_R or not 1 <= p <= MAX_SCRYPT_P:
        raise KdfParameterError(
            f"scrypt parameters out of range (log2N={log2_n}, r={r}, p={p}; "
            f"allowed log2N >= {MIN_SCRYPT_LOG2_N}, r 1..{MAX_SCRYPT_R}, p 1..{MAX_SCRYPT_P})"
        )
    if log2_n >= 16 * r:  # RFC 7914: N < 2^(128 r / 8); OpenSSL refuses the rest (as a MemoryError)
        raise KdfParameterError(f"scrypt parameters invalid: N=2^{log2_n} needs r >= {log2_n // 16 + 1}")
    mem = 128 * r * (1 << log2_n)
    if mem > MAX_MEMORY_BYTES:
        raise KdfParameterError(
            f"scrypt parameters would need {mem >> 20} MiB (log2N={log2_n}, r={r}, p={p}); "
            f"the limit is {MAX_MEMORY_BYTES >> 20} MiB"
        )
    if mem * p > MAX_WORK_BYTES:
        raise KdfParameterError(
            f"scrypt parameters ask for {mem * p >> 20} MiB of work (log2N={log2_n}, r={r}, p={p}); "
            f"the limit is {MAX_WORK_BYTES >> 20} MiB"
        )
    return ScryptParams(log2_n, r, p)


@dataclass(frozen=True)
class Argon2idParams:
    """Checked Argon2id parameters (construct with `argon2id_params`)."""

    memory_kib: int
    iterations: int
    lanes: int

    @property
    def memory_bytes(self) -> int:
        return self.memory_kib * 1024

    def derive(self, secret: bytes, salt: bytes, length: int = 32) -> bytes:
        return Argon2id(salt=salt, length=length, iterations=self.iterations, lanes=self.lanes,
                        memory_cost=self.memory_kib).derive(secret)


def argon2id_params(memory_kib: Any, iterations: Any, lanes: Any) -> Argon2idParams:
    """Bound-check Argon2id parameters read from a file; KdfParameterError if out of bounds."""
    m, t, lanes = _int("memory_kib", memory_kib), _int("iterations", iterations), _int("lanes", lanes)
    if not 1 <= lanes <= MAX_ARGON2_LANES or not 1 <= t <= MAX_ARGON2_ITERATIONS:
        raise KdfParameterError(
            f"Argon2id parameters out of range (iterations={t}, lanes={lanes}; "
            f"allowed iterations 1..{MAX_ARGON2_ITERATIONS}, lanes 1..{MAX_ARGON2_LANES})"
        )
    if not MIN_ARGON2_MEMORY_KIB <= m <= MAX_MEMORY_BYTES // 1024 or m < 8 * lanes:
        raise KdfParameterError(
            f"Argon2id memory {m} KiB is outside {MIN_ARGON2_MEMORY_KIB}..{MAX_MEMORY_BYTES // 1024} KiB"
        )
    if m * 1024 * t > MAX_WORK_BYTES:
        raise KdfParameterError(
            f"Argon2id parameters ask for {m * t >> 10} MiB of work (memory {m} KiB x {t} iterations); "
            f"the limit is {MAX_WORK_BYTES >> 20} MiB"
        )
    return Argon2idParams(m, t, lanes)
