"""Audit-chain heads from heartbeats: the monitor's copy of each lock's history, off the device (pure).

Each heartbeat carries the lock's audit chain head (``audit_seq``, ``audit_head``) and the head *now* at
the seq of its previous heartbeat (``audit_anchor_seq``, ``audit_anchor_head``;
firmware.audit.AuditLog.heartbeat_fields).  A history rewritten on the lock since, even by someone holding
the chain key, changes that head, so the next heartbeat raises ``audit_rewritten``; a log that got shorter
raises ``audit_rewound``; a heartbeat that stops anchoring (its state deleted) or anchors at a seq never
published raises ``audit_anchor_missing`` / ``audit_anchor_unknown``.  The heads are also what ``facelock audit verify --monitor-db`` checks a log
against.  Kept in memory, seeded from the stored heartbeats when the monitor starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from firmware.telemetry.events import Event

MAX_HEADS = 4096  # per device; the oldest are forgotten first (the store keeps every heartbeat)


def heads_of(data: Mapping[str, Any]) -> list[tuple[int, str]]:
    """(seq, head) pairs a heartbeat's data vouches for."""
    out = []
    for s_key, h_key in (("audit_seq", "audit_head"), ("audit_anchor_seq", "audit_anchor_head")):
        s, h = data.get(s_key), data.get(h_key)
        if isinstance(s, int) and not isinstance(s, bool) and s > 0 and isinstance(h, str) and len(h) == 64:
            out.append((s, h))
    return out


class AuditAnchors:
    """``on_heartbeat(event) -> [(rule, detail)]``; ``heads(device)``."""

    def __init__(self) -> None:
        self._heads: dict[str, dict[int, str]] = {}
        self._last: dict[str, int] = {}

    def seed(self, heartbeats: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Stored heartbeats (device, data), oldest first: remembered without alerting."""
        for device, data in heartbeats:
            self._remember(device, data)

    def heads(self, device: str) -> dict[int, str]:
        return dict(self._heads.get(device, {}))

    def _remember(self, device: str, data: Mapping[str, Any]) -> None:
        heads = self._heads.setdefault(device, {})
        for s, h in heads_of(data):
            heads.setdefault(s, h)
        seq = data.get("audit_seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            self._last[device] = seq
        while len(heads) > MAX_HEADS:
            del heads[min(heads)]

    def on_heartbeat(self, event: Event) -> list[tuple[str, str]]:
        if event.type != "heartbeat" or "audit_seq" not in event.data:
            return []
        data, device = event.data, event.device
        known = dict(self._heads.get(device, {}))  # as published before this heartbeat
        alerts: list[tuple[str, str]] = []
        heads = self._heads.setdefault(device, {})
        for s, h in heads_of(data):
            if s in known and known[s] != h:
                alerts.append(("audit_rewritten", f"audit record {s} now has head {h[:16]}, "
                                                  f"published earlier as {known[s][:16]}"))
                for old in [k for k in heads if k >= s]:  # alert once; the new history is the baseline now
                    del heads[old]
                break
        anchor = data.get("audit_anchor_seq")
        if known and anchor is None:
            # Every heartbeat after the first anchors to the previous one (kept across restarts): a lock
            # that stops doing so lost or dropped its record of what it published.
            alerts.append(("audit_anchor_missing", "heartbeat without the head at its previous seq "
                                                   "(heartbeat state deleted, data dir replaced or restored)"))
        elif known and isinstance(anchor, int) and anchor not in known and data.get("audit_anchor_head") != "missing":
            alerts.append(("audit_anchor_unknown", f"heartbeat anchors at audit record {anchor}, "
                                                   "never published"))
        if data.get("audit_anchor_head") == "missing":
            alerts.append(("audit_rewound", f"audit record {data.get('audit_anchor_seq')} published earlier "
                                            "is gone from the lock's log"))
        seq = data.get("audit_seq")
        last = self._last.get(device)
        if isinstance(seq, int) and last is not None and seq < last:
            alerts.append(("audit_rewound", f"audit log went back from record {last} to {seq}"))
        if isinstance(seq, int) and any(a[0] == "audit_rewound" for a in alerts):
            for old in [k for k in heads if k > seq]:
                del heads[old]
        self._remember(device, data)
        return alerts
