"""TPM-backend specifics against a real swtpm: persistence across restart, PCR policy, missing TPM."""

from __future__ import annotations

import socket

import pytest

from firmware.keystore import (
    KeystoreConfig,
    TpmPolicyError,
    TpmUnavailableError,
    open_keystore,
)


def _extend_pcr(ks, index: int) -> None:
    import tpm2_pytss as t

    digest = t.TPMT_HA(hashAlg=t.TPM2_ALG.SHA256, digest=t.TPMU_HA(sha256=b"\x42" * 32))
    ks._esapi.pcr_extend(getattr(t.ESYS_TR, f"PCR{index}"), t.TPML_DIGEST_VALUES([digest]))


def test_survives_swtpm_restart(swtpm, tmp_path):
    cfg = KeystoreConfig(backend="tpm", tpm_tcti=swtpm.tcti)
    ks = open_keystore(cfg, tmp_path)
    ks.create("k", secret=b"r" * 32)
    ks.close()
    swtpm.restart()  # new process, new port, same NV state: the persistent primary must still be there
    ks = open_keystore(KeystoreConfig(backend="tpm", tpm_tcti=swtpm.tcti), tmp_path)
    assert ks.unseal("k") == b"r" * 32
    ks.close()


def test_pcr_change_refuses_unseal(swtpm, tmp_path):
    ks = open_keystore(KeystoreConfig(backend="tpm", tpm_tcti=swtpm.tcti, tpm_pcrs=(7,)), tmp_path)
    ks.create("boot-bound", secret=b"b" * 32)
    assert ks.unseal("boot-bound") == b"b" * 32
    _extend_pcr(ks, 7)  # what a changed boot chain does to PCR 7
    with pytest.raises(TpmPolicyError, match="PCR policy"):
        ks.unseal("boot-bound")
    ks.close()


def test_pcr_policy_survives_restart_and_unrelated_pcr(swtpm, tmp_path):
    ks = open_keystore(KeystoreConfig(backend="tpm", tpm_tcti=swtpm.tcti, tpm_pcrs=(7,)), tmp_path)
    ks.create("k", secret=b"q" * 32)
    _extend_pcr(ks, 16)  # a PCR outside the policy changes nothing
    assert ks.unseal("k") == b"q" * 32
    ks.close()
    swtpm.restart()  # PCRs reset to the same boot values: unseal works again
    ks = open_keystore(KeystoreConfig(backend="tpm", tpm_tcti=swtpm.tcti, tpm_pcrs=(7,)), tmp_path)
    assert ks.unseal("k") == b"q" * 32
    ks.close()


def test_missing_tpm_is_a_typed_error(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TpmUnavailableError, match="no TPM answers"):
        open_keystore(KeystoreConfig(backend="tpm", tpm_tcti=f"swtpm:host=127.0.0.1,port={port}"), tmp_path)
    with pytest.raises(TpmUnavailableError):
        open_keystore(KeystoreConfig(backend="tpm", tpm_tcti="device:/nonexistent/tpmrm0"), tmp_path)


def test_tpm_gone_midway_is_a_typed_error(swtpm, tmp_path):
    ks = open_keystore(KeystoreConfig(backend="tpm", tpm_tcti=swtpm.tcti), tmp_path)
    ks.create("k")
    swtpm.stop()
    with pytest.raises(TpmUnavailableError):
        ks.unseal("k")
    ks.close()
