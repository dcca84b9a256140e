"""pam_facelock.so end to end: Debian's pamtester drives a PAM service that runs the C module against the real
daemon (replay camera, mock GPIO, liveness required, the astronaut enrolled as "alice").

Two service files tell the module's return codes apart through PAM itself:

- ``facelock-test``: pam_facelock ``[success=done authinfo_unavail=ignore user_unknown=ignore default=die]``
  then pam_deny: only a face the daemon verified authenticates;
- ``facelock-test-fallback``: the same first line, then pam_permit standing in for the password: it
  authenticates exactly when the module *fell through* (AUTHINFO_UNAVAIL / USER_UNKNOWN) or succeeded, and
  fails when the module refused the face (AUTH_ERR dies).

Needs root (it writes /etc/pam.d/facelock-test*, removed afterwards), as CI runs.  Under ``make sanitize``
the module is the ASan/UBSan build (FACELOCK_PAM_MODULE) and pamtester gets the sanitizer runtime preloaded.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.api.daemon import REPO, Daemon, build_scenes, public_dir

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="installs PAM service files into /etc/pam.d: needs root")

SERVICE = "facelock-test"
FALLBACK = "facelock-test-fallback"
CONTROL = "[success=done authinfo_unavail=ignore user_unknown=ignore default=die]"
POLICY = "max_failures = 20\nbase_lockout_s = 5.0"  # the loosest lockout the lock accepts (policy bounds)
DENY = "auth requisite pam_deny.so"
PERMIT = "auth required pam_permit.so"  # stands for the password module


@pytest.fixture(scope="module")
def module_path() -> Path:
    given = os.environ.get("FACELOCK_PAM_MODULE")
    if given:
        return Path(given)
    subprocess.run(["make", "-s", "-C", str(REPO), "pam"], check=True, capture_output=True, timeout=300)
    return REPO / "build" / "pam" / "pam_facelock.so"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    # default allowlist (root only); limits raised: this suite makes more verify calls a minute than a person
    d = Daemon(tmp_path_factory.mktemp("pam-daemon"), build_scenes(), policy_toml=POLICY,
               api_toml="verify_per_minute = 600\nrequests_per_minute = 6000")
    d.start()
    yield d
    d.cleanup()


@pytest.fixture(scope="module")
def pam_files(module_path, daemon):
    """The user map and both service files; removed again at the end."""
    etc = public_dir("facelock-pam-")
    users = etc / "pam-users.conf"
    users.write_text("# pam user  facelock user\nalice alice\ncarol alice\n")
    users.chmod(0o644)
    written: list[Path] = []

    def service(name: str, second: str, sock: Path = daemon.socket, timeout: int = 15) -> None:
        p = Path("/etc/pam.d") / name
        p.write_text(f"auth {CONTROL} {module_path} socket={sock} map={users} timeout={timeout} "
                     f"purpose=pam-test daemon_user=root\n{second}\naccount required pam_permit.so\n")
        written.append(p)

    service(SERVICE, DENY)
    service(FALLBACK, PERMIT)
    yield {"users": users, "etc": etc, "service": service}
    for p in written:
        p.unlink(missing_ok=True)
    import shutil

    shutil.rmtree(etc, ignore_errors=True)


def pamtester(service: str, user: str = "alice", *items: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("SSH_CONNECTION", None)
    pre = os.environ.get("FACELOCK_PAM_PRELOAD")
    if pre:
        env.update(LD_PRELOAD=pre, ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
                   UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    args = ["pamtester", *[a for i in items for a in ("-I", i)], service, user, "authenticate"]
    return subprocess.run(args, capture_output=True, text=True, timeout=90, env=env, stdin=subprocess.DEVNULL)


def succeeded(p: subprocess.CompletedProcess) -> bool:
    assert "AddressSanitizer" not in p.stderr and "runtime error" not in p.stderr, p.stderr
    ok = p.returncode == 0 and "successfully authenticated" in p.stdout + p.stderr
    assert ok or p.returncode == 1 and "pamtester:" in p.stderr, (p.returncode, p.stdout, p.stderr)
    return ok


@pytest.fixture
def calm(daemon, pam_files):
    assert daemon.alive(), daemon.stderr()[-2000:]
    daemon.calm()
    return daemon


def test_the_sanitizer_build_is_the_one_tested(module_path):
    syms = subprocess.run(["nm", "-D", str(module_path)], capture_output=True, text=True, check=True).stdout
    assert "pam_sm_authenticate" in syms
    if os.environ.get("FACELOCK_PAM_PRELOAD"):
        assert "__asan_" in syms and "__ubsan_" in syms


def test_the_enrolled_live_face_authenticates(calm):
    calm.show("live")
    p = pamtester(SERVICE)
    assert succeeded(p), (p.stdout, p.stderr)
    assert "Looking for alice" in p.stdout and "Face recognised" in p.stdout
    # a second PAM user mapped to the same FaceLock user
    assert succeeded(pamtester(SERVICE, "carol"))


def test_a_stranger_fails_and_does_not_fall_through(calm):
    calm.show("stranger")
    p = pamtester(SERVICE)
    # refused as not recognised (or, when frames drop on a loaded machine, by liveness): a refusal either way
    assert not succeeded(p) and ("Face not recognised" in p.stdout or "liveness" in p.stdout), (p.stdout, p.stderr)
    assert not succeeded(pamtester(FALLBACK))  # AUTH_ERR: the module refused, it did not step aside


def test_a_photo_fails_on_liveness(calm):
    calm.show("photo")
    p = pamtester(SERVICE)
    assert not succeeded(p) and "liveness" in p.stdout, (p.stdout, p.stderr)


def test_an_unmapped_user_falls_through(calm):
    calm.show("live")
    assert not succeeded(pamtester(SERVICE, "bob"))
    assert succeeded(pamtester(FALLBACK, "bob"))  # USER_UNKNOWN -> the password module decides


def test_a_remote_session_falls_through_even_with_a_face_at_the_camera(calm):
    calm.show("live")
    assert not succeeded(pamtester(SERVICE, "alice", "rhost=203.0.113.9"))
    assert succeeded(pamtester(FALLBACK, "alice", "rhost=203.0.113.9"))


def test_a_user_map_writable_by_others_is_refused(calm, pam_files):
    calm.show("live")
    users: Path = pam_files["users"]
    users.chmod(0o666)
    try:
        assert not succeeded(pamtester(SERVICE))
        assert succeeded(pamtester(FALLBACK))
    finally:
        users.chmod(0o644)


class FakeServer:
    """A root-owned fake daemon on its own socket answering ``reply`` (bytes or a callable on the conn)."""

    def __init__(self, path: Path, reply):
        self.path = path
        self.reply = reply
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self) -> None:
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            try:
                c.settimeout(5)
                c.recv(4096)
                if callable(self.reply):
                    self.reply(c)
                else:
                    c.sendall(self.reply)
            except OSError:
                pass
            finally:
                c.close()

    def close(self) -> None:
        self.stop = True
        self.t.join(2)
        self.sock.close()


def _slow(c: socket.socket) -> None:
    c.sendall(b'{"v":1,"progress":"looking"}\n')
    time.sleep(25)  # longer than timeout= + grace: the module gives up and steps aside


HOSTILE = {
    "garbage": b"garbage\n",
    "truncated": b'{"v":1,"ok":tr',
    "no_newline_then_close": b'{"v":1,"ok":true,"reason":"ok"}',
    "wrong_version": b'{"v":2,"ok":true,"reason":"ok"}\n',
    "deep": b'{"v":1,"x":' + b"[" * 5000 + b"]" * 5000 + b',"ok":true,"reason":"ok"}\n',
    "huge_line": b'{"v":1,"ok":true,"reason":"' + b"A" * 100000 + b'"}\n',
    "long_fields": b'{"v":1,"progress":"' + b"p" * 900 + b'"}\n{"v":1,"ok":false,"reason":"' + b"B" * 1500
                   + b'","error":{"code":"' + b"C" * 1500 + b'"}}\n',
    "long_reason_ok": b'{"v":1,"ok":true,"reason":"ok' + b"\\u0041" * 600 + b'"}\n',
    "bad_escape": b'{"v":1,"ok":true,"reason":"o\\k"}\n',
    "trailing": b'{"v":1,"ok":true,"reason":"ok"} x\n',
    "nul": b'{"v":1,"ok":true,"reason":"ok\x00"}\n',
    "ok_without_reason": b'{"v":1,"ok":true}\n',
    "unicode_escape_tricks": b'{"v":1,"ok":true,"reason":"\\u006fk\\ud800"}\n',
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_or_broken_server_never_authenticates(pam_files, name):
    sock = pam_files["etc"] / f"fake-{name}.sock"
    srv = FakeServer(sock, HOSTILE[name])
    try:
        pam_files["service"]("facelock-test-fake", DENY, sock)
        p = pamtester("facelock-test-fake")
        assert not succeeded(p), (name, p.stdout, p.stderr)
        pam_files["service"]("facelock-test-fake", PERMIT, sock)
        assert succeeded(pamtester("facelock-test-fake"))  # it stepped aside (AUTHINFO_UNAVAIL), no crash
    finally:
        srv.close()


def test_a_slow_server_times_out_and_falls_through(pam_files):
    sock = pam_files["etc"] / "fake-slow.sock"
    srv = FakeServer(sock, _slow)
    try:
        pam_files["service"]("facelock-test-fake", PERMIT, sock, timeout=2)
        t0 = time.monotonic()
        assert succeeded(pamtester("facelock-test-fake"))  # AUTHINFO_UNAVAIL -> the password module decides
        assert time.monotonic() - t0 < 15
    finally:
        srv.close()


FAKE_OK_AS_NOBODY = r"""
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o666); s.listen(4)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.recv(4096)
    c.sendall(b'{"v":1,"ok":true,"user_id":"x","reason":"ok","scores":{},"attempt_id":"x"}\n')
    c.close()
