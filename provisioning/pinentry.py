"""Reading a user's image PIN for `facelock encrypt --pin` / `facelock decrypt` (one place for both).

Same rules as the passphrase (provisioning.options.read_passphrase) so scripts and tests run
unattended: ``--pin-file FILE`` (first line), else ``$FACELOCK_PIN``, else a hidden prompt on a
terminal (confirmed when encrypting).  The PIN is never echoed, logged or stored.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from provisioning.errors import PassphraseError

ENV_PIN = "FACELOCK_PIN"
MAX_PIN_FILE = 4096


def pin_file_option(func):
    return click.option(
        "--pin-file", "pin_file", type=click.Path(path_type=Path), default=None,
        help=f"File whose first line is the image PIN [else ${ENV_PIN}, else a prompt on a terminal].",
    )(func)


def read_pin(pin_file: Path | None, *, confirm: bool) -> str:
    if pin_file is not None:
        try:
            with open(pin_file, "rb") as fh:
                raw = fh.read(MAX_PIN_FILE + 1)
        except OSError as exc:
            raise PassphraseError(f"cannot read PIN file {pin_file}: {exc.strerror}") from None
        if len(raw) > MAX_PIN_FILE:
            raise PassphraseError(f"PIN file {pin_file} is larger than {MAX_PIN_FILE} bytes")
        try:
            return raw.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8")
        except UnicodeDecodeError:
            raise PassphraseError(f"PIN file {pin_file} is not UTF-8") from None
    if os.environ.get(ENV_PIN) is not None:
        return os.environ[ENV_PIN]
    if sys.stdin is not None and sys.stdin.isatty():
        return click.prompt("Image PIN", hide_input=True, confirmation_prompt=confirm)
    raise PassphraseError(f"this needs the image PIN: give --pin-file FILE or set {ENV_PIN}")
