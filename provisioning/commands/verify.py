"""`facelock verify [--user U] [--json]`: ask the running lock (its Face Security API) whether the person in
front of its camera is enrolled, alive and allowed now.

Exit codes: 0 verified; 3 the attempt ran and the face was refused or nobody showed up in time (the
reason is printed: spoof_suspected, no_match, wrong_user, schedule, lockdown, lockout, timeout); 1 the call
itself failed (daemon not running, this account not allowed, unknown user, ...).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from provisioning.options import PATH, emit_json

EXIT_REFUSED = 3

MESSAGES = {
    "ok": "verified",
    "spoof_suspected": "refused: liveness check failed (a photo or a screen?)",
    "no_match": "refused: face not recognised",
    "wrong_user": "refused: not the requested user",
    "schedule": "refused: outside this user's schedule",
    "lockdown": "refused: the lock is in lockdown",
    "lockout": "refused: too many failed attempts, locked out for now",
    "timeout": "no face seen in time",
}


def _socket_path(socket: Path | None, config: Path | None) -> Path:
    """--socket > $FACELOCK_API_SOCKET > the config file's [api] socket > /run/facelock/api.sock."""
    from firmware.api.client import ENV_SOCKET, default_socket

    if socket is not None:
        return socket
    if os.environ.get(ENV_SOCKET):
        return default_socket()
    from provisioning.options import load_config

    cfg = load_config(config)
    api = cfg.sections.get("api") if cfg is not None else None
    return Path(api.socket) if api is not None else default_socket()


@click.command("verify")
@click.option("--user", "-u", default=None, help="Only this enrolled user (name or id) may pass.")
@click.option("--purpose", default="cli", show_default=True, help="Why (checked against the allowlist, audited).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1, max=60), default=10.0, show_default=True,
              help="Seconds to wait for a face.")
@click.option("--socket", type=PATH, default=None, help="API socket (default: $FACELOCK_API_SOCKET, the "
              "config's [api] socket, /run/facelock/api.sock).")
@click.option("--config", type=PATH, default=None, envvar="FACELOCK_CONFIG", help="Device config file.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's answer as JSON.")
def command(user: str | None, purpose: str, timeout_s: float, socket: Path | None, config: Path | None,
            as_json: bool) -> None:
    """Verify the person at the lock's camera through the running daemon (facelockd)."""
    from firmware.api.client import ApiClient

    client = ApiClient(_socket_path(socket, config))
    who = user or "an enrolled user"

    def progress(stage: str) -> None:
        if not as_json:
            click.echo(f"Looking for {who}..." if stage == "looking" else "Hold still - checking liveness", err=True)

    res = client.verify(user=user, purpose=purpose, timeout_s=timeout_s, on_progress=progress)
    if as_json:
        emit_json(res.to_wire())
    else:
        click.echo(MESSAGES.get(res.reason, res.reason) + (f" ({res.user_id})" if res.ok and res.user_id else ""))
    if not res.ok:
        sys.exit(EXIT_REFUSED)
