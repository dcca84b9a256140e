"""Alert rules (pure: no I/O, time passed in).

Defaults: >= 3 access_denied at one device within 60 s; any spoof_suspected, tamper, lockout or
outbox_evicted; a device offline (its last will or a clean "offline") for more than 120 s.
Events reach the rules only once (after de-duplication by id), so a resent event never alerts twice.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from firmware.telemetry.events import Event
from provisioning.monitor.audit_anchors import AuditAnchors

INSTANT_RULES = {
    "spoof_suspected": "spoof_suspected",
    "tamper": "tamper",
    "lockout": "lockout",
    "outbox_evicted": "outbox_evictions",
}


@dataclass(frozen=True)
class Alert:
    rule: str
    device: str
    ts: float
    detail: str
    event_id: str | None = None


class AlertRules:
    def __init__(self, denied_threshold: int = 3, denied_window_s: float = 60.0, offline_after_s: float = 120.0
                 ) -> None:
        self.denied_threshold = denied_threshold
        self.denied_window_s = denied_window_s
        self.offline_after_s = offline_after_s
        self._denied: dict[str, deque[float]] = {}
        self._offline_since: dict[str, float] = {}
        self._offline_alerted: set[str] = set()
        self.audit = AuditAnchors()  # audit chain heads from heartbeats: a rewritten history alerts

    def on_event(self, event: Event) -> list[Alert]:
        alerts: list[Alert] = [Alert(rule, event.device, event.ts, detail, event.id)
                               for rule, detail in self.audit.on_heartbeat(event)]
        rule = INSTANT_RULES.get(event.type)
        if rule is not None:
            what = event.reason or event.type
            if event.type == "outbox_evicted":
                what = f"{event.data.get('evicted', '?')} events evicted from the outbox"
            alerts.append(Alert(rule, event.device, event.ts, what, event.id))
        if event.type == "access_denied":
            q = self._denied.setdefault(event.device, deque())
            q.append(event.ts)
            while q and q[0] < event.ts - self.denied_window_s:
                q.popleft()
            if len(q) >= self.denied_threshold:
                alerts.append(Alert("denied_burst", event.device, event.ts,
                                    f"{len(q)} denied attempts within {self.denied_window_s:g} s", event.id))
                q.clear()
        return alerts

    def on_availability(self, device: str, status: str, now: float) -> list[Alert]:
        if status == "offline":
            self._offline_since.setdefault(device, now)
        elif status == "online":
            self._offline_since.pop(device, None)
            self._offline_alerted.discard(device)
        return []

    def tick(self, now: float) -> list[Alert]:
        alerts = []
        for device, since in self._offline_since.items():
            if device not in self._offline_alerted and now - since > self.offline_after_s:
                self._offline_alerted.add(device)
                alerts.append(Alert("device_offline", device, now, f"offline for {now - since:.0f} s"))
        return alerts
