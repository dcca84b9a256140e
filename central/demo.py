"""`make demo-central`: one centre (SQLite), two doors, the lock demo's faces, the real push path.

A centre with its own CA and keys, a real mosquitto (mutual TLS, the centre's ACL), one centre worker
(monitor + distributor) and two simulated doors onboarded with one-time tokens.  The astronaut (the lock
demo's enrolled person) is enrolled once at the centre through the lock's face pipeline and put in a
group that grants door A only.  Then: the bundle is pushed and acknowledged; at door A she is granted, at
door B refused (not in the group), a stranger refused at A; she is removed from the group, the new bundle
reaches both doors, and A refuses her.  Each door's decision uses the bundle it runs (firmware.fleet.door)
and is sent to the centre as an event.  Ends with a summary; exit 0 only when every step came out as
expected.
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OP = "demo-operator"


@dataclass
class Step:
    name: str
    expected: str
    got: str
    ok: bool


def _wait(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def main() -> int:  # noqa: C901 - a linear script reads best as one function
    from rich.console import Console
    from rich.table import Table

    from central.app import Centre
    from central.broker import BrokerAccounts, central_files, fleet_broker
    from central.db import sqlite_url
    from central.service import ServiceConfig, Worker
    from central.simdoor import SimDoor
    from firmware.fleet.door import decide
    from firmware.site import open_site
    from firmware.telemetry.client import TelemetryClient
    from firmware.telemetry.events import make_event
    from firmware.telemetry.outbox import Outbox
    from provisioning import demofaces as df

    console = Console()
    steps: list[Step] = []
    work = Path(tempfile.mkdtemp(prefix="facelock-demo-central-"))
    console.print(f"[bold]FaceLock centre demo[/] in {work} (SQLite, mosquitto mTLS, two doors)")
    centre = Centre(work / "centre", sqlite_url(work / "centre" / "central.db"))
    centre.init()
    broker = fleet_broker(work / "broker", centre.keys)
    broker.start()
    centre.registry.accounts = BrokerAccounts.for_local(broker)  # approving a door gives it its account
    cf = central_files(broker)
    worker = Worker(ServiceConfig(data_dir=str(centre.dir), db=centre.db.url, host=broker.host, port=broker.port,
                                  ca_file=str(broker.pki.ca), cert_file=str(cf.cert), key_file=str(cf.key),
                                  retry_s=1.0, refresh_s=3600.0))
    doors: dict[str, SimDoor] = {}
    clients: dict[str, TelemetryClient] = {}
    try:
        worker.start()
        console.print("loading the lock's face pipeline (TFLite models, sha256-checked) ...")
        pipe = open_site().pipeline()  # the lock's own pipeline, as a door builds it
        threshold = pipe.threshold()
        for did in ("door-a", "door-b"):
            d = SimDoor(work / did, did)
            e = centre.registry.submit(d.csr(), centre.registry.create_token(OP, device_id=did))
            d.install(e)
            centre.directory.add_door(did, f"Door {did[-1].upper()}", OP, settings={"match_threshold": threshold})
            d.start_agent(broker.host, broker.port)
            cfg = d.mqtt_config(broker.host, broker.port)
            clients[did] = TelemetryClient(cfg, Outbox(work / did / "outbox.db"))
            clients[did].start()
            doors[did] = d
        steps.append(Step("onboard 2 doors (one-time tokens)", "2 active",
                          f"{sum(x['status'] == 'active' for x in centre.registry.list())} active",
                          all(x["status"] == "active" for x in centre.registry.list())))

        embs = [r.embedding for r in map(pipe.process, df.enrolled()) if r.embedding is not None]
        mean = np.mean(np.stack(embs), axis=0)
        centre.directory.add_person("astronaut", OP)
        centre.directory.enroll("astronaut", [mean / np.linalg.norm(mean)], OP)
        centre.directory.add_group("crew", OP)
        centre.directory.add_member("crew", "astronaut", OP)
        centre.directory.grant("crew", "door-a", OP)
        steps.append(Step("enroll once at the centre", f"1 template from {len(df.enrolled())} captures",
                          f"1 template from {len(embs)} captures", len(embs) >= 3))

        def pushed() -> bool:
            return _wait(lambda: all(s["in_sync"] for s in centre.policy.status()), 20)

        centre.policy.refresh()
        ok = pushed()
        steps.append(Step("push: both doors ack v1", "door-a v1, door-b v1",
                          ", ".join(f"{s['door']} v{s['acked_version']}" for s in centre.policy.status()), ok))

        def probe(who: str, seed: int) -> np.ndarray:
            base = df.near(who)
            res = pipe.process(base)
            frames = df.live_person(base, res.primary.mesh.points, 6, seed=seed)
            for f in frames:
                r = pipe.process(f)
                if r.embedding is not None:
                    return r.embedding
            raise SystemExit(f"demo: no usable frame of {who}")

        now = dt.datetime.now()

        def at(door: str, who: str, seed: int, expect_granted: bool, label: str) -> None:
            d = doors[door]
            dec = decide(d.applied[-1], d.galleries[-1], probe(who, seed), now)
            clients[door].outbox.put(make_event(door, "access_granted" if dec.granted else "access_denied",
                                                user_id=dec.person, reason=None if dec.granted else dec.reason,
                                                scores={"match": round(dec.score, 4)}))
            got = f"{'granted' if dec.granted else 'refused'} ({dec.reason}, score {dec.score:.2f})"
            steps.append(Step(label, "granted" if expect_granted else "refused", got, dec.granted == expect_granted))

        at("door-a", "astronaut", 1, True, "astronaut at door A (in the group)")
        at("door-b", "astronaut", 2, False, "astronaut at door B (not granted)")
        at("door-a", "grace_hopper", 3, False, "a stranger at door A")
        centre.directory.remove_member("crew", "astronaut", OP)
        changed = centre.policy.refresh()
        ok = pushed()
        steps.append(Step("revoke: new bundle acked", "door-a v2 without her, door-b unchanged",
                          f"rebuilt {sorted(changed)}; " + ", ".join(f"{s['door']} v{s['acked_version']}"
                                                                   for s in centre.policy.status()),
                          ok and doors["door-a"].applied[-1].people == ()))
        at("door-a", "astronaut", 4, False, "astronaut at door A after revocation")
        stored = _wait(lambda: centre.monitor.event_count() >= 4, 20)
        rep = centre.monitor.report()
        steps.append(Step("decisions stored at the centre", "4 events",
                          f"{rep['events_total']} events", stored and rep["events_total"] == 4))
    finally:
        for c in clients.values():
            c.stop()
        for d in doors.values():
            d.stop_agent()
        worker.doorstate.stop()
        worker.distributor.stop()
        worker.monitor.stop()
        broker.stop()
    t = Table(title="FaceLock centre demo: summary")
    for col in ("step", "expected", "got", "ok"):
        t.add_column(col)
    for s in steps:
        t.add_row(s.name, s.expected, s.got, "[green]yes[/]" if s.ok else "[red]NO[/]")
    console.print(t)
    all_ok = len(steps) == 9 and all(s.ok for s in steps)
    console.print("[bold green]all steps as expected[/]" if all_ok else "[bold red]some steps failed[/]")
    centre.close()
    import shutil

    shutil.rmtree(work, ignore_errors=True)  # keys and sealed templates of a throwaway centre
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
