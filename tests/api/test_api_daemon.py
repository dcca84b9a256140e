"""The Face Security API against the real daemon (replay camera, mock GPIO, liveness required, the astronaut
enrolled as "alice"): verify answers for a live person, a photo and a stranger; the shared lockout; callers
outside the allowlist; hostile requests; every request audited and emitted.

One daemon serves the module (scenes are switched under its camera, see tests/api/daemon.py); each test
starts from a calm lock (nobody in view, IDLE, no lockout).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest

from firmware.api.client import ApiCallError, ApiClient
from tests.api.daemon import Daemon, build_scenes, call_as, last_line, raw_call

NOBODY_UID = 65534
API = f"""
read_timeout_s = 1.0
max_connections = 8
verify_per_minute = 600
requests_per_minute = 6000
[[api.allow]]
uid = 0
[[api.allow]]
uid = {NOBODY_UID}
methods = ["status"]
"""
# the shortest lockout the lock accepts (firmware.lock.policy bounds: base_lockout_s >= 5, reset_after_s >= window_s)
POLICY = "max_failures = 6\nwindow_s = 60.0\nbase_lockout_s = 5.0\nfactor = 1.0\nreset_after_s = 60.0"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("api-daemon"), build_scenes(), api_toml=API, policy_toml=POLICY)
    d.start()
    yield d
    d.cleanup()


@pytest.fixture
def lock(daemon):
    assert daemon.alive(), daemon.stderr()[-2000:]
    daemon.calm()
    yield daemon
    assert daemon.alive(), daemon.stderr()[-2000:]


def client(d: Daemon) -> ApiClient:
    return ApiClient(d.socket)


def test_an_allowed_uid_gets_ok_for_the_enrolled_live_face(lock):
    lock.show("live")
    progress: list[str] = []
    res = client(lock).verify(user="alice", purpose="test", timeout_s=20, on_progress=progress.append)
    assert res.ok and res.reason == "ok", res
    assert res.user_id == lock.user_id and res.attempt_id
    assert set(res.scores) == {"match"} and res.scores["match"] > 0.5  # coarse: no liveness internals
    assert progress[0] == "looking"
    # by user id too, and without naming a user (anyone enrolled)
    assert client(lock).verify(user=lock.user_id, purpose="test", timeout_s=20).ok
    assert client(lock).verify(purpose="test", timeout_s=20).user_id == lock.user_id


def test_a_still_photo_of_the_enrolled_face_is_spoof_suspected(lock):
    lock.show("photo")
    res = client(lock).verify(user="alice", purpose="test", timeout_s=20)
    assert not res.ok and res.reason == "spoof_suspected" and res.user_id is None, res


def test_a_stranger_is_refused_and_counted_toward_the_shared_lockout(lock):
    before = lock.status_file()["failures"]
    lock.show("stranger")
    res = client(lock).verify(user="alice", purpose="test", timeout_s=20)
    # refused; on this loaded 2-core machine liveness sometimes refuses the synthetic live stranger first
    # (frames dropped), which is a refusal too; the next attempts must show he is not recognised
    assert not res.ok and res.reason in ("no_match", "spoof_suspected") and res.user_id is None, res
    s = lock.status_file()  # the door's own lockout counter (the door may have tried him too before the request)
    assert s["failures"] >= before + 1 or s["lockout_remaining_s"] > 0, s
    reasons = [res.reason]
    while "no_match" not in reasons and len(reasons) < 3:
        reasons.append(client(lock).verify(user="alice", purpose="test", timeout_s=20).reason)
    assert "no_match" in reasons, reasons
    # the stranger keeps trying: the lock locks out, and a verify is refused at once, camera untouched
    for _ in range(6):
        if client(lock).status()["lockout_remaining_s"] > 0.5:
            break
        client(lock).verify(user="alice", purpose="test", timeout_s=20)
    lock.wait_status(lambda s: s["lockout_remaining_s"] > 0.5, 30)
    run_before = client(lock).status()["verify_run"]
    t0 = time.monotonic()
    res = client(lock).verify(user="alice", purpose="test", timeout_s=20)
    assert not res.ok and res.reason == "lockout" and time.monotonic() - t0 < 1.0
    assert client(lock).status()["verify_run"] == run_before


def test_nobody_in_view_times_out(lock):
    res = client(lock).verify(purpose="test", timeout_s=1.0)
    assert not res.ok and res.reason == "timeout"


def test_an_unknown_user_is_an_error_without_the_camera(lock):
    run_before = client(lock).status()["verify_run"]
    with pytest.raises(ApiCallError) as e:
        client(lock).verify(user="mallory", purpose="test", timeout_s=5)
    assert e.value.code == "unknown_user"
    assert client(lock).status()["verify_run"] == run_before


@pytest.mark.skipif(os.geteuid() != 0, reason="runs a client as 'nobody' (setpriv): needs root, as CI runs")
def test_a_uid_not_in_the_allowlist_is_refused_without_running_the_camera(lock):
    lock.show("live")  # if the request reached the camera it would pass
    run_before = client(lock).status()["verify_run"]
    ans, took = call_as("nobody", lock.socket, {"v": 1, "method": "verify", "params": {"purpose": "test"}})
    assert ans["ok"] is False and ans["error"]["code"] == "forbidden", ans
    assert took < 5.0
    assert client(lock).status()["verify_run"] == run_before  # never reached the camera
    # the rule for nobody allows status only: granularity per method
    ans, _ = call_as("nobody", lock.socket, {"v": 1, "method": "status"})
    assert ans["ok"] is True and ans["status"]["device"] == "api-test"
    ans, _ = call_as("nobody", lock.socket, {"v": 1, "method": "users"})
    assert ans["error"]["code"] == "forbidden"
    refused = [r for r in lock.audit() if r.kind == "api_request" and r.data.get("uid") == NOBODY_UID]
    assert [r.data.get("error") for r in refused][-3:] == ["forbidden", None, "forbidden"]


BAD = [
    (b"garbage\n", "malformed"),
    (b"[1,2]\n", "malformed"),
    (b'{"v": 2, "method": "status"}\n', "unsupported_version"),
    (b'{"v": 1, "method": "unlock"}\n', "unknown_method"),
    (b'{"v": 1, "method": "status", "admin": true}\n', "malformed"),
    (b'{"v": 1, "method": "verify", "params": {"purpose": "Sudo Now"}}\n', "malformed"),
    (b'{"v": 1, "method": "verify", "params": {"purpose": "x", "timeout_s": 1e9}}\n', "malformed"),
    (b'{"v": 1, "method": "verify", "params": {"purpose": "x", "timeout_s": NaN}}\n', "malformed"),
    (b'{"v": 1, "method": "verify", "params": {"purpose": "x", "user": ["a"]}}\n', "malformed"),
    (b'\xff\xfe{"v": 1}\n', "malformed"),
    (b'{"v": 1, "method": "status"}\n{"v": 1, "method": "status"}\n', "malformed"),
    (b"[" * 3000 + b"\n", "malformed"),
    (b'{"v": 1, "method": "verify"', "malformed"),  # half-closed mid-request
    (b"", "malformed"),  # half-closed before sending anything
    (b" " * 5000, "too_large"),
    (b"A" * (1 << 20), "too_large"),
]


def test_malformed_oversized_and_half_closed_requests_get_a_clear_error(lock):
    run_before = client(lock).status()["verify_run"]
    for payload, code in BAD:
        ans = last_line(raw_call(lock.socket, payload))
        assert ans["ok"] is False and ans["error"]["code"] == code, (payload[:40], ans)
        assert ans["error"]["message"]
    # a client that sends half a request and waits, without closing, is answered when its time is up
    t0 = time.monotonic()
    ans = last_line(raw_call(lock.socket, b'{"v": 1, "meth', half_close=False))
    assert ans["error"]["code"] == "timeout" and time.monotonic() - t0 < 5
    # one that connects and vanishes costs nothing
    for _ in range(20):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(lock.socket))
        s.close()
    assert client(lock).status()["verify_run"] == run_before
    assert lock.alive()


def test_the_door_keeps_priority_under_a_flood_of_connections(lock):
    """Idle connections fill every API slot; further ones are told "busy"; the door still unlocks."""
    held = []
    for _ in range(8):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(lock.socket))
        held.append(s)
    try:
        time.sleep(0.2)
        ans = last_line(raw_call(lock.socket, b'{"v": 1, "method": "status"}\n'))
        assert ans["error"]["code"] == "busy"
        granted = lock.status_file()["granted"]
        lock.show("live")
        lock.wait_status(lambda s: s["granted"] > granted, 30)  # the door decided and unlocked meanwhile
    finally:
        for s in held:
            s.close()
    lock.wait_status(lambda s: not s["relay_energized"], 10)
    assert client(lock).status()["ready"]


def test_a_verify_in_progress_neither_opens_nor_holds_the_door(lock):
    """While a verify waits (nobody in view) the exit button still opens and the lock relocks."""
    from firmware.hw.siminputs import send

    out: dict = {}
    t = threading.Thread(target=lambda: out.update(r=client(lock).verify(purpose="test", timeout_s=3)))
    t.start()
    time.sleep(0.3)
    assert client(lock).status()["verify_waiting"] == 1
    send(lock.data / "sim.sock", "exit")
    lock.wait_status(lambda s: s["relay_energized"], 10)
    lock.wait_status(lambda s: not s["relay_energized"], 10)
    t.join(10)
    assert out["r"].reason == "timeout"


def test_every_request_is_audited_and_emitted_without_names(lock):
    time.sleep(0.5)  # records are written by the API's own thread: let the fixture's status calls land first
    n0 = len([r for r in lock.audit() if r.kind == "api_request"])
    c = client(lock)
    c.status()
    c.users()
    raw_call(lock.socket, b"garbage\n")
    lock.show("live")
    res = c.verify(user="alice", purpose="audit-check", timeout_s=20)
    assert res.ok
    time.sleep(0.5)
    recs = [r for r in lock.audit() if r.kind == "api_request"][n0:]
    assert [r.data["method"] for r in recs] == ["status", "users", "?", "verify"], [r.data for r in recs]
    v = recs[-1].data
    assert v["ok"] is True and v["purpose"] == "audit-check" and v["attempt_id"] == res.attempt_id
    assert v["uid"] == 0 and "user" in v  # the user as their pseudonym
    blob = json.dumps([r.data for r in lock.audit()])
    assert lock.user_id not in blob and "alice" not in blob
    from firmware.telemetry.outbox import Outbox

    box = Outbox(lock.data / "outbox.db")
    try:
        evs = [json.loads(r.payload) for r in box if json.loads(r.payload)["type"] == "api_request"]
    finally:
        box.close()
    mine = [e for e in evs if e["data"].get("attempt_id") == res.attempt_id]
    assert len(mine) == 1 and mine[0]["data"]["purpose"] == "audit-check" and mine[0]["reason"] == "ok"
    assert mine[0]["user_id"] == lock.user_id and mine[0]["data"]["peer_uid"] == 0


def _cli(d: Daemon, *args: str):
    import subprocess
    import sys

    from tests.api.daemon import REPO

    return subprocess.run([sys.executable, "-m", "provisioning.cli", "verify", "--socket", str(d.socket), *args],
                          capture_output=True, text=True, timeout=120, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))


def test_facelock_verify_cli(lock):
    lock.show("live")
    p = _cli(lock, "--user", "alice", "--json", "--timeout", "20")
    assert p.returncode == 0, p.stderr
    ans = json.loads(p.stdout)
    assert ans["ok"] is True and ans["user_id"] == lock.user_id
    lock.calm()
    lock.show("stranger")
    p = _cli(lock, "--user", "alice", "--timeout", "20")
    # refused (exit 3); as in the stranger test above, liveness may refuse the synthetic live stranger first
    assert p.returncode == 3 and ("not recognised" in p.stdout or "liveness check failed" in p.stdout), \
        (p.stdout, p.stderr)
    assert "Looking for alice" in p.stderr
    p = _cli(lock, "--socket", str(lock.sock_dir / "missing.sock"))
    assert p.returncode == 1 and p.stderr.startswith("facelock: error: no Face Security API")
