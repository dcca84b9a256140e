"""A real facelockd for the API and PAM suites: replay camera, gpiozero mock pins, file keystore, the astronaut
enrolled as "alice" through the template store, liveness required with its shipped thresholds.

What stands in front of the camera is switchable while the daemon runs (:meth:`Daemon.show`): the replay
folder keeps the same number of files and each is replaced atomically, and the replay camera reads files
lazily, so one daemon (one model load) serves a whole module.  Scenes: ``live`` (the enrolled person turning
the head in 3-D and blinking), ``stranger`` (Grace Hopper, live), ``photo`` (the enrolled face held still),
``nobody``.  Every face scene starts with empty frames, so consecutive door attempts never join.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from firmware.hw.camera.replay import write_replay_folder

REPO = Path(__file__).resolve().parents[2]
N_FRAMES = 48
EMPTY_LEAD = 12
USER = "alice"


@functools.lru_cache(maxsize=1)
def build_scenes() -> dict[str, list[np.ndarray]]:
    """Built once per test process (the API and PAM suites share it): ~1 min of face synthesis."""
    from firmware.site import open_site
    from provisioning import demofaces as df

    pipe = open_site().pipeline(num_threads=1)
    rng = np.random.default_rng(7)
    empty = [df.empty(rng=rng) for _ in range(EMPTY_LEAD)]
    n = N_FRAMES - EMPTY_LEAD

    def live(who: str, seed: int) -> list[np.ndarray]:
        base = df.near(who)
        res = pipe.process(base)
        assert res.primary is not None and res.primary.mesh is not None, res.reason
        return df.live_person(base, res.primary.mesh.points, n, seed=seed)

    return {
        "live": empty + live("astronaut", 1),
        "stranger": empty + live("grace_hopper", 3),
        "photo": empty + df.held_photo(df.near("astronaut"), n, seed=2),
        "nobody": [df.empty(rng=rng) for _ in range(N_FRAMES)],
        "enroll": [pipe.process(f).embedding for f in df.enrolled()],  # type: ignore[misc]
    }


def enroll(data: Path, embeddings: list[np.ndarray], name: str = USER) -> str:
    from firmware.keystore import KeystoreConfig, open_keystore
    from firmware.templates import TemplateStore

    store = TemplateStore(data, open_keystore(KeystoreConfig(scrypt_log2_n=10), data))
    try:
        return store.enroll(name, np.stack(embeddings))
    finally:
        store.close()


def public_dir(prefix: str) -> Path:
    """A temp dir every local user may traverse (pytest's own tmp dirs are 0700 to root): the API
    socket lives here, so a test can connect as ``nobody`` and be refused *by the API*, not by the
    file system."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    return d


#: The scenes' people are animated photos, and the stranger (matplotlib's grace_hopper) is a scan of a printed
#: photograph, which the shipped learned PAD model rightly refuses as a print every time; these tests are
#: about the API (who is recognised, the shared lockout), so the daemon runs the geometric checks the
#: animation exercises, as `make demo` does.  The shipped policy is measured on real video (eval-liveness,
#: eval-e2e) and in tests/lock/test_live_person.py.
LIVENESS_TOML = """[liveness]
required = ["static_replay", "same_face"]
any_of = ["blink", "pad"]
veto = ["motion"]"""


class Daemon:
    def __init__(self, root: Path, scenes: dict[str, list[np.ndarray]], api_toml: str = "",
                 policy_toml: str = "", sock_dir: Path | None = None):
        self.root = root
        self.scenes = scenes
        self.data = root / "data"
        self.data.mkdir(parents=True)
        self.user_id = enroll(self.data, scenes["enroll"])
        self.frames = root / "frames"
        write_replay_folder(self.frames, scenes["nobody"], suffix=".ppm")
        self.scene = "nobody"
        self.sock_dir = sock_dir or public_dir("facelock-api-")
        self.socket = self.sock_dir / "api.sock"
        self.config = root / "facelock.toml"
        self.config.write_text(f"""
[device]
id = "api-test"
data_dir = "{self.data}"
[lock]
liveness = "required"
unlock_s = 0.5
denied_s = 0.3
verify_timeout_s = 4.0
fault_retry_initial_s = 0.2
[camera]
backend = "replay"
source = "{self.frames}"
fps = 30
stall_timeout_s = 5.0
[keystore]
scrypt_log2_n = 10
[policy]
{policy_toml}
[api]
socket = "{self.socket}"
{api_toml}
{LIVENESS_TOML}
""")
        self.proc: subprocess.Popen | None = None
        self.stderr_path = root / "daemon.stderr"

    # -- process ---------------------------------------------------------------------------------------
    def start(self, timeout: float = 180.0) -> Daemon:
        env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock", PYTHONPATH=str(REPO))
        env.pop("NOTIFY_SOCKET", None)
        self._err = open(self.stderr_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "firmware", "-c", str(self.config)], cwd=REPO, env=env,
                                     stdout=subprocess.DEVNULL, stderr=self._err)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            s = self.status_file()
            if s and s["pid"] == self.proc.pid and s.get("ready") and self.socket.exists():
                assert s["state"] != "FAULT", f"daemon in FAULT: {s['fault']}"
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.stderr()[-2000:]}")
            time.sleep(0.1)
        raise AssertionError(f"daemon not ready in {timeout} s: {self.stderr()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "_err", None) is not None:
            self._err.close()
            self._err = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.sock_dir, ignore_errors=True)

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- what the daemon sees and says -------------------------------------------------------------------
    def show(self, scene: str) -> None:
        """Put ``scene`` in front of the camera (same file names, each replaced atomically)."""
        write_replay_folder(self.frames, self.scenes[scene], suffix=".ppm")
        self.scene = scene

    def status_file(self) -> dict | None:
        try:
            return json.loads((self.data / "status.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def wait_status(self, cond, timeout: float = 30.0) -> dict:
        end = time.monotonic() + timeout
        s = None
        while time.monotonic() < end:
            s = self.status_file()
            if s and cond(s):
                return s
            time.sleep(0.05)
        raise AssertionError(f"status never matched; last: {s}")

    def calm(self, timeout: float = 60.0) -> dict:
        """Nobody at the door, the lock IDLE and not locked out (a clean start for the next scene)."""
        from firmware.api.client import ApiClient

        self.show("nobody")
        # frames read before the files were replaced may still be in the loop: wait until it has analysed a
        # few frames read afterwards, so no face of the previous scene can join the next scene's attempt
        # and nobody for longer than [lock] face_lost_s (0.5 s): a face a verify was decided on is the caller's
        # until it has left the view, and the door does not start an attempt on it before
        c = ApiClient(self.socket)
        a0 = c.status()["frames_analyzed"]
        t0 = time.monotonic()
        end = t0 + timeout
        while time.monotonic() < end:
            s = c.status()
            if s["frames_analyzed"] >= a0 + 3 and time.monotonic() - t0 > 1.0 and s["state"] == "IDLE" \
                    and s["lockout_remaining_s"] == 0:
                return s
            time.sleep(0.2)
        raise AssertionError(f"the lock never calmed down: {c.status()}")

    def audit(self) -> list:
        from firmware.audit import AuditLog, chain_key
        from firmware.keystore import KeystoreConfig

        key = chain_key(self.data, KeystoreConfig(scrypt_log2_n=10), create=False)
        assert key is not None  # the daemon keeps a keyed chain; the API's records are part of it
        with AuditLog(self.data / "audit.db", readonly=True, key=key) as log:
            res = log.verify()
            assert res.ok, str(res)
            return list(log.records())


def raw_call(path: Path, payload: bytes, half_close: bool = True, timeout: float = 30.0) -> bytes:
    """Send raw bytes to the API socket and return everything it answers (until it closes)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(str(path))

        def send() -> None:  # in a thread: a server that stops reading a huge request must still be heard
            try:
                if payload:
                    s.sendall(payload)
                if half_close:
                    s.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server closed its side after answering: the answer is still readable

        t = threading.Thread(target=send, daemon=True)
        t.start()
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        t.join(timeout)
        return out
    finally:
        s.close()


def last_line(raw: bytes) -> dict:
    lines = [ln for ln in raw.split(b"\n") if ln.strip()]
    assert lines, "no answer"
    return json.loads(lines[-1])


#: a stdlib-only client for running as another user (the repo may not be readable by them)
AS_USER_CLIENT = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(30)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
s.shutdown(socket.SHUT_WR)
out = b""
while True:
    c = s.recv(65536)
    if not c:
        break
    out += c
print(out.decode().strip().splitlines()[-1])
"""


def call_as(user: str, path: Path, request: dict) -> tuple[dict, float]:
    """The API call made by a process running as ``user`` (setpriv drops uid, gid and groups)."""
    py = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    group = "nogroup" if user == "nobody" else user
    t0 = time.monotonic()
    out = subprocess.run(["setpriv", f"--reuid={user}", f"--regid={group}", "--clear-groups", py, "-I", "-c",
                          AS_USER_CLIENT, str(path), json.dumps(request)], capture_output=True, text=True,
                         timeout=60, cwd="/")
    dt = time.monotonic() - t0
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout), dt
