"""`facelock policy set|show|clear`: when a user may unlock (weekdays and a time window)."""

from __future__ import annotations

from pathlib import Path

import click

from provisioning.options import data_dir_option, emit_json, json_option


@click.group("policy")
def command() -> None:
    """Per-user schedules: the days and hours in which a user may unlock."""


@command.command("set")
@click.argument("user")
@click.option("--days", default="all", show_default=True,
              help="Days: mon-fri, mon,wed,fri, sat-sun, weekdays, weekend or all.")
@click.option("--from", "start", required=True, help="Start time HH:MM (24 h, local time).")
@click.option("--to", "end", required=True, help="End time HH:MM; at or before --from it crosses midnight.")
@click.option("--add", is_flag=True, help="Add this window to the user's others instead of replacing them.")
@data_dir_option
@json_option
def set_(user: str, days: str, start: str, end: str, add: bool, data_dir: Path, as_json: bool) -> None:
    """Allow USER to unlock only on DAYS between --from and --to (e.g. --days mon-fri --from 08:00 --to 18:00)."""
    from provisioning import auditlog, schedule, stores
    from provisioning.datadir import DataDir

    dd = DataDir(data_dir)
    dd.require_device()
    users = stores.users(dd)
    u = users.get(user)
    w = schedule.window(days, start, end)
    policy = dict(u.policy)
    windows = list(policy.get("schedule", [])) if add else []
    windows.append(w)
    policy["schedule"] = windows
    users.set_policy(u.user_id, policy)
    auditlog.record(dd, "policy_set", user=users.audit_ref(u.user_id), schedule=windows)
    if as_json:
        emit_json({"user_id": u.user_id, "policy": policy})
    else:
        click.echo(f"{u.name}: may unlock {'; '.join(schedule.describe(x) for x in windows)}")


@command.command("show")
@click.argument("user")
@data_dir_option
@json_option
def show(user: str, data_dir: Path, as_json: bool) -> None:
    """Show USER's schedule."""
    from provisioning import schedule, stores
    from provisioning.datadir import DataDir

    dd = DataDir(data_dir)
    dd.require_device()
    u = stores.users(dd).get(user)
    if as_json:
        emit_json({"user_id": u.user_id, "policy": u.policy})
    else:
        windows = u.policy.get("schedule", [])
        click.echo(f"{u.name}: " + ("; ".join(schedule.describe(w) for w in windows) or "may unlock any time"))


@command.command("clear")
@click.argument("user")
@data_dir_option
def clear(user: str, data_dir: Path) -> None:
    """Remove USER's schedule (they may unlock any time)."""
    from provisioning import auditlog, stores
    from provisioning.datadir import DataDir

    dd = DataDir(data_dir)
    dd.require_device()
    users = stores.users(dd)
    u = users.get(user)
    policy = {k: v for k, v in u.policy.items() if k != "schedule"}
    users.set_policy(u.user_id, policy)
    auditlog.record(dd, "policy_cleared", user=users.audit_ref(u.user_id))
    click.echo(f"{u.name}: may unlock any time")
