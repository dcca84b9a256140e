"""`facelock audit show|verify`: read the device's hash-chained audit log (``<data_dir>/audit.db``).

``verify`` exits 3 (EXIT_CHECK_FAILED) when the chain is broken and names the first bad record, so a
cron job or the monitor can alert on it.  Both subcommands open the database read-only.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import click

from provisioning.options import data_dir_option


def _open(data_dir: Path, db: Path | None):
    from firmware.audit import AuditLog

    return AuditLog(db or data_dir / "audit.db", readonly=True)


@click.group("audit")
def command() -> None:
    """Show or verify the device's append-only, hash-chained audit log."""


@command.command("show")
@data_dir_option
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="audit database [default: DATA_DIR/audit.db]")
@click.option("--since", type=int, default=0, show_default=True, help="only records after this sequence number")
@click.option("-n", "--limit", type=int, default=None, help="at most this many records")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def show(data_dir: Path, db: Path | None, since: int, limit: int | None, as_json: bool) -> None:
    """Print audit records (oldest first)."""
    with _open(data_dir, db) as log:
        for r in log.records(since=since, limit=limit):
            if as_json:
                click.echo(json.dumps({"seq": r.seq, "ts": r.ts, "kind": r.kind, "data": r.data,
                                       "hash": r.hash}, sort_keys=True))
            else:
                when = dt.datetime.fromtimestamp(r.ts).isoformat(timespec="seconds")
                facts = " ".join(f"{k}={v}" for k, v in sorted(r.data.items()))
                click.echo(f"{r.seq:>7} {when} {r.kind:<16} {facts}")


@command.command("verify")
@data_dir_option
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="audit database [default: DATA_DIR/audit.db]")
@click.option("--expect-at-least", type=int, default=0,
              help="the last sequence number known from outside (e.g. from events): catches a cut-off tail")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def verify(data_dir: Path, db: Path | None, expect_at_least: int, as_json: bool) -> None:
    """Check every record's hash and link; exit 3 and name the first bad record if the chain is broken."""
    from provisioning.cli import EXIT_CHECK_FAILED

    with _open(data_dir, db) as log:
        res = log.verify(expect_at_least=expect_at_least)
    if as_json:
        click.echo(json.dumps({"ok": res.ok, "records": res.checked, "bad_record": res.bad_seq,
                               "reason": res.reason or None, "head": res.head}))
    else:
        click.echo(str(res), err=not res.ok)
    if not res.ok:
        sys.exit(EXIT_CHECK_FAILED)
