"""People, access groups and doors.  Every change is audited and rebuilds the bundles it affects.

A person is enrolled once: their templates (float32 embeddings from the enrollment station or a lock in
enrollment mode) are sealed at once under the centre's template key and the plaintext is dropped; the
centre never receives a face image.  `delete_person` removes the person and every template for good, and
the doors that had them get a new bundle without them.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from central import audit
from central.db import Database
from central.errors import AlreadyExists, CentralError, NotFound
from central.keys import CentreKeys
from central.models import AccessGroup, Device, Door, GroupDoor, GroupMember, Person, Template
from firmware.config_errors import ConfigError
from firmware.fleet.bundle import LOCKDOWN_MODES, MAX_TEMPLATES_PER_PERSON, encode_template
from firmware.lock.policy import window_from_dict

TEMPLATE_AAD = b"facelock central template v1"


def template_aad(person_id: str, template_id: str) -> bytes:
    return b"\0".join([TEMPLATE_AAD, person_id.encode(), template_id.encode()])


def check_schedule(schedule: list | None) -> list | None:
    if schedule is None:
        return None
    if not isinstance(schedule, list) or not 0 < len(schedule) <= 32:
        raise CentralError("a schedule is a non-empty list of {days, start, end} windows")
    try:
        for i, w in enumerate(schedule):
            window_from_dict(f"schedule[{i}]", w)
    except ConfigError as exc:
        raise CentralError(str(exc)) from None
    return schedule


class Directory:
    def __init__(self, db: Database, keys: CentreKeys) -> None:
        self.db = db
        self.keys = keys

    # -- people --------------------------------------------------------------------------------
    def add_person(self, name: str, operator: str) -> str:
        if not isinstance(name, str) or not 0 < len(name) <= 128 or not name.isprintable():
            raise CentralError("a person's name is 1-128 printable characters")
        pid = str(uuid.uuid4())
        try:
            with self.db.session() as s:
                s.add(Person(id=pid, name=name, created_at=time.time()))
                audit.record(s, operator, "person.add", pid)
        except IntegrityError:
            raise AlreadyExists(f"a person named {name!r} exists") from None
        return pid

    def enroll(self, person: str, embeddings: Sequence[np.ndarray], operator: str) -> list[str]:
        """Seal and store templates for `person` (name or id); returns the template ids."""
        if not 0 < len(embeddings) <= MAX_TEMPLATES_PER_PERSON:
            raise CentralError(f"enroll 1..{MAX_TEMPLATES_PER_PERSON} templates")
        plain = [encode_template(e) for e in embeddings]  # ValueError on junk, before anything is written
        version = self.keys.template_key_version()
        aead = self.keys.template_aead(version)
        ids = []
        with self.db.session() as s:
            p = self._person(s, person)
            if len(p.templates) + len(plain) > MAX_TEMPLATES_PER_PERSON:
                raise CentralError(f"{p.name} would have more than {MAX_TEMPLATES_PER_PERSON} templates")
            for data in plain:
                tid, nonce = str(uuid.uuid4()), os.urandom(12)
                s.add(Template(id=tid, person_id=p.id, key_version=version, nonce=nonce,
                               ciphertext=aead.encrypt(nonce, data, template_aad(p.id, tid)),
                               created_at=time.time()))
                ids.append(tid)
            audit.record(s, operator, "person.enroll", p.id, templates=len(ids))
        return ids

    def open_templates(self, s: Session, person_id: str) -> list[tuple[str, bytes]]:
        """(template id, plaintext) of a person, decrypted in memory for sealing to a door."""
        rows = s.scalars(select(Template).where(Template.person_id == person_id).order_by(Template.id)).all()
        return [(t.id, self.keys.template_aead(t.key_version).decrypt(t.nonce, t.ciphertext,
                                                                     template_aad(person_id, t.id)))
                for t in rows]

    def delete_person(self, person: str, operator: str) -> None:
        with self.db.session() as s:
            p = self._person(s, person)
            s.execute(delete(Template).where(Template.person_id == p.id))
            s.execute(delete(GroupMember).where(GroupMember.person_id == p.id))
            s.delete(p)
            audit.record(s, operator, "person.delete", p.id)

    def people(self) -> list[dict]:
        with self.db.session() as s:
            out = []
            for p in s.scalars(select(Person).order_by(Person.name)):
                groups = s.scalars(select(AccessGroup.name).join(GroupMember, GroupMember.group_id == AccessGroup.id)
                                   .where(GroupMember.person_id == p.id)).all()
                out.append({"id": p.id, "name": p.name, "templates": len(p.templates), "groups": sorted(groups)})
            return out

    @staticmethod
    def _person(s: Session, person: str) -> Person:
        p = s.get(Person, person) or s.scalars(select(Person).where(Person.name == person)).first()
        if p is None:
            raise NotFound(f"no person {person!r}")
        return p

    # -- groups ------------------------------------------------------------------------------------
    def add_group(self, name: str, operator: str) -> None:
        if not isinstance(name, str) or not 0 < len(name) <= 128 or not name.isprintable():
            raise CentralError("a group name is 1-128 printable characters")
        try:
            with self.db.session() as s:
                s.add(AccessGroup(name=name))
                audit.record(s, operator, "group.add", name)
        except IntegrityError:
            raise AlreadyExists(f"group {name!r} exists") from None

    @staticmethod
    def _group(s: Session, name: str) -> AccessGroup:
        g = s.scalars(select(AccessGroup).where(AccessGroup.name == name)).first()
        if g is None:
            raise NotFound(f"no group {name!r}")
        return g

    def add_member(self, group: str, person: str, operator: str) -> None:
        with self.db.session() as s:
            g, p = self._group(s, group), self._person(s, person)
            if s.get(GroupMember, (g.id, p.id)) is None:
                s.add(GroupMember(group_id=g.id, person_id=p.id))
            audit.record(s, operator, "group.member.add", group, person=p.id)

    def remove_member(self, group: str, person: str, operator: str) -> None:
        with self.db.session() as s:
            g, p = self._group(s, group), self._person(s, person)
            m = s.get(GroupMember, (g.id, p.id))
            if m is None:
                raise NotFound(f"{person!r} is not in {group!r}")
            s.delete(m)
            audit.record(s, operator, "group.member.remove", group, person=p.id)

    def grant(self, group: str, door: str, operator: str, schedule: list | None = None) -> None:
        check_schedule(schedule)
        with self.db.session() as s:
            g = self._group(s, group)
            self._door(s, door)
            gd = s.get(GroupDoor, (g.id, door))
            if gd is None:
                s.add(GroupDoor(group_id=g.id, door_id=door, schedule=schedule))
            else:
                gd.schedule = schedule
            audit.record(s, operator, "group.grant", group, door=door, schedule=schedule)

    def ungrant(self, group: str, door: str, operator: str) -> None:
        with self.db.session() as s:
            g = self._group(s, group)
            gd = s.get(GroupDoor, (g.id, door))
            if gd is None:
                raise NotFound(f"{group!r} has no grant on {door!r}")
            s.delete(gd)
            audit.record(s, operator, "group.ungrant", group, door=door)

    # -- doors -------------------------------------------------------------------------------------
    def add_door(self, device_id: str, name: str, operator: str, settings: dict | None = None) -> None:
        with self.db.session() as s:
            dev = s.get(Device, device_id)
            if dev is None or dev.status != "active":
                raise CentralError(f"device {device_id!r} is not an active (onboarded) device")
            if s.get(Door, device_id) is not None:
                raise AlreadyExists(f"door {device_id!r} exists")
            s.add(Door(id=device_id, name=name, lockdown="off", settings=dict(settings or {})))
            audit.record(s, operator, "door.add", device_id, name=name)

    def set_lockdown(self, door: str, mode: str, operator: str) -> None:
        if mode not in LOCKDOWN_MODES:
            raise CentralError(f"lockdown is one of {', '.join(LOCKDOWN_MODES)}")
        with self.db.session() as s:
            d = self._door(s, door)
            d.lockdown = mode
            audit.record(s, operator, "door.lockdown", door, mode=mode)

    @staticmethod
    def _door(s: Session, door: str) -> Door:
        d = s.get(Door, door)
        if d is None:
            raise NotFound(f"no door {door!r}")
        return d
