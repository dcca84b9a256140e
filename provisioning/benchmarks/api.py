"""`facelock bench api --json`: what the Face Security API's socket costs on top of the attempt itself.

The real lock runs in this process (the site's face pipeline, liveness required, the astronaut enrolled
through the template store, mock GPIO pins, a replay camera at 30 fps showing her live: the head turning
in 3-D and blinking, with empty frames between appearances) with the real API server on a temporary
socket.  Each round is one verify over the socket (``firmware.api.client``: connect, JSON request,
peer-credential check, progress lines, JSON answer); the same attempt is also timed inside the server,
around the service's verify path (``ApiService.run``: the lock's port deciding the caller's attempt, no
socket).  Both times are of the *same* attempt (same attempt id), so the waiting for the face cancels
out and the difference is the API's overhead:

- ``socket_ms`` / ``in_process_ms``: round trip from the request to the answer, p50 and p95;
- ``overhead_ms``: socket minus in-process, per round, p50 and p95;
- ``ratio``: socket / in-process p50 and p95 (1.0 = free).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import click
import numpy as np

FPS = 30.0


def _pct(a: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(a), q)), 2)


@click.command("api")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.option("--rounds", type=click.IntRange(min=5), default=30, show_default=True)
def command(as_json: bool, rounds: int) -> None:
    """Verify round trip over the API socket vs. the same attempt in process (p50/p95, ratio)."""
    from gpiozero.pins.mock import MockFactory

    from firmware.api.client import ApiClient
    from firmware.api.config import ApiConfig
    from firmware.api.lockport import PortView
    from firmware.api.server import ApiServer
    from firmware.api.service import ApiService, Recorder, TemplateDirectory
    from firmware.config import CameraConfig, Config, DeviceConfig, LockConfig
    from firmware.errors import FaceLockError
    from firmware.hw.camera.replay import ReplayCamera
    from firmware.hw.gpio import LockIO
    from firmware.keystore import KeystoreConfig
    from firmware.lock.port import LockPort
    from firmware.lock.runtime import LockRuntime
    from firmware.site import open_site
    from provisioning import demofaces as df

    tmp = Path(tempfile.mkdtemp(prefix="facelock-bench-api-"))
    data = tmp / "data"
    # the bench is its own machine: its device secret beside its temp data dir, never the machine's own
    ks = KeystoreConfig(scrypt_log2_n=12, device_secret_path=str(tmp / "etc" / "device.secret"))
    cfg = Config(device=DeviceConfig(id="bench-api", data_dir=str(data)),
                 lock=LockConfig(unlock_s=0.3, denied_s=0.3, liveness="required"),
                 camera=CameraConfig(backend="replay", source="mem", fps=FPS), sections={"keystore": ks})
    site = open_site(cfg)
    pipe = site.pipeline(num_threads=1)
    with site.templates() as store:
        store.enroll("astronaut", np.stack([pipe.process(f).embedding for f in df.enrolled()]))
    base = df.near("astronaut")
    rng = np.random.default_rng(0)
    frames = [df.empty(rng=rng) for _ in range(10)] + df.live_person(base, pipe.process(base).primary.mesh.points,
                                                                    30, seed=1)
    events = site.event_sink()
    made: dict = {}
    built = threading.Event()
    stop = threading.Event()

    def lock_loop() -> None:
        # the lock's objects belong to its thread (its SQLite connections are thread-bound), as in the daemon
        io = LockIO(cfg.gpio, pin_factory=MockFactory())
        audit = site.audit()
        users = site.users()
        rt = LockRuntime(cfg, io, lambda: ReplayCamera(frames, fps=FPS, loop=True),
                         lambda: site.decider(num_threads=1), audit, events, users=users)
        made["port"] = LockPort(rt)
        built.set()
        try:
            rt.run(stop.is_set)
        finally:
            rt.shutdown("bench")
            users.close()
            io.close()
            audit.close()

    loop = threading.Thread(target=lock_loop, name="lock-loop", daemon=True)
    loop.start()
    if not built.wait(120):
        raise FaceLockError("the lock did not start")
    port = made["port"]
    api_cfg = ApiConfig(socket=str(tmp / "api.sock"), verify_per_minute=600, requests_per_minute=6000)
    view = PortView(port)
    recorder = Recorder(site.audit, events, view.user_ref)
    service = ApiService(api_cfg, view, TemplateDirectory(site), recorder)
    inside: dict[str, float] = {}  # attempt id -> ms inside the server (the service's verify path)
    run = service.run

    def timed_run(peer, req, progress, gone=lambda: False):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        ans = run(peer, req, progress, gone)
        if ans.get("attempt_id"):
            inside[ans["attempt_id"]] = (time.perf_counter() - t0) * 1e3
        return ans

    service.run = timed_run  # type: ignore[method-assign]
    server = ApiServer(api_cfg, service)
    client = ApiClient(api_cfg.socket)
    sock_ms: list[float] = []
    proc_ms: list[float] = []
    same = 0
    try:
        end = time.monotonic() + 120
        while view.unavailable() is not None and time.monotonic() < end:
            time.sleep(0.1)
        if view.unavailable() is not None:
            raise FaceLockError(f"the lock did not come up: {view.unavailable()} ({port.summary().fault})")
        for _ in range(rounds):
            t0 = time.perf_counter()
            r = client.verify(purpose="bench", timeout_s=20)
            s_dt = (time.perf_counter() - t0) * 1e3
            if r.ok and r.attempt_id in inside:
                same += 1
                sock_ms.append(s_dt)
                proc_ms.append(inside[r.attempt_id])
            time.sleep(float(rng.uniform(0.0, 0.5)))  # arrive at different phases of the face's cycle
    finally:
        stop.set()
        loop.join(30)
        server.close()
        recorder.flush(5)
        recorder.close()
        if events is not None:
            events.close()
        shutil.rmtree(tmp, ignore_errors=True)
    if len(sock_ms) < rounds // 2:
        raise FaceLockError(f"only {len(sock_ms)} of {rounds} rounds verified: nothing sound to report")
    over = [s - p for s, p in zip(sock_ms, proc_ms, strict=True)]
    result = {
        "rounds": len(sock_ms), "same_attempt": same,
        "socket_ms": {"p50": _pct(sock_ms, 50), "p95": _pct(sock_ms, 95)},
        "in_process_ms": {"p50": _pct(proc_ms, 50), "p95": _pct(proc_ms, 95)},
        "overhead_ms": {"p50": _pct(over, 50), "p95": _pct(over, 95)},
        "ratio": {"p50": round(_pct(sock_ms, 50) / max(_pct(proc_ms, 50), 1e-9), 4),
                  "p95": round(_pct(sock_ms, 95) / max(_pct(proc_ms, 95), 1e-9), 4)},
        "replay_fps": FPS, "liveness": True,
    }
    click.echo(json.dumps(result) if as_json else "\n".join(f"{k}: {v}" for k, v in result.items()))
