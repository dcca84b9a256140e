"""`facelock eval-e2e --videos DIR`: the REAL daemon over each clip; grants, refusals and lockouts per clip.

Per clip (``DIR/live/*``, ``DIR/attack/*``): a fresh data dir; the clip's person enrolled through the
template store from 5 of their own frames (for an attack clip: from the same identity's live clip when one
exists, else from the attack clip itself — the attacker's best case); then ``python -m firmware`` with the
replay camera over the clip at the clip's own frame rate and size (played once, in real time: a daemon
slower than the clip skips frames like it would on a real camera), mock GPIO (gpiozero's MockFactory),
the default ``[lock]`` and ``[liveness]`` (or those of ``--config``).  After the clip the daemon is stopped
and its audit log read: grants, spoof refusals, no-match refusals, lockouts, and the time from the clip's
first face frame to the first unlock (from the grant's ``decision_ms`` and ``face_frame``).  Only what
happened while the clip played counts: when the replay ends the camera faults, and the daemon's recovery
re-opens the clip at its start (in the ``--tail-s`` after the clip it would judge the clip's first frames a
second time); records after that fault are reported apart (``after_clip_end``), not as the clip's.
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
from typing import Any

import click

REPO = Path(__file__).resolve().parents[2]
ENROLL_FRAMES = 5
REFUSALS = ("spoof_suspected", "denied", "lockout")
#: the replay camera's end-of-clip errors (firmware.hw.camera.replay), as the daemon audits its fault
END_OF_REPLAY = ("ended or became unreadable", "end of replay")


def _clip_info(path: Path) -> tuple[float, int, int, int]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()
    return (fps if 1.0 <= fps <= 120.0 else 15.0), n, w, h


def _frames(path: Path):
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            yield bgr[:, :, ::-1].copy()
    finally:
        cap.release()


def first_face_index(pipe: Any, path: Path) -> int | None:
    """Index of the clip's first frame in which the face pipeline finds a face."""
    for k, rgb in enumerate(_frames(path)):
        if pipe.process(rgb, embed=False).primary is not None:
            return k
    return None


def enrollment_embeddings(pipe: Any, path: Path, n: int = ENROLL_FRAMES):
    """Embeddings of ``n`` frames spread over the clip that pass the quality gates (as `facelock enroll`)."""
    import numpy as np

    _, total, _, _ = _clip_info(path)
    want = set(np.linspace(0, max(total - 1, 0), 4 * n).astype(int).tolist())
    embs = []
    for k, rgb in enumerate(_frames(path)):
        if k in want:
            r = pipe.process(rgb)
            if r.embedding is not None:
                embs.append(r.embedding)
    if len(embs) < n:  # fall back to every usable frame
        embs = [e for rgb in _frames(path) if (e := pipe.process(rgb).embedding) is not None]
    if not embs:
        return None
    idx = np.linspace(0, len(embs) - 1, min(n, len(embs))).astype(int)
    return np.stack([embs[i] for i in idx])


def write_config(tmp: Path, clip: Path, fps: float, w: int, h: int, base: str) -> Path:
    cfg = tmp / "facelock.toml"
    lock = "[lock]\nliveness = \"required\"\n" if "[lock]" not in base else ""
    cfg.write_text(f"""[device]
id = "e2e"
data_dir = "{tmp / 'data'}"
{lock}[camera]
backend = "replay"
source = "{clip}"
fps = {fps}
width = {w}
height = {h}
loop = false
stall_timeout_s = 5.0
[keystore]
backend = "file"
scrypt_log2_n = 10
[daemon]
watchdog = false
{base}
""")
    return cfg


