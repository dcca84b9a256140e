"""TPM 2.0 keystore through tpm2-pytss (ESAPI).

A primary storage key (ECC P-256, AES-128-CFB) under the owner hierarchy is
made persistent at a configured handle on first use.  Each secret becomes a
KEYEDHASH *sealed data object* created under it; the TPM returns the object's
private part encrypted by the primary key, and only that blob (TPM2B_PRIVATE
+ TPM2B_PUBLIC, marshalled) is stored on disk.  Unsealing needs this TPM.

With ``pcrs`` set, the object's authPolicy is PolicyPCR over the current
values of those PCRs (e.g. PCR 7, Secure Boot state): a changed boot chain
makes the TPM refuse to unseal (TpmPolicyError).  Without PCRs the object is
usable with an empty password (USERWITHAUTH), i.e. bound to this TPM only.

The sealed payload starts with a tag binding it to its key id and version,
so a blob copied under another id is refused.

Binding to the machine: the primary key is derived by the TPM from its owner
seed, which never leaves the chip, so a data dir copied to another machine (or
kept across a TPM clear) holds blobs no other TPM can load.  The keystore file
records the primary key's TPM name; opening it under a TPM whose primary has
another name raises `TpmBindingError` at once, naming the cause, instead of a
generic load failure at the first unseal.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Any

from firmware.keystore.base import Keystore
from firmware.keystore.errors import (
    KeystoreCorruptError,
    TpmBindingError,
    TpmBusyError,
    TpmError,
    TpmPolicyError,
    TpmUnavailableError,
)
from firmware.keystore.keyfile import KeyFileData

_TAG = b"FLK1"


def _bind(key_id: str, version: int) -> bytes:
    return _TAG + hashlib.sha256(f"facelock tpm seal v1|{key_id}|{version}".encode()).digest()[:8]


class TpmKeystore(Keystore):
    backend = "tpm"
    file_name = "tpm-keys.fks"

    def __init__(
        self,
        directory: Path,
        tcti: str = "device:/dev/tpmrm0",
        primary_handle: int = 0x8100FACE,
        pcrs: tuple[int, ...] = (),
        pcr_bank: str = "sha256",
        lock_timeout_s: float = 10.0,
    ) -> None:
        super().__init__(directory, lock_timeout_s)
        self._tcti = tcti
        self._primary_handle = primary_handle
        self._pcrs = tuple(sorted(set(pcrs)))
        self._pcr_bank = pcr_bank
        self._t: Any = None  # tpm2_pytss module namespace
        self._esapi: Any = None
        self._primary: Any = None
        self._connect()
        self._open_or_init()

    # ---- connection ----------------------------------------------------------------------------
    def _connect(self) -> None:
        os.environ.setdefault("TSS2_LOG", "all+none")  # the TSS would otherwise print errors we already type
        try:
            import tpm2_pytss as t
        except ImportError as exc:
            raise TpmUnavailableError(f"tpm2-pytss is not installed ({exc}); pip install 'facelock[tpm]'") from None
        self._t = t
        try:
            self._esapi = t.ESAPI(self._tcti)
        except Exception as exc:  # TSS2_Exception, or ValueError/OSError from the TCTI loader
            raise TpmUnavailableError(f"no TPM answers on TCTI {self._tcti!r}: {exc}") from None
        self._primary = self._call(self._load_or_make_primary)
        self._primary_name = bytes(self._call(self._esapi.tr_get_name, self._primary)).hex()

    def _load_or_make_primary(self) -> Any:
        t, e = self._t, self._esapi
        try:
            return e.tr_from_tpmpublic(self._primary_handle)
        except t.TSS2_Exception as exc:
            if exc.error not in (t.TPM2_RC.HANDLE, t.TPM2_RC.REFERENCE_H0) and "handle" not in str(exc).lower():
                raise
        template = t.TPM2B_PUBLIC(
            t.TPMT_PUBLIC.parse(
                "ecc256:aes128cfb", objectAttributes=t.TPMA_OBJECT.DEFAULT_TPM2_TOOLS_CREATEPRIMARY_ATTRS
            )
        )
        handle, *_ = e.create_primary(None, template, t.ESYS_TR.OWNER)
        try:
            return e.evict_control(t.ESYS_TR.OWNER, handle, self._primary_handle)
        finally:
            e.flush_context(handle)

    def _call(self, fn: Any, *args: Any) -> Any:
        """Run a TPM operation, mapping TSS return codes to typed errors."""
        t = self._t
        try:
            return fn(*args)
        except t.TSS2_Exception as exc:
            err = exc.error
            if err in (t.TPM2_RC.POLICY_FAIL, t.TPM2_RC.PCR_CHANGED, t.TPM2_RC.VALUE) and self._pcrs:
                raise TpmPolicyError(
                    f"the TPM refused to unseal: PCR policy {self._pcr_bank}:{list(self._pcrs)} does not match "
                    "(the boot chain changed)"
                ) from None
            if err in (t.TPM2_RC.RETRY, t.TPM2_RC.YIELDED, t.TPM2_RC.TESTING, t.TPM2_RC.OBJECT_MEMORY,
                       t.TPM2_RC.SESSION_MEMORY, t.TPM2_RC.MEMORY):
                raise TpmBusyError(f"the TPM is busy, retry later ({exc})") from None
            if exc.rc & 0xFFFF0000:  # a TSS layer (TCTI/ESAPI) error rather than a TPM response
                raise TpmUnavailableError(f"lost the TPM on {self._tcti!r}: {exc}") from None
            if err in (t.TPM2_RC.INTEGRITY, t.TPM2_RC.SIZE, t.TPM2_RC.KEY, t.TPM2_RC.BAD_AUTH,
                       t.TPM2_RC.AUTH_FAIL, t.TPM2_RC.INSUFFICIENT):
                raise KeystoreCorruptError(
                    f"a sealed blob does not belong to this TPM's primary key or was altered ({exc})"
                ) from None
            raise TpmError(f"TPM error: {exc}") from None

    def close(self) -> None:
        if self._esapi is not None:
            try:
                self._esapi.close()
            finally:
                self._esapi = None

    # ---- policy --------------------------------------------------------------------------------
    def _pcr_selection(self) -> Any:
        return self._t.TPML_PCR_SELECTION.parse(f"{self._pcr_bank}:{','.join(map(str, self._pcrs))}")

    def _policy_session(self, trial: bool) -> Any:
        t, e = self._t, self._esapi
        kind = t.TPM2_SE.TRIAL if trial else t.TPM2_SE.POLICY
        sess = e.start_auth_session(
            t.ESYS_TR.NONE, t.ESYS_TR.NONE, kind, t.TPMT_SYM_DEF(algorithm=t.TPM2_ALG.NULL), t.TPM2_ALG.SHA256
        )
        try:
            e.policy_pcr(sess, t.TPM2B_DIGEST(), self._pcr_selection())
        except BaseException:
            e.flush_context(sess)
            raise
        return sess

    def _policy_digest(self) -> bytes:
        sess = self._policy_session(trial=True)
        try:
            return bytes(self._esapi.policy_get_digest(sess))
        finally:
            self._esapi.flush_context(sess)

    # ---- backend hooks -------------------------------------------------------------------------
    def _new_params(self) -> dict:
        return {"primary_handle": self._primary_handle, "primary_name": self._primary_name,
                "pcrs": list(self._pcrs), "pcr_bank": self._pcr_bank}

    def _accept(self, data: KeyFileData) -> None:
        if data.params.get("primary_handle") != self._primary_handle:
            raise KeystoreCorruptError(
                f"{self.path}: sealed under primary handle {data.params.get('primary_handle')!r}, "
                f"configured {self._primary_handle:#x}"
            )
        recorded = data.params.get("primary_name")  # absent in keystores made before it was recorded
        if recorded is not None and not hmac.compare_digest(str(recorded), self._primary_name):
            raise TpmBindingError(
                f"{self.path}: sealed by another TPM (this TPM's storage key differs): the data dir was "
                "copied from another machine, or this TPM was cleared; its keys cannot be unsealed here "
                "(restore a backup bundle with `facelock backup import` instead)"
            )

    def _seal(self, data: KeyFileData, key_id: str, version: int, secret: bytes) -> bytes:
        t = self._t

        def op() -> bytes:
            attrs = t.TPMA_OBJECT.FIXEDTPM | t.TPMA_OBJECT.FIXEDPARENT
            policy = b""
            if self._pcrs:
                policy = self._policy_digest()
            else:
                attrs |= t.TPMA_OBJECT.USERWITHAUTH
            public = t.TPM2B_PUBLIC(t.TPMT_PUBLIC.parse("keyedhash", objectAttributes=attrs, authPolicy=policy))
            sensitive = t.TPM2B_SENSITIVE_CREATE(
                t.TPMS_SENSITIVE_CREATE(data=t.TPM2B_SENSITIVE_DATA(_bind(key_id, version) + secret))
            )
            priv, pub, *_ = self._esapi.create(self._primary, sensitive, public)
            return priv.marshal() + pub.marshal()

        return self._call(op)

    def _unseal(self, data: KeyFileData, key_id: str, version: int, blob: bytes) -> bytes:
        t, e = self._t, self._esapi
        try:
            priv, off = t.TPM2B_PRIVATE.unmarshal(blob)
            pub, _ = t.TPM2B_PUBLIC.unmarshal(blob[off:])
        except Exception:
            raise KeystoreCorruptError(f"{self.path}: key {key_id!r} v{version}: malformed TPM blob") from None

        def op() -> bytes:
            handle = e.load(self._primary, priv, pub)
            sess = None
            try:
                if self._pcrs:
                    sess = self._policy_session(trial=False)
                    out = e.unseal(handle, session1=sess)
                else:
                    out = e.unseal(handle)
                return bytes(out)
            finally:
                if sess is not None:
                    try:
                        e.flush_context(sess)
                    except t.TSS2_Exception:
                        pass  # a failed policy check already ended the session
                e.flush_context(handle)

        raw = self._call(op)
        tag = _bind(key_id, version)
        if not hmac.compare_digest(raw[: len(tag)], tag):  # raw holds the secret: no early-exit compare
            raise KeystoreCorruptError(f"{self.path}: the blob stored as {key_id!r} v{version} belongs to another key")
        return raw[len(tag) :]
