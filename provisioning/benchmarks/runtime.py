"""`facelock bench runtime --json`: decision latency, idle frame rate and peak memory of the real daemon.

It runs ``python -m firmware`` as its own process (mock GPIO pins, replay camera, file keystore, the
astronaut enrolled through the template store) on 640×480 frames replayed at 30 fps.  The frames are raw
PPM files, read without an image decoder, as a camera delivers raw pixels:

- ``decision_ms``: for each attempt, from the presentation time of the first replayed frame in which
  the enrolled face appears to the moment the daemon energized the relay (read back from the pin and
  written to the audit log), median and p95 over ``--attempts`` (>= 50).  Liveness is included when
  installed, with its calibrated thresholds: the face is then a live one (the head turning in 3-D and
  blinking, ``provisioning.demofaces.live_person``), which a photo cannot imitate.
- ``idle_fps``: frames examined per second with nobody in view (replayed faster than the loop can go).
- ``peak_rss_mb``: the daemon process's peak resident memory (VmHWM), max over both runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

FPS = 30.0
EMPTY_FRAMES = 20
FACE_FRAMES = 45  # 1.5 s at 30 fps: liveness needs 0.8 s of frames (static replay) before "live"


def _vmhwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _status(data: Path) -> dict | None:
    try:
        return json.loads((data / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _config(tmp: Path, data: Path, frames: Path, fps: float) -> Path:
    cfg = tmp / f"bench-{fps:g}.toml"
    cfg.write_text(f"""
[device]
id = "bench"
data_dir = "{data}"
[lock]
unlock_s = 0.2
denied_s = 0.2
liveness = "auto"
[camera]
backend = "replay"
source = "{frames}"
fps = {fps}
stall_timeout_s = 5.0
[keystore]
scrypt_log2_n = 12
[daemon]
events = true
""")
    return cfg


def _start(cfg: Path) -> subprocess.Popen:
    env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock")
    env.pop("NOTIFY_SOCKET", None)
    return subprocess.Popen([sys.executable, "-m", "firmware", "-c", str(cfg)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_ready(p: subprocess.Popen, data: Path, timeout: float = 120.0) -> dict:
    from firmware.errors import FaceLockError

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s = _status(data)
        if s and s["pid"] == p.pid and s.get("ready"):
            if s["state"] == "FAULT":
                p.terminate()
                p.wait(30)
                raise FaceLockError(f"the daemon is in FAULT, nothing to measure: {s['fault']}")
            return s
        if p.poll() is not None:
            raise FaceLockError(f"the daemon exited with {p.returncode}: {p.stderr.read()[-500:]}")
        time.sleep(0.05)
    p.kill()
    raise FaceLockError("the daemon did not come up in time")


def _stop(p: subprocess.Popen) -> float:
    rss = _vmhwm_mb(p.pid)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=30)
    return rss


@click.command("runtime")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.option("--attempts", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--idle-seconds", type=float, default=5.0, show_default=True)
def command(as_json: bool, attempts: int, idle_seconds: float) -> None:
    """Decision latency (face appears -> relay), idle fps and peak RSS of the running daemon."""
    from firmware.audit import AuditLog
    from firmware.config import Config, DeviceConfig, LockConfig
    from firmware.hw.camera.replay import write_replay_folder
    from firmware.keystore import KeystoreConfig
    from firmware.site import open_site
    from provisioning import demofaces as df

    tmp = Path(tempfile.mkdtemp(prefix="facelock-bench-"))
    data = tmp / "data"
    # the bench is its own machine: its device secret beside its data dir (the daemon child inherits this)
    os.environ["FACELOCK_DEVICE_SECRET"] = str(tmp / "etc" / "device.secret")
    site = open_site(Config(device=DeviceConfig(data_dir=str(data)), lock=LockConfig(liveness="auto"),
                            sections={"keystore": KeystoreConfig(scrypt_log2_n=12)}))
    pipe = site.pipeline(num_threads=1)
    liveness = site.liveness() is not None
    embs = [pipe.process(f).embedding for f in df.enrolled()]
    with site.templates() as store:
        store.enroll("astronaut", np.stack(embs))

    rng = np.random.default_rng(0)
    if liveness:
        base = df.near("astronaut")
        faces = df.live_person(base, pipe.process(base).primary.mesh.points, FACE_FRAMES, seed=1)
    else:
        faces = df.live_sequence(df.astronaut(), FACE_FRAMES, seed=1)
    cycle = [df.empty(rng=rng) for _ in range(EMPTY_FRAMES)] + faces
    # raw frames (PPM): a camera hands the daemon raw pixels, so no image decoder is measured with it
    frames = write_replay_folder(tmp / "frames", cycle, suffix=".ppm")
    idle = write_replay_folder(tmp / "idle", [df.empty(rng=rng) for _ in range(10)], suffix=".ppm")
    del pipe

    # -- decision latency -----------------------------------------------------------------------------
    p = _start(_config(tmp, data, frames, FPS))
    _wait_ready(p, data)
    n_cycle = len(cycle)
    per_segment: dict[int, float] = {}
    deadline = time.monotonic() + (attempts + 10) * n_cycle / FPS * 3 + 60
    since = 0
    try:
        while len(per_segment) < attempts and time.monotonic() < deadline:
            time.sleep(0.5)
            with AuditLog(data / "audit.db", readonly=True) as log:
                for r in log.records(since=since):
                    since = r.seq
                    if r.kind != "granted" or "face_frame" not in r.data:
                        continue
                    k = int(r.data["face_frame"])
                    seg_start = k - ((k - EMPTY_FRAMES) % n_cycle)  # first face frame of this appearance
                    if seg_start in per_segment:
                        continue  # re-unlocked while she still stood there: not a new attempt
                    per_segment[seg_start] = float(r.data["decision_ms"]) + (k - seg_start) / FPS * 1e3
    finally:
        rss1 = _stop(p)
    st = _status(data) or {}

    # -- idle frame rate --------------------------------------------------------------------------------
    p = _start(_config(tmp, data, idle, 1000.0))
    s0 = _wait_ready(p, data)
    t0, a0 = time.monotonic(), s0.get("analyzed", 0)
    time.sleep(idle_seconds)
    t1 = time.monotonic()
    rss2 = _stop(p)  # the daemon writes its final counters to the status file as it stops
    s1 = _status(data) or {}
    idle_fps = (s1.get("analyzed", 0) - a0) / max(t1 - t0, 1e-9)

    lat = np.array(sorted(per_segment.values()))
    result = {
        "decision_ms": {"median": round(float(np.median(lat)), 1) if len(lat) else None,
                        "p95": round(float(np.percentile(lat, 95)), 1) if len(lat) else None,
                        "max": round(float(lat.max()), 1) if len(lat) else None,
                        "attempts": int(len(lat))},
        "idle_fps": round(idle_fps, 1),
        "peak_rss_mb": round(max(rss1, rss2), 1),
        "frame": {"width": 640, "height": 480, "replay_fps": FPS},
        "liveness": liveness,
        "granted_total": st.get("granted"),
        "denied_total": st.get("denied"),  # failed attempts (no match) during the latency run
        "spoof_total": st.get("spoof"),  # attempts liveness refused (a live face should have none)
    }
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    if as_json:
        click.echo(json.dumps(result))
    else:
        for k, v in result.items():
            click.echo(f"{k}: {v}")
    if len(lat) < attempts:
        from firmware.errors import FaceLockError

        raise FaceLockError(f"only {len(lat)} of {attempts} attempts unlocked: {json.dumps(result)}")
