"""Per-door policy bundles: who may open which door when, built from the directory, signed, versioned.

`refresh()` recomputes each door's content (its lockdown and settings, and the people of every group
granted that door with their merged schedule windows and their template ids); when the content differs
from what the door's current bundle was built from, the version goes up by one and a new bundle is
signed, with each template opened from the centre's seal and sealed again to that door's X25519 key
only.  The distributor (central.distributor) then pushes every bundle a door has not acknowledged.
Row locks (`SELECT ... FOR UPDATE` on PostgreSQL) keep two workers from minting the same version twice.
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from central.db import Database
from central.directory import Directory
from central.keys import CentreKeys
from central.models import Device, Door, GroupDoor, GroupMember, PolicyState, Template
from firmware.fleet.bundle import BUNDLE_VERSION, canonical, parse_body
from firmware.fleet.sealing import seal_template


def sign_bundle(key: Ed25519PrivateKey, body: dict[str, Any]) -> bytes:
    """The wire payload for `body`, checked by the door's own parser first so the centre never signs junk."""
    parse_body(body)
    return canonical({"body": body, "sig": base64.b64encode(key.sign(canonical(body))).decode()})


def door_people(s: Session, door_id: str) -> dict[str, list | None]:
    """person id -> merged schedule (None = any time) over every grant of this door."""
    out: dict[str, list | None] = {}
    rows = s.execute(select(GroupMember.person_id, GroupDoor.schedule)
                     .join(GroupDoor, GroupDoor.group_id == GroupMember.group_id)
                     .where(GroupDoor.door_id == door_id)).all()
    for pid, sched in rows:
        if pid in out and out[pid] is None:
            continue
        if sched is None:
            out[pid] = None
        else:
            merged = list(out.get(pid) or [])
            merged += [w for w in sched if w not in merged]
            out[pid] = merged
    return out


def content(s: Session, door: Door) -> tuple[dict[str, Any], str]:
    people = door_people(s, door.id)
    tids = {pid: [] for pid in people}
    if people:
        for pid, tid in s.execute(select(Template.person_id, Template.id)
                                  .where(Template.person_id.in_(list(people))).order_by(Template.id)):
            tids[pid].append(tid)
    entries = [{"id": pid, "schedule": people[pid], "templates": tids[pid]}
               for pid in sorted(people) if tids[pid]]
    c = {"door": door.id, "lockdown": door.lockdown, "settings": door.settings or {}, "people": entries}
    return c, hashlib.sha256(canonical(c)).hexdigest()


class PolicyBuilder:
    def __init__(self, db: Database, keys: CentreKeys, directory: Directory) -> None:
        self.db = db
        self.keys = keys
        self.directory = directory

    def refresh(self, doors: list[str] | None = None) -> dict[str, int]:
        """Rebuild what changed; returns door -> new version for the doors that got a new bundle."""
        with self.db.session() as s:
            ids = doors if doors is not None else list(s.scalars(select(Door.id).order_by(Door.id)))
        changed: dict[str, int] = {}
        for door_id in ids:
            with self.db.session() as s:
                door = s.get(Door, door_id)
                dev = s.get(Device, door_id)
                if door is None or dev is None or dev.status != "active":
                    continue
                state = s.get(PolicyState, door_id, with_for_update=True)
                c, h = content(s, door)
                if state is not None and state.content_hash == h:
                    continue
                version = (state.version if state else 0) + 1
                bundle = self._build(s, c, version, dev.template_pubkey)
                now = time.time()
                if state is None:
                    s.add(PolicyState(door_id=door_id, version=version, content_hash=h, bundle=bundle,
                                      built_at=now, acked_version=0, sends=0))
                else:
                    state.version, state.content_hash, state.bundle, state.built_at = version, h, bundle, now
                    state.last_sent_at = None  # send the new version at once
                changed[door_id] = version
        return changed

    def _build(self, s: Session, c: dict[str, Any], version: int, door_pub: bytes) -> bytes:
        people = []
        for entry in c["people"]:
            opened = dict(self.directory.open_templates(s, entry["id"]))
            sealed = [{"id": tid, "sealed": base64.b64encode(
                seal_template(door_pub, c["door"], entry["id"], tid, opened[tid])).decode()}
                for tid in entry["templates"]]
            people.append({"id": entry["id"], "schedule": entry["schedule"], "templates": sealed})
        body = {"v": BUNDLE_VERSION, "door": c["door"], "version": version, "issued_at": int(time.time()),
                "lockdown": c["lockdown"], "settings": c["settings"], "people": people}
        return sign_bundle(self.keys.signing_key(), body)

    def status(self) -> list[dict[str, Any]]:
        with self.db.session() as s:
            rows = s.execute(select(Door, PolicyState).outerjoin(PolicyState, PolicyState.door_id == Door.id)
                             .order_by(Door.id)).all()
            return [{"door": d.id, "name": d.name, "version": st.version if st else 0,
                     "acked_version": st.acked_version if st else 0,
                     "in_sync": bool(st and st.acked_version >= st.version), "sends": st.sends if st else 0,
                     "acked_at": st.acked_at if st else None, "last_refusal": st.last_refusal if st else None}
                    for d, st in rows]
