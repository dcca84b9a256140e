"""The centre's own audit: every operator action, in the same transaction as the change it records."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.errors import CentralError
from central.models import AuditEntry


def check_operator(operator: str) -> str:
    if not isinstance(operator, str) or not 0 < len(operator) <= 128 or not operator.isprintable():
        raise CentralError("an operator name (1-128 printable characters) is required for every change")
    return operator


def record(s: Session, operator: str, action: str, target: str, **detail: Any) -> None:
    s.add(AuditEntry(ts=time.time(), operator=check_operator(operator), action=action, target=target[:128],
                     detail=detail))


def entries(s: Session, limit: int = 1000) -> list[dict[str, Any]]:
    rows = s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)).all()
    return [{"id": r.id, "ts": r.ts, "operator": r.operator, "action": r.action, "target": r.target,
             "detail": r.detail} for r in rows]
