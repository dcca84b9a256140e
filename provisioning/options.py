"""Shared click options of the `facelock` provisioning commands.

Every command takes ``--data-dir`` and, where a secret is needed, reads the passphrase
from ``--passphrase-file`` or ``FACELOCK_PASSPHRASE`` so that it runs unattended in
scripts and tests; it prompts only when neither is given and stdin is a terminal.
Listings take ``--json`` so that scripts never parse tables.

The data dir resolves, first match wins: ``--data-dir`` > ``FACELOCK_DATA_DIR`` >
``[device] data_dir`` in the config file (``--config`` / ``FACELOCK_CONFIG``, else
``/etc/facelock/facelock.toml`` when it exists) > ``/var/lib/facelock``.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from provisioning.errors import PassphraseError, ProvisioningError

F = TypeVar("F", bound=Callable[..., Any])

#: Paths are checked by the commands themselves (typed one-line errors), not by click's usage errors.
PATH = click.Path(path_type=Path, readable=False)

DEFAULT_DATA_DIR = Path("/var/lib/facelock")
DEFAULT_CONFIG = Path("/etc/facelock/facelock.toml")
ENV_DATA_DIR = "FACELOCK_DATA_DIR"
ENV_CONFIG = "FACELOCK_CONFIG"
ENV_PASSPHRASE = "FACELOCK_PASSPHRASE"
MAX_PASSPHRASE_FILE = 4096


def load_config(config: Path | None):
    """The validated device config (firmware.config) or None when there is no config file.

    A config given explicitly must exist; the default location is optional.  The
    file is validated as the daemon validates it, so the CLI and the lock never
    disagree about a setting.
    """
    path = config if config is not None else DEFAULT_CONFIG
    if config is None and not path.exists():
        return None
    from firmware.config import load_config as _load

    return _load(path)


def data_dir_from_config(config: Path | None) -> Path | None:
    """``[device] data_dir`` of the config file, if any."""
    cfg = load_config(config)
    if cfg is None or not cfg.device.data_dir:
        return None
    return Path(cfg.device.data_dir)


def resolve_data_dir(cli_value: Path | None, config: Path | None) -> Path:
    if cli_value is not None:
        return cli_value
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env)
    from_config = data_dir_from_config(config)
    return from_config if from_config is not None else DEFAULT_DATA_DIR


def os_errors_as_one_line(func: F) -> F:
    """An OSError escaping a command (unwritable data dir, disk full...) becomes a one-line typed error."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise ProvisioningError(f"{where}{exc.strerror or exc}") from exc

    return wrapper  # type: ignore[return-value]


def data_dir_option(func: F) -> F:
    """Adds ``--data-dir`` and ``--config``; the command receives only ``data_dir: Path`` (resolved)."""
    func = os_errors_as_one_line(func)

    def _config_callback(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
        if value is not None:
            load_config(value)  # validate now: a bad config is refused before anything is touched
        ctx.meta["facelock.config"] = value

    def _callback(ctx: click.Context, _param: click.Parameter, value: str | None) -> Path:
        path = resolve_data_dir(Path(value) if value else None, ctx.meta.get("facelock.config"))
        if path.exists() and not path.is_dir():
            raise ProvisioningError(f"data dir {path} is not a directory")
        return path

    func = click.option(
        "--data-dir",
        "data_dir",
        default=None,
        metavar="DIR",
        callback=_callback,
        help=f"FaceLock data directory [default: ${ENV_DATA_DIR}, else [device] data_dir in the config file, "
        f"else {DEFAULT_DATA_DIR}].",
    )(func)
    func = click.option(
        "--config",
        "config",
        type=PATH,
        default=None,
        envvar=ENV_CONFIG,
        is_eager=True,
        expose_value=False,
        callback=_config_callback,
        help=f"Device config (TOML): [device] data_dir, [keystore], [liveness] [env {ENV_CONFIG}; default {DEFAULT_CONFIG} if present].",
    )(func)
    return func


def read_passphrase(passphrase_file: Path | None, *, confirm: bool = False, what: str = "passphrase") -> bytes:
    """The passphrase from the file, else ``FACELOCK_PASSPHRASE``, else a prompt on a terminal.

    Only the first line of the file counts (a trailing newline from ``echo`` is not part of it).
    An empty passphrase is refused: it would protect nothing.
    """
    if passphrase_file is not None:
        try:
            with open(passphrase_file, "rb") as fh:
                raw = fh.read(MAX_PASSPHRASE_FILE + 1)
        except OSError as exc:
            raise PassphraseError(f"cannot read passphrase file {passphrase_file}: {exc.strerror}") from exc
        if len(raw) > MAX_PASSPHRASE_FILE:
            raise PassphraseError(f"passphrase file {passphrase_file} is larger than {MAX_PASSPHRASE_FILE} bytes")
        value = raw.split(b"\n", 1)[0].rstrip(b"\r")
        source = f"passphrase file {passphrase_file}"
    elif os.environ.get(ENV_PASSPHRASE) is not None:
        value = os.environ[ENV_PASSPHRASE].encode("utf-8")
        source = ENV_PASSPHRASE
    elif sys.stdin is not None and sys.stdin.isatty():
        value = click.prompt(what.capitalize(), hide_input=True, confirmation_prompt=confirm).encode("utf-8")
        source = "the prompt"
    else:
        raise PassphraseError(f"no {what}: give --passphrase-file FILE or set {ENV_PASSPHRASE}")
    if not value:
        raise PassphraseError(f"the {what} from {source} is empty")
    return value


def passphrase_option(func: F) -> F:
    """Adds ``--passphrase-file``; the command reads it with :func:`read_passphrase` when it needs it."""
    return click.option(
        "--passphrase-file",
        "passphrase_file",
        type=PATH,
        default=None,
        help=f"File whose first line is the passphrase [else ${ENV_PASSPHRASE}, else a prompt on a terminal].",
    )(func)


def json_option(func: F) -> F:
    """Adds ``--json``: print one JSON document instead of a table (for scripts)."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(func)


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))
