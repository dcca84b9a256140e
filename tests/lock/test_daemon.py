"""The daemon as a process: bad config refused, SIGTERM leaves it locked, sd_notify, SIGKILL at random moments."""

from __future__ import annotations

import random
import signal
import socket
import time

import pytest

from firmware.audit import AuditLog
from firmware.hw.siminputs import send
from tests.support.daemon import daemon_env, env, start, status, wait_status, write_config


@pytest.fixture
def calibrated_env(tmp_path) -> dict[str, str]:
    return daemon_env(tmp_path)


@pytest.mark.parametrize(("extra", "key"), [
    ("[gpio]\nrelay_pin = 99", "gpio.relay_pin"),
    ("[gpio]\nrelay_activ_high = false", "gpio.relay_activ_high"),
    ("[lock]\nunlock_s = \"five\"", "lock.unlock_s"),
    ("[locks]\nx = 1", "locks"),
    ("[policy]\nmax_failures = 0", "policy.max_failures"),
])
def test_invalid_config_is_refused_with_the_key_and_touches_nothing(tmp_path, extra, key):
    cfg = write_config(tmp_path)
    if extra.startswith("[lock]"):
        cfg.write_text(cfg.read_text().replace("unlock_s = 0.4", "unlock_s = \"five\""))
    else:
        cfg.write_text(cfg.read_text() + extra + "\n")
    p = start(cfg)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 78, err
    assert key in err and "config error" in err
    assert not (tmp_path / "data" / "status.json").exists()  # refused before GPIO or data were touched


def test_not_toml_is_refused(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[device\nid=")
    p = start(cfg)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 78 and "not valid TOML" in err


def test_sigterm_and_sigint_leave_it_locked(tmp_path, calibrated_env):
    cfg = write_config(tmp_path, unlock_s=30)
    data = tmp_path / "data"
    for sig in (signal.SIGTERM, signal.SIGINT):
        p = start(cfg, env=calibrated_env)
        try:
            s = wait_status(data, p.pid)
            assert s["state"] == "IDLE", s["fault"]
            send(data / "sim.sock", "exit")
            wait_status(data, p.pid, lambda s: s["relay_energized"])
        finally:
            p.send_signal(sig)
            p.communicate(timeout=30)
        assert p.returncode == 0
        s = status(data)
        assert s["relay_energized"] is False and s["pid"] == p.pid
        with AuditLog(data / "audit.db") as log:
            last = list(log.records())[-1]
            assert last.kind == "shutdown" and last.data["reason"] == sig.name and last.data["relay"] is False
            assert log.verify().ok


def test_sd_notify_ready_and_watchdog(tmp_path):
    cfg = write_config(tmp_path)
    sock_path = tmp_path / "notify.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(str(sock_path))
    srv.settimeout(30)
    e = env()
    e.update(NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="200000")
    p = start(cfg, env=e)
    got: list[str] = []
    try:
        while sum("WATCHDOG=1" in m for m in got) < 3:
            got.append(srv.recv(4096).decode())
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=30)
        srv.close()
    assert any(m.startswith("READY=1") for m in got)
    assert any("STATUS=state" in m for m in got)


@pytest.mark.slow
def test_sigkill_at_random_moments_restarts_locked_with_a_valid_chain(tmp_path, calibrated_env):
    """At least 20 SIGKILLs while the daemon unlocks and relocks; every restart comes up locked."""
    cfg = write_config(tmp_path, unlock_s=0.3)
    data = tmp_path / "data"
    rng = random.Random(6)
    kills, energized_at_kill, healthy = 0, 0, False
    while kills < 24:
        p = start(cfg, env=calibrated_env)
        try:
            s = wait_status(data, p.pid)
        except AssertionError:
            p.kill()
            p.communicate(timeout=30)
            raise
        # the new process reports its own relay, read back from its GPIO device
        assert s["relay_energized"] is False and s["state"] in ("IDLE", "FAULT", "TAMPER")
        healthy |= s["state"] != "FAULT"
        end = time.monotonic() + rng.uniform(0.05, 0.8)
        while time.monotonic() < end:
            if (data / "sim.sock").exists():
                try:
                    send(data / "sim.sock", "exit")
                except OSError:
                    pass
            time.sleep(rng.uniform(0.01, 0.1))
        before = status(data)
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=30)
        kills += 1
        if before and before["pid"] == p.pid and before["relay_energized"]:
            energized_at_kill += 1
        with AuditLog(data / "audit.db", readonly=True) as log:
            res = log.verify()
            assert res.ok, str(res)
    p = start(cfg, env=calibrated_env)
    s = wait_status(data, p.pid)
    assert s["relay_energized"] is False and s["state"] == "IDLE"
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=30)
    with AuditLog(data / "audit.db", readonly=True) as log:
        assert log.verify().ok
        boots = sum(1 for r in log.records() if r.kind == "boot")
    assert boots == kills + 1
    assert healthy
    assert energized_at_kill >= 3, energized_at_kill  # kills also hit an open (energized) lock
