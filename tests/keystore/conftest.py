"""Fixtures: a real swtpm, and a keystore factory parametrised over both backends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from firmware.keystore import Keystore, KeystoreConfig, open_keystore
from tests.support.swtpm import Swtpm

# Tests use a cheap scrypt cost (the format stores it per keystore); production default is 2^15.
FAST_SCRYPT = 10


@pytest.fixture
def swtpm(tmp_path: Path) -> Iterator[Swtpm]:
    tpm = Swtpm(tmp_path / "swtpm-state")
    tpm.start()
    try:
        yield tpm
    finally:
        tpm.stop()


@pytest.fixture(params=["file", "tpm"])
def make_keystore(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Keystore]:
    """make_keystore(**overrides) -> a Keystore on tmp_path/data, same data dir every call."""
    data_dir = tmp_path / "data"
    opened: list[Keystore] = []
    if request.param == "tpm":
        tpm = request.getfixturevalue("swtpm")
        base = {"backend": "tpm", "tpm_tcti": tpm.tcti}
    else:
        base = {"backend": "file", "scrypt_log2_n": FAST_SCRYPT}

    def make(**overrides: object) -> Keystore:
        cfg = dict(base)
        if request.param == "tpm":
            cfg["tpm_tcti"] = request.getfixturevalue("swtpm").tcti  # follows restarts
        cfg.update(overrides)
        ks = open_keystore(KeystoreConfig(**cfg), data_dir)
        opened.append(ks)
        return ks

    make.backend = request.param  # type: ignore[attr-defined]
    make.data_dir = data_dir  # type: ignore[attr-defined]
    yield make
    for ks in opened:
        ks.close()
