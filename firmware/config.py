"""The device's one TOML config file, validated at start.

Why strict: a typo in a lock's config (``relay_activ_high``) must stop the daemon with the key's name
and the reason, not be ignored and leave the relay polarity at a default.  Unknown sections, unknown
keys and bad values all raise :class:`ConfigError`.

The lock's own sections (device, lock, gpio, camera, policy, log, daemon) are defined here; the
sections of other areas (``vision``, ``liveness``, ``keystore``, ``mqtt``, ``api``, ``fleet``) are parsed by the
``from_dict`` of their own package's config dataclass when that package is installed, so each area
owns its settings and this loader only composes them.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware.config_errors import ConfigError
from firmware.lock.policy import PolicyConfig
from firmware.lock.statemachine import Timing

DEFAULT_DATA_DIR = "/var/lib/facelock"
DEFAULT_CONFIG = "/etc/facelock/facelock.toml"


def default_data_dir() -> Path:
    """FACELOCK_DATA_DIR, else /var/lib/facelock."""
    return Path(os.environ.get("FACELOCK_DATA_DIR") or DEFAULT_DATA_DIR)


@dataclass(frozen=True)
class DeviceConfig:
    id: str = "facelock-1"
    data_dir: str = ""  # empty = FACELOCK_DATA_DIR or /var/lib/facelock


@dataclass(frozen=True)
class LockConfig:
    unlock_s: float = 5.0
    verify_timeout_s: float = 3.0
    denied_s: float = 2.0
    held_open_alert_s: float = 30.0
    enroll_timeout_s: float = 60.0
    frames_per_attempt: int = 3  # frames of one face gathered before deciding (liveness needs several)
    max_frames_per_attempt: int = 30  # liveness gets this many face frames (1-2 s at 30-15 fps;
    # verify_timeout_s bounds it); more while a frozen face may still blink ([liveness] blink_wait_s)
    face_lost_s: float = 0.5  # no face this long during an attempt: it is abandoned (frames never span a gap)
    liveness: str = "required"  # required | auto (when installed) | off (development only)
    fault_retry_initial_s: float = 0.5  # camera / pipeline retry backoff
    fault_retry_max_s: float = 30.0

    def timing(self) -> Timing:
        return Timing(self.unlock_s, self.verify_timeout_s, self.denied_s, self.held_open_alert_s,
                      self.enroll_timeout_s)


@dataclass(frozen=True)
class GpioConfig:
    """BCM pin numbers.  0 is not a valid pin here: use -1 to leave an optional device out."""

    relay_pin: int = 17
    relay_active_high: bool = True
    green_led_pin: int = 22
    red_led_pin: int = 27
    buzzer_pin: int = 23  # -1 = no buzzer
    door_pin: int = 5  # door contact; -1 = none
    door_closed_is_pressed: bool = True  # reed switch closed (pulled to ground) while the door is shut
    exit_pin: int = 6
    tamper_pin: int = 13  # -1 = none; pressed = case closed
    tamper_closed_is_pressed: bool = True
    pull_up: bool = True
    bounce_s: float = 0.05
    #: holding the exit button this long in TAMPER, door shut and case closed, clears the alarm locally
    exit_hold_reset_s: float = 10.0


@dataclass(frozen=True)
class CameraConfig:
    backend: str = "picamera2"  # picamera2 | opencv | replay
    source: str = ""  # opencv: device index ("0") or video file; replay: folder or video
    width: int = 640
    height: int = 480
    fps: float = 15.0
    loop: bool = True  # replay: start again at the end
    stall_timeout_s: float = 2.0  # no frame this long = camera stalled -> FAULT


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    json: bool = False


@dataclass(frozen=True)
class DaemonConfig:
    watchdog: bool = True  # send WATCHDOG=1 to systemd when NOTIFY_SOCKET is set
    status_file: str = ""  # empty = <data_dir>/status.json
    events: bool = True  # write events into <data_dir>/outbox.db when the telemetry package exists


#: Sections owned by other areas: name -> (module, class).  Parsed only when present in the file.
PLUGGED_SECTIONS: dict[str, tuple[str, str]] = {
    "vision": ("firmware.vision.config", "VisionConfig"),
    "liveness": ("firmware.vision.liveness.config", "LivenessConfig"),
    "keystore": ("firmware.keystore.config", "KeystoreConfig"),
    "mqtt": ("firmware.telemetry.config", "MqttConfig"),
    "api": ("firmware.api.config", "ApiConfig"),
    "fleet": ("firmware.fleet.config", "FleetConfig"),
}

OWN_SECTIONS: dict[str, type] = {
    "device": DeviceConfig,
    "lock": LockConfig,
    "gpio": GpioConfig,
    "camera": CameraConfig,
    "log": LogConfig,
    "daemon": DaemonConfig,
}


@dataclass(frozen=True)
class Config:
    device: DeviceConfig = field(default_factory=DeviceConfig)
    lock: LockConfig = field(default_factory=LockConfig)
    gpio: GpioConfig = field(default_factory=GpioConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    log: LogConfig = field(default_factory=LogConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    #: parsed sections of other areas, by section name (only those present in the file)
    sections: Mapping[str, Any] = field(default_factory=dict)
    path: str = ""

    @property
    def data_dir(self) -> Path:
        return Path(self.device.data_dir) if self.device.data_dir else default_data_dir()

    @property
    def status_file(self) -> Path:
        return Path(self.daemon.status_file) if self.daemon.status_file else self.data_dir / "status.json"


def _check_value(key: str, tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for alt in typing.get_args(tp):
            if alt is type(None) and value is None:
                return None
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported setting type {tp!r}")  # pragma: no cover - a bug here


def section_from_dict(cls: type, name: str, d: Any) -> Any:
    """Build a flat frozen dataclass from a TOML table, refusing unknown keys and wrong types."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"[{name}]: expected a table, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in d.items():
        if k not in fields:
            raise ConfigError(f"{name}.{k}: unknown key (allowed: {', '.join(sorted(fields))})")
        kwargs[k] = _check_value(f"{name}.{k}", hints[k], v)
    obj = cls(**kwargs)
    _validate(name, obj)
    return obj


