"""`facelock-central operators ...` and `facelock-central console`: registered on the centre's CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import click


def _load(config_file: Path):
    import tomllib

    from central.console.config import ConsoleConfig
    from central.errors import CentralError
    from central.service import ServiceConfig

    try:
        d = tomllib.loads(config_file.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CentralError(f"{config_file}: {exc}") from None
    if set(d) - {"central", "console"}:
        raise CentralError(f"{config_file}: only [central] and [console] tables are allowed")
    base = config_file.parent
    return ServiceConfig.from_dict(d.get("central", {}), base), ConsoleConfig.from_dict(d.get("console", {}), base)


def register(main: click.Group, pass_ctx) -> None:  # noqa: ANN001 - the CLI's click decorator
    @main.group("operators")
    def operators() -> None:
        """Console operators: roles viewer < operator < admin, argon2id passwords, optional TOTP."""

    def _ops(c):  # noqa: ANN001
        from central.console import schema
        from central.console.operators import Operators

        centre = c.centre()
        schema.upgrade(centre.db)
        return Operators(centre.db, centre.keys)

    @operators.command("add")
    @click.argument("username")
    @click.option("--role", type=click.Choice(["viewer", "operator", "admin"]), required=True)
    @click.option("--totp", is_flag=True, help="Require a TOTP code at login; the secret is printed once.")
    @click.option("--password-stdin", is_flag=True, help="Read the password from stdin (one line) instead of a prompt.")
    @pass_ctx
    def operators_add(c, username: str, role: str, totp: bool, password_stdin: bool) -> None:  # noqa: ANN001
        """Create a console operator (the password is asked twice, or read from stdin)."""
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = click.prompt("password", hide_input=True, confirmation_prompt=True)
        secret = _ops(c).add(username, role, password, c.operator, totp=totp)
        click.echo(f"operator {username} ({role}) added")
        if secret:
            import pyotp

            click.echo(f"TOTP secret (shown once; add it to an authenticator app): {secret}")
            click.echo(pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name="FaceLock centre"))

    @operators.command("list")
    @click.option("--json", "as_json", is_flag=True)
    @pass_ctx
    def operators_list(c, as_json: bool) -> None:  # noqa: ANN001
        from central.cli import _emit

        _emit(_ops(c).list(), as_json)

    @operators.command("unlock")
    @click.argument("username")
    @pass_ctx
    def operators_unlock(c, username: str) -> None:  # noqa: ANN001
        """Lift a lockout after repeated failed logins."""
        _ops(c).unlock(username, c.operator)
        click.echo(f"operator {username} unlocked")

    @main.command("console")
    @click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  required=True, help="TOML with [central] (database, data dir, broker) and [console] tables.")
    def console(config_file: Path) -> None:
        """Serve the web console over HTTPS until SIGTERM (certificate from the centre's CA by default)."""
        import logging

        from central.app import Centre
        from central.console.app import build_app
        from central.console.server import ensure_certificate, run_until_stopped, uvicorn_server
        from central.distributor import BrokerSettings

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        svc, cfg = _load(config_file)
        centre = Centre(svc.data_dir, svc.db or None)
        broker = BrokerSettings(svc.host, svc.port, svc.ca_file, svc.cert_file, svc.key_file,
                                client_id="facelock-central-console")
        cert, key = ensure_certificate(centre, cfg)
        click.echo(f"console on https://{cfg.host}:{cfg.port}/ (certificate {cert})")
        try:
            run_until_stopped(uvicorn_server(build_app(centre, cfg, broker), cfg, cert, key))
        finally:
            centre.close()
