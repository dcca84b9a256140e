"""`facelock monitor run|tail|report`: the central MQTT monitor and views of its store."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import click

from firmware.errors import FaceLockError


def _default_db() -> str:
    import os

    return str(Path(os.environ.get("FACELOCK_DATA_DIR", "/var/lib/facelock")) / "monitor.db")


@click.group("monitor")
def command() -> None:
    """Central monitoring: consume device events over MQTT v5 (mutual TLS), store, alert, report."""


@command.command("run")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="TOML file with a [monitor] table (keys as in MonitorConfig); options below override it.")
@click.option("--host")
@click.option("--port", type=int)
@click.option("--ca", "ca_file", type=click.Path())
@click.option("--cert", "cert_file", type=click.Path())
@click.option("--key", "key_file", type=click.Path())
@click.option("--db", type=click.Path())
@click.option("--group", help="Shared-subscription group; monitors in one group split the load.")
@click.option("--client-id")
@click.option("--webhook", "webhook_url", help="POST every alert as JSON to this URL.")
@click.option("--ha-key", "ha_key_file", type=click.Path(),
              help="The HA bridge's scoped Ed25519 key (from `facelock ha grant`); needs --ha-grant.")
@click.option("--ha-grant", "ha_grant_file", type=click.Path(), help="The grant signed for that key.")
@click.option("--ha-unlock-allowed", "ha_unlock_allowed", multiple=True,
              help="A device Home Assistant may UNLOCK (repeat; default: none, HA can only lock).")
@click.option("--quiet", is_flag=True, help="No console alert lines.")
def run(config_file: str | None, quiet: bool, **opts: object) -> None:
    """Run the monitor until SIGINT/SIGTERM."""
    import logging

    from provisioning.monitor.config import MonitorConfig
    from provisioning.monitor.notify import ConsoleNotifier, WebhookNotifier
    from provisioning.monitor.service import MonitorService
    from provisioning.monitor.store import MonitorStore

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    values: dict = {}
    if config_file:
        import tomllib

        try:
            data = tomllib.loads(Path(config_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise FaceLockError(f"cannot read {config_file}: {exc}") from None
        values.update(data.get("monitor", data))
    values.update({k: v for k, v in opts.items() if v is not None and v != ()})
    if quiet:
        values["console"] = False
    values.setdefault("db", _default_db())
    cfg = MonitorConfig.from_dict(values)
    store = MonitorStore(cfg.db)
    notifiers: list = []
    if cfg.console:
        notifiers.append(ConsoleNotifier())
    if cfg.webhook_url:
        notifiers.append(WebhookNotifier(cfg.webhook_url))
    service = MonitorService(cfg, store, notifiers)

    def _stop(signum, frame):  # noqa: ARG001
        service.stop()  # run() is on this thread: stop() only asks it to end

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # The group is a secret (anyone who could subscribe and name it would share the events): never printed.
    click.echo(f"facelock monitor: {cfg.host}:{cfg.port} db={cfg.db}", err=True)
    service.run()
    for n in notifiers:
        n.close()
    store.close()


@command.command("tail")
@click.option("--db", type=click.Path(), default=_default_db, show_default="$FACELOCK_DATA_DIR/monitor.db")
@click.option("--follow/--no-follow", default=True, help="Keep watching for new rows.")
@click.option("--last", type=int, default=20, help="Show this many recent events first.")
def tail(db: str, follow: bool, last: int) -> None:
    """Live view of stored events and alerts."""
    from provisioning.monitor.sanitize import printable as p
    from provisioning.monitor.store import MonitorStore

    if not Path(db).exists():
        raise FaceLockError(f"no monitor store at {db}")
    store = MonitorStore(db)
    total = store.event_count()
    ev_pos = 0
    if total > last:
        ev_pos = store.events_after(0, total - last)[-1][0] if total - last > 0 else 0
    al_pos = 0
    try:
        while True:
            for pos, e in store.events_after(ev_pos, 500):
                ev_pos = pos
                click.echo(f"{time.strftime('%H:%M:%S', time.localtime(e['ts']))} {p(e['device']):<16} "
                           f"{p(e['severity']):<8} {p(e['type']):<18} seq={e['seq']}")
            for pos, a in store.alerts_after(al_pos, 500):
                al_pos = pos
                # Alert details quote device-supplied text: escaped, never interpreted by the terminal.
                click.secho(f"{time.strftime('%H:%M:%S', time.localtime(a['ts']))} ALERT {p(a['rule'])} "
                            f"device={p(a['device'])} {p(a['detail'])}", fg="red")
            if not follow:
                return
            time.sleep(0.5)
    except KeyboardInterrupt:
        return
    finally:
        store.close()


@command.command("report")
@click.option("--db", type=click.Path(), default=_default_db, show_default="$FACELOCK_DATA_DIR/monitor.db")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (counts per device, type and alert).")
def report(db: str, as_json: bool) -> None:
    """Counts of stored events per device and type, alerts per rule, malformed payloads."""
    from provisioning.monitor.store import MonitorStore

    if not Path(db).exists():
        raise FaceLockError(f"no monitor store at {db}")
    store = MonitorStore(db)
    try:
        rep = store.report()
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(rep, indent=2, sort_keys=True))
        return
    from provisioning.monitor.sanitize import printable as p

    click.echo(f"events: {rep['events_total']}  alerts: {rep['alerts_total']}")
    for device, d in rep["events_per_device"].items():
        click.echo(f"  {p(device)}: {d['total']}  " + ", ".join(f"{p(t)}={n}" for t, n in d["by_type"].items()))
    for rule, d in rep["alerts_per_rule"].items():
        click.echo(f"  alert {p(rule)}: {d['total']}")
    if rep["counters"]:
        click.echo("  counters: " + ", ".join(f"{p(k)}={v}" for k, v in sorted(rep["counters"].items())))
