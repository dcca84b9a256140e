"""The lock's GPIO through gpiozero: relay, green/red LEDs, buzzer, door contact, exit button, tamper.

Why gpiozero: its pin factories are the real/simulated switch the architecture asks for.  On a Pi the
default factory (lgpio) drives real pins; with ``GPIOZERO_PIN_FACTORY=mock`` (tests, demo, benchmark)
the same code drives gpiozero's MockFactory pins, whose levels a test can read and drive.

Fail secure: the relay is created de-energized (``initial_value=False``) and :meth:`LockIO.close`
de-energizes it before releasing the pin.  Polarity (``relay_active_high``) comes from config, so
"energized" means the same thing for every relay board.

Inputs become :class:`firmware.lock.statemachine.Event` values through a callback; gpiozero calls it from
its own thread, so the controller puts them on a queue.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from firmware.config import GpioConfig
from firmware.errors import FaceLockError
from firmware.lock.statemachine import Event


class GpioError(FaceLockError):
    """A GPIO pin could not be claimed or driven (wrong pin, no pin factory, permissions)."""


#: LED patterns: name -> (green, red); each "on", "off" or (on_s, off_s) blinking.
LED_PATTERNS: dict[str, tuple[Any, Any]] = {
    "ready": ((0.05, 2.95), "off"),  # short green blip every 3 s: alive and locked
    "verifying": ((0.1, 0.1), "off"),
    "granted": ("on", "off"),
    "relocking": ("off", (0.5, 0.5)),
    "denied": ("off", "on"),
    "lockout": ("off", (0.5, 1.5)),
    "tamper": ("off", (0.1, 0.1)),
    "enroll": ((0.5, 0.5), "off"),
    "fault": ((0.25, 0.25), (0.25, 0.25)),
    "off": ("off", "off"),
    # what the person at the door is asked to do (firmware.lock.feedback picks one per decision)
    "hold_still": ((1.0, 0.2), "off"),  # green mostly on: stay in view, a moment longer
    "blink": ((0.2, 0.8), "off"),  # a green wink each second: blink
    "blink_now": ("on", "on"),  # the LED challenge: both lit, blink now (frames after it are "led_on")
    "turn_head": ((0.3, 0.3), "off"),
    "look_at_camera": ("off", (0.1, 0.9)),  # a red blip each second: face not found / not usable
    "try_again": ("off", "on"),
    "not_now": ("off", (1.0, 0.2)),  # recognised, but not allowed now
}

#: Buzzer patterns: name -> (on_s, off_s, repetitions)
BUZZER_PATTERNS: dict[str, tuple[float, float, int]] = {
    "granted": (0.1, 0.05, 1),
    "denied": (0.3, 0.1, 2),
    "alert": (0.2, 0.2, 3),
    "alarm": (0.5, 0.2, 10),
    "fault": (1.0, 0.2, 1),
    "hold_still": (0.05, 0.1, 1),  # one tick
    "blink": (0.05, 0.1, 2),  # two chirps
    "turn_head": (0.05, 0.1, 3),
    "look_at_camera": (0.15, 0.1, 1),
    "try_again": (0.3, 0.1, 2),
    "not_now": (0.8, 0.1, 1),  # one long tone
    "lockout": (0.1, 0.1, 5),
}

InputCallback = Callable[[Event], None]


def _led_state(led: Any, spec: Any) -> str:
    if spec == "on":
        led.on()
        return "on"
    if spec == "off":
        led.off()
        return "off"
    on_s, off_s = spec
    led.blink(on_time=on_s, off_time=off_s, background=True)
    return "blink"


class LockIO:
    """All lock GPIO devices, built from config on one pin factory (None = gpiozero's default)."""

    def __init__(self, cfg: GpioConfig, pin_factory: Any = None, on_input: InputCallback | None = None):
        from gpiozero import LED, Button, Buzzer, Device, OutputDevice
        from gpiozero.exc import GPIOZeroError

        self.cfg = cfg
        self._lock = threading.Lock()
        self._on_input = on_input
        self.led_pattern = "off"
        self.leds = {"green": "off", "red": "off"}
        self.buzzer_pattern: str | None = None
        try:
            self.factory = pin_factory or Device.pin_factory or Device._default_pin_factory()
            Device.pin_factory = Device.pin_factory or self.factory
            f = self.factory
            self.relay = OutputDevice(cfg.relay_pin, active_high=cfg.relay_active_high, initial_value=False,
                                      pin_factory=f)
            self.green = LED(cfg.green_led_pin, pin_factory=f)
            self.red = LED(cfg.red_led_pin, pin_factory=f)
            self.buzzer = Buzzer(cfg.buzzer_pin, pin_factory=f) if cfg.buzzer_pin != -1 else None
            bounce = cfg.bounce_s or None
            self.door = (Button(cfg.door_pin, pull_up=cfg.pull_up, bounce_time=bounce, pin_factory=f)
                         if cfg.door_pin != -1 else None)
            self.exit = (Button(cfg.exit_pin, pull_up=cfg.pull_up, bounce_time=bounce,
                                hold_time=cfg.exit_hold_reset_s, pin_factory=f)
                         if cfg.exit_pin != -1 else None)
            self.tamper = (Button(cfg.tamper_pin, pull_up=cfg.pull_up, bounce_time=bounce, pin_factory=f)
                           if cfg.tamper_pin != -1 else None)
        except (GPIOZeroError, OSError, RuntimeError, ValueError) as exc:
            self._release_partial()
            raise GpioError(f"GPIO setup failed: {type(exc).__name__}: {exc}") from exc
        if self.is_mock:
            self._settle_mock_switches()
        self._wire_inputs()

    # -- simulation helpers -------------------------------------------------------------------------
    @property
    def is_mock(self) -> bool:
        from gpiozero.pins.mock import MockFactory

        return isinstance(self.factory, MockFactory)

    def _level_for(self, pressed: bool) -> bool:
        """Pin level (True = high) at which a Button reads ``pressed``."""
        return not pressed if self.cfg.pull_up else pressed

    def _drive(self, pin: int, pressed: bool) -> None:
        p = self.factory.pin(pin)
        (p.drive_high if self._level_for(pressed) else p.drive_low)()

    def _settle_mock_switches(self) -> None:
        """Mock pins start floating at the pull level; a simulated lock starts with door shut, case closed."""
        if self.door is not None:
            self._drive(self.cfg.door_pin, self.cfg.door_closed_is_pressed)
        if self.tamper is not None:
            self._drive(self.cfg.tamper_pin, self.cfg.tamper_closed_is_pressed)

    def simulate_door(self, open_: bool) -> None:
        if self.door is None:
            raise GpioError("no door contact configured")
        self._drive(self.cfg.door_pin, self.cfg.door_closed_is_pressed == (not open_))

    def simulate_exit_press(self) -> None:
        if self.exit is None:
            raise GpioError("no exit button configured")
        self._drive(self.cfg.exit_pin, True)
        self._drive(self.cfg.exit_pin, False)

    def simulate_exit_down(self, down: bool) -> None:
        """Press (True) or release (False) the exit button: held long enough it clears TAMPER."""
        if self.exit is None:
            raise GpioError("no exit button configured")
        self._drive(self.cfg.exit_pin, down)

    def simulate_tamper(self, active: bool) -> None:
        if self.tamper is None:
            raise GpioError("no tamper switch configured")
        self._drive(self.cfg.tamper_pin, self.cfg.tamper_closed_is_pressed == (not active))

    # -- inputs --------------------------------------------------------------------------------------
    def _emit(self, ev: Event) -> None:
        cb = self._on_input
        if cb is not None:
            cb(ev)

    def _wire_inputs(self) -> None:
        if self.door is not None:
            closed_on_press = self.cfg.door_closed_is_pressed
            self.door.when_pressed = lambda: self._emit(Event.DOOR_CLOSED if closed_on_press else Event.DOOR_OPENED)
            self.door.when_released = lambda: self._emit(Event.DOOR_OPENED if closed_on_press else Event.DOOR_CLOSED)
        if self.exit is not None:
            self.exit.when_pressed = lambda: self._emit(Event.EXIT_PRESSED)
            self.exit.when_held = lambda: self._emit(Event.EXIT_HELD)  # once per hold (hold_repeat off)
        if self.tamper is not None:
            closed = self.cfg.tamper_closed_is_pressed
            self.tamper.when_pressed = lambda: self._emit(Event.TAMPER_CLEARED if closed else Event.TAMPER)
            self.tamper.when_released = lambda: self._emit(Event.TAMPER if closed else Event.TAMPER_CLEARED)

    def set_input_callback(self, cb: InputCallback | None) -> None:
        self._on_input = cb

    def door_open(self) -> bool:
        if self.door is None:
            return False
        return bool(self.door.is_pressed) != self.cfg.door_closed_is_pressed

    def tamper_active(self) -> bool:
        if self.tamper is None:
            return False
        return bool(self.tamper.is_pressed) != self.cfg.tamper_closed_is_pressed

    # -- outputs -------------------------------------------------------------------------------------
    def set_relay(self, energized: bool) -> None:
        with self._lock:
            if energized:
                self.relay.on()
            else:
                self.relay.off()

    @property
    def relay_energized(self) -> bool:
        """Read back from the device (the pin's level through the configured polarity)."""
        return bool(self.relay.value)

    def show(self, pattern: str) -> None:
        if pattern == self.led_pattern:
            return
        green, red = LED_PATTERNS.get(pattern, LED_PATTERNS["fault"])
        with self._lock:
            self.leds = {"green": _led_state(self.green, green), "red": _led_state(self.red, red)}
            self.led_pattern = pattern

    def beep(self, pattern: str | None) -> None:
        if pattern is None or self.buzzer is None:
            self.buzzer_pattern = pattern
            return
        on_s, off_s, n = BUZZER_PATTERNS.get(pattern, BUZZER_PATTERNS["fault"])
        with self._lock:
            self.buzzer.beep(on_time=on_s, off_time=off_s, n=n, background=True)
            self.buzzer_pattern = pattern

    def _release_partial(self) -> None:
        for name in ("relay", "green", "red", "buzzer", "door", "exit", "tamper"):
            dev = getattr(self, name, None)
            if dev is not None:
                try:
                    if name == "relay":
                        dev.off()
                    dev.close()
                except Exception:  # noqa: BLE001 - best effort while failing
                    pass

    def close(self) -> None:
        """De-energize the relay first, then release every pin (idempotent)."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        try:
            self.relay.off()
        finally:
            self._release_partial()
