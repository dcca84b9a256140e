"""`facelock-central`: the fleet management service (`run`) and its admin commands.

Global options (or environment): --data-dir / $FACELOCK_CENTRAL_DIR (keys, CA, CRL; default
./facelock-central), --db / $FACELOCK_CENTRAL_DB (default: SQLite in the data dir; a fleet uses
postgresql+psycopg://...), --operator / $FACELOCK_OPERATOR (recorded in the centre's audit with every
change; default: the login name).  Errors are one line on stderr; exit 1 bad input or refused,
2 usage, 5 database unavailable.

Every command that changes who may open a door rebuilds the affected bundles at once; a running
`facelock-central run` pushes them and retries until each door acknowledges.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from firmware.errors import FaceLockError


class CentralGroup(click.Group):
    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except FaceLockError as exc:
            click.echo(f"facelock-central: error: {' '.join(str(exc).split())}", err=True)
            sys.exit(getattr(exc, "exit_code", 1))


def _emit(obj: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))
    elif isinstance(obj, list):
        for row in obj:
            click.echo("  ".join(f"{k}={v}" for k, v in row.items()) if isinstance(row, dict) else str(row))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            click.echo(f"{k}: {json.dumps(v, default=str) if isinstance(v, dict | list) else v}")
    else:
        click.echo(str(obj))


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


class Ctx:
    def __init__(self, data_dir: Path, db: str | None, operator: str, config: Path | None = None) -> None:
        self.data_dir, self.db_url, self.operator, self.config = data_dir, db, operator, config
        self._centre = None

    def centre(self):
        if self._centre is None:
            from central.app import Centre

            accounts = None
            if self.config is not None:  # the service's TOML: the broker the centre keeps accounts on
                from central.service import ServiceConfig

                accounts = ServiceConfig.from_toml(self.config).accounts()
            self._centre = Centre(self.data_dir, self.db_url, accounts=accounts)
        return self._centre

    def refresh(self) -> dict[str, int]:
        return self.centre().policy.refresh()


pass_ctx = click.make_pass_decorator(Ctx)


@click.group(cls=CentralGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", type=click.Path(path_type=Path), envvar="FACELOCK_CENTRAL_DIR",
              default=Path("facelock-central"), show_default=True, help="Keys, CA and CRL of this centre.")
@click.option("--db", envvar="FACELOCK_CENTRAL_DB", default=None,
              help="Database URL [default: SQLite in the data dir].")
@click.option("--operator", envvar="FACELOCK_OPERATOR", default=None,
              help="Who is acting (recorded in the audit) [default: the login name].")
@click.option("--service-config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              envvar="FACELOCK_CENTRAL_CONFIG", default=None,
              help="The service's TOML: with broker_admin_cert/key, approve and revoke update the broker.")
@click.pass_context
def main(ctx: click.Context, data_dir: Path, db: str | None, operator: str | None,
         service_config: Path | None) -> None:
    """FaceLock centre: devices, people, groups, doors, policy push, monitoring."""
    ctx.obj = Ctx(data_dir, db, operator or os.environ.get("USER") or getpass.getuser(), service_config)


@main.command("init")
@pass_ctx
def init(c: Ctx) -> None:
    """Create the centre's keys and CA (once) and bring the database schema up to date."""
    centre = c.centre()
    centre.init()
    click.echo(f"centre ready in {c.data_dir} (database {centre.db.engine.dialect.name}, "
               f"schema {centre.db.current_revision()}); doors pin {centre.keys.public_key_path}")


@main.group("db")
def db_group() -> None:
    """Schema migrations."""


@db_group.command("upgrade")
@pass_ctx
def db_upgrade(c: Ctx) -> None:
    """Apply every pending Alembic revision."""
    click.echo(f"schema at {c.centre().db.current_revision()}")


# -- devices ------------------------------------------------------------------------------------------
@main.group("devices")
def devices() -> None:
    """Onboarding: tokens, requests, approval, revocation, CRL."""


