"""The local way to clear TAMPER, on the real daemon (mock pins driven through its sim socket): the exit button
held 10 s (``[gpio] exit_hold_reset_s``, the shipped default) with the door shut and the case closed.

A short press never clears it, a hold with the door still open is refused (and audited), the relay is never
energised by any of it, and a hold that clears the alarm is in the audit log as ``tamper_reset`` from row
``tamper_reset_local``."""

from __future__ import annotations

import time

from firmware.audit import AuditLog
from firmware.hw.siminputs import send
from tests.support.daemon import daemon_env, start, status, wait_status, write_config

HOLD_S = 10.0  # firmware.config.GpioConfig.exit_hold_reset_s default


def hold(data, seconds: float, relay_seen: list[bool]) -> None:
    send(data / "sim.sock", "exit down")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        relay_seen.append(bool((status(data) or {}).get("relay_energized")))
        time.sleep(0.1)
    send(data / "sim.sock", "exit up")


def kinds(data) -> list[tuple[str, str | None]]:
    with AuditLog(data / "audit.db", readonly=True) as log:
        return [(r.kind, r.data.get("row")) for r in log.records()]


def test_exit_button_held_ten_seconds_with_the_door_shut_clears_tamper(tmp_path):
    cfg = write_config(tmp_path, unlock_s=2)
    data = tmp_path / "data"
    p = start(cfg, env=daemon_env(tmp_path))
    relay: list[bool] = []
    try:
        s = wait_status(data, p.pid, timeout=120)
        assert s["state"] == "IDLE", s["fault"]
        send(data / "sim.sock", "door open")  # forced while locked
        wait_status(data, p.pid, lambda s: s["state"] == "TAMPER")
        send(data / "sim.sock", "exit")  # an ordinary press neither opens nor clears
        time.sleep(0.5)
        assert status(data)["state"] == "TAMPER" and not status(data)["relay_energized"]
        hold(data, HOLD_S + 1.5, relay)  # held long enough, but the door is still open: refused
        assert status(data)["state"] == "TAMPER"
        assert ("tamper_reset_refused", "tamper_reset_local_refused") in kinds(data)
        send(data / "sim.sock", "door close")
        time.sleep(0.3)
        hold(data, HOLD_S * 0.6, relay)  # too short
        assert status(data)["state"] == "TAMPER"
        t0 = time.monotonic()
        send(data / "sim.sock", "exit down")
        s = wait_status(data, p.pid, lambda s: (relay.append(bool(s["relay_energized"])) or s["state"] == "IDLE"),
                        timeout=HOLD_S + 10)
        took = time.monotonic() - t0
        send(data / "sim.sock", "exit up")
        assert HOLD_S - 0.5 <= took <= HOLD_S + 5, took
        time.sleep(0.5)
        assert status(data)["state"] == "IDLE" and not status(data)["relay_energized"]
        assert ("tamper_reset", "tamper_reset_local") in kinds(data)
        assert not any(relay)
        assert not any(k == "exit_request" for k, _ in kinds(data))
    finally:
        p.terminate()
        p.communicate(timeout=30)
