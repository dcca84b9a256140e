"""`facelock bench api --json`: what the Face Security API's socket costs on top of the attempt itself.

The real lock runs in this process (controller, face pipeline, liveness required, the astronaut enrolled
through the template store, mock GPIO pins, a replay camera at 30 fps showing her live: the head turning
in 3-D and blinking, with empty frames between appearances) with the real API server on a temporary
socket.  Each round asks the *same* attempt twice at the same instant: once over the socket
(``firmware.api.client``: connect, JSON request, peer-credential check, progress lines, JSON answer) and
once in process (the service's verify path on the same hub, no socket).  Both wait for the same door
decision (same attempt id), so the waiting cancels out and the difference is the API's overhead:

- ``socket_ms`` / ``in_process_ms``: round trip from the request to the answer, p50 and p95;
- ``overhead_ms``: socket minus in-process, per round, p50 and p95;
- ``ratio``: socket / in-process p50 and p95 (1.0 = free).
"""

from __future__ import annotations

import json
import os
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

    from firmware.api.access import Peer
    from firmware.api.attempts import VerifyHub
    from firmware.api.client import ApiClient
    from firmware.api.config import ApiConfig
    from firmware.api.lockport import ControllerView
    from firmware.api.protocol import Request
    from firmware.api.server import ApiServer
    from firmware.api.service import ApiService, Recorder, TemplateDirectory
    from firmware.audit import AuditLog
    from firmware.config import CameraConfig, Config, DeviceConfig, LockConfig
    from firmware.errors import FaceLockError
    from firmware.hw.camera.replay import ReplayCamera
    from firmware.hw.gpio import LockIO
    from firmware.keystore import KeystoreConfig, open_keystore
    from firmware.lock.controller import Controller
    from firmware.lock.stages import build_pipeline, build_stages, open_event_sink
    from firmware.templates import TemplateStore
    from provisioning import demofaces as df

    tmp = Path(tempfile.mkdtemp(prefix="facelock-bench-api-"))
    os.environ["FACELOCK_DEVICE_SECRET"] = str(tmp / "etc" / "device.secret")  # never the machine's own
    data = tmp / "data"
    ks = KeystoreConfig(scrypt_log2_n=12)
    pipe = build_pipeline(num_threads=1)
    store = TemplateStore(data, open_keystore(ks, data))
    store.enroll("astronaut", np.stack([pipe.process(f).embedding for f in df.enrolled()]))
    store.close()
    base = df.near("astronaut")
    rng = np.random.default_rng(0)
    frames = [df.empty(rng=rng) for _ in range(10)] + df.live_person(base, pipe.process(base).primary.mesh.points,
                                                                    30, seed=1)
    del pipe
    sections = {"keystore": ks}
    cfg = Config(device=DeviceConfig(id="bench-api", data_dir=str(data)),
                 lock=LockConfig(unlock_s=0.3, denied_s=0.3, liveness="required"),
                 camera=CameraConfig(backend="replay", source="mem", fps=FPS), sections=sections)
    events = open_event_sink(data, cfg.device.id)
    hub = VerifyHub()
    made: dict = {}
    built = threading.Event()
    stop = threading.Event()

    def lock_loop() -> None:
        # the lock's objects belong to its thread (its SQLite connections are thread-bound), as in the daemon
        io = LockIO(cfg.gpio, pin_factory=MockFactory())
        audit = AuditLog(data / "audit.db")
        ctl = Controller(cfg, io, lambda: ReplayCamera(frames, fps=FPS, loop=True),
                         lambda: build_stages(data, sections, num_threads=1, liveness="required"), audit, events)
        ctl.attempt_listener = hub
        made["ctl"] = ctl
        built.set()
        try:
            ctl.run(stop.is_set)
        finally:
            ctl.shutdown("bench")
            io.close()
            audit.close()

    loop = threading.Thread(target=lock_loop, name="lock-loop", daemon=True)
    loop.start()
    if not built.wait(120):
        raise FaceLockError("the lock did not start")
    ctl = made["ctl"]
    api_cfg = ApiConfig(socket=str(tmp / "api.sock"), verify_per_minute=600, requests_per_minute=6000)
    view = ControllerView(ctl, hub)
    recorder = Recorder(lambda: AuditLog(data / "audit.db"), events, view.user_ref)
    service = ApiService(api_cfg, view, TemplateDirectory(data, sections), recorder)
    server = ApiServer(api_cfg, service)
    client = ApiClient(api_cfg.socket)
    me = Peer(0, 0, 0)
    sock_ms: list[float] = []
    proc_ms: list[float] = []
    same = 0
    try:
        end = time.monotonic() + 120
        while view.unavailable() is not None and time.monotonic() < end:
            time.sleep(0.1)
        if view.unavailable() is not None:
            raise FaceLockError(f"the lock did not come up: {view.unavailable()} ({ctl.fault_reason})")
        for _ in range(rounds):
            out: dict = {}
            go = threading.Barrier(2)

            def over_socket(out: dict = out, go: threading.Barrier = go) -> None:
                go.wait()
                t0 = time.perf_counter()
                r = client.verify(purpose="bench", timeout_s=20)
                out["socket"] = (time.perf_counter() - t0, r)

            t = threading.Thread(target=over_socket)
            t.start()
            go.wait()
            t0 = time.perf_counter()
            ans = service.run(me, Request("verify", None, "bench", 20.0), lambda _s: None)
            proc = time.perf_counter() - t0
            t.join(30)
            s_dt, s_res = out["socket"]
            if ans["ok"] and s_res.ok:
                same += int(ans["attempt_id"] == s_res.attempt_id)
                sock_ms.append(s_dt * 1e3)
                proc_ms.append(proc * 1e3)
            time.sleep(float(rng.uniform(0.0, 0.5)))  # arrive at different phases of the door's cycle
    finally:
        stop.set()
        loop.join(30)
        server.close()
        recorder.flush(5)
        recorder.close()
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