@devices.command("token")
@click.option("--device", default=None, help="Only this device id may use the token.")
@click.option("--ttl", type=click.FloatRange(60, 30 * 86400), default=86400, show_default=True, help="Seconds.")
@pass_ctx
def devices_token(c: Ctx, device: str | None, ttl: float) -> None:
    """Print a new one-time enrollment token (shown once; only its hash is stored)."""
    click.echo(c.centre().registry.create_token(c.operator, device, ttl))


@devices.command("submit")
@click.argument("csr", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--token", default=None, help="One-time token: signs at once; without it the request waits.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="When signed, write device.pem, ca.pem and central.pub here.")
@json_option
@pass_ctx
def devices_submit(c: Ctx, csr: Path, token: str | None, out: Path | None, as_json: bool) -> None:
    """Submit a lock's enrollment CSR (made by firmware.fleet.doorkey.enrollment_csr)."""
    e = c.centre().registry.submit(csr.read_bytes(), token)
    if out is not None and e.status == "active":
        from firmware import fsutil

        fsutil.make_private_dir(out)
        for name, text in (("device.pem", e.cert_pem), ("ca.pem", e.ca_pem), ("central.pub", e.centre_pub_pem)):
            fsutil.atomic_write(out / name, text.encode(), 0o644)
    _emit({"device": e.device_id, "status": e.status}, as_json)


@devices.command("pending")
@json_option
@pass_ctx
def devices_pending(c: Ctx, as_json: bool) -> None:
    """Requests waiting for an operator."""
    _emit(c.centre().registry.pending(), as_json)


@devices.command("approve")
@click.argument("device")
@pass_ctx
def devices_approve(c: Ctx, device: str) -> None:
    """Sign a pending request (check its csr_sha256 with the installer first)."""
    c.centre().registry.approve(device, c.operator)
    click.echo(f"device {device} approved")


@devices.command("revoke")
@click.argument("device")
@pass_ctx
def devices_revoke(c: Ctx, device: str) -> None:
    """Revoke for good: the CRL is rewritten (reload the broker) and the door gets no more bundles."""
    c.centre().registry.revoke(device, c.operator)
    click.echo(f"device {device} revoked; CRL written to {c.centre().keys.crl_path}")


@devices.command("list")
@json_option
@pass_ctx
def devices_list(c: Ctx, as_json: bool) -> None:
    _emit(c.centre().registry.list(), as_json)


@devices.command("sync")
@pass_ctx
def devices_sync(c: Ctx) -> None:
    """Give every active device its broker account and delete every revoked one (needs --service-config)."""
    from central.errors import CentralError

    if c.centre().registry.accounts is None:
        raise CentralError("no broker to sync: give --service-config with broker_admin_cert and broker_admin_key")
    _emit(c.centre().registry.sync_broker(), False)


@devices.command("crl")
@pass_ctx
def devices_crl(c: Ctx) -> None:
    """Rewrite the CRL (crl.pem in the data dir) from the registry."""
    c.centre().registry.write_crl()
    click.echo(str(c.centre().keys.crl_path))


# -- people, groups, doors --------------------------------------------------------------------------
@main.group("people")
def people() -> None:
    """People and their face templates (stored sealed under the centre's key)."""


@people.command("add")
@click.argument("name")
@pass_ctx
def people_add(c: Ctx, name: str) -> None:
    click.echo(c.centre().directory.add_person(name, c.operator))


