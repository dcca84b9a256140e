"""The lock daemon as a subprocess, for tests that attack or kill it: config, environment, start, status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from firmware.hw.camera.replay import write_replay_folder
from provisioning import demofaces as df

REPO = Path(__file__).resolve().parents[2]


def write_config(tmp: Path, extra: str = "", unlock_s: float = 0.4) -> Path:
    frames = tmp / "frames"
    if not frames.exists():
        write_replay_folder(frames, [df.empty() for _ in range(4)])
    cfg = tmp / "facelock.toml"
    cfg.write_text(f"""
[device]
id = "kill-test"
data_dir = "{tmp / 'data'}"
[lock]
liveness = "auto"
unlock_s = {unlock_s}
fault_retry_initial_s = 0.2
[camera]
backend = "replay"
source = "{frames}"
fps = 30
[keystore]
scrypt_log2_n = 10
{extra}
""")
    return cfg


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["GPIOZERO_PIN_FACTORY"] = "mock"
    e.pop("NOTIFY_SOCKET", None)
    return e


def daemon_env(tmp_path: Path) -> dict[str, str]:
    """The daemon's environment, with a models dir whose manifest has a match threshold.

    These tests are about process lifecycle, not recognition (the frames hold no face), but the daemon
    rightly refuses to leave FAULT without a calibrated threshold.  While the shipped manifest has none
    yet, a copy (model files symlinked, so their sha256 checks still run) gets a placeholder one.
    """
    from firmware.vision.manifest import Manifest, default_models_dir

    src = default_models_dir()
    m = Manifest.load(src)
    e = env()
    try:
        m.spec("embedder").threshold("unlock")
        return e
    except Exception:  # noqa: BLE001 - NotCalibratedError
        pass
    dst = tmp_path / "models"
    dst.mkdir()
    for f in src.rglob("*"):
        if f.is_file() and f != src / "manifest.json":
            t = dst / f.relative_to(src)
            t.parent.mkdir(parents=True, exist_ok=True)
            t.symlink_to(f)
    name = m.defaults.get("embedder", "embedder")
    m.data["models"][name]["thresholds"] = {"operating_points": {"unlock": {"threshold": 0.5}}}
    m.save(dst / "manifest.json")
    e["FACELOCK_MODELS_DIR"] = str(dst)
    return e


def start(cfg: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "firmware", "-c", str(cfg), *kw.pop("args", [])],
                            cwd=REPO, env=kw.pop("env", env()), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def status(data: Path) -> dict | None:
    try:
        return json.loads((data / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def wait_status(data: Path, pid: int, cond=lambda s: True, timeout: float = 30.0) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s = status(data)
        if s and s["pid"] == pid and s.get("ready") and cond(s):
            return s
        time.sleep(0.02)
    raise AssertionError(f"daemon {pid} never reported the expected status; last: {status(data)}")


