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


def merge_schedules(grants: list[list | None]) -> list | None:
    """One person's windows at one door over all their groups' grants: any grant without a schedule means
    any time; otherwise the union of the windows (a second group can only widen access, as granted)."""
    merged: list = []
    for sched in grants:
        if sched is None:
            return None
        merged += [w for w in sched if w not in merged]
    return merged


def contents(s: Session, doors: list[Door]) -> dict[str, tuple[dict[str, Any], str]]:
    """door id -> (content, sha256) for many doors with three queries in all."""
    ids = [d.id for d in doors]
    grants: dict[str, dict[str, list]] = {i: {} for i in ids}
    for door_id, pid, sched in s.execute(
            select(GroupDoor.door_id, GroupMember.person_id, GroupDoor.schedule)
            .join(GroupMember, GroupMember.group_id == GroupDoor.group_id).where(GroupDoor.door_id.in_(ids))):
        grants[door_id].setdefault(pid, []).append(sched)
    people = {pid for g in grants.values() for pid in g}
    tids: dict[str, list[str]] = {pid: [] for pid in people}
    if people:
        for pid, tid in s.execute(select(Template.person_id, Template.id)
                                  .where(Template.person_id.in_(list(people))).order_by(Template.id)):
            tids[pid].append(tid)
    out = {}
    for d in doors:
        g = grants[d.id]
        entries = [{"id": pid, "schedule": merge_schedules(g[pid]), "templates": tids[pid]}
                   for pid in sorted(g) if tids[pid]]
        c = {"door": d.id, "lockdown": d.lockdown, "settings": d.settings or {}, "people": entries}
        out[d.id] = (c, hashlib.sha256(canonical(c)).hexdigest())
    return out


class PolicyBuilder:
    def __init__(self, db: Database, keys: CentreKeys, directory: Directory) -> None:
        self.db = db
        self.keys = keys
        self.directory = directory

    def refresh(self, doors: list[str] | None = None, chunk: int = 500) -> dict[str, int]:
        """Rebuild what changed; returns door -> new version for the doors that got a new bundle.

        In chunks of `chunk` doors, one transaction each, with the policy rows locked (FOR UPDATE), so
        two workers never mint the same version and a revocation across 1,000 doors costs a few queries,
        not thousands."""
        with self.db.session() as s:
            ids = doors if doors is not None else list(s.scalars(select(Door.id).order_by(Door.id)))
        changed: dict[str, int] = {}
        for i in range(0, len(ids), chunk):
            with self.db.session() as s:
                rows = s.execute(select(Door, Device.template_pubkey).join(Device, Device.id == Door.id)
                                 .where(Door.id.in_(ids[i:i + chunk]), Device.status == "active")).all()
                states = {st.door_id: st for st in s.scalars(
                    select(PolicyState).where(PolicyState.door_id.in_([d.id for d, _ in rows]))
                    .order_by(PolicyState.door_id).with_for_update())}
                built = contents(s, [d for d, _ in rows])
                opened: dict[str, dict[str, bytes]] = {}
                now = time.time()
                for door, pub in rows:
                    c, h = built[door.id]
                    state = states.get(door.id)
                    if state is not None and state.content_hash == h:
                        continue
                    version = (state.version if state else 0) + 1
                    bundle = self._build(s, c, version, pub, opened)
                    if state is None:
                        s.add(PolicyState(door_id=door.id, version=version, content_hash=h, bundle=bundle,
                                          built_at=now, acked_version=0, sends=0))
                    else:
                        state.version, state.content_hash, state.bundle, state.built_at = version, h, bundle, now
                        state.last_sent_at = None  # send the new version at once
                    changed[door.id] = version
        return changed

    def _build(self, s: Session, c: dict[str, Any], version: int, door_pub: bytes,
               cache: dict[str, dict[str, bytes]]) -> bytes:
        """`cache` keeps each person's opened templates for one refresh (in memory only)."""
        people = []
        for entry in c["people"]:
            if entry["id"] not in cache:
                cache[entry["id"]] = dict(self.directory.open_templates(s, entry["id"]))
            opened = cache[entry["id"]]
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