def _status(data: Path) -> dict | None:
    try:
        return json.loads((data / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def run_daemon(cfg: Path, data: Path, seconds: float, ready_timeout: float = 60.0) -> tuple[int, str]:
    """Start the daemon, let it run ``seconds`` past readiness, stop it (SIGTERM); (returncode, stderr tail)."""
    env = dict(os.environ)
    env["GPIOZERO_PIN_FACTORY"] = "mock"
    env.pop("NOTIFY_SOCKET", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.Popen([sys.executable, "-m", "firmware", "-c", str(cfg)], cwd=REPO, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + ready_timeout
        while time.monotonic() < end and p.poll() is None:
            s = _status(data)
            if s and s.get("pid") == p.pid and s.get("ready"):
                break
            time.sleep(0.05)
        time.sleep(seconds)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            _, err = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
    return p.returncode, (err or "")[-2000:]


def read_outcomes(data: Path, fps: float, k0: int | None) -> dict[str, Any]:
    from firmware.audit import AuditLog

    kinds: dict[str, int] = {}
    after: dict[str, int] = {}
    first_unlock_s = None
    reasons = []
    with AuditLog(data / "audit.db", readonly=True) as log:
        for r in log.records():
            d = r.data
            if after or (r.kind == "fault" and any(e in str(d.get("reason", "")) for e in END_OF_REPLAY)):
                after[r.kind] = after.get(r.kind, 0) + 1  # the clip is over (see the module docstring)
                continue
            kinds[r.kind] = kinds.get(r.kind, 0) + 1
            if r.kind == "granted" and first_unlock_s is None and "decision_ms" in d and k0 is not None:
                first_unlock_s = round(float(d["decision_ms"]) / 1e3 + (int(d.get("face_frame", k0)) - k0) / fps, 3)
            if r.kind in REFUSALS:
                reasons.append(str(d.get("reason", ""))[:160])
    return {"grants": kinds.get("granted", 0), "spoof_refusals": kinds.get("spoof_suspected", 0),
            "no_match_refusals": kinds.get("denied", 0), "lockouts": kinds.get("lockout", 0),
            "verify_timeouts": kinds.get("verify_timeout", 0), "face_lost": kinds.get("face_lost", 0),
            "first_face_to_unlock_s": first_unlock_s, "refusal_reasons": reasons[:20], "audit_kinds": kinds,
            "after_clip_end": after}


@click.command("eval-e2e")
@click.option("--videos", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="folder with live/ and attack/ clips (e.g. shared/faces/extras/liveness_video)")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the report here")
@click.option("--config", "base_config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="TOML whose [lock]/[liveness]/[policy] sections to use (default: shipped defaults)")
@click.option("--only", "only", multiple=True, help="run only clips whose name contains this (repeatable)")
@click.option("--tail-s", type=click.FloatRange(min=0.0), default=1.0, help="keep running this long after the clip")
def command(videos: Path, json_out: Path | None, base_config: Path | None, only: tuple[str, ...],
            tail_s: float) -> None:
    """Drive the real daemon (replay camera at each clip's fps, mock GPIO) over every clip; report per clip."""
    import numpy as np

    from firmware.keystore import KeystoreConfig, open_keystore
    from firmware.site import open_site
    from firmware.templates import TemplateStore
    from provisioning.research.liveness_attempts import VIDEO_EXT, identity_of

    base = base_config.read_text() if base_config is not None else ""
    clips = [(sub == "live", f) for sub in ("live", "attack") if (videos / sub).is_dir()
             for f in sorted((videos / sub).iterdir()) if f.suffix.lower() in VIDEO_EXT]
    if only:
        clips = [(lv, f) for lv, f in clips if any(o in f.name for o in only)]
    if not clips:
        raise click.ClickException(f"no clips under {videos}/live or {videos}/attack")
    live_by_id = {identity_of(f.stem): f for lv, f in clips if lv}
    if only:  # an attack clip still enrolls from its person's live clip, even when that clip is not run
        live_by_id.update({identity_of(f.stem): f for f in sorted((videos / "live").glob("*"))
                           if f.suffix.lower() in VIDEO_EXT and identity_of(f.stem) not in live_by_id})
    pipe = open_site().pipeline(1)
    per = []
    for live, clip in clips:
        ident = identity_of(clip.stem)
        enroll_from = clip if live else live_by_id.get(ident, clip)
        fps, n, w, h = _clip_info(clip)
        k0 = first_face_index(pipe, clip)
        with tempfile.TemporaryDirectory(prefix="facelock-e2e-") as td:
            tmp = Path(td)
            data = tmp / "data"
            data.mkdir(mode=0o700)
            embs = enrollment_embeddings(pipe, enroll_from)
            if embs is None:
                per.append({"clip": f"{'live' if live else 'attack'}/{clip.name}", "error": "no enrollable frame"})
                continue
            store = TemplateStore(data, open_keystore(KeystoreConfig(scrypt_log2_n=10), data))
            try:
                store.enroll(ident, embs)
            finally:
                store.close()
            cfg = write_config(tmp, clip, fps, w, h, base)
            t0 = time.monotonic()
            rc, err = run_daemon(cfg, data, n / fps + tail_s)
            out = read_outcomes(data, fps, k0)
            st = _status(data) or {}
            # the daemon's real analysis rate over the clip: what its attempts were built from
            out["frames_analyzed"] = st.get("analyzed")
            out["analyzed_fps"] = round(st["analyzed"] / (n / fps), 1) if st.get("analyzed") and n else None
        row = {"clip": f"{'live' if live else 'attack'}/{clip.name}", "live": live, "identity": ident,
               "enrolled_from": f"{'live' if enroll_from.parent.name == 'live' else 'attack'}/{enroll_from.name}",
               "enroll_frames": int(len(embs)), "fps": fps, "frames": n, "size": [w, h],
               "first_face_frame": k0, "daemon_rc": rc, "wall_s": round(time.monotonic() - t0, 1), **out}
        if rc not in (0, -signal.SIGTERM, 128 + signal.SIGTERM):
            row["daemon_stderr_tail"] = err
        per.append(row)
        click.echo(f"{row['clip']}: grants {out['grants']}, spoof refusals {out['spoof_refusals']}, no-match "
                   f"{out['no_match_refusals']}, lockouts {out['lockouts']}, first face -> unlock "
                   f"{out['first_face_to_unlock_s']} s (daemon analysed {out['analyzed_fps']} frames/s)")
    lives = [r for r in per if r.get("live")]
    waits = [r["first_face_to_unlock_s"] for r in lives if r.get("first_face_to_unlock_s") is not None]
    summary = {
        "live_clips": len(lives), "live_clips_unlocked": sum(r["grants"] > 0 for r in lives),
        "live_clips_locked_out": sum(r["lockouts"] > 0 for r in lives),
        "live_spoof_refusals": sum(r["spoof_refusals"] for r in lives),
        "first_face_to_unlock_s": {"median": float(np.median(waits)) if waits else None,
                                   "max": float(np.max(waits)) if waits else None, "n": len(waits)},
        "attack_clips": sum(not r.get("live") for r in per),
        "attack_clips_unlocked": [r["clip"] for r in per if not r.get("live") and r.get("grants", 0) > 0],
    }
    click.echo(f"live clips unlocked {summary['live_clips_unlocked']}/{summary['live_clips']}, locked out "
               f"{summary['live_clips_locked_out']}, first face -> unlock median "
               f"{summary['first_face_to_unlock_s']['median']} s; attack clips unlocked "
               f"{summary['attack_clips_unlocked']}")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({"summary": summary, "clips": per}, indent=2) + "\n")
        click.echo(f"wrote {json_out}")
