"""`facelock ca init|show|rewrap`: the management CA and the command-signing key.

The CA signs device (and broker) certificates for mutual TLS; the Ed25519
command-signing key signs remote commands (lock, unlock, revoke...) that
devices accept only with a valid signature.  Both private keys are wrapped
with the passphrase (scrypt + ChaCha20-Poly1305, provisioning/keywrap.py),
mode 0600, in the CA directory: ``--ca-dir``, default ``$FACELOCK_CA_DIR``,
else ``~/.local/share/facelock-ca``.  That is the management host's, never a
lock's data dir: a stolen lock must not carry the keys that mint identities
and sign unlocks, so ``ca init`` refuses a directory that holds a lock's files.
"""

from __future__ import annotations

from pathlib import Path

import click

from provisioning.options import (
    PATH,
    data_dir_option,
    emit_json,
    json_option,
    passphrase_option,
    read_passphrase,
)


def ca_dir_option(func):
    return click.option("--ca-dir", type=PATH, default=None,
                        help="CA directory [default: $FACELOCK_CA_DIR, else ~/.local/share/facelock-ca]; "
                             "never a lock's data dir.")(func)


def _ca_dir(ca_dir: Path | None) -> Path:
    from provisioning.pkifiles import default_ca_dir

    return ca_dir if ca_dir is not None else default_ca_dir()


@click.group("ca")
def command() -> None:
    """Management certificate authority and command-signing key."""


@command.command("init")
@ca_dir_option
@data_dir_option
@passphrase_option
@click.option("--name", default="FaceLock management CA", show_default=True, help="CA common name.")
@click.option("--days", type=click.IntRange(1, 36500), default=3650, show_default=True, help="CA validity.")
@click.option("--force", is_flag=True, help="Replace an existing CA (devices it signed must be re-initialised).")
@json_option
def init(ca_dir: Path | None, data_dir: Path, passphrase_file: Path | None, name: str, days: int, force: bool,
         as_json: bool) -> None:
    """Create the management CA and the Ed25519 command-signing key in CA_DIR/pki.

    Both private keys are wrapped with the passphrase (--passphrase-file or
    $FACELOCK_PASSPHRASE); `device init` and `device renew` need it again.
    --data-dir names the lock's data dir only so that the CA is never put there.
    """
    from provisioning import pki, pkifiles
    from provisioning.atomicfile import write_atomic
    from provisioning.datadir import DataDir
    from provisioning.errors import AlreadyExistsError, ProvisioningError

    root = _ca_dir(ca_dir)
    why = pkifiles.lock_data_dir_reason(root, data_dir)
    if why:
        raise ProvisioningError(f"refusing to put the CA in {root}: {why}; the CA belongs on the management "
                                "host (--ca-dir or $FACELOCK_CA_DIR)")
    dd = DataDir(root)
    if (dd.ca_key.exists() or dd.ca_cert.exists()) and not force:
        raise AlreadyExistsError(f"a CA already exists in {dd.pki} (use --force to replace it)")
    passphrase = read_passphrase(passphrase_file, confirm=True, what="CA passphrase")
    ca = pki.create_ca(name, days)
    ca_cert = ca.cert
    cmd_key = pki.create_signing_key()
    # Keys first, certificate last: the certificate's presence marks a complete CA.
    pkifiles.save_key(dd.cmd_key, cmd_key, passphrase)
    pkifiles.save_key(dd.ca_key, ca.key, passphrase)
    write_atomic(dd.cmd_pub, pkifiles.public_pem(cmd_key), 0o644)
    pkifiles.save_cert(dd.ca_cert, ca_cert)
    info = {
        "ca_dir": str(root),
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
@ca_dir_option
@data_dir_option
@json_option
def show(ca_dir: Path | None, data_dir: Path, as_json: bool) -> None:
    """Show the CA certificate's subject, fingerprint and validity."""
    from provisioning import pkifiles
    from provisioning.datadir import DataDir

    dd = DataDir(_ca_dir(ca_dir))
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


@command.command("rewrap")
@ca_dir_option
@data_dir_option
@passphrase_option
@json_option
def rewrap(ca_dir: Path | None, data_dir: Path, passphrase_file: Path | None, as_json: bool) -> None:
    """Convert keys of an older FaceLock (PKCS#8, PBKDF2 2,048 iterations) to scrypt + AEAD, same passphrase.

    Looks in CA_DIR, and in the lock's data dir where older versions put the CA by default; a CA found
    there should then be moved to the management host (and the lock's copy destroyed).
    """
    from provisioning import pkifiles
    from provisioning.datadir import DataDir

    roots = [DataDir(_ca_dir(ca_dir))]
    if ca_dir is None and DataDir(data_dir).root != roots[0].root:
        roots.append(DataDir(data_dir))
    found = [p for dd in roots for p in (dd.ca_key, dd.cmd_key) if p.is_file()]
    if not found:
        roots[0].require_ca()  # NotInitialisedError naming the CA dir
    passphrase = read_passphrase(passphrase_file, what="CA passphrase")
    done = {str(p): ("rewrapped" if pkifiles.rewrap_legacy(p, passphrase) else "already wrapped") for p in found}
    if as_json:
        emit_json(done)
    else:
        for p, what in done.items():
            click.echo(f"{p}: {what}")