"""


def test_a_fake_daemon_run_by_a_user_is_not_trusted(pam_files):
    """A local user who gets the module to talk to their own server (a socket they own) cannot say "ok"."""
    d = public_dir("facelock-fake-")
    d.chmod(0o777)
    sock = d / "api.sock"
    py = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else "python3"
    srv = subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", py, "-I", "-c",
                            FAKE_OK_AS_NOBODY, str(sock)], stdout=subprocess.PIPE, text=True, cwd="/")
    try:
        assert srv.stdout.readline().strip() == "ready"
        for second, expect in ((DENY, False), (PERMIT, True)):
            pam_files["service"]("facelock-test-fake", second, sock, timeout=5)
            assert succeeded(pamtester("facelock-test-fake")) is expect  # never SUCCESS from it: it steps aside
    finally:
        srv.kill()
        srv.wait(10)
        import shutil

        shutil.rmtree(d, ignore_errors=True)


def test_with_the_daemon_stopped_it_falls_through_to_the_next_module(daemon, pam_files):
    """Last: stops the module's daemon.  AUTHINFO_UNAVAIL -> pam_deny fails, the 'password' succeeds."""
    daemon.stop()
    assert not daemon.alive()
    t0 = time.monotonic()
    assert not succeeded(pamtester(SERVICE))
    assert succeeded(pamtester(FALLBACK))
    assert time.monotonic() - t0 < 10  # no waiting for a daemon that is not there