@people.command("enroll")
@click.argument("name")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Enroll from the face images in this folder (an operator import: no liveness).")
@click.option("--camera", is_flag=True, help="Enroll live at this enrollment station (quality gates + liveness).")
@click.option("--camera-source", default=None, help="Camera for --camera (index, /dev/videoN, file, folder).")
@click.option("--frames", type=click.IntRange(1, 50), default=5, show_default=True)
@pass_ctx
def people_enroll(c: Ctx, name: str, images: Path | None, camera: bool, camera_source: str | None,
                  frames: int) -> None:
    """Capture NAME's face with the lock's own pipeline and store one sealed template (mean of the good
    frames); the person is added when new.  No image and no plaintext embedding is written."""
    import numpy as np

    from central.errors import CentralError, NotFound
    from provisioning import capture

    if (images is None) == (not camera):
        raise CentralError("give exactly one of --images DIR or --camera")
    if images is not None:
        cap = capture.from_images(images, frames)
    else:
        cap = capture.from_camera(camera_source or capture.default_camera_source(), frames)
    if not cap.embeddings:
        raise CentralError(f"no usable face: {'; '.join(f'{s}: {r}' for s, r in cap.rejected[:5])}")
    mean = np.mean(np.stack(cap.embeddings), axis=0)
    mean = mean / (np.linalg.norm(mean) or 1.0)
    d = c.centre().directory
    try:
        d.enroll(name, [mean], c.operator)
    except NotFound:
        d.add_person(name, c.operator)
        d.enroll(name, [mean], c.operator)
    changed = c.refresh()
    click.echo(f"{name} enrolled from {len(cap.embeddings)} frames; bundles rebuilt for {sorted(changed)}")


@people.command("delete")
@click.argument("name")
@pass_ctx
def people_delete(c: Ctx, name: str) -> None:
    """Delete a person and every template for good; their doors get bundles without them."""
    c.centre().directory.delete_person(name, c.operator)
    click.echo(f"{name} deleted; bundles rebuilt for {sorted(c.refresh())}")


@people.command("list")
@json_option
@pass_ctx
def people_list(c: Ctx, as_json: bool) -> None:
    _emit(c.centre().directory.people(), as_json)


@main.group("groups")
def groups() -> None:
    """Access groups: members, and the doors (with schedules) they grant."""


@groups.command("add")
@click.argument("name")
@pass_ctx
def groups_add(c: Ctx, name: str) -> None:
    c.centre().directory.add_group(name, c.operator)


@groups.command("member")
@click.argument("action", type=click.Choice(["add", "remove"]))
@click.argument("group")
@click.argument("person")
@pass_ctx
def groups_member(c: Ctx, action: str, group: str, person: str) -> None:
    d = c.centre().directory
    (d.add_member if action == "add" else d.remove_member)(group, person, c.operator)
    click.echo(f"bundles rebuilt for {sorted(c.refresh())}")


@groups.command("grant")
@click.argument("group")
@click.argument("door")
@click.option("--schedule", default=None,
              help='JSON list of windows, e.g. \'[{"days": ["mon","tue"], "start": "08:00", "end": "18:00"}]\'.')
@pass_ctx
def groups_grant(c: Ctx, group: str, door: str, schedule: str | None) -> None:
    from central.errors import CentralError

    try:
        sched = json.loads(schedule) if schedule else None
    except ValueError:
        raise CentralError("--schedule is not JSON") from None
    c.centre().directory.grant(group, door, c.operator, sched)
    click.echo(f"bundles rebuilt for {sorted(c.refresh())}")


@groups.command("ungrant")
@click.argument("group")
@click.argument("door")
@pass_ctx
def groups_ungrant(c: Ctx, group: str, door: str) -> None:
    c.centre().directory.ungrant(group, door, c.operator)
    click.echo(f"bundles rebuilt for {sorted(c.refresh())}")


@main.group("doors")
def doors() -> None:
    """Doors (onboarded devices), lockdown, and which bundle version each one runs."""


@doors.command("add")
@click.argument("device")
@click.option("--name", required=True)
@pass_ctx
def doors_add(c: Ctx, device: str, name: str) -> None:
    c.centre().directory.add_door(device, name, c.operator)
    click.echo(f"bundles rebuilt for {sorted(c.refresh())}")


