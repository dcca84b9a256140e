"""Simulated switch presses for a daemon running on gpiozero's mock pins (tests, demo, benchmarks).

Why: on mock pins the door contact, exit button and tamper switch exist only inside the daemon's
process, so a test in another process cannot press them.  This Unix datagram socket accepts
``exit`` (a press), ``exit down`` / ``exit up`` (hold it), ``door open``, ``door close``, ``tamper on``,
``tamper off`` and drives the *mock pins*
(the gpiozero callbacks then fire exactly as they would on hardware).  It is started only when the
pin factory is gpiozero's MockFactory, so it never exists on a real lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from pathlib import Path

from firmware.hw.gpio import LockIO

log = logging.getLogger("facelock.sim")

ACTIONS = ("exit", "exit down", "exit up", "door open", "door close", "tamper on", "tamper off")


class SimInputServer:
    def __init__(self, io: LockIO, path: Path):
        if not io.is_mock:
            raise RuntimeError("simulated inputs exist only on mock pins")
        self.io = io
        self.path = Path(path)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        os.chmod(self.path, 0o600)
        self.sock.settimeout(0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-inputs", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.sock.recv(64).decode("utf-8", "replace").strip().lower()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                self.apply(msg)
            except Exception as exc:  # noqa: BLE001 - a bad datagram must not stop the server
                log.warning("simulated input %r refused: %s", msg, exc)

    def apply(self, msg: str) -> None:
        if msg == "exit":
            self.io.simulate_exit_press()
        elif msg in ("exit down", "exit up"):
            self.io.simulate_exit_down(msg == "exit down")
        elif msg in ("door open", "door close"):
            self.io.simulate_door(msg == "door open")
        elif msg in ("tamper on", "tamper off"):
            self.io.simulate_tamper(msg == "tamper on")
        else:
            raise ValueError(f"unknown action (known: {', '.join(ACTIONS)})")

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def send(path: Path | str, action: str) -> None:
    """Client side: press a simulated switch of the daemon whose socket is ``path``."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.sendto(action.encode(), str(path))
    finally:
        s.close()
