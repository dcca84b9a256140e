"""Issue 11 item 5: a signed command must never run twice, whichever way the device's clock moves.

The attacker holds a copy of a signed UNLOCK it saw once (a broker it controls, a sniffed bridge) and
injects it again later.  The daemon is real (``python -m firmware`` with mock GPIO), the broker is a real
mosquitto with mutual TLS and the project's ACL; the replay goes through the broker exactly as the
original did.  This machine's clock cannot be moved by a test, so the daemon's clock is moved through
its one documented test hook, ``$FACELOCK_TEST_CLOCK_OFFSET_S`` (firmware.telemetry.replay_guard), across
restarts (a Pi with no RTC that reboots, NTP spoofed while it runs); SIGKILL shows the record is crash-safe.

Both attacks accepted the replay on the code before this fix (a5da335, with only the clock hook added):
the nonce table was pruned by the device's clock.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from firmware.audit import AuditLog
from firmware.telemetry.commands import CommandVerifier, NonceStore
from firmware.telemetry.errors import CommandRejected
from provisioning import pki
from provisioning.mosquitto import ADMIN_USER, LocalBroker
from provisioning.signing import sign_command
from tests.lock.test_daemon import calibrated_env  # noqa: F401
from tests.lock.test_daemon_remote import DEVICE, mqtt_section
from tests.support.daemon import start, status, wait_status, write_config
from tests.support.mqtt_broker import Sniffer, broker_fixture, wait_until

# firmware.telemetry.replay_guard.CLOCK_OFFSET_ENV, spelled out so this module also imports on the old code
CLOCK_OFFSET_ENV = "FACELOCK_TEST_CLOCK_OFFSET_S"


@pytest.fixture()
def broker(tmp_path: Path):
    yield from broker_fixture(tmp_path)


class Attacker:
    """Publishes on the device's command topic through the broker (as the management identity: the
    position of a broker or bridge that saw the original) and reads every cmd/result answer."""

    def __init__(self, broker: LocalBroker):
        self.key = pki.load_signing_key(broker.pki.signing_key)
        self.sn = Sniffer(broker, ADMIN_USER, [f"facelock/{DEVICE}/cmd/result", f"facelock/{DEVICE}/state"])

    def results(self) -> list[dict]:
        return [json.loads(m.payload) for m in list(self.sn.messages) if m.topic.endswith("/cmd/result")]

    def send(self, payload: bytes, timeout: float = 20.0) -> dict:
        """Publish a command and return the device's answer to it (ok + detail)."""
        name = json.loads(payload)["name"]
        before = len(self.results())
        self.sn.publish(f"facelock/{DEVICE}/cmd/{name}", payload)
        assert wait_until(lambda: len(self.results()) > before, timeout), "the daemon never answered"
        return self.results()[before]

    def wait_online(self, pid: int, timeout: float = 20.0) -> None:
        """The daemon's telemetry is connected and subscribed (it published its retained state)."""
        n = len(self.sn.messages)
        assert wait_until(lambda: any(m.topic.endswith("/state") for m in list(self.sn.messages)[n:]), timeout)
        time.sleep(0.5)  # its command subscription settles right after the state publish

    def close(self) -> None:
        self.sn.close()


class Daemon:
    """Start / stop the real daemon with a given clock offset; reads its relay from status.json."""

    def __init__(self, tmp_path: Path, broker: LocalBroker, env: dict, attacker: Attacker, max_age_s: float):
        extra = mqtt_section(broker) + f"command_max_age_s = {max_age_s:g}\n"
        self.cfg = write_config(tmp_path, extra=extra, unlock_s=30)
        self.data = tmp_path / "data"
        self.env = env
        self.attacker = attacker
        self.p: subprocess.Popen | None = None

    def start(self, offset_s: float) -> None:
        env = dict(self.env)
        env[CLOCK_OFFSET_ENV] = str(offset_s)
        self.p = start(self.cfg, env=env)
        wait_status(self.data, self.p.pid, lambda s: s["state"] == "IDLE")
        self.attacker.wait_online(self.p.pid)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        assert self.p is not None
        self.p.send_signal(sig)
        self.p.communicate(timeout=30)
        self.p = None

    def relock(self) -> None:
        assert self.p is not None
        wait_status(self.data, self.p.pid, lambda s: not s["relay_energized"] and s["state"] == "IDLE", 10)

    def remote_unlocks(self) -> int:
        with AuditLog(self.data / "audit.db", readonly=True) as log:
            return sum(1 for r in log.records() if r.kind == "remote_unlock")