@doors.command("lockdown")
@click.argument("door")
@click.argument("mode", type=click.Choice(["on", "off"]))
@pass_ctx
def doors_lockdown(c: Ctx, door: str, mode: str) -> None:
    c.centre().directory.set_lockdown(door, "nobody" if mode == "on" else "off", c.operator)
    click.echo(f"bundles rebuilt for {sorted(c.refresh())}")


@doors.command("status")
@json_option
@pass_ctx
def doors_status(c: Ctx, as_json: bool) -> None:
    """Per door: the bundle version the centre wants, the one the door acknowledged, re-sends."""
    _emit(c.centre().policy.status(), as_json)


@main.command("push")
@pass_ctx
def push(c: Ctx) -> None:
    """Rebuild every bundle whose content changed (a running service sends them)."""
    _emit(c.refresh(), False)


# -- monitoring ------------------------------------------------------------------------------------
@main.command("events")
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
@click.option("--device", default=None)
@click.option("--type", "type_", default=None)
@json_option
@pass_ctx
def events(c: Ctx, limit: int, device: str | None, type_: str | None, as_json: bool) -> None:
    """The newest events stored (de-duplicated by event id)."""
    _emit(c.centre().monitor.events(limit, device, type_), as_json)


@main.command("alerts")
@click.option("--limit", type=click.IntRange(1, 100000), default=200, show_default=True)
@json_option
@pass_ctx
def alerts(c: Ctx, limit: int, as_json: bool) -> None:
    _emit(c.centre().monitor.alerts(limit), as_json)


@main.command("report")
@json_option
@pass_ctx
def report(c: Ctx, as_json: bool) -> None:
    """Events per door and type, alerts per rule, availability, counters, policy sync."""
    r = c.centre().monitor.report()
    r["policy"] = c.centre().policy.status()
    _emit(r, as_json)


@main.command("audit")
@click.option("--limit", type=click.IntRange(1, 100000), default=100, show_default=True)
@json_option
@pass_ctx
def audit_cmd(c: Ctx, limit: int, as_json: bool) -> None:
    """The centre's own audit: who changed what."""
    from central import audit

    with c.centre().db.session() as s:
        _emit(audit.entries(s, limit), as_json)


@main.command("command")
@click.argument("door")
@click.argument("name")
@click.option("--arg", "args", multiple=True, help="KEY=JSON argument, e.g. --arg on=true --arg duration_s=5.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="The service's TOML (broker address and the centre's TLS files).")
@pass_ctx
def command_cmd(c: Ctx, door: str, name: str, args: tuple[str, ...], config_file: Path) -> None:
    """Send DOOR a remote command NAME, signed by the centre's key and recorded in the audit."""
    from central.commands import send_command
    from central.distributor import BrokerSettings
    from central.errors import CentralError
    from central.service import ServiceConfig

    parsed = {}
    for a in args:
        k, sep, v = a.partition("=")
        if not sep:
            raise CentralError(f"--arg {a!r}: expected KEY=VALUE")
        try:
            parsed[k] = json.loads(v)
        except ValueError:
            parsed[k] = v
    cfg = ServiceConfig.from_toml(config_file)
    nonce = send_command(c.centre().db, c.centre().keys,
                         BrokerSettings(cfg.host, cfg.port, cfg.ca_file, cfg.cert_file, cfg.key_file),
                         c.operator, door, name, parsed)
    click.echo(f"{name} sent to {door} (nonce {nonce})")


# -- service -----------------------------------------------------------------------------------------
@main.command("run")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="TOML with a [central] table (broker host/port, TLS files, retry_s).")
def run(config_file: Path) -> None:
    """Run one stateless worker (monitor + bundle distributor) until SIGTERM; run several for load."""
    from central.service import ServiceConfig, run_service

    cfg = ServiceConfig.from_toml(config_file)
    run_service(cfg)


# -- the web console and its operators (central/console) ---------------------------------------------
from central.console.cli import register as _register_console  # noqa: E402 - extends the groups above

_register_console(main, pass_ctx)


if __name__ == "__main__":  # pragma: no cover
    main()
