"""`make demo` (``python -m provisioning.demo``): the whole lock on this machine, with nothing but packages.

What runs is the real firmware: the controller, state machine, policy, face pipeline (TFLite), liveness
(required: with its calibrated, unchanged thresholds), the protected template store over a file keystore,
the lock-state file, the audit chain and the telemetry outbox.  Only hardware is simulated: gpiozero mock
pins, and a replay camera over faces from packages (scikit-image's astronaut is enrolled; matplotlib's
Grace Hopper is the stranger).  A *live* person turns the head in 3-D and blinks
(``provisioning.research.synth.head_pose``); the held-up photo is one fixed picture.  Everything lives
in a temporary data dir that is removed at the end.

The script, each step a check that can fail on its own:
enrolled face unlocks -> the door opens and closes (relock on close) -> a stranger is denied (not
recognised; one failure counted) -> the stranger keeps trying: LOCKOUT after exactly ``max_failures``
failures, no face analysed while it lasts -> the lockout ends by itself -> the enrolled face unlocks again
(the success clears the backoff) -> a held-up photo of her is refused (spoof_suspected) -> the exit button
opens from inside and the lock relocks -> the audit chain verifies and holds no user id or name.
Exit code 0 only when every check passed.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")

USER_NAME = "Eileen Collins (astronaut)"
FPS = 15.0
FAILED_ROWS = ("denied", "denied_lockout", "spoof", "spoof_lockout")


class Scene:
    """An endless in-memory frame source whose content the script switches (what stands at the door)."""

    def __init__(self) -> None:
        self.name = "nobody"
        self.frames: list[np.ndarray] = []
        self.start = 0

    def set(self, name: str, frames: list[np.ndarray]) -> None:
        self.name, self.frames, self.start = name, frames, -1

    def __len__(self) -> int:
        return 1 << 30

    def __getitem__(self, k: int) -> np.ndarray:
        if self.start < 0:
            self.start = k
        return self.frames[(k - self.start) % len(self.frames)]


@dataclass
class Outcome:
    name: str
    expected: str
    got: str = "-"
    ok: bool = False
    note: str = ""


@dataclass
class Demo:
    ctl: Any
    io: Any
    scene: Scene
    live: Any
    log: deque = field(default_factory=lambda: deque(maxlen=9))
    outcomes: list[Outcome] = field(default_factory=list)
    rows: list[tuple[str, str, bool]] = field(default_factory=list)  # (row, state, relay pin) per step

    def on_step(self, st: Any, inp: Any) -> None:
        if st.row:
            self.rows.append((st.row, st.state.value, bool(self.io.relay_energized)))
            who = " (enrolled user)" if inp.user and inp.event.value == "match" else ""
            why = f" ({inp.reason})" if inp.reason else ""
            self.log.append(f"{time.strftime('%H:%M:%S')} {inp.event.value:<16} -> {st.state.value:<9}{who}{why}")

    def render(self) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table

        io, snap = self.io, self.ctl.snap
        relay = "[bold green]ENERGIZED (open)[/]" if io.relay_energized else "[red]de-energized (locked)[/]"
        leds = " ".join(f"[{c}]{'●' if io.leds[c] != 'off' else '○'}[/] {c} {io.leds[c]}" for c in ("green", "red"))
        t = Table.grid(padding=(0, 2))
        t.add_row("state", f"[bold]{snap.state.value}[/]", "relay", relay)
        t.add_row("LEDs", leds, "buzzer", str(io.buzzer_pattern or "-"))
        c = self.ctl.counters
        t.add_row("at the door", self.scene.name, "frames/analyzed", f"{c.frames}/{c.analyzed}")
        t.add_row("granted/denied/spoof", f"{c.granted}/{c.denied}/{c.spoof}", "failures in window",
                  f"{len(self.ctl.lockout.failures)} (lockouts {c.lockouts})")
        if c.last_decision_ms is not None:
            t.add_row("last decision", f"{c.last_decision_ms:.0f} ms (face frame -> relay)", "", "")
        return Group(Panel(t, title="FaceLock demo (mock GPIO, replay camera)"),
                     Panel("\n".join(self.log) or "-", title="transitions"))

    def run_until(self, cond: Callable[[], bool], timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.ctl.tick()
            self.live.update(self.render())
            if cond():
                return True
        return False

    def wait(self, seconds: float) -> None:
        self.run_until(lambda: False, seconds)

    def rows_since(self, mark: int) -> list[tuple[str, str, bool]]:
        return self.rows[mark:]

    def check(self, name: str, expected: str, ok: bool, got: str, note: str = "") -> bool:
        self.outcomes.append(Outcome(name, expected, got, bool(ok), note))
        return bool(ok)


def enroll_astronaut(site: Any, pipeline: Any) -> str:
    """Enroll through the site's protected template store (what `facelock enroll` does)."""
    from provisioning import demofaces as df

    embs = []
    for f in df.enrolled():
        r = pipeline.process(f)
        if r.embedding is None:
            raise SystemExit(f"demo: enrollment capture rejected by the face pipeline: {r.reason}")
        embs.append(r.embedding)
    with site.templates() as store:
        return store.enroll(USER_NAME, np.stack(embs))