def _unlock(key, ts: float) -> bytes:
    return sign_command(key, DEVICE, "unlock", {"duration_s": 0.5}, ts=ts)


def _refused(answer: dict) -> bool:
    return answer["ok"] is False and answer["detail"] in ("replay", "stale")


def test_future_stamped_unlock_is_not_accepted_again_700_s_later(tmp_path, broker, calibrated_env):  # noqa: F811
    """max age 600: an unlock stamped 500 s ahead, accepted, then replayed when the device is 700 s on."""
    attacker = Attacker(broker)
    d = Daemon(tmp_path, broker, calibrated_env, attacker, max_age_s=600)
    try:
        d.start(offset_s=0)
        t0 = time.time()
        captured = _unlock(attacker.key, t0 + 500)
        first = attacker.send(captured)
        assert first["ok"] and "unlocked" in first["detail"], first
        d.relock()
        d.stop(signal.SIGKILL)  # crash right after: the nonce was recorded before the door opened

        d.start(offset_s=700)  # 700 s later; the command's ts is now only 200 s in the past
        again = attacker.send(captured)
        assert _refused(again), f"replayed unlock accepted: {again}"
        assert not status(d.data)["relay_energized"]
        # The daemon does accept a genuinely new command at that time (the refusal is not a broken daemon).
        fresh = attacker.send(_unlock(attacker.key, time.time() + 700))
        assert fresh["ok"], fresh
        d.relock()
        d.stop()
        assert d.remote_unlocks() == 2  # the original and the fresh one, never the replay
    finally:
        if d.p is not None:
            d.stop(signal.SIGKILL)
        attacker.close()


def test_clock_forward_one_hour_then_back_does_not_revive_an_old_unlock(tmp_path, broker, calibrated_env):  # noqa: F811
    """Default max age 30 s: an unlock is accepted; an hour passes (both clocks 1 h on, a new command is
    accepted, which pruned the old nonces); then the device's clock is set back (NTP spoof, or a Pi with no
    RTC rebooting) and the old unlock is injected again."""
    attacker = Attacker(broker)
    d = Daemon(tmp_path, broker, calibrated_env, attacker, max_age_s=30)
    try:
        d.start(offset_s=0)
        captured = _unlock(attacker.key, time.time())
        assert attacker.send(captured)["ok"]
        d.relock()
        d.stop()

        d.start(offset_s=3600)
        later = sign_command(attacker.key, DEVICE, "lock", ts=time.time() + 3600)
        assert attacker.send(later)["ok"]
        assert _refused(attacker.send(captured))  # stale by the clock, on any code
        d.stop(signal.SIGKILL)

        d.start(offset_s=0)  # the clock moved back: the captured unlock looks fresh again
        again = attacker.send(captured)
        assert _refused(again), f"replayed unlock accepted after the clock went back: {again}"
        time.sleep(0.3)
        assert not status(d.data)["relay_energized"]
        d.stop()
        assert d.remote_unlocks() == 1
    finally:
        if d.p is not None:
            d.stop(signal.SIGKILL)
        attacker.close()


# -- the guard's rules, with an injected clock (fast; the daemon tests above are the attack) ----------
NOW = 1_800_000_000.0


@pytest.fixture()
def keys(tmp_path: Path):
    sk = pki.create_signing_key()
    pki.write_public_key(tmp_path / "m.pub", sk)
    from firmware.telemetry.commands import load_public_key

    return sk, load_public_key(tmp_path / "m.pub")


def _verifier(path: Path, pub, clock, max_age_s: float = 30) -> CommandVerifier:
    return CommandVerifier("door-1", pub, NonceStore(path), max_age_s=max_age_s, clock=clock)


