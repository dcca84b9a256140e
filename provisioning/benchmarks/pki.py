"""`facelock bench pki`: what one passphrase guess costs an attacker holding the CA key file.

Times a *wrong* guess (what a dictionary attack spends per word) against the management key as
`facelock ca init` wraps it (scrypt + ChaCha20-Poly1305, provisioning/keywrap.py), against the old
protection of the same key under the same passphrase (PKCS#8 ``BestAvailableEncryption``: PBKDF2-HMAC-
SHA256, 2,048 iterations), and against the backup bundle's scrypt (N = 2^15) for scale.  Interleaved rounds,
best round counts, so the ratios hold on a noisy machine.  CPU time only: scrypt's 64 MiB per guess also
makes GPU/ASIC attacks far costlier, which this does not measure.
"""

from __future__ import annotations

import json
import time

import click
from cryptography.hazmat.primitives import serialization


def one_wrong_guess(data: bytes, guess: bytes) -> float:
    """Seconds for one wrong passphrase tried against a key file as stored (wrapped or old PKCS#8)."""
    from provisioning import keywrap
    from provisioning.errors import PassphraseError

    t = time.perf_counter()
    try:
        if keywrap.is_legacy(data):
            serialization.load_pem_private_key(data, guess)
        else:
            keywrap.unwrap(data, guess)
    except (ValueError, PassphraseError):
        return time.perf_counter() - t
    raise AssertionError("the guess opened the key")


def guess_costs(files: dict[str, bytes], rounds: int, inner: dict[str, int] | None = None) -> dict[str, float]:
    """Best seconds per wrong guess for each file; ``inner`` guesses per round for cheap ones."""
    best = {k: float("inf") for k in files}
    for i in range(rounds):
        for name, data in files.items():
            for j in range((inner or {}).get(name, 1)):
                best[name] = min(best[name], one_wrong_guess(data, b"guess-%d-%d" % (i, j)))
    return best


@click.command("pki")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the only output format).")
@click.option("--rounds", default=3, show_default=True, help="Interleaved timing rounds.")
def command(as_json: bool, rounds: int) -> None:
    """Cost per passphrase guess: wrapped CA key vs PKCS#8 PBKDF2-2048 vs the backup's scrypt."""
    from provisioning import keywrap, pki

    passphrase = b"correct horse battery staple"
    key = pki.create_ca().key
    der = keywrap.pkcs8_der(key)
    files = {
        "wrapped": keywrap.wrap(der, passphrase),
        "pkcs8_pbkdf2_2048": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.BestAvailableEncryption(passphrase)),
        "backup_scrypt_2_15": keywrap.wrap(der, passphrase, log2_n=15, r=8, p=1),
    }
    best = guess_costs(files, rounds, inner={"pkcs8_pbkdf2_2048": 50})
    log2_n, r, p = keywrap.params(files["wrapped"])
    report = {
        "benchmark": "pki",
        "rounds": rounds,
        "wrapped_kdf": {"kdf": "scrypt", "log2_n": log2_n, "r": r, "p": p, "memory_mib": 128 * r * (1 << log2_n) >> 20},
        "ms_per_guess": {k: round(v * 1e3, 4) for k, v in best.items()},
        "wrapped_vs_pkcs8_pbkdf2_2048": round(best["wrapped"] / best["pkcs8_pbkdf2_2048"], 1),
        "backup_scrypt_vs_pkcs8_pbkdf2_2048": round(best["backup_scrypt_2_15"] / best["pkcs8_pbkdf2_2048"], 1),
    }
    click.echo(json.dumps(report, indent=None if as_json else 2))
