"""What the console's pages show, read from the centre's database (no writes here).

Every function takes the centre's `Database` and returns plain dicts/lists for the templates, so the
pages never touch ORM objects and a database outage surfaces as one `DatabaseUnavailable`.  Nothing here
reads a template's ciphertext: the people pages show names, groups, doors, schedules and how many
templates are on file, never a face image or an embedding.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Any

from sqlalchemy import and_, func, select

from central.console import doorstate
from central.console.schema import AlertState
from central.db import Database
from central.errors import NotFound
from central.models import (
    AccessGroup,
    AlertRow,
    AuditEntry,
    Availability,
    Device,
    Door,
    DoorReportedState,
    EventRow,
    GroupDoor,
    GroupMember,
    Person,
    PolicyState,
    Template,
)
from firmware.telemetry.events import EVENT_TYPES, SEVERITIES

DAY = 86400.0
ALERT_STATUSES = ("open", "acknowledged", "resolved")


def _event_view(r: EventRow, names: dict[str, str] | None = None) -> dict[str, Any]:
    try:
        p = json.loads(r.payload)
    except ValueError:
        p = {}
    user = r.user_id
    return {"rowid": r.rowid, "id": r.event_id, "ts": r.ts, "device": r.device, "type": r.type,
            "severity": r.severity, "user": (names or {}).get(user or "", user), "reason": p.get("reason"),
            "data": p.get("data") or {}}


def person_names(s) -> dict[str, str]:  # noqa: ANN001 - Session
    return dict(s.execute(select(Person.id, Person.name)).all())


def _states(s, door_ids: list[str]) -> dict[str, doorstate.DoorState]:  # noqa: ANN001
    """The newest event of each state-bearing type per door, in one grouped query."""
    newest = (select(func.max(EventRow.rowid)).where(EventRow.device.in_(door_ids),
                                                     EventRow.type.in_(doorstate.STATE_TYPES))
              .group_by(EventRow.device, EventRow.type))
    # a lockdown result is one command_result among others: the newest one whose reason is "lockdown"
    # (events are stored as the device's compact JSON; derive() checks the parsed reason again)
    newest_lockdown = (select(func.max(EventRow.rowid)).where(
        EventRow.device.in_(door_ids), EventRow.type == "command_result",
        EventRow.payload.like('%"reason":"lockdown"%')).group_by(EventRow.device))
    rows = list(s.scalars(select(EventRow).where(EventRow.rowid.in_(newest) | EventRow.rowid.in_(newest_lockdown))))
    by_door: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        try:
            by_door[r.device].append(json.loads(r.payload))
        except ValueError:
            continue
    reported = {r.device: {"lock": r.lock, "door": r.door, "tamper": r.tamper, "lockdown": r.lockdown,
                           "machine": r.machine, "ts": r.ts}
                for r in s.scalars(select(DoorReportedState).where(DoorReportedState.device.in_(door_ids)))}
    return {d: doorstate.merge(doorstate.derive(by_door.get(d, [])), reported.get(d)) for d in door_ids}


# -- fleet ----------------------------------------------------------------------------------------
FLEET_SORTS = ("id", "name", "status", "lock", "last_event", "denials", "version")
LOCK_FILTERS = ("all", "locked", "unlocked", "tamper", "lockdown")
HOUR = 3600.0


def lock_filter(row: dict[str, Any], which: str) -> bool:
    """Whether a fleet row passes the page's lock-state filter."""
    if which == "all":
        return True
    if which == "tamper":
        return row["tamper"]
    if which == "lockdown":
        return row["lockdown"] not in (None, "off")
    return row["lock"] == which


