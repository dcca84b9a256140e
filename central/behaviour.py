"""Behaviour rules over the stored events (the paper's "user behaviour analysis"), beside the monitor's
per-event alert rules:

    unusual_access   a person granted at a door they never used, or at an hour (+-1 h, in the site's time
                     zone: `central.time_zone`, default the system's) outside their own history, once they
                     have `min_history` grants
    denial_burst     access_denied at >= `burst_doors` different doors within `burst_window_s`
    silent_door      an active door stored nothing for `silent_after_s` (it sends heartbeats)

Seq gaps are the monitor's own rule (`events_missing`, with resend requests; provisioning.monitor.service),
kept per device in the `seqs` table.  The decisions here are pure functions; `Analyzer.run(now)` feeds them from the database.  It is stateless and
safe with several workers: the watermark (last analysed event) is a row locked for the run, and each alert
carries a key (unique in the table), so the same finding is stored once whoever finds it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import zoneinfo
from collections import Counter as Tally
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from central.db import Database
from central.errors import CentralError
from central.models import AlertRow, Counter, Door, EventRow, SeqMark
from provisioning.monitor.rules import Alert

WATERMARK = "behaviour_rowid"


def site_zone(name: str = "") -> dt.tzinfo:
    """The site's time zone: an IANA name ("Europe/Paris"), or "" for the system's own zone."""
    if not name:
        local = dt.datetime.now().astimezone().tzinfo
        return local if local is not None else dt.timezone.utc
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise CentralError(f"central.time_zone: unknown time zone {name[:64]!r}") from None


@dataclass(frozen=True)
class BehaviourConfig:
    min_history: int = 20
    burst_doors: int = 3
    burst_window_s: float = 60.0
    silent_after_s: float = 300.0
    batch: int = 20000  # events per run (every analyze_s): well above a fleet's ingest rate
    tz: dt.tzinfo = field(default_factory=site_zone)


def hour_of(ts: float, tz: dt.tzinfo) -> int:
    return dt.datetime.fromtimestamp(ts, tz).hour


@dataclass
class Habits:
    """One person's grants so far, summarised: how many, at which doors, at which local hours.  Kept
    incrementally (a fleet's batch holds thousands of grants of the same people)."""

    grants: int = 0
    doors: set[str] = field(default_factory=set)
    hours: Tally = field(default_factory=Tally)

    def add(self, door: str, hour: int) -> None:
        self.grants += 1
        self.doors.add(door)
        self.hours[hour] += 1


def unusual_access(habits: Habits, door: str, hour: int, min_history: int, zone: str = "") -> str | None:
    """Why a grant at `door` at local `hour` is outside the person's own habits (None: it is not, or too
    little history to judge)."""
    if habits.grants < min_history:
        return None
    if door not in habits.doors:
        return f"first grant at {door} after {habits.grants} grants elsewhere"
    if not any(habits.hours[(hour + k) % 24] for k in (-1, 0, 1)):
        return f"grant at {hour:02d}h ({zone or 'local time'}), never within an hour of it in {habits.grants} grants"
    return None


def denial_burst(denials: list[tuple[float, str]], ts: float, window_s: float, min_doors: int) -> set[str] | None:
    """The doors that denied within `window_s` up to `ts`, when at least `min_doors` of them."""
    doors = {d for t, d in denials if ts - window_s <= t <= ts}
    return doors if len(doors) >= min_doors else None


class Analyzer:
    def __init__(self, db: Database, config: BehaviourConfig | None = None) -> None:
        self.db = db
        self.cfg = config or BehaviourConfig()
        self._insert = postgresql.insert if db.is_postgres else sqlite.insert

    def run(self, now: float) -> list[Alert]:
        """Analyse the events stored since the last run; returns the alerts that are new (stored by this call)."""
        with self.db.session() as s:
            s.execute(self._insert(Counter).values(name=WATERMARK, value=0)
                      .on_conflict_do_nothing(index_elements=["name"]))
            mark = s.get(Counter, WATERMARK, with_for_update=True)
            # Plain rows of the columns the rules read, not ORM objects: a fleet stores thousands a second.
            rows = s.execute(select(EventRow.rowid, EventRow.event_id, EventRow.device, EventRow.type, EventRow.ts,
                                    EventRow.user_id).where(EventRow.rowid > mark.value).order_by(EventRow.rowid)
                             .limit(self.cfg.batch)).all()
            alerts: list[dict] = []
            if rows:
                alerts += self._unusual(s, rows, mark.value)
                alerts += self._bursts(s, rows)
                mark.value = rows[-1].rowid
            alerts += self._silent(s, now)
            return self._store(s, alerts)

    def _store(self, s: Session, alerts: list[dict]) -> list[Alert]:
        """Insert the findings in a few statements; those whose key was already stored (by this worker or
        another) are skipped by the database and not returned."""
        unique = list({a["key"]: a for a in alerts}.values())
        stored: set[str] = set()
        for i in range(0, len(unique), 500):
            stored.update(s.scalars(self._insert(AlertRow).values(unique[i:i + 500])
                                    .on_conflict_do_nothing(index_elements=["key"]).returning(AlertRow.key)))
        return [Alert(a["rule"], a["device"], a["ts"], a["detail"], a["event_id"]) for a in unique
                if a["key"] in stored]

    @staticmethod
    def _alert(rule: str, device: str, ts: float, detail: str, key: str, event_id: str | None = None) -> dict:
        return {"rule": rule, "device": device, "ts": ts, "detail": detail, "event_id": event_id,
                "key": hashlib.sha256(f"{rule}:{key}".encode()).hexdigest()[:64]}

    def _unusual(self, s: Session, rows: list, mark: int) -> list[dict]:
        out = []
        tz, zone = self.cfg.tz, str(self.cfg.tz)
        grants = [r for r in rows if r.type == "access_granted" and r.user_id]
        for user in sorted({r.user_id for r in grants}):
            habits = Habits()
            for d, t in s.execute(
                    select(EventRow.device, EventRow.ts).where(EventRow.user_id == user, EventRow.type == "access_granted",
                                                               EventRow.rowid <= mark)
                    .order_by(EventRow.rowid.desc()).limit(2000)):
                habits.add(d, hour_of(t, tz))
            for r in (g for g in grants if g.user_id == user):
                hour = hour_of(r.ts, tz)
                why = unusual_access(habits, r.device, hour, self.cfg.min_history, zone)
                if why:
                    out.append(self._alert("unusual_access", r.device, r.ts, f"{user}: {why}", r.event_id, r.event_id))
                habits.add(r.device, hour)
        return out

    def _bursts(self, s: Session, rows: list) -> list[dict]:
        out = []
        w = self.cfg.burst_window_s
        denied = [r for r in rows if r.type == "access_denied"]
        if not denied:
            return out
        # one query for the batch's whole span; each denial then looks at its own window
        window = list(s.execute(select(EventRow.ts, EventRow.device).where(
            EventRow.type == "access_denied", EventRow.ts.between(min(r.ts for r in denied) - w,
                                                                  max(r.ts for r in denied)))))
        for r in denied:
            doors = denial_burst(window, r.ts, w, self.cfg.burst_doors)
            if doors:
                bucket = int(r.ts // w)
                out.append(self._alert("denial_burst", "*", r.ts,
                                       f"access denied at {len(doors)} doors within {w:g} s: {', '.join(sorted(doors)[:10])}",
                                       f"{bucket}", r.event_id))
        return out

    def _silent(self, s: Session, now: float) -> list[dict]:
        """Doors whose newest event is older than silent_after_s, from each door's seq mark (`last_seen`, one
        row per door, kept by the monitor's store), not from a scan of the events table."""
        out = []
        for door, t in s.execute(select(Door.id, SeqMark.last_seen).join(SeqMark, SeqMark.device == Door.id)
                                 .where(SeqMark.last_seen < now - self.cfg.silent_after_s)):
            out.append(self._alert("silent_door", door, now, f"nothing stored for {now - t:.0f} s", f"{door}:{t}"))
        return out
