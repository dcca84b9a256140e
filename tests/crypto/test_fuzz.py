"""Fuzz the container with atheris: >= 100,000 random and mutated inputs, typed errors only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from firmware.crypto import container as C

HERE = Path(__file__).resolve().parent
RUNS = int(os.environ.get("FACELOCK_FUZZ_RUNS", "100000"))


@pytest.mark.slow
def test_container_survives_fuzzing(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    key = bytes(range(32))
    rng = np.random.default_rng(0)
    seeds = [
        C.seal_array(key, rng.integers(0, 256, (4, 5, 3), dtype=np.uint8), metadata={"a": 1}),
        C.seal_array(key, np.arange(7, dtype=np.float32), aead="aes256gcm"),
        C.seal_array(key, np.zeros(0, np.uint8)),
        C.seal_array(bytes(32), np.ones((2, 2), np.uint16)),
    ]
    for i, s in enumerate(seeds):
        (corpus / f"seed{i}").write_bytes(s)
    proc = subprocess.run(
        [sys.executable, str(HERE / "fuzz_container.py"), f"-runs={RUNS}", "-max_len=512",
         "-seed=1", str(corpus)],
        capture_output=True, text=True, timeout=900,
    )
    tail = proc.stderr[-3000:]
    assert proc.returncode == 0, tail
    assert f"Done {RUNS} runs" in proc.stderr, tail
