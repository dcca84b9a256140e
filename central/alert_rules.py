"""The centre's per-event alert rules: the monitor's (provisioning.monitor.rules) plus `stranger`.

    stranger   an unrecognised face was refused at a door: one access_denied that names no person
               (the lock matched nobody: below the threshold, ambiguous, an empty gallery, no usable face,
               or, at a fleet door, "unknown").  A refusal of a *known* person (schedule, lockdown,
               revoked at the lock) names them and is not a stranger.

Why a rule of its own, on by default: the monitor's `denied_burst` needs 3 refusals within 60 s at one
door, so one stranger trying the door once or twice raised nothing with the shipped defaults, and
lowering that threshold to 1 would turn every refused employee (outside their schedule, during a
lockdown) into an alert.  Security staff want to look at an unknown face at a door, once.

So that a stranger who keeps trying does not flood the alerts page, the console shows one open alert per
door and rule with a count (central.console.readmodel.alerts groups them; acknowledging the row
acknowledges every open alert it stands for).  Each refusal is still its own stored alert row and goes to
the webhook: the lock's lockout (3 failures, then a growing back-off) bounds how many there can be.
"""

from __future__ import annotations

from firmware.telemetry.events import Event
from provisioning.monitor.rules import Alert, AlertRules

STRANGER = "stranger"


def stranger(event: Event) -> Alert | None:
    """The `stranger` alert for one stored event, or None (pure)."""
    if event.type != "access_denied" or event.user_id:
        return None
    why = event.reason or "no match"
    return Alert(STRANGER, event.device, event.ts, f"unrecognised face refused ({why})", event.id)


class CentreAlertRules(AlertRules):
    """The monitor's rules (same thresholds, same state) and the centre's `stranger` rule."""

    def on_event(self, event: Event) -> list[Alert]:
        alerts = super().on_event(event)
        extra = stranger(event)
        return [*alerts, extra] if extra else alerts
