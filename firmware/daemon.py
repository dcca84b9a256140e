"""``facelockd`` / ``python -m firmware``: the lock daemon.

Start-up order is chosen so that nothing can open the door before everything is checked: config first
(a bad file exits with the key and the reason, GPIO untouched, so the relay stays de-energized by its
pull-down), then the audit log, then GPIO with the relay created off, then camera and face stages (a
failure there is a FAULT state with an event and retries, never an open lock).

SIGTERM and SIGINT stop the loop and leave the relay de-energized.  Under systemd (``Type=notify``,
``WatchdogSec=``) the daemon sends READY=1 / STATUS= / WATCHDOG=1 / STOPPING=1 to ``$NOTIFY_SOCKET``
itself (a datagram on a Unix socket; no systemd Python package needed).  The watchdog is only petted
from the loop, so a hung loop gets the daemon restarted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

from firmware.errors import FaceLockError

EXIT_CONFIG = 78  # EX_CONFIG: systemd's RestartPreventExitStatus keeps a bad config from looping
EXIT_ERROR = 1

log = logging.getLogger("facelock.daemon")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg (+ exc)."""

    def format(self, record: logging.LogRecord) -> str:
        d: dict[str, Any] = {"ts": round(record.created, 3), "level": record.levelname.lower(),
                             "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            d["exc"] = self.formatException(record.exc_info)
        return json.dumps(d)


def setup_logging(level: str = "info", json_logs: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_logs else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class SdNotify:
    """sd_notify(3) without libsystemd: datagrams to $NOTIFY_SOCKET (path or @abstract)."""

    def __init__(self, env: dict[str, str] | None = None):
        env = dict(os.environ) if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        self.addr = "\0" + addr[1:] if addr.startswith("@") else addr
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        ok_pid = not pid or pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and ok_pid else None
        self._last = 0.0
        self._sock: socket.socket | None = None
        if self.addr:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, msg: str) -> bool:
        if self._sock is None:
            return False
        try:
            self._sock.sendto(msg.encode(), self.addr)
            return True
        except OSError as exc:
            log.warning("sd_notify failed: %s", exc)
            return False

    def watchdog(self, now: float) -> None:
        if self.watchdog_interval is not None and now - self._last >= self.watchdog_interval:
            self._last = now
            self.send("WATCHDOG=1")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="facelockd", description="FaceLock lock daemon")
    p.add_argument("-c", "--config", default=os.environ.get("FACELOCK_CONFIG", "/etc/facelock/facelock.toml"),
                   help="TOML config file (default: $FACELOCK_CONFIG or /etc/facelock/facelock.toml)")
    p.add_argument("--json-logs", action="store_true", default=None, help="structured JSON log lines")
    p.add_argument("--log-level", default=None, help="debug, info, warning, error (overrides config)")
    p.add_argument("--check-config", action="store_true", help="validate the config and exit")
    p.add_argument("--run-for", type=float, default=None, help="stop by itself after this many seconds")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    # numpy's OpenBLAS would start one thread (and buffer) per core; the lock's matrices are tiny
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OPENCV_FOR_THREADS_NUM", "1")  # likewise OpenCV's pool (its calls here are small)
    args = parse_args(argv)
    setup_logging(args.log_level or "info", bool(args.json_logs))
    from firmware.config import load_config
    from firmware.config_errors import ConfigError

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        log.error("refusing to start: %s", exc)
        print(f"facelockd: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(args.log_level or cfg.log.level, cfg.log.json if args.json_logs is None else True)
    if args.check_config:
        print(f"facelockd: config {args.config} OK")
        return 0
    try:
        return run(cfg, args.run_for)
    except FaceLockError as exc:
        log.error("facelockd stopped: %s", exc)
        return EXIT_ERROR


def limit_malloc_arenas(n: int = 2, mmap_threshold: int = 128 * 1024) -> None:
    """Cap glibc malloc arenas and fix the mmap threshold (a Pi Zero 2 W has 512 MB).

    Every thread (gpiozero, TFLite, grabber) would otherwise get its own 64 MB arena; and glibc raises its
    mmap threshold each time a large block is freed, after which per-frame arrays (a 640×480 frame is
    0.9 MB) come from the heap and fragment it.  A fixed threshold keeps them in mmap'd blocks that go back
    to the kernel when freed.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, n)  # M_ARENA_MAX
        libc.mallopt(-3, mmap_threshold)  # M_MMAP_THRESHOLD (also turns the dynamic threshold off)
    except (OSError, AttributeError):
        pass


def start_fleet(site: Any, port: Any, audit: Any) -> Any:
    """The door agent of the centre (firmware.fleet.lockhook), when ``[fleet] enabled = true``; else None.

    One that cannot be built (the centre's key missing, say) is logged and audited: the lock keeps running
    on the people and lockdown it last applied."""
    fleet_cfg = site.config.sections.get("fleet")
    if fleet_cfg is None or not fleet_cfg.enabled:
        return None
    from firmware.fleet.lockhook import FleetHook

    try:
        hook = FleetHook(site, port, audit, fleet_cfg, site.config.sections["mqtt"])
    except FaceLockError as exc:
        log.error("fleet agent cannot start (%s): keeping the last applied policy", exc)
        audit.append("fleet_error", reason=str(exc)[:200])
        return None
    log.info("fleet: policy bundles for %s (applied version %d)", hook.door, hook.applied_version)
    return hook


def start_telemetry(site: Any, events: Any, rt: Any, port: Any, fleet: Any = None) -> Any:
    """The MQTT client over the event outbox, when ``[mqtt]`` is configured; None otherwise.

    Signed commands reach the lock through :class:`firmware.lock.remote.RemoteCommands` and the lock's
    port (run on the lock loop's thread); the centre's bundles reach ``fleet`` (a FleetHook) on the same
    connection.  A client that cannot be built (a certificate file missing, say) is logged and skipped:
    the door keeps working and events keep going into the outbox, to be sent once MQTT is fixed.
    """
    mqtt_cfg = site.config.sections.get("mqtt")
    if mqtt_cfg is None:
        return None
    from firmware.lock.remote import RemoteCommands
    from firmware.telemetry.client import TelemetryClient

    def revoke(user_id: str) -> None:
        with site.templates() as store:
            store.revoke(user_id)

    remote = RemoteCommands(port, revoke=revoke)
    try:
        client = TelemetryClient(mqtt_cfg, events.outbox, on_command=remote.handle,
                                 subscriptions=fleet.subscriptions() if fleet is not None else None,
                                 on_connected=fleet.on_connected if fleet is not None else None)
        if fleet is not None:
            fleet.attach(client)
        client.start()
    except FaceLockError as exc:
        log.error("telemetry cannot start (%s): events stay in the outbox", exc)
        rt.audit.append("telemetry_error", reason=str(exc)[:200])
        return None
    log.info("telemetry: MQTT to %s:%s as %s", mqtt_cfg.host, mqtt_cfg.port, mqtt_cfg.device_id)
    return client


def state_fields(port: Any) -> dict[str, Any]:
    """What the retained ``facelock/<device>/state`` says, read now (the lock read back from the relay)."""
    from firmware.lock.policy import Lockdown

    st = port.status_now()
    door = "unknown" if not st.door_sensor else ("open" if st.door_open else "closed")
    return {"lock": "UNLOCKED" if st.relay_energized else "LOCKED", "door": door,
            "tamper": bool(st.tamper_active), "lockdown": st.lockdown is not Lockdown.OFF,
            "last_event": st.state.value.lower()}


def publish_state(client: Any, port: Any, fields: dict[str, Any] | None = None) -> None:
    """Publish the retained state (``fields``, else read now).  The loop calls it whenever any field
    changed, not only the state: a remote lockdown alone moves no state but must reach the topic."""
    if client is None:
        return
    try:
        client.publish_state(**(fields if fields is not None else state_fields(port)))
    except FaceLockError as exc:
        log.warning("state not published: %s", exc)


def run(cfg: Any, run_for: float | None = None) -> int:
    from firmware.api.lockport import start_api
    from firmware.hw.camera import open_camera
    from firmware.hw.gpio import LockIO
    from firmware.lock.port import LockPort
    from firmware.lock.runtime import LockRuntime
    from firmware.site import open_site

    limit_malloc_arenas()
    site = open_site(cfg)
    site.data_dir.mkdir(parents=True, exist_ok=True)
    stop = {"flag": False, "signal": None}

    def on_signal(signum: int, _frame: Any) -> None:
        stop["flag"] = True
        stop["signal"] = signal.Signals(signum).name

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    notify = SdNotify()
    audit = site.audit()
    events = site.event_sink()
    io = LockIO(cfg.gpio)
    sim = None
    if io.is_mock:
        from firmware.hw.siminputs import SimInputServer

        sim = SimInputServer(io, site.sim_socket)
    rt = None
    port = None
    telemetry = None
    api = None
    fleet = None
    users = site.users()
    try:
        rt = LockRuntime(cfg, io, lambda: open_camera(cfg.camera), lambda: site.decider(num_threads=1),
                         audit, events, status_path=site.status_path, lockstate=site.lockstate(), users=users)
        port = LockPort(rt)
        log.info("facelockd %s started: device %s, camera %s, data %s", os.getpid(), cfg.device.id,
                 cfg.camera.backend, site.data_dir)
        heartbeat = None
        if events is not None:
            fleet = start_fleet(site, port, audit)
            telemetry = start_telemetry(site, events, rt, port, fleet)
            if cfg.sections.get("mqtt") is not None:
                from firmware.telemetry.heartbeat import Heartbeat

                heartbeat = Heartbeat(audit, rt.emit, cfg.sections["mqtt"].heartbeat_s, site.data_dir / "heartbeat.json")
        api = start_api(site, port, events, audit)
        if fleet is not None:
            fleet.start_restore()  # waits for the loop below; bundles from the broker wait for it
        rt.bring_up()
        notify.send(f"READY=1\nSTATUS=state {rt.snap.state.value}")
        t_end = None if run_for is None else time.monotonic() + run_for
        last_state = None
        last_fields: dict[str, Any] | None = None
        while not stop["flag"] and (t_end is None or time.monotonic() < t_end):
            rt.tick()
            if heartbeat is not None:
                heartbeat.tick()
            now = time.monotonic()
            notify.watchdog(now)
            if rt.snap.state is not last_state:
                last_state = rt.snap.state
                notify.send(f"STATUS=state {last_state.value}" + (f" ({rt.fault_reason})" if rt.fault_reason
                                                                  else ""))
            if telemetry is not None:
                fields = state_fields(port)
                if fields != last_fields:
                    last_fields = fields
                    publish_state(telemetry, port, fields)
        notify.send("STOPPING=1")
        log.info("stopping (%s): relay de-energized", stop["signal"] or "run-for elapsed")
        return 0
    finally:
        try:
            if rt is not None:
                rt.shutdown(str(stop["signal"] or "exit"))
        finally:
            if api is not None:
                api.close()
            if telemetry is not None:
                publish_state(telemetry, port)
                telemetry.stop()
            if sim is not None:
                sim.close()
            users.close()
            io.close()
            audit.close()
            if events is not None:
                events.close()
