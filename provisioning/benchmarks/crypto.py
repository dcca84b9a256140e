"""`facelock bench crypto`: speed and statistical quality of the image cipher.

All speeds in one JSON object come from one run with interleaved rounds (each
round times every candidate once; the best round counts), so ratios between
them hold on a shared, noisy machine even when absolute numbers drift.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import click
import numpy as np

SIZES = {"512x512x3": (512, 512, 3), "1920x1080x3": (1080, 1920, 3)}


def _best_times(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def bench_image(image: np.ndarray, rounds: int, reference_rounds: int, rng: np.random.Generator) -> dict:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

    from firmware.crypto import container
    from firmware.crypto.hazmat import native, reference
    from provisioning import crypto_analysis as stats

    key = os.urandom(32)
    seed = os.urandom(native.CIPHER_SEEDBYTES)
    nonce = os.urandom(12)
    raw = native.as_bytes_view(image)
    out = np.empty(raw.size, dtype=np.uint8)
    chacha, aesgcm = ChaCha20Poly1305(key), AESGCM(key)
    token = container.seal_array(key, image)
    times = _best_times(
        {
            "native": lambda: native.cipher_encrypt(raw, seed, out=out),
            "chacha20poly1305": lambda: chacha.encrypt(nonce, raw, None),
            "aesgcm": lambda: aesgcm.encrypt(nonce, raw, None),
            "container": lambda: container.seal_array(key, image),
            "container_decrypt": lambda: container.open_(key, token),
        },
        rounds,
    )
    times["numpy_reference"] = _best_times({"r": lambda: reference.cipher_encrypt(raw, seed)}, reference_rounds)["r"]
    mb = raw.size / 1e6
    result = {f"{k}_mb_s": round(mb / v, 2) for k, v in times.items()}

    # Differential analysis of the chaotic layer under one key: change one
    # plaintext byte at a random place and compare the two cipher images.
    c1 = native.cipher_encrypt(raw, seed).reshape(image.shape)
    flipped = raw.copy()
    pos = int(rng.integers(raw.size))
    flipped[pos] ^= 1 + int(rng.integers(255))
    c2 = native.cipher_encrypt(flipped, seed).reshape(image.shape)
    result.update(
        npcr=round(stats.npcr(c1, c2), 4),
        uaci=round(stats.uaci(c1, c2), 4),
        entropy=round(stats.entropy(c1), 6),
        **{k: round(v, 6) for k, v in stats.adjacent_correlation(c1).items()},
        changed_byte=pos,
    )
    return result


@click.command("crypto")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the only output format).")
@click.option("--rounds", default=15, show_default=True, help="Interleaved timing rounds per size.")
@click.option("--reference-rounds", default=1, show_default=True, help="Rounds for the slow numpy reference.")
@click.option("--seed", "rng_seed", default=None, type=int, help="Seed for the random test images.")
def command(as_json: bool, rounds: int, reference_rounds: int, rng_seed: int | None) -> None:
    """Native chaotic layer vs numpy reference vs AEADs vs the whole container, plus NPCR/UACI/entropy/correlation."""
    rng = np.random.default_rng(rng_seed)
    report: dict[str, object] = {
        "timing": f"best of {rounds} interleaved rounds (numpy reference: {reference_rounds})",
        "plaintext": "uniform random uint8 images",
    }
    for name, shape in SIZES.items():
        image = rng.integers(0, 256, size=shape, dtype=np.uint8)
        r = bench_image(image, rounds, reference_rounds, rng)
        r["native_vs_reference"] = round(r["native_mb_s"] / r["numpy_reference_mb_s"], 1)
        r["native_vs_chacha20poly1305"] = round(r["native_mb_s"] / r["chacha20poly1305_mb_s"], 3)
        r["container_vs_chacha20poly1305"] = round(r["container_mb_s"] / r["chacha20poly1305_mb_s"], 3)
        report[name] = r
    click.echo(json.dumps(report, indent=None if as_json else 2))