def _positive(name: str, obj: Any, *keys: str) -> None:
    for k in keys:
        v = getattr(obj, k)
        if not v > 0:
            raise ConfigError(f"{name}.{k}: must be > 0, got {v!r}")


def _validate(name: str, obj: Any) -> None:
    if isinstance(obj, LockConfig):
        _positive(name, obj, "unlock_s", "verify_timeout_s", "denied_s", "held_open_alert_s",
                  "enroll_timeout_s", "frames_per_attempt", "fault_retry_initial_s", "fault_retry_max_s",
                  "face_lost_s")
        if obj.max_frames_per_attempt < obj.frames_per_attempt:
            raise ConfigError(f"{name}.max_frames_per_attempt: must be >= frames_per_attempt "
                              f"({obj.frames_per_attempt}), got {obj.max_frames_per_attempt}")
        if obj.liveness not in ("required", "auto", "off"):
            raise ConfigError(f"{name}.liveness: expected required, auto or off, got {obj.liveness!r}")
        if obj.unlock_s > 300:
            raise ConfigError(f"{name}.unlock_s: at most 300 s (a lock must relock), got {obj.unlock_s}")
    elif isinstance(obj, GpioConfig):
        pins = {k: getattr(obj, k) for k in ("relay_pin", "green_led_pin", "red_led_pin", "buzzer_pin",
                                              "door_pin", "exit_pin", "tamper_pin")}
        for k, v in pins.items():
            optional = k in ("buzzer_pin", "door_pin", "exit_pin", "tamper_pin")
            if not (2 <= v <= 27 or (optional and v == -1)):
                raise ConfigError(f"{name}.{k}: BCM pin 2..27{' or -1 (none)' if optional else ''}, got {v}")
        used = [v for v in pins.values() if v != -1]
        dup = {v for v in used if used.count(v) > 1}
        if dup:
            which = [k for k, v in pins.items() if v in dup]
            raise ConfigError(f"{name}.{which[1]}: pin {pins[which[1]]} is also used by {name}.{which[0]}")
        if not 0 <= obj.bounce_s <= 1:
            raise ConfigError(f"{name}.bounce_s: 0..1 s, got {obj.bounce_s}")
        if not 5 <= obj.exit_hold_reset_s <= 60:  # shorter would clear an alarm on an ordinary exit press
            raise ConfigError(f"{name}.exit_hold_reset_s: 5..60 s, got {obj.exit_hold_reset_s}")
    elif isinstance(obj, CameraConfig):
        if obj.backend not in ("picamera2", "opencv", "replay"):
            raise ConfigError(f"{name}.backend: expected picamera2, opencv or replay, got {obj.backend!r}")
        if obj.backend == "replay" and not obj.source:
            raise ConfigError(f"{name}.source: the replay backend needs a folder or video file")
        _positive(name, obj, "width", "height", "fps", "stall_timeout_s")
    elif isinstance(obj, LogConfig):
        if obj.level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"{name}.level: expected debug, info, warning or error, got {obj.level!r}")
    elif isinstance(obj, DeviceConfig):
        if not obj.id or len(obj.id) > 64 or not all(c.isalnum() or c in "-_" for c in obj.id):
            raise ConfigError(f"{name}.id: 1-64 letters, digits, '-' or '_' (it is an MQTT topic level), "
                              f"got {obj.id!r}")


def _plugged(name: str, d: Any, base_dir: Path | None = None) -> Any:
    module_name, class_name = PLUGGED_SECTIONS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"[{name}]: this firmware has no {module_name} ({exc.name} is not installed), "
                          "so the section cannot be used") from exc
    cls = getattr(module, class_name, None)
    if cls is None or not hasattr(cls, "from_dict"):
        raise ConfigError(f"[{name}]: {module_name}.{class_name}.from_dict not found")
    if not isinstance(d, Mapping):
        raise ConfigError(f"[{name}]: expected a table, got {type(d).__name__}")
    try:
        if name in ("mqtt", "fleet") and base_dir is not None:  # relative file paths: next to the config file
            return cls.from_dict(dict(d), base_dir=base_dir)
        return cls.from_dict(dict(d))
    except ConfigError:
        raise
    except Exception as exc:  # another area's loader raised something untyped: still name the section
        raise ConfigError(f"[{name}]: {exc}") from exc


