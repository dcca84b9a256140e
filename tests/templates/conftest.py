"""Fixtures: a template store over a file keystore or a real swtpm-backed keystore."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.keystore import KeystoreConfig, open_keystore
from firmware.templates import TemplateStore
from tests.support.swtpm import Swtpm


@pytest.fixture
def file_config(tmp_path: Path) -> KeystoreConfig:
    # production layout: the device secret is not inside the data dir
    return KeystoreConfig(scrypt_log2_n=10, device_secret_path=str(tmp_path / "etc" / "device.secret"))


@pytest.fixture(params=["file", "tpm"])
def store(request: pytest.FixtureRequest, tmp_path: Path, file_config: KeystoreConfig) -> Iterator[TemplateStore]:
    data_dir = tmp_path / "data"
    tpm = None
    if request.param == "tpm":
        tpm = Swtpm(tmp_path / "swtpm-state")
        tpm.start()
        cfg = KeystoreConfig(backend="tpm", tpm_tcti=tpm.tcti)
    else:
        cfg = file_config
    ks = open_keystore(cfg, data_dir)
    st = TemplateStore(data_dir, ks)
    try:
        yield st
    finally:
        st.close()
        ks.close()
        if tpm is not None:
            tpm.stop()