def _reason(v: CommandVerifier, payload: bytes) -> str:
    with pytest.raises(CommandRejected) as exc:
        v.verify("facelock/door-1/cmd/unlock", payload)
    return exc.value.reason


def test_replay_refused_whatever_the_clock_does(tmp_path, keys) -> None:
    sk, pub = keys
    clock = [NOW]
    v = _verifier(tmp_path / "n.db", pub, lambda: clock[0])
    old = sign_command(sk, "door-1", "unlock", ts=NOW)
    v.verify("facelock/door-1/cmd/unlock", old)
    for step in range(1, 200):  # hours of fresh commands: the nonce table is pruned as it goes
        clock[0] = NOW + 60 * step
        v.verify("facelock/door-1/cmd/unlock", sign_command(sk, "door-1", "unlock", ts=clock[0]))
    n_rows = v.nonces._db.execute("select count(*) from seen").fetchone()[0]
    assert n_rows <= 2  # bounded: only the last 2 x max age of command time is kept
    clock[0] = NOW  # the clock set back to when `old` was fresh
    assert _reason(v, old) == "stale"
    v.nonces.close()
    v2 = _verifier(tmp_path / "n.db", pub, lambda: NOW)  # and after a restart
    assert _reason(v2, old) == "stale"


def test_max_age_raised_between_runs_opens_no_window(tmp_path, keys) -> None:
    """Pruned under max age 30, then run with 600: a command whose nonce was pruned stays refused."""
    sk, pub = keys
    v = _verifier(tmp_path / "n.db", pub, lambda: NOW, max_age_s=30)
    old = sign_command(sk, "door-1", "unlock", ts=NOW - 20)
    v.verify("facelock/door-1/cmd/unlock", old)
    v.verify("facelock/door-1/cmd/unlock", sign_command(sk, "door-1", "unlock", ts=NOW + 25))
    v.nonces.close()
    clock = NOW + 100
    v = _verifier(tmp_path / "n.db", pub, lambda: clock, max_age_s=30)
    v.verify("facelock/door-1/cmd/unlock", sign_command(sk, "door-1", "unlock", ts=clock))  # prunes `old`
    v.nonces.close()
    v = _verifier(tmp_path / "n.db", pub, lambda: NOW + 100, max_age_s=600)
    assert _reason(v, old) == "stale"


def test_clock_hook_is_the_documented_one(monkeypatch) -> None:
    from firmware.telemetry import replay_guard

    assert replay_guard.CLOCK_OFFSET_ENV == CLOCK_OFFSET_ENV
    monkeypatch.setenv(CLOCK_OFFSET_ENV, "3600")
    assert abs(replay_guard.device_clock() - time.time() - 3600) < 5
    monkeypatch.setenv(CLOCK_OFFSET_ENV, "nan")
    with pytest.raises(Exception, match="finite"):
        replay_guard.device_clock()


def test_old_nonce_table_is_migrated_not_forgotten(tmp_path, keys) -> None:
    import sqlite3

    from firmware.telemetry.replay_guard import ReplayGuard

    sk, pub = keys
    old = sign_command(sk, "door-1", "unlock", ts=NOW)
    nonce = json.loads(old)["nonce"]
    db = sqlite3.connect(tmp_path / "n.db")
    db.execute("create table nonces(nonce text primary key, ts real not null)")
    db.execute("insert into nonces values (?, ?)", (nonce, NOW + 1))
    db.commit()
    db.close()
    g = ReplayGuard(tmp_path / "n.db")
    assert g.marks() == (NOW + 1, NOW + 1)
    g.close()
    assert _reason(_verifier(tmp_path / "n.db", pub, lambda: NOW + 2), old) in ("replay", "stale")


def test_unusable_replay_store_refuses_commands(tmp_path, keys) -> None:
    sk, pub = keys
    v = _verifier(tmp_path / "n.db", pub, lambda: NOW)
    v.nonces._db.execute("drop table mark")
    assert _reason(v, sign_command(sk, "door-1", "unlock", ts=NOW)) == "replay_store"