def config_from_dict(data: Mapping[str, Any], path: str = "") -> Config:
    allowed = set(OWN_SECTIONS) | {"policy"} | set(PLUGGED_SECTIONS)
    kwargs: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    for name, body in data.items():
        if name not in allowed:
            raise ConfigError(f"{name}: unknown section (allowed: {', '.join(sorted(allowed))})")
        if name in OWN_SECTIONS:
            kwargs[name] = section_from_dict(OWN_SECTIONS[name], name, body)
        elif name == "policy":
            if not isinstance(body, Mapping):
                raise ConfigError("[policy]: expected a table")
            kwargs[name] = PolicyConfig.from_dict(body)
        else:
            sections[name] = _plugged(name, body, Path(path).parent if path else None)
    cfg = Config(**kwargs, sections=sections, path=path)
    mqtt = sections.get("mqtt")
    if mqtt is not None:
        if getattr(mqtt, "device_id", cfg.device.id) != cfg.device.id:
            raise ConfigError(f"mqtt.device_id: must equal device.id ({cfg.device.id!r}: the TLS identity and the "
                              f"topic level of this lock's events), got {mqtt.device_id!r}")
        if not cfg.daemon.events:
            raise ConfigError("daemon.events: must be true when [mqtt] is configured (MQTT publishes the outbox)")
    check_blink_wait(cfg.lock, sections.get("liveness"))
    fleet = sections.get("fleet")
    if fleet is not None and fleet.enabled and mqtt is None:
        raise ConfigError("fleet.enabled: needs an [mqtt] section (bundles come over the lock's MQTT connection)")
    return cfg


def check_blink_wait(lock: LockConfig, liveness: Any = None) -> None:
    """``[liveness] blink_wait_s`` must end before ``[lock] verify_timeout_s``, or the timeout cuts every wait.

    Why it matters: a frozen face still waiting for its blink has a FAILED static check, and an attempt that
    runs into the verify timeout after a check failed is a spoof (counts toward lockout).  With the timeout
    first, a live person who stands still would be refused as a spoof instead of being decided over the
    frames.  ``liveness`` is the parsed [liveness] section; absent, the defaults hold (unless liveness is
    off), so a config or a fleet bundle that only lowers the timeout is checked too.
    """
    if lock.liveness == "off":
        return
    if liveness is None:
        from firmware.vision.liveness.config import LivenessConfig

        liveness = LivenessConfig()
    wait = float(getattr(liveness, "blink_wait_s", 0.0) or 0.0)
    if wait and wait >= lock.verify_timeout_s:
        raise ConfigError(f"liveness.blink_wait_s: must be below lock.verify_timeout_s ({lock.verify_timeout_s}): "
                          f"the verify timeout would end the wait for a blink first, got {wait}")


#: A lock's config is a few kB; nothing legitimate nests deeper than a table of arrays of tables.
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_DEPTH = 8


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and inline tables (``[``/``{``) in TOML text, outside strings and
    comments: checked before parsing, because tomllib recurses once per level and a file of a few
    thousand ``[`` would end in RecursionError instead of a typed ConfigError."""
    depth = deepest = 0
    i, n = 0, len(text)
    line_start = True
    while i < n:
        c = text[i]
        if c in "\"'":
            q3 = text.startswith(c * 3, i)
            end = text.find(c * 3, i + 3) if q3 else -1
            if q3:
                i = n if end < 0 else end + 3
                continue
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if (c == '"' and text[j] == "\\") else 1
            i = j + 1
            line_start = False
            continue
        if c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if c == "\n":
            line_start = True
        elif c in "[{":
            # a table header "[x]" / "[[x]]" at the start of a line is not value nesting
            if not (c == "[" and line_start and depth == 0):
                depth += 1
                deepest = max(deepest, depth)
            else:
                j = text.find("\n", i)
                i = n if j < 0 else j
                continue
        elif c in "]}":
            depth = max(0, depth - 1)
        elif not c.isspace():
            line_start = False
        i += 1
    return deepest


def load_config(path: str | Path) -> Config:
    """Read and validate the TOML file; every refusal is a ConfigError naming the file and key."""
    import tomllib

    p = Path(path)
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"config file {p}: cannot read ({exc.strerror or exc})") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {p}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {p}: not valid TOML ({exc})") from exc
    depth = nesting_depth(text)
    if depth > MAX_CONFIG_DEPTH:
        raise ConfigError(f"config file {p}: nested {depth} levels deep (at most {MAX_CONFIG_DEPTH})")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p}: not valid TOML ({exc})") from exc
    except RecursionError:  # belt and braces: the scan above should have refused it already
        raise ConfigError(f"config file {p}: nested too deeply") from None
    try:
        return config_from_dict(data, str(p))
    except ConfigError as exc:
        raise ConfigError(f"config file {p}: {exc}") from exc
