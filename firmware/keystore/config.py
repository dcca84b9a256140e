"""The `[keystore]` config section: which backend seals the device's keys, and how."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from firmware.config_errors import ConfigError
from firmware.errors import FaceLockError

BACKENDS = ("file", "tpm")
# Owner-hierarchy persistent handles live in 0x81000000..0x817FFFFF (TPM 2.0 part 2, 7.5).
_PERSISTENT_LO, _PERSISTENT_HI = 0x81000000, 0x817FFFFF


@dataclass(frozen=True)
class KeystoreConfig:
    """Settings of the keystore; every field has a production default.

    WHY the passphrase is an environment-variable *name*: the config file is
    readable configuration, never a place for a secret.
    """

    backend: str = "file"
    # file backend: KEK = scrypt(device secret || passphrase).  None -> $FACELOCK_DEVICE_SECRET, else
    # /etc/facelock/device.secret: outside the data dir, so a copy of the data dir cannot unwrap the keys.
    device_secret_path: str | None = None
    passphrase_env: str | None = None
    scrypt_log2_n: int = 15
    scrypt_r: int = 8
    scrypt_p: int = 1
    # tpm backend
    tpm_tcti: str = "device:/dev/tpmrm0"
    tpm_primary_handle: int = 0x8100FACE
    tpm_pcrs: tuple[int, ...] = ()
    tpm_pcr_bank: str = "sha256"
    # both: how long a writer waits for another writer's lock
    lock_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"keystore.{key}: {why}")

        if self.backend not in BACKENDS:
            raise bad("backend", f"must be one of {BACKENDS}, got {self.backend!r}")
        try:  # one place for the KDF bounds (64 MiB): the reader refuses what the writer may not write
            from firmware.crypto.kdf import scrypt_params

            scrypt_params(self.scrypt_log2_n, self.scrypt_r, self.scrypt_p)
        except FaceLockError as exc:
            raise bad("scrypt_log2_n", str(exc)) from None
        if self.device_secret_path is not None and not isinstance(self.device_secret_path, str):
            raise bad("device_secret_path", "must be a path string")
        if self.passphrase_env is not None and (
            not isinstance(self.passphrase_env, str) or not self.passphrase_env
        ):
            raise bad("passphrase_env", "must be the name of an environment variable")
        if not isinstance(self.tpm_tcti, str) or not self.tpm_tcti:
            raise bad("tpm_tcti", "must be a TCTI string such as 'device:/dev/tpmrm0'")
        if not isinstance(self.tpm_primary_handle, int) or not (
            _PERSISTENT_LO <= self.tpm_primary_handle <= _PERSISTENT_HI
        ):
            raise bad("tpm_primary_handle", "must be an owner persistent handle 0x81000000..0x817FFFFF")
        if not isinstance(self.tpm_pcrs, tuple) or not all(
            isinstance(p, int) and 0 <= p <= 23 for p in self.tpm_pcrs
        ):
            raise bad("tpm_pcrs", "must be a list of PCR indices 0..23")
        if self.tpm_pcr_bank not in ("sha1", "sha256", "sha384"):
            raise bad("tpm_pcr_bank", "must be sha1, sha256 or sha384")
        if not isinstance(self.lock_timeout_s, (int, float)) or not 0 < self.lock_timeout_s <= 600:
            raise bad("lock_timeout_s", "must be a number of seconds in (0, 600]")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KeystoreConfig:
        """Build from a parsed TOML table; unknown keys and bad values raise ConfigError."""
        if not isinstance(d, dict):
            raise ConfigError("keystore: must be a table")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"keystore.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
        kw = dict(d)
        if "tpm_pcrs" in kw:
            if not isinstance(kw["tpm_pcrs"], (list, tuple)):
                raise ConfigError("keystore.tpm_pcrs: must be a list of PCR indices 0..23")
            kw["tpm_pcrs"] = tuple(kw["tpm_pcrs"])
        for key in ("scrypt_log2_n", "scrypt_r", "scrypt_p", "tpm_primary_handle"):
            if key in kw and (isinstance(kw[key], bool) or not isinstance(kw[key], int)):
                raise ConfigError(f"keystore.{key}: must be an integer")
        return cls(**kw)