def fleet(db: Database, now: float | None = None) -> list[dict[str, Any]]:
    now = time.time() if now is None else now
    with db.session() as s:
        doors = s.execute(select(Door, Device.status).join(Device, Device.id == Door.id).order_by(Door.id)).all()
        ids = [d.id for d, _ in doors]
        avail = {a.device: a for a in s.scalars(select(Availability).where(Availability.device.in_(ids)))}
        policy = {p.door_id: p for p in s.scalars(select(PolicyState).where(PolicyState.door_id.in_(ids)))}
        last_ids = select(func.max(EventRow.rowid)).where(EventRow.device.in_(ids)).group_by(EventRow.device)
        last = {r.device: r for r in s.scalars(select(EventRow).where(EventRow.rowid.in_(last_ids)))}
        # denials per hour over the last 24 h (the fleet's sparklines): hour 23 is the current hour
        hour0 = (int(now // HOUR) - 23) * HOUR
        hourly: dict[str, list[int]] = defaultdict(lambda: [0] * 24)
        for dev, ts in s.execute(select(EventRow.device, EventRow.ts).where(
                EventRow.device.in_(ids), EventRow.type == "access_denied", EventRow.ts >= hour0)):
            i = int((ts - hour0) // HOUR)
            if 0 <= i < 24:
                hourly[dev][i] += 1
        states = _states(s, ids) if ids else {}
    out = []
    for d, dev_status in doors:
        a, p, e, st = avail.get(d.id), policy.get(d.id), last.get(d.id), states.get(d.id)
        out.append({"id": d.id, "name": d.name, "device_status": dev_status,
                    "online": a is not None and a.status == "online",
                    "availability": a.status if a else "never seen", "since": a.changed_at if a else None,
                    "lock": st.lock if st else "unknown", "machine": st.machine if st else None,
                    "door": st.door if st else "unknown", "state_source": st.source if st else "nothing yet",
                    "tamper": bool(st and st.tamper),
                    "lockdown": (st.lockdown if st and st.lockdown else None), "policy_lockdown": d.lockdown,
                    "last_event": e.type if e else None, "last_event_ts": e.ts if e else None,
                    "version": p.version if p else 0, "acked_version": p.acked_version if p else 0,
                    "in_sync": bool(p and p.acked_version >= p.version),
                    "denials_24h": sum(hourly.get(d.id, ())), "denials_hourly": list(hourly.get(d.id, [0] * 24)),
                    "hour0": hour0})
    return out


def sort_fleet(rows: list[dict[str, Any]], key: str, descending: bool) -> list[dict[str, Any]]:
    keyf = {"id": lambda r: r["id"], "name": lambda r: r["name"].lower(),
            "status": lambda r: (r["online"], r["id"]), "lock": lambda r: (r["lock"], r["id"]),
            "last_event": lambda r: r["last_event_ts"] or 0.0,
            "denials": lambda r: r["denials_24h"], "version": lambda r: r["acked_version"]}[key]
    return sorted(rows, key=keyf, reverse=descending)


# -- one door -------------------------------------------------------------------------------------
def door(db: Database, door_id: str, limit: int = 30) -> dict[str, Any]:
    rows = [r for r in fleet(db) if r["id"] == door_id]
    if not rows:
        raise NotFound(f"no door {door_id!r}")
    with db.session() as s:
        names = person_names(s)
        events = [_event_view(r, names) for r in s.scalars(
            select(EventRow).where(EventRow.device == door_id).order_by(EventRow.rowid.desc()).limit(limit))]
        st = _states(s, [door_id])[door_id]
        audit_rows = [{"ts": a.ts, "operator": a.operator, "action": a.action, "detail": a.detail}
                      for a in s.scalars(select(AuditEntry).where(AuditEntry.target == door_id)
                                         .order_by(AuditEntry.id.desc()).limit(10))]
        p = s.get(PolicyState, door_id)
        refusal = p.last_refusal if p else None
    return rows[0] | {"events": events, "state": st, "centre_audit": audit_rows, "last_refusal": refusal}


# -- events ---------------------------------------------------------------------------------------
def check_event_filters(door: str, type_: str, severity: str) -> None:
    from central.errors import CentralError

    if type_ and type_ not in EVENT_TYPES:
        raise CentralError(f"unknown event type {type_[:40]!r}: one of {', '.join(sorted(EVENT_TYPES))}")
    if severity and severity not in SEVERITIES:
        raise CentralError(f"unknown severity {severity[:40]!r}: one of {', '.join(SEVERITIES)}")
    if door and (len(door) > 64 or not door.isprintable()):
        raise CentralError("a door id is at most 64 printable characters")


def events(db: Database, door: str = "", type_: str = "", severity: str = "", after: int = 0,
           limit: int = 100) -> list[dict[str, Any]]:
    """Newest first; `after`: only rows stored after that rowid (the live feed's cursor)."""
    with db.session() as s:
        q = select(EventRow).where(EventRow.rowid > after).order_by(EventRow.rowid.desc()).limit(limit)
        if door:
            q = q.where(EventRow.device == door)
        if type_:
            q = q.where(EventRow.type == type_)
        if severity:
            from firmware.telemetry.events import SEVERITY_RANK

            q = q.where(EventRow.severity.in_([x for x in SEVERITIES if SEVERITY_RANK[x] >= SEVERITY_RANK[severity]]))
        names = person_names(s)
        return [_event_view(r, names) for r in s.scalars(q)]


def cursors(db: Database) -> tuple[int, int]:
    """(newest event rowid, newest alert id): where the live feed starts."""
    with db.session() as s:
        return (s.scalar(select(func.max(EventRow.rowid))) or 0, s.scalar(select(func.max(AlertRow.id))) or 0)


# -- alerts ---------------------------------------------------------------------------------------
def alerts(db: Database, status: str = "open", limit: int = 200) -> list[dict[str, Any]]:
    """Newest first, one row per door and rule and what was done to them together: the open alerts of a
    door and rule are one row with a count (a stranger trying the door five times is one open alert,
    x5), and the alerts acknowledged or resolved together stay one row.  `ids`: the alerts a row stands
    for (acknowledging the row acknowledges them all)."""
    with db.session() as s:
        q = (select(AlertRow, AlertState).outerjoin(AlertState, AlertState.alert_id == AlertRow.id)
             .order_by(AlertRow.id.desc()).limit(limit * 10))
        if status == "open":
            q = q.where(AlertState.alert_id.is_(None))
        elif status in ("acknowledged", "resolved"):
            q = q.where(AlertState.status == status)
        names = dict(s.execute(select(Door.id, Door.name)).all())
        rows: list[dict[str, Any]] = []
        by_key: dict[tuple, dict[str, Any]] = {}
        for a, st in s.execute(q):
            key = (a.device, a.rule, st.status if st else "open", st.ack_at if st else None,
                   st.resolved_at if st else None)
            if key in by_key:  # an older alert of the same group
                g = by_key[key]
                g["ids"].append(a.id)
                g["count"] += 1
                g["first_ts"] = a.ts
                continue
            if len(rows) >= limit:
                continue
            g = {"id": a.id, "ids": [a.id], "count": 1, "first_ts": a.ts, "rule": a.rule, "device": a.device,
                 "door_name": names.get(a.device), "ts": a.ts, "detail": a.detail,
                 "status": st.status if st else "open",
                 "ack_by": st.ack_by if st else None, "ack_at": st.ack_at if st else None,
                 "ack_note": st.ack_note if st else None, "resolved_by": st.resolved_by if st else None,
                 "resolved_at": st.resolved_at if st else None, "resolved_note": st.resolved_note if st else None}
            by_key[key] = g
            rows.append(g)
        return rows


def alert_group(s, alert_id: int) -> list[int]:  # noqa: ANN001 - Session
    """The alerts the console's row for `alert_id` stands for (as `alerts` groups them), oldest first:
    the open alerts of its door and rule up to it, or those acknowledged together with it."""
    a = s.get(AlertRow, alert_id)
    if a is None:
        return []
    st = s.get(AlertState, alert_id)
    q = (select(AlertRow.id).outerjoin(AlertState, AlertState.alert_id == AlertRow.id)
         .where(AlertRow.device == a.device, AlertRow.rule == a.rule).order_by(AlertRow.id))
    if st is None:
        q = q.where(AlertRow.id <= alert_id, AlertState.alert_id.is_(None))
    elif st.status == "acknowledged":
        q = q.where(AlertState.status == "acknowledged", AlertState.ack_at == st.ack_at)
    else:
        return [alert_id]
    return list(s.scalars(q))


def alert_counts(db: Database) -> dict[str, int]:
    with db.session() as s:
        total = s.scalar(select(func.count()).select_from(AlertRow)) or 0
        by = dict(s.execute(select(AlertState.status, func.count()).group_by(AlertState.status)).all())
    return {"open": total - sum(by.values()), "acknowledged": by.get("acknowledged", 0),
            "resolved": by.get("resolved", 0)}


# -- people ---------------------------------------------------------------------------------------
def people(db: Database, q: str = "") -> list[dict[str, Any]]:
    with db.session() as s:
        stmt = select(Person).order_by(Person.name)
        if q:
            stmt = stmt.where(func.lower(Person.name).contains(q.lower()))
        persons = list(s.scalars(stmt))
        return [_person_view(s, p) for p in persons]


def person(db: Database, person_id: str) -> dict[str, Any]:
    with db.session() as s:
        p = s.get(Person, person_id) if len(person_id) <= 36 else None
        if p is None:
            raise NotFound(f"no person {person_id!r}")
        return _person_view(s, p)


def _person_view(s, p: Person) -> dict[str, Any]:  # noqa: ANN001
    groups = list(s.execute(select(AccessGroup.id, AccessGroup.name)
                            .join(GroupMember, and_(GroupMember.group_id == AccessGroup.id,
                                                    GroupMember.person_id == p.id))
                            .order_by(AccessGroup.name)).all())
    doors = []
    if groups:
        for gname, did, dname, sched in s.execute(
                select(AccessGroup.name, Door.id, Door.name, GroupDoor.schedule)
                .join(GroupDoor, GroupDoor.group_id == AccessGroup.id).join(Door, Door.id == GroupDoor.door_id)
                .where(AccessGroup.id.in_([g for g, _ in groups])).order_by(Door.id)):
            doors.append({"id": did, "name": dname, "group": gname, "schedule": describe_schedule(sched)})
    n = s.scalar(select(func.count()).select_from(Template).where(Template.person_id == p.id)) or 0
    return {"id": p.id, "name": p.name, "created_at": p.created_at, "templates": n,
            "enrolment": "enrolled" if n else "needs enrolment", "groups": [g for _, g in groups], "doors": doors}


def describe_schedule(schedule: list | None) -> str:
    if not schedule:
        return "any time"
    return "; ".join(f"{','.join(w.get('days', []))} {w.get('start', '')}-{w.get('end', '')}" for w in schedule)


# -- charts ---------------------------------------------------------------------------------------
def chart_data(db: Database, now: float | None = None) -> dict[str, Any]:
    """Events per hour by type over the last 24 h; denials and spoof attempts per door per day, 7 days."""
    now = time.time() if now is None else now
    hour0 = (int(now // 3600) - 23) * 3600
    day0 = (int(now // DAY) - 6) * DAY
    with db.session() as s:
        hourly: dict[str, list[int]] = defaultdict(lambda: [0] * 24)
        for type_, ts in s.execute(select(EventRow.type, EventRow.ts).where(EventRow.ts >= hour0,
                                                                          EventRow.type != "heartbeat")):
            i = int((ts - hour0) // 3600)
            if 0 <= i < 24:
                hourly[type_][i] += 1
        per_door: dict[str, dict[str, list[int]]] = defaultdict(lambda: {"access_denied": [0] * 7,
                                                                        "spoof_suspected": [0] * 7})
        for dev, type_, ts in s.execute(select(EventRow.device, EventRow.type, EventRow.ts).where(
                EventRow.ts >= day0, EventRow.type.in_(("access_denied", "spoof_suspected")))):
            i = int((ts - day0) // DAY)
            if 0 <= i < 7:
                per_door[dev][type_][i] += 1
    return {"hour0": hour0, "hourly": dict(hourly), "day0": day0, "per_door": dict(per_door)}
