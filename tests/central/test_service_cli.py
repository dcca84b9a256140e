"""The service as operators run it: `facelock-central` CLI commands and two `facelock-central run`
worker processes on one PostgreSQL and one mosquitto; a door onboarded from the CLI receives its bundle,
its events are stored once, and a remote command signed by the centre (and audited) opens it."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from central.app import Centre
from central.broker import BROKER_ADMIN_USER, central_files
from central.simdoor import SimDoor
from firmware.telemetry.client import TelemetryClient
from firmware.telemetry.events import make_event
from firmware.telemetry.outbox import Outbox
from tests.central.conftest import start_broker
from tests.support.mqtt_broker import wait_until

REPO = Path(__file__).resolve().parents[2]


def _cli(data_dir: Path, db: str, *args: str, ok: bool = True, config: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), FACELOCK_OPERATOR="op-cli")
    if config is not None:
        env["FACELOCK_CENTRAL_CONFIG"] = str(config)
    r = subprocess.run([sys.executable, "-m", "central.cli", "--data-dir", str(data_dir), "--db", db, *args],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def test_two_workers_cli_onboarding_push_events_and_a_signed_command(centre: Centre, pg_url: str,
                                                                     tmp_path: Path) -> None:
    data = centre.dir
    broker = start_broker(centre, tmp_path / "broker")
    cf = central_files(broker)
    admin = broker.raw_pki.client(BROKER_ADMIN_USER)
    toml = tmp_path / "central.toml"
    toml.write_text("[central]\n" + "\n".join(f'{k} = {json.dumps(v)}' for k, v in {
        "data_dir": str(data), "db": pg_url, "host": broker.host, "port": broker.port,
        "ca_file": str(broker.pki.ca), "cert_file": str(cf.cert), "key_file": str(cf.key), "retry_s": 0.5,
        "refresh_s": 1.0, "broker_admin_cert": str(admin.cert), "broker_admin_key": str(admin.key)}.items()) + "\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    workers = [subprocess.Popen([sys.executable, "-m", "central.cli", "run", "--config", str(toml)], cwd=REPO,
                                env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"w{i}.log", "wb"))
               for i in range(2)]
    door = SimDoor(tmp_path / "door-a", "door-a")
    (tmp_path / "door-a.csr").write_bytes(door.csr())
    client = None
    try:
        token = _cli(data, pg_url, "devices", "token", "--device", "door-a").stdout.strip()
        out = _cli(data, pg_url, "devices", "submit", str(tmp_path / "door-a.csr"), "--token", token,
                   "--out", str(door.dir), "--json", config=toml).stdout
        assert json.loads(out)["status"] == "active"  # and the centre gave the door its broker account
        _cli(data, pg_url, "doors", "add", "door-a", "--name", "Front")
        door.start_agent(broker.host, broker.port)
        import numpy as np
        centre.directory.add_person("Zoe", "op-test")
        centre.directory.enroll("Zoe", [np.ones(128, np.float32)], "op-test")
        _cli(data, pg_url, "groups", "add", "staff")
        _cli(data, pg_url, "groups", "member", "add", "staff", "Zoe")
        _cli(data, pg_url, "groups", "grant", "staff", "door-a", "--schedule",
             '[{"days": ["mon","tue","wed","thu","fri","sat","sun"], "start": "00:00", "end": "00:00"}]')
        assert wait_until(lambda: door.running_version() >= 1 and bool(door.applied)
                          and door.applied[-1].people, 20), (tmp_path / "w0.log").read_text()[-2000:]
        st = json.loads(_cli(data, pg_url, "doors", "status", "--json").stdout)
        assert wait_until(lambda: json.loads(_cli(data, pg_url, "doors", "status", "--json").stdout)[0]["in_sync"],
                          20), st

        # events from the door through both workers (shared subscription), stored exactly once
        got: list = []
        seen = threading.Event()

        def on_command(cmd) -> tuple[bool, str]:
            got.append(cmd)
            seen.set()
            return True, "ok"

        cfg = dataclasses.replace(door.mqtt_config(broker.host, broker.port), receipt_timeout_s=2.0)
        ob = Outbox(door.dir / "outbox.db")
        client = TelemetryClient(cfg, ob, on_command)
        client.start()
        for i in range(500):
            ob.put(make_event("door-a", "access_granted", user_id="u", n=i))
        workers[0].send_signal(signal.SIGKILL)  # one worker dies mid-stream; the other carries on
        assert wait_until(lambda: len(ob) == 0, 60)
        rep = json.loads(_cli(data, pg_url, "report", "--json").stdout)
        assert rep["events_per_device"]["door-a"]["by_type"]["access_granted"] == 500
        ev = json.loads(_cli(data, pg_url, "events", "--limit", "5", "--json").stdout)
        assert len(ev) == 5 and all(e["device"] == "door-a" for e in ev)

        # a remote command, signed by the centre's key, verified by the door, audited at the centre
        r = _cli(data, pg_url, "command", "door-a", "unlock", "--arg", "duration_s=3", "--config", str(toml))
        assert "unlock sent" in r.stdout
        assert seen.wait(10) and got[0].name == "unlock" and got[0].args == {"duration_s": 3}
        audit = json.loads(_cli(data, pg_url, "audit", "--json").stdout)
        assert {"command.unlock", "device.enroll", "door.add", "group.grant"} <= {a["action"] for a in audit}
        assert any(a["action"] == "command.unlock" and a["operator"] == "op-cli" for a in audit)
        bad = _cli(data, pg_url, "command", "door-a", "self-destruct", "--config", str(toml), ok=False)
        assert bad.returncode == 1 and "unknown command" in bad.stderr
    finally:
        if client is not None:
            client.stop()
        door.stop_agent()
        for w in workers:
            if w.poll() is None:
                w.terminate()
                try:
                    w.wait(15)
                except subprocess.TimeoutExpired:
                    w.kill()
        broker.stop()
