"""The device's TLS client context: mutual TLS, TLS >= 1.2, server certificate and hostname verified."""

from __future__ import annotations

import ssl
from pathlib import Path

from firmware.telemetry.errors import TelemetryTLSError

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def client_context(ca_file: str | Path, cert_file: str | Path, key_file: str | Path, min_version: str = "1.2"
                   ) -> ssl.SSLContext:
    """A context that trusts only `ca_file` and presents the device certificate.

    PROTOCOL_TLS_CLIENT turns on CERT_REQUIRED and check_hostname, so a server certificate that is not
    signed by our CA, or not issued for the host we dial, fails the handshake.
    """
    if min_version not in _VERSIONS:
        raise TelemetryTLSError(f"unsupported minimum TLS version {min_version!r}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = _VERSIONS[min_version]
    try:
        ctx.load_verify_locations(cafile=str(ca_file))
        ctx.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    except (OSError, ssl.SSLError) as exc:
        # The message names the file, never its contents.
        raise TelemetryTLSError(f"cannot load TLS material ({ca_file}, {cert_file}): {exc.__class__.__name__}"
                                ) from None
    return ctx
