"""`facelock ca init|show`: the management CA and the command-signing key.

The CA signs device (and broker) certificates for mutual TLS; the Ed25519
command-signing key signs remote commands (lock, unlock, revoke...) that
devices accept only with a valid signature.  Both private keys are stored
encrypted with the passphrase, mode 0600.
"""

from __future__ import annotations

from pathlib import Path

import click

from provisioning.options import data_dir_option, emit_json, json_option, passphrase_option, read_passphrase


@click.group("ca")
def command() -> None:
    """Management certificate authority and command-signing key."""


@command.command("init")
@data_dir_option
@passphrase_option
@click.option("--name", default="FaceLock management CA", show_default=True, help="CA common name.")
@click.option("--days", type=click.IntRange(1, 36500), default=3650, show_default=True, help="CA validity.")
@click.option("--force", is_flag=True, help="Replace an existing CA (devices it signed must be re-initialised).")
@json_option
def init(data_dir: Path, passphrase_file: Path | None, name: str, days: int, force: bool,
         as_json: bool) -> None:
    """Create the management CA and the Ed25519 command-signing key in DATA_DIR/pki.

    Both private keys are encrypted with the passphrase (--passphrase-file or
    $FACELOCK_PASSPHRASE); `device init` and `device renew` need it again.
    """
    from provisioning import pki, pkifiles
    from provisioning.datadir import DataDir
    from provisioning.errors import AlreadyExistsError

    dd = DataDir(data_dir)
    if (dd.ca_key.exists() or dd.ca_cert.exists()) and not force:
        raise AlreadyExistsError(f"a CA already exists in {dd.pki} (use --force to replace it)")
    passphrase = read_passphrase(passphrase_file, confirm=True, what="CA passphrase")
    ca = pki.create_ca(name, days)
    ca_cert = ca.cert
    cmd_key = pki.create_signing_key()
    # Keys first, certificate last: the certificate's presence marks a complete CA.
    pkifiles.save_key(dd.cmd_key, cmd_key, passphrase)
    pkifiles.save_key(dd.ca_key, ca.key, passphrase)
    from provisioning.atomicfile import write_atomic

    write_atomic(dd.cmd_pub, pkifiles.public_pem(cmd_key), 0o644)
    pkifiles.save_cert(dd.ca_cert, ca_cert)
    info = {
        "ca_cert": str(dd.ca_cert),
        "ca_fingerprint_sha256": pkifiles.fingerprint(ca_cert),
        "not_after": ca_cert.not_valid_after_utc.isoformat(),
        "command_signing_public_key": str(dd.cmd_pub),
    }
    if as_json:
        emit_json(info)
    else:
        click.echo(f"CA created: {dd.ca_cert} (sha256 {info['ca_fingerprint_sha256'][:16]}..., until {info['not_after']})")
        click.echo(f"command-signing public key: {dd.cmd_pub}")


@command.command("show")
@data_dir_option
@json_option
def show(data_dir: Path, as_json: bool) -> None:
    """Show the CA certificate's subject, fingerprint and validity."""
    from provisioning import pkifiles
    from provisioning.datadir import DataDir

    dd = DataDir(data_dir)
    dd.require_ca()
    cert = pkifiles.load_cert(dd.ca_cert)
    info = {
        "subject": cert.subject.rfc4514_string(),
        "fingerprint_sha256": pkifiles.fingerprint(cert),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "issued": sorted(p.stem for p in (dd.pki / "issued").glob("*.crt")),
    }
    if as_json:
        emit_json(info)
    else:
        for k, v in info.items():
            click.echo(f"{k}: {v}")
