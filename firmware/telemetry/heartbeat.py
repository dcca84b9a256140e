"""Heartbeat events: "still here", and the audit chain head, so the history is also kept off the device.

Every ``interval_s`` (``[mqtt] heartbeat_s``) the lock loop emits a ``heartbeat`` event whose data is
:meth:`firmware.audit.AuditLog.heartbeat_fields`: ``audit_seq`` / ``audit_head`` (the chain head now) and
``audit_anchor_seq`` / ``audit_anchor_head`` (the head now at the seq the previous heartbeat published).
The monitor (provisioning/monitor/audit_anchors.py) compares the anchor with what it stored: a history
rewritten in between, by anyone, even with the chain key, is seen at the next heartbeat.  The previous
seq is kept in ``heartbeat.json`` (written atomically) so the first heartbeat after a restart anchors too.
Runs on the lock loop's thread, which owns the audit log's connection.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from firmware import fsutil

log = logging.getLogger("facelock.heartbeat")


class Heartbeat:
    def __init__(self, audit: Any, emit: Callable[..., None], interval_s: float, state_path: Path,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.audit = audit
        self.emit = emit
        self.interval_s = interval_s
        self.state_path = Path(state_path)
        self.clock = clock
        self._next = 0.0  # the first one at once
        self._last_seq = self._load()

    def _load(self) -> int | None:
        try:
            seq = json.loads(self.state_path.read_text()).get("audit_seq")
        except (OSError, ValueError, AttributeError):
            return None
        return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else None

    def tick(self) -> bool:
        """Emit a heartbeat when one is due; True when it did."""
        now = self.clock()
        if now < self._next:
            return False
        self._next = now + self.interval_s
        try:
            fields = self.audit.heartbeat_fields(self._last_seq)
        except Exception as exc:  # noqa: BLE001 - a heartbeat must never stop the door
            log.error("heartbeat: audit head unreadable: %s", exc)
            return False
        self.emit("heartbeat", **fields)
        self._last_seq = fields["audit_seq"]
        try:
            fsutil.atomic_write(self.state_path, json.dumps({"audit_seq": self._last_seq}).encode(), 0o644)
        except OSError as exc:
            log.warning("heartbeat state not saved: %s", exc)
        return True