def live_frames(pipeline: Any, who: str, n: int, seed: int) -> list[np.ndarray]:
    """A live person at the door: head turning in 3-D and blinking (see provisioning.demofaces)."""
    from provisioning import demofaces as df

    base = df.near(who)
    res = pipeline.process(base)
    if res.primary is None or res.primary.mesh is None:
        raise SystemExit(f"demo: no face mesh on the {who} frame: {res.reason}")
    return df.live_person(base, res.primary.mesh.points, n, seed=seed)


def main() -> int:  # noqa: C901 - a linear script reads best as one function
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from firmware.config import Config, DeviceConfig, LockConfig
    from firmware.hw.camera.replay import ReplayCamera
    from firmware.hw.gpio import LockIO
    from firmware.keystore import KeystoreConfig
    from firmware.lock import statemachine as sm
    from firmware.lock.policy import PolicyConfig
    from firmware.lock.runtime import LockRuntime
    from firmware.site import ComponentUnavailableError, open_site
    from firmware.vision.liveness import LivenessConfig
    from provisioning import demofaces as df

    # The demo's people are animated photos (no live video ships with a package), and the learned PAD model
    # (`fasnet`, the default) rightly calls every one of them a photo; so the demo runs the geometric checks,
    # which the animation exercises (3-D head turn, blink, a rigid held-up photo).  The default policy is
    # measured on real video by `facelock eval-liveness` and `facelock eval-e2e` instead.
    demo_liveness = LivenessConfig(required=("static_replay", "same_face"), any_of=("blink", "pad"),
                                   veto=("motion",))
    console = Console()
    State = sm.State
    tmp = Path(tempfile.mkdtemp(prefix="facelock-demo-"))
    data = tmp / "data"
    data.mkdir()
    # the demo is its own "machine": its device secret sits beside (not inside) its data dir
    ks_cfg = KeystoreConfig(scrypt_log2_n=12, device_secret_path=str(tmp / "etc" / "device.secret"))
    policy = PolicyConfig.from_dict({"base_lockout_s": 5.0})
    n_fail = policy.lockout.max_failures
    cfg = Config(device=DeviceConfig(id="demo-door", data_dir=str(data)),
                 lock=LockConfig(unlock_s=3.0, verify_timeout_s=3.0, denied_s=1.0, fault_retry_initial_s=0.5,
                                 liveness="required"),
                 policy=policy, sections={"keystore": ks_cfg, "liveness": demo_liveness})
    console.print(f"[bold]FaceLock demo[/]: data dir {data} (temporary), mock GPIO, replay camera at {FPS:g} fps")
    try:
        with console.status("loading the face pipeline (TFLite), enrolling the astronaut, making the scenes..."):
            site = open_site(cfg)
            pipeline = site.pipeline(num_threads=2)
            user_id = enroll_astronaut(site, pipeline)
            astronaut_live = live_frames(pipeline, "astronaut", 40, seed=1)
            stranger_live = live_frames(pipeline, "grace_hopper", 40, seed=3)
            photo = df.held_photo(df.near("astronaut"), 30, seed=2)
    except ComponentUnavailableError as exc:
        console.print(f"[red]demo: the face pipeline is not available: {exc}[/]")
        return 1
    console.print(f"enrolled user {user_id} through the template store (encrypted at rest)")
    console.print("liveness: static_replay + same_face + (blink or texture PAD), motion veto: the people here are "
                  "animated photos, which the default learned PAD model (fasnet) would rightly refuse")

    scene = Scene()
    rng = np.random.default_rng(7)
    nobody = [df.empty(rng=rng) for _ in range(8)]
    scene.set("nobody", nobody)
    io = LockIO(cfg.gpio)
    audit = site.audit()
    events = site.event_sink()
    ctl = LockRuntime(cfg, io, lambda: ReplayCamera(scene, fps=FPS), lambda: site.decider(num_threads=2), audit,
                      events, status_path=site.status_path, lockstate=site.lockstate(), users=site.users())

    def relay_word() -> str:
        return "energized" if io.relay_energized else "off"

    def failures(mark: int) -> list[str]:
        return [r for r, _, _ in demo.rows_since(mark) if r in FAILED_ROWS]

    with Live(console=console, refresh_per_second=12, transient=False) as live:
        demo = Demo(ctl, io, scene, live)
        ctl.on_step = demo.on_step
        ctl.bring_up()
        demo.wait(0.5)
        up = demo.check("lock comes up, liveness on", "IDLE, liveness loaded",
                        ctl.snap.state is State.IDLE and ctl.decider is not None and ctl.decider.liveness is not None,
                        f"{ctl.snap.state.value}, liveness {'on' if ctl.decider and ctl.decider.liveness else 'off'}",
                        ctl.fault_reason or "")
        if up:
            # 1. the enrolled face, live (head turning, blinking)
            mark = len(demo.rows)
            scene.set("astronaut (enrolled, live)", astronaut_live)
            opened = demo.run_until(lambda: io.relay_energized, 15)
            rows = [r for r, _, _ in demo.rows_since(mark)]
            demo.check("enrolled face unlocks", "UNLOCKED on the first attempt, relay energized",
                       opened and ctl.snap.user == user_id and rows == ["face_seen", "granted"],
                       f"{ctl.snap.state.value}, relay {relay_word()}, rows {rows}",
                       f"decision {ctl.counters.last_decision_ms:.0f} ms" if opened and ctl.counters.last_decision_ms
                       else "")
            scene.set("nobody", nobody)

            # 2. she opens the door and closes it again: relock on close, before the unlock timer
            mark = len(demo.rows)
            io.simulate_door(True)
            demo.wait(0.6)
            io.simulate_door(False)
            demo.run_until(lambda: ctl.snap.state is State.IDLE, 2)
            rows = [r for r, _, _ in demo.rows_since(mark)]
            demo.check("door opened and closed -> relocks", "IDLE by door_closed_relock, relay off",
                       rows == ["door_opened_unlocked", "door_closed_relock"] and not io.relay_energized,
                       f"{ctl.snap.state.value}, relay {relay_word()}, rows {rows}")

            # 3. a stranger, live: recognised as nobody (not a spoof), one failure counted
            demo.wait(0.5)
            mark = len(demo.rows)
            scene.set("stranger (not enrolled, live)", stranger_live)
            demo.run_until(lambda: len(failures(mark)) >= 1, 15)
            got = failures(mark)
            demo.check("stranger is denied", "DENIED (no match), 1 failure counted, relay off",
                       got == ["denied"] and ctl.snap.state is State.DENIED and len(ctl.lockout.failures) == 1
                       and not any(p for _, _, p in demo.rows_since(mark)),
                       f"{ctl.snap.state.value}, rows {got}, failures {len(ctl.lockout.failures)}")

            # 4. the stranger keeps trying: lockout after exactly max_failures failures
            demo.run_until(lambda: ctl.snap.state is State.LOCKOUT, 40)
            got = failures(mark)
            demo.check(f"repeated failures -> lockout after {n_fail}", f"LOCKOUT at failure {n_fail}, never before",
                       ctl.snap.state is State.LOCKOUT and len(got) == n_fail
                       and got == ["denied"] * (n_fail - 1) + ["denied_lockout"]
                       and not any(p for _, _, p in demo.rows_since(mark)),
                       f"{ctl.snap.state.value} after {len(got)} failures ({', '.join(got)})")
            lockout_began = time.monotonic()
            analyzed = ctl.counters.analyzed
            demo.wait(1.5)  # the stranger is still there: nothing is even looked at
            demo.check("no attempt during the lockout", "no face analysed, relay off",
                       ctl.snap.state is State.LOCKOUT and ctl.counters.analyzed == analyzed
                       and not io.relay_energized,
                       f"{ctl.counters.analyzed - analyzed} frames analysed, {ctl.snap.state.value}")

            # 5. the lockout ends by itself; the enrolled face unlocks again (the success clears the backoff)
            scene.set("nobody", nobody)
            base_s = policy.lockout.base_lockout_s
            ended = demo.run_until(lambda: ctl.snap.state is State.IDLE, base_s + 5)
            lasted = time.monotonic() - lockout_began
            demo.check("lockout ends by itself", f"IDLE after {base_s:g} s (base_lockout_s)",
                       ended and base_s - 0.5 <= lasted <= base_s + 1.0,
                       f"{ctl.snap.state.value} after {lasted:.1f} s")
            mark = len(demo.rows)
            scene.set("astronaut (enrolled, live)", astronaut_live)
            opened = demo.run_until(lambda: io.relay_energized, 15)
            demo.check("enrolled face unlocks again", "UNLOCKED; backoff cleared",
                       opened and ctl.lockout.level == 0 and not ctl.lockout.failures,
                       f"{ctl.snap.state.value}, relay {relay_word()}, backoff level {ctl.lockout.level}")
            scene.set("nobody", nobody)
            demo.run_until(lambda: ctl.snap.state is State.IDLE, cfg.lock.unlock_s + 3)

            # 6. a held-up photo of the enrolled face
            demo.wait(0.5)
            mark = len(demo.rows)
            scene.set("photo of the astronaut (held up)", photo)
            demo.run_until(lambda: bool(failures(mark)) or io.relay_energized, 15)
            got = failures(mark)
            demo.check("still photo of the enrolled face", "refused as spoof_suspected, relay off",
                       got == ["spoof"] and not any(p for _, _, p in demo.rows_since(mark)),
                       f"{ctl.snap.state.value}, rows {got}")
            scene.set("nobody", nobody)
            demo.run_until(lambda: ctl.snap.state is State.IDLE, 5)

            # 7. the exit button, from inside
            mark = len(demo.rows)
            io.simulate_exit_press()
            opened = demo.run_until(lambda: io.relay_energized, 3)
            relocked = demo.run_until(lambda: not io.relay_energized, cfg.lock.unlock_s + 2)
            rows = [r for r, _, _ in demo.rows_since(mark)]
            demo.check("exit button opens from inside", "UNLOCKED by exit, then auto relock",
                       opened and relocked and rows[:2] == ["exit", "auto_relock"],
                       f"opened={opened} relocked={relocked}, rows {rows}")
        demo.wait(0.3)

    ctl.shutdown("demo finished")
    io.close()
    res = audit.verify()
    audit.close()
    n_events = None
    outbox = getattr(events, "outbox", None)
    if outbox is not None:
        n_events = len(outbox)
    events.close()
    personal = [s.encode() for s in (user_id, USER_NAME)]
    leaks = [f.name for f in data.glob("audit.db*") if any(p in f.read_bytes() for p in personal)]
    demo.check("audit chain", "verifies; no user id or name in it", res.ok and not leaks,
               f"{res}" + (f"; personal data in {leaks}" if leaks else ""))

    t = Table(title="FaceLock demo summary")
    for col in ("check", "expected", "got", "result", "note"):
        t.add_column(col, overflow="fold")
    for o in demo.outcomes:
        t.add_row(o.name, o.expected, o.got, "[green]PASS[/]" if o.ok else "[red]FAIL[/]", o.note)
    console.print(t)
    if n_events is not None:
        console.print(f"{n_events} events queued in the local outbox (outbox.db) for the MQTT client")
    shutil.rmtree(tmp, ignore_errors=True)
    ok = len(demo.outcomes) >= 10 and all(o.ok for o in demo.outcomes)
    console.print("[bold green]every check passed[/]" if ok else "[bold red]some checks failed[/]")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
