"""`facelock users list|show|rename|revoke|purge`: manage enrolled users."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from provisioning.options import data_dir_option, emit_json, json_option


def _store(data_dir: Path):
    from provisioning import stores
    from provisioning.datadir import DataDir

    dd = DataDir(data_dir)
    dd.require_device()
    return dd, stores.users(dd)


@click.group("users")
def command() -> None:
    """List, show, rename, revoke, reactivate and purge enrolled users (USER = name or user id)."""


@command.command("list")
@data_dir_option
@json_option
def list_(data_dir: Path, as_json: bool) -> None:
    """List enrolled users (name, id, state, schedule)."""
    from provisioning.schedule import describe

    _dd, users = _store(data_dir)
    rows = [u.to_dict() for u in users.list()]
    if as_json:
        emit_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} enrolled user(s)")
    for col in ("name", "user id", "state", "enrolled", "schedule"):
        table.add_column(col)
    for r in rows:
        sched = "; ".join(describe(w) for w in r.get("policy", {}).get("schedule", [])) or "any time"
        table.add_row(r["name"], r["user_id"], "revoked" if r["revoked"] else "active", r["created"], sched)
    Console().print(table)


@command.command("show")
@click.argument("user")
@data_dir_option
@json_option
def show(user: str, data_dir: Path, as_json: bool) -> None:
    """Show one user's record (never the template itself)."""
    _dd, users = _store(data_dir)
    info = users.get(user).to_dict()
    if as_json:
        emit_json(info)
    else:
        for k, v in info.items():
            click.echo(f"{k}: {v}")


@command.command("rename")
@click.argument("user")
@click.argument("new_name")
@data_dir_option
def rename(user: str, new_name: str, data_dir: Path) -> None:
    """Give USER a new display name (the user id and keys stay)."""
    from provisioning import auditlog, stores
    from provisioning.errors import AlreadyExistsError

    dd, users = _store(data_dir)
    stores.check_user_name(new_name)
    u = users.get(user)
    other = users.find(new_name)
    if other is not None and other.user_id != u.user_id:
        raise AlreadyExistsError(f"a user named {new_name!r} already exists")
    users.rename(u.user_id, new_name)
    auditlog.record(dd, "user_renamed", user=users.audit_ref(u.user_id))
    click.echo(f"renamed {u.name!r} -> {new_name!r} ({u.user_id})")


@command.command("revoke")
@click.argument("user")
@data_dir_option
def revoke(user: str, data_dir: Path) -> None:
    """Stop USER from unlocking and from decrypting images; the template stays (see purge)."""
    from provisioning import auditlog

    dd, users = _store(data_dir)
    u = users.get(user)
    users.revoke(u.user_id)
    auditlog.record(dd, "user_revoked", user=users.audit_ref(u.user_id))
    click.echo(f"revoked {u.name!r} ({u.user_id})")


@command.command("reactivate")
@click.argument("user")
@data_dir_option
def reactivate(user: str, data_dir: Path) -> None:
    """Undo `revoke`: USER may unlock and decrypt again (with their face)."""
    from provisioning import auditlog

    dd, users = _store(data_dir)
    u = users.get(user)
    users.reactivate(u.user_id)
    auditlog.record(dd, "user_reactivated", user=users.audit_ref(u.user_id))
    click.echo(f"reactivated {u.name!r} ({u.user_id})")


@command.command("purge")
@click.argument("user")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for scripts).")
@data_dir_option
@json_option
def purge(user: str, yes: bool, data_dir: Path, as_json: bool) -> None:
    """Delete USER for good: template, helper data and derived keys (the right to erasure).

    Images encrypted for USER can never be decrypted again, by anyone: the
    user's sealed secret is destroyed in the keystore and the helper data that
    let their face regenerate their biometric key is gone.
    """
    from provisioning import auditlog
    from provisioning.errors import ProvisioningError

    dd, users = _store(data_dir)
    u = users.get(user)
    if not yes:
        if not sys.stdin.isatty():
            raise ProvisioningError("purge is irreversible: confirm with --yes")
        click.confirm(f"Delete {u.name!r} ({u.user_id}) and every key of theirs for good?", abort=True)
    ref = users.audit_ref(u.user_id)  # before the secret it is derived from is destroyed
    removed = users.purge(u.user_id)
    auditlog.record(dd, "user_purged", user=ref)
    if as_json:
        emit_json({"user_id": u.user_id, "removed": removed})
    else:
        click.echo(f"purged {u.user_id}: {', '.join(removed)}")
