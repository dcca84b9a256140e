"""`facelock bench mqtt --json`: durable-outbox throughput vs bare paho QoS 1, on one local broker.

One run starts its own mosquitto (loopback, generated CA and certificates, mutual TLS, the FaceLock ACL),
then alternates `--rounds` times:
  bare   paho publishes QoS 1 messages of an event's size as fast as its in-flight window allows; rate =
         messages acknowledged (PUBACK) per second;
  outbox a producer (standing in for the lock controller, in the client's process as in facelockd) puts
         `--events` access_granted events into the durable outbox; the device's TelemetryClient publishes them; a monitor process (`facelock monitor run`, shared subscription)
         stores them in SQLite and sends receipts; rate = events stored per second, from the first put to
         the last one on the monitor's disk; latency = stored_at - created, per event.
A second outbox figure has the producer in its own process writing the shared outbox file
(`outbox_separate_producer_per_s`, `separate_producer_ratio`); latency comes from the in-process rounds.
Medians over the rounds are reported, with every round's figures, so a noisy neighbour on the machine
shows up as spread instead of as a wrong ratio.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import click


def _bare_paho(broker, n: int, payload: bytes, inflight: int) -> float:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from firmware.telemetry.tls import client_context

    files = broker.pki.client("bench-bare")
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv5)
    c.tls_set_context(client_context(broker.pki.ca, files.cert, files.key))
    c.max_inflight_messages_set(inflight)
    c.max_queued_messages_set(0)
    done = threading.Event()
    acked = [0]

    def on_publish(client, userdata, mid, rc, props):
        acked[0] += 1
        if acked[0] >= n:
            done.set()

    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.on_publish = on_publish
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        if not connected.wait(10):
            raise click.ClickException("bare paho client could not connect")
        t0 = time.perf_counter()
        for _ in range(n):
            c.publish("facelock/bench-bare/cmd/result", payload, qos=1)
        if not done.wait(300):
            raise click.ClickException(f"bare paho: only {acked[0]}/{n} acknowledged")
        return n / (time.perf_counter() - t0)
    finally:
        c.disconnect()
        c.loop_stop()


def _outbox_round(broker, workdir: Path, store, device: str, n: int, inflight: int, separate: bool
                  ) -> tuple[float, list[float]]:
    """One outbox round; `separate` puts the producer (the lock controller) in its own process."""
    from firmware.telemetry.client import TelemetryClient
    from firmware.telemetry.config import MqttConfig
    from firmware.telemetry.events import make_event
    from firmware.telemetry.outbox import Outbox

    files = broker.pki.client(device)
    cfg = MqttConfig(device_id=device, host=broker.host, port=broker.port, ca_file=str(broker.pki.ca),
                     cert_file=str(files.cert), key_file=str(files.key),
                     management_pubkey_file=str(broker.pki.signing_pub), max_inflight=inflight)
    path = workdir / f"{device}-outbox.db"
    outbox = Outbox(path)
    client = TelemetryClient(cfg, outbox)
    client.start()
    producer = None
    try:
        if not client.wait_connected(10):
            raise click.ClickException("device client could not connect")
        mark = store.last_rowid()  # counting only this round's rows keeps the polling cheap
        if separate:
            producer = subprocess.Popen([sys.executable, "-m", "provisioning.benchmarks._producer", str(path),
                                         device, str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            if producer.stdout.readline().strip() != "ready":
                raise click.ClickException("producer process failed to start")
            t0 = time.perf_counter()
            producer.stdin.write("go\n")
            producer.stdin.flush()
        else:
            t0 = time.perf_counter()
            for _ in range(n):
                outbox.put(make_event(device, "access_granted", user_id="u-bench", scores={"match": 0.91}))
        deadline = time.monotonic() + 300
        while store.count_after(mark) < n:
            if time.monotonic() > deadline:
                raise click.ClickException(f"monitor stored only {store.count_after(mark)}/{n}")
            time.sleep(0.02)
        rate = n / (time.perf_counter() - t0)
        lat = [x * 1000 for x in store.latencies_for(device)]
        return rate, lat
    finally:
        if producer is not None:
            producer.wait(30)
        client.stop()
        outbox.close()


@click.command("mqtt")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--events", default=10_000, show_default=True, help="Events (and bare messages) per round.")
@click.option("--rounds", default=5, show_default=True, help="Alternating bare/outbox rounds; medians reported.")
@click.option("--inflight", default=500, show_default=True,
              help="QoS 1 in-flight window for both clients (MqttConfig.max_inflight's default).")
def command(as_json: bool, events: int, rounds: int, inflight: int) -> None:
    """Outbox (device -> TLS broker -> monitor store) events/s vs bare paho QoS 1, and latency."""
    from firmware.telemetry.events import encode, make_event
    from provisioning.monitor.store import MonitorStore
    from provisioning.mosquitto import MONITOR_USER, LocalBroker

    sample = encode(make_event("bench-dev-0", "access_granted", user_id="u-bench", scores={"match": 0.91}
                               ).with_seq(1))
    with tempfile.TemporaryDirectory(prefix="facelock-bench-mqtt-") as tmp:
        work = Path(tmp)
        broker = LocalBroker(work / "broker")
        broker.start()
        mon_files = broker.pki.client(MONITOR_USER)
        db = work / "monitor.db"
        store = MonitorStore(db)
        monitor = subprocess.Popen(
            [sys.executable, "-m", "provisioning.cli", "monitor", "run", "--quiet", "--host", broker.host,
             "--port", str(broker.port), "--ca", str(broker.pki.ca), "--cert", str(mon_files.cert),
             "--key", str(mon_files.key), "--db", str(db), "--client-id", "bench-monitor"],
            stdout=subprocess.DEVNULL, stderr=open(work / "monitor.log", "wb"))
        bare_rates: list[float] = []
        outbox_rates: list[float] = []
        inproc_rates: list[float] = []
        latencies: list[float] = []
        try:
            _wait_monitor(broker, store, monitor)
            for r in range(rounds):
                bare_rates.append(_bare_paho(broker, events, sample, inflight))
                rate, lat = _outbox_round(broker, work, store, f"bench-inproc-{r + 1}", events, inflight, False)
                inproc_rates.append(rate)
                latencies.extend(lat)
                rate, _ = _outbox_round(broker, work, store, f"bench-dev-{r + 1}", events, inflight, True)
                outbox_rates.append(rate)
        finally:
            monitor.terminate()
            try:
                monitor.wait(10)
            except subprocess.TimeoutExpired:
                monitor.kill()
            store.close()
            broker.stop()
    outbox = statistics.median(inproc_rates)
    separate = statistics.median(outbox_rates)
    bare = statistics.median(bare_rates)
    latencies.sort()
    result = {
        "outbox_events_per_s": round(outbox, 1),
        "bare_paho_per_s": round(bare, 1),
        "ratio": round(outbox / bare, 3),
        "latency_ms": {"p50": round(_pct(latencies, 50), 2), "p99": round(_pct(latencies, 99), 2)},
        "events_per_round": events,
        "rounds": rounds,
        "producer": "in the client's process (as in facelockd: controller puts, TelemetryClient publishes)",
        "outbox_rounds_per_s": [round(x, 1) for x in inproc_rates],
        "outbox_separate_producer_per_s": round(separate, 1),
        "separate_producer_ratio": round(separate / bare, 3),
        "separate_producer_rounds_per_s": [round(x, 1) for x in outbox_rates],
        "bare_rounds_per_s": [round(x, 1) for x in bare_rates],
        "payload_bytes": len(sample),
        "max_inflight": inflight,
        "tls": "mutual, TLS >= 1.2",
        "bare_client": f"stock paho-mqtt {_paho_version()} Client (loop_start thread), publish from the caller",
        "device_client": "TelemetryClient on firmware.telemetry.paho_io.BatchedIOClient (batched writes, "
                         "buffered reads)",
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    if as_json:
        click.echo(json.dumps(result))
    else:
        for k, v in result.items():
            click.echo(f"{k}: {v}")


def _wait_monitor(broker, store, monitor: subprocess.Popen) -> None:
    """Wait until the monitor's shared subscription delivers: a probe event must land in its store."""
    from firmware.telemetry.client import TelemetryClient
    from firmware.telemetry.config import MqttConfig
    from firmware.telemetry.events import make_event
    from firmware.telemetry.outbox import Outbox

    files = broker.pki.client("bench-dev-0")
    cfg = MqttConfig(device_id="bench-dev-0", host=broker.host, port=broker.port, ca_file=str(broker.pki.ca),
                     cert_file=str(files.cert), key_file=str(files.key),
                     management_pubkey_file=str(broker.pki.signing_pub),
                     receipt_timeout_s=0.5)
    outbox = Outbox(broker.dir / "probe-outbox.db")
    client = TelemetryClient(cfg, outbox)
    client.start()
    try:
        outbox.put(make_event("bench-dev-0", "heartbeat"))
        deadline = time.monotonic() + 30
        while store.event_count() < 1:
            if monitor.poll() is not None or time.monotonic() > deadline:
                raise click.ClickException("the monitor did not start: " + (broker.dir.parent / "monitor.log").read_text()[-2000:])
            time.sleep(0.05)
    finally:
        client.stop()
        outbox.close()


def _paho_version() -> str:
    from importlib.metadata import version

    return version("paho-mqtt")


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))
    return xs[k]
