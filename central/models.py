"""The centre's schema (SQLAlchemy 2 declarative).  Alembic revisions in central/migrations build it;
`tests/central/test_db.py` checks that the migrated schema and these models agree, on both backends.

What is never here in the clear: templates (`Template.ciphertext` is an AEAD ciphertext under the centre's
keystore key) and face images (the centre never receives one).  Bundles (`PolicyState.bundle`) hold
templates encrypted to one door's key only.  People appear to doors only by their random id.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Device(Base):
    """A lock known to the centre.  status: pending (awaits approval) -> active -> revoked (final)."""

    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    csr_pem: Mapped[str] = mapped_column(Text, nullable=False)
    template_pubkey: Mapped[bytes] = mapped_column(LargeBinary(32), nullable=False)  # X25519, raw
    cert_pem: Mapped[str | None] = mapped_column(Text)
    cert_serial: Mapped[str | None] = mapped_column(String(64))
    requested_at: Mapped[float] = mapped_column(Float, nullable=False)
    approved_at: Mapped[float | None] = mapped_column(Float)
    approved_by: Mapped[str | None] = mapped_column(String(128))
    revoked_at: Mapped[float | None] = mapped_column(Float)


class EnrollmentToken(Base):
    """A one-time onboarding token; only its SHA-256 is stored."""

    __tablename__ = "enrollment_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str | None] = mapped_column(String(64))  # when set, only this id may use it
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    expires_at: Mapped[float] = mapped_column(Float, nullable=False)
    used_at: Mapped[float | None] = mapped_column(Float)
    used_by: Mapped[str | None] = mapped_column(String(64))


class Person(Base):
    __tablename__ = "people"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # random UUID: what doors see
    name: Mapped[str] = mapped_column(String(128), nullable=False, unique=True)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    templates: Mapped[list[Template]] = relationship(back_populates="person", cascade="all, delete-orphan",
                                                     passive_deletes=True)


class Template(Base):
    """One face template, AEAD-sealed under the centre's template key (version `key_version`)."""

    __tablename__ = "templates"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), nullable=False,
                                           index=True)
    key_version: Mapped[int] = mapped_column(Integer, nullable=False)
    nonce: Mapped[bytes] = mapped_column(LargeBinary(12), nullable=False)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    person: Mapped[Person] = relationship(back_populates="templates")


class AccessGroup(Base):
    __tablename__ = "access_groups"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False, unique=True)


class GroupMember(Base):
    __tablename__ = "group_members"
    group_id: Mapped[int] = mapped_column(ForeignKey("access_groups.id", ondelete="CASCADE"), primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), primary_key=True)


class Door(Base):
    """A door is an onboarded device plus its settings (pushed in its bundle)."""

    __tablename__ = "doors"
    id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    lockdown: Mapped[str] = mapped_column(String(16), nullable=False, default="off")
    settings: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)


class GroupDoor(Base):
    """Group -> door grant; `schedule` is a list of {days, start, end} windows, or null for any time."""

    __tablename__ = "group_doors"
    group_id: Mapped[int] = mapped_column(ForeignKey("access_groups.id", ondelete="CASCADE"), primary_key=True)
    door_id: Mapped[str] = mapped_column(ForeignKey("doors.id", ondelete="CASCADE"), primary_key=True)
    schedule: Mapped[list | None] = mapped_column(JSON)


class PolicyState(Base):
    """Per door: the version the centre wants it to run, what it acknowledged, and the signed bundle."""

    __tablename__ = "policy_state"
    door_id: Mapped[str] = mapped_column(ForeignKey("doors.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    bundle: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    built_at: Mapped[float] = mapped_column(Float, nullable=False)
    acked_version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    acked_at: Mapped[float | None] = mapped_column(Float)
    last_sent_at: Mapped[float | None] = mapped_column(Float)
    sends: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_refusal: Mapped[str | None] = mapped_column(String(256))


class EventRow(Base):
    __tablename__ = "events"
    rowid: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                       autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    device: Mapped[str] = mapped_column(String(64), nullable=False)
    type: Mapped[str] = mapped_column(String(32), nullable=False)
    severity: Mapped[str] = mapped_column(String(16), nullable=False)
    ts: Mapped[float] = mapped_column(Float, nullable=False)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    user_id: Mapped[str | None] = mapped_column(String(128))
    stored_at: Mapped[float] = mapped_column(Float, nullable=False)
    payload: Mapped[str] = mapped_column(Text, nullable=False)
    __table_args__ = (Index("events_device_seq", "device", "seq"),)


class AlertRow(Base):
    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(64), nullable=False)
    device: Mapped[str] = mapped_column(String(64), nullable=False)
    ts: Mapped[float] = mapped_column(Float, nullable=False)
    detail: Mapped[str] = mapped_column(Text, nullable=False)
    event_id: Mapped[str | None] = mapped_column(String(36))
    # Behaviour alerts carry a key so that several workers analysing the same events raise each once.
    key: Mapped[str | None] = mapped_column(String(200))
    __table_args__ = (UniqueConstraint("key", name="uq_alerts_key"),)


class Availability(Base):
    __tablename__ = "availability"
    device: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    changed_at: Mapped[float] = mapped_column(Float, nullable=False)


class SeqMark(Base):
    """Per device: every seq <= contiguous is stored (or given up as lost); gap_since: when a later seq was
    first seen with a hole before it (the monitor's seq-gap tracking, provisioning.monitor.service);
    last_seen: when a batch holding one of its events was last stored (the silent-door rule reads this
    row per door instead of a max() over the whole events table)."""

    __tablename__ = "seqs"
    device: Mapped[str] = mapped_column(String(64), primary_key=True)
    contiguous: Mapped[int] = mapped_column(BigInteger, nullable=False)
    gap_since: Mapped[float | None] = mapped_column(Float)
    tries: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    alerted: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_seen: Mapped[float | None] = mapped_column(Float)


class Counter(Base):
    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, nullable=False)


class AuditEntry(Base):
    """The centre's own audit: every operator action (who, what, on what), append-only."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float, nullable=False)
    operator: Mapped[str] = mapped_column(String(128), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    target: Mapped[str] = mapped_column(String(128), nullable=False)
    detail: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)





class DoorReportedState(Base):
    """What each lock last published on its retained state topic (central.doorstate); ts: the lock's clock."""

    __tablename__ = "door_reported_state"
    device: Mapped[str] = mapped_column(String(64), primary_key=True)
    lock: Mapped[str] = mapped_column(String(16), nullable=False)
    door: Mapped[str] = mapped_column(String(16), nullable=False)
    tamper: Mapped[bool] = mapped_column(Boolean, nullable=False)
    lockdown: Mapped[bool] = mapped_column(Boolean, nullable=False)
    machine: Mapped[str | None] = mapped_column(String(16))
    ts: Mapped[float] = mapped_column(Float, nullable=False)
    received_at: Mapped[float] = mapped_column(Float, nullable=False)
