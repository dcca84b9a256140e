"""`facelock audit show|verify`: read the device's keyed, chained audit log (``<data_dir>/audit.db``).

``verify`` exits 3 (EXIT_CHECK_FAILED) when the chain is broken and names the first bad record, so a
cron job or the monitor can alert on it.  It authenticates every record with the keystore's audit-chain
key (firmware.audit) and fails when the log is keyed but the key is not available; ``--anchor`` and
``--monitor-db`` also check the log against heads published in heartbeats, which catches a history
rewritten by someone who had the key.  Both subcommands open the database read-only.
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


def _audit_key(data_dir: Path):
    """The audit-chain key when this data dir's keystore holds one (never creates a keystore or key)."""
    from firmware.audit import chain_key
    from firmware.keystore import keystore_dir
    from provisioning import stores

    if not keystore_dir(data_dir).exists():
        return None
    return chain_key(data_dir, stores.keystore_config(), create=False)


def _anchors(values: tuple[str, ...], monitor_db: Path | None, device: str | None,
             data_dir: Path) -> dict[int, str]:
    from provisioning.errors import InputFileError, ProvisioningError

    out: dict[int, str] = {}
    for v in values:
        seq, sep, head = v.partition(":")
        if not sep or not seq.isdigit() or len(head) != 64 or any(c not in "0123456789abcdef" for c in head):
            raise ProvisioningError(f"--anchor {v[:80]!r}: expected SEQ:HEAD (64 hex digits)")
        out[int(seq)] = head
    if monitor_db is not None:
        from provisioning.datadir import DataDir
        from provisioning.monitor.audit_anchors import AuditAnchors
        from provisioning.monitor.store import MonitorStore

        if not monitor_db.is_file():
            raise InputFileError(f"monitor database {monitor_db} does not exist")
        device = device or DataDir(data_dir).require_device()["device_id"]
        store = MonitorStore(monitor_db)
        try:
            anchors = AuditAnchors()
            anchors.seed(store.heartbeat_data(device))
        finally:
            store.close()
        out.update(anchors.heads(device))
    return out


@command.command("verify")
@data_dir_option
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="audit database [default: DATA_DIR/audit.db]")
@click.option("--expect-at-least", type=int, default=0,
              help="the last sequence number known from outside (e.g. from events): catches a cut-off tail")
@click.option("--anchor", "anchor_values", multiple=True, metavar="SEQ:HEAD",
              help="a chain head published earlier (heartbeat audit_seq:audit_head); repeatable")
@click.option("--monitor-db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="the monitor's database: check against every head its heartbeats recorded")
@click.option("--device", default=None, help="device id in the monitor database [default: this data dir's]")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def verify(data_dir: Path, db: Path | None, expect_at_least: int, anchor_values: tuple[str, ...],
           monitor_db: Path | None, device: str | None, as_json: bool) -> None:
    """Check every record's MAC and link; exit 3 and name the first bad record if the chain is broken."""
    from provisioning.cli import EXIT_CHECK_FAILED

    anchors = _anchors(anchor_values, monitor_db, device, data_dir)
    key = _audit_key(data_dir)
    with _open(data_dir, db) as log:
        res = log.verify(expect_at_least=expect_at_least, key=key, anchors=anchors)
    ok = res.ok and (res.authenticated or res.legacy == res.checked)
    reason = res.reason or (None if ok else "the log is keyed but the audit key is not in this data dir's "
                                             "keystore: cannot authenticate it")
    if as_json:
        click.echo(json.dumps({"ok": ok, "records": res.checked, "bad_record": res.bad_seq,
                               "reason": reason, "head": res.head, "authenticated": res.authenticated,
                               "legacy_records": res.legacy, "anchors_checked": len(anchors)}))
    else:
        click.echo(str(res) if res.ok == ok else f"audit chain NOT VERIFIED: {reason}", err=not ok)
    if not ok:
        sys.exit(EXIT_CHECK_FAILED)
