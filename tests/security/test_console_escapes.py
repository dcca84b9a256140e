"""Issue 11, item 14: a device must not be able to drive the operator's terminal through the monitor.

The attacker holds one device credential ("shed") and publishes, through the real device client and a real
mosquitto, a tamper event whose `reason` carries terminal escape sequences: an OSC title change, a screen
wipe, a carriage return that overwrites the alert line, a bidi override and a line separator.  The real
monitor runs as `facelock monitor run` in a subprocess with its console notifier on; we read what it prints,
then what `facelock monitor tail` and `facelock monitor report` print.  None of it may carry a control or
format character; the escaped text must still be there (nothing hidden from the operator).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import unicodedata
from pathlib import Path

import pytest

from firmware.telemetry.client import TelemetryClient
from firmware.telemetry.events import make_event
from firmware.telemetry.outbox import Outbox
from provisioning.mosquitto import MONITOR_USER, LocalBroker
from tests.support.mqtt_broker import broker_fixture, device_config

REPO = Path(__file__).resolve().parents[2]
EVIL = "x\x1b]0;owned\x07\x1b[2J\x1b[1;1H\rALERT none\u202edrowssap\u2028\x9b31m\x7f"
BAD = {"\x1b", "\x07", "\r", "\u202e", "\u2028", "\x9b", "\x7f"}


@pytest.fixture()
def broker(tmp_path: Path):
    yield from broker_fixture(tmp_path)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "provisioning.cli", *args], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=60)


def _unsafe(text: str) -> list[str]:
    return sorted({c for c in text if c in BAD or (unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")
                                                      and c not in "\n\t")})


def test_device_strings_cannot_drive_the_operators_terminal(broker: LocalBroker, tmp_path: Path) -> None:
    mon = broker.pki.client(MONITOR_USER)
    db = tmp_path / "monitor.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "provisioning.cli", "monitor", "run", "--host", broker.host, "--port",
         str(broker.port), "--ca", str(broker.pki.ca), "--cert", str(mon.cert), "--key", str(mon.key),
         "--db", str(db)], cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    outbox = Outbox(tmp_path / "shed-outbox.db")
    # Resent every second until the monitor's receipt: the monitor subprocess may subscribe late on a busy machine.
    device = TelemetryClient(device_config(broker, "shed", receipt_timeout_s=1.0), outbox)
    device.start()
    try:
        assert device.wait_connected(10)
        time.sleep(1.0)  # the monitor subprocess subscribes
        outbox.put(make_event("shed", "tamper", reason=EVIL, user_id="u\x1b[8m", note="\x1bc"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("ALERT" in ln for ln in lines):
            time.sleep(0.1)
    finally:
        device.stop()
        outbox.close()
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        reader.join(5)
    console = "".join(lines)
    assert "ALERT tamper device=shed" in console, (console, err[-2000:])
    assert _unsafe(console) == [], f"monitor console printed control characters: {_unsafe(console)}"
    assert "owned" in console and "drowssap" in console  # escaped, not dropped: the operator still sees it
    assert _unsafe(err) == [], "monitor log printed control characters"

    tail = _cli("monitor", "tail", "--db", str(db), "--no-follow")
    assert tail.returncode == 0, tail.stderr
    assert "ALERT tamper" in tail.stdout
    assert _unsafe(tail.stdout) == [], f"monitor tail printed control characters: {_unsafe(tail.stdout)}"
    report = _cli("monitor", "report", "--db", str(db))
    assert report.returncode == 0 and _unsafe(report.stdout) == []
