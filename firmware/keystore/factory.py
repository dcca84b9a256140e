"""Choose the keystore backend from config (like gpiozero's pin factories)."""

from __future__ import annotations

import os
from pathlib import Path

from firmware.keystore.base import Keystore
from firmware.keystore.config import KeystoreConfig
from firmware.keystore.errors import KeystoreUnlockError


def keystore_dir(data_dir: Path | str) -> Path:
    return Path(data_dir) / "keystore"


def open_keystore(config: KeystoreConfig, data_dir: Path | str, passphrase: str | None = None) -> Keystore:
    """Open (creating on first use) the keystore under ``<data_dir>/keystore``.

    ``passphrase`` overrides the environment variable named by
    ``config.passphrase_env`` (file backend only).
    """
    directory = keystore_dir(data_dir)
    if config.backend == "tpm":
        from firmware.keystore.tpm_backend import TpmKeystore

        return TpmKeystore(
            directory,
            tcti=config.tpm_tcti,
            primary_handle=config.tpm_primary_handle,
            pcrs=config.tpm_pcrs,
            pcr_bank=config.tpm_pcr_bank,
            lock_timeout_s=config.lock_timeout_s,
        )
    from firmware.keystore.file_backend import FileKeystore, device_secret_path

    if passphrase is None and config.passphrase_env:
        passphrase = os.environ.get(config.passphrase_env)
        if passphrase is None:
            raise KeystoreUnlockError(
                f"the keystore passphrase variable {config.passphrase_env} is not set in the environment"
            )
    secret_path = device_secret_path(config.device_secret_path)
    return FileKeystore(
        directory,
        device_secret_path=secret_path,
        passphrase=passphrase,
        scrypt_log2_n=config.scrypt_log2_n,
        scrypt_r=config.scrypt_r,
        scrypt_p=config.scrypt_p,
        lock_timeout_s=config.lock_timeout_s,
    )
