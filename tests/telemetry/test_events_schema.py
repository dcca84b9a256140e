"""The event schema: round trip, typed errors on every kind of bad payload, no images or embeddings."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.telemetry.errors import EventDecodeError, EventValidationError, UnknownEventVersionError
from firmware.telemetry.events import EVENT_TYPES, MAX_EVENT_BYTES, decode, encode, make_event

REQUIRED_TYPES = {"access_granted", "access_denied", "spoof_suspected", "lockout", "tamper", "door_held_open",
                  "door_opened", "door_closed", "fault", "command_result", "command_rejected", "outbox_evicted",
                  "state_changed", "enrolled", "user_revoked"}


def test_required_types_exist() -> None:
    assert REQUIRED_TYPES <= EVENT_TYPES


def test_round_trip_keeps_every_field() -> None:
    e = make_event("door-1", "access_denied", user_id="u7", reason="no_match", scores={"match": 0.31},
                   attempt=3).with_seq(42)
    back = decode(encode(e))
    assert back == e
    assert back.severity == "warning" and back.data["attempt"] == 3 and back.seq == 42
    assert json.loads(encode(e))["v"] == 1


def test_fields_are_frozen() -> None:
    e = make_event("door-1", "access_granted", x=1)
    with pytest.raises(TypeError):
        e.data["image"] = [1, 2, 3]  # type: ignore[index]


@pytest.mark.parametrize("kwargs", [
    {"type": "no_such_type"},
    {"type": "access_denied", "severity": "apocalyptic"},
    {"type": "access_denied", "embedding": 1.0},
    {"type": "access_denied", "face_image": "abc"},
    {"type": "access_denied", "vector": [0.1] * 128},
    {"type": "access_denied", "blob": "x" * 10_000},
    {"type": "access_denied", "scores": {"match": float("nan")}},
    {"type": "access_denied", "scores": {"template": 0.3}},
])
def test_bad_events_are_refused_at_creation(kwargs) -> None:
    with pytest.raises(EventValidationError):
        make_event("door-1", **kwargs)


def test_bad_device_id_refused() -> None:
    with pytest.raises(EventValidationError):
        make_event("door/1", "tamper")
    with pytest.raises(EventValidationError):
        make_event("+", "tamper")


def _good() -> dict:
    return json.loads(encode(make_event("door-1", "tamper").with_seq(1)))


@pytest.mark.parametrize("mutate", [
    lambda d: d.pop("id"),
    lambda d: d.update(id="not-a-uuid"),
    lambda d: d.update(ts="yesterday"),
    lambda d: d.update(seq=0),
    lambda d: d.update(seq=True),
    lambda d: d.update(type=5),
    lambda d: d.update(type=["access_granted"]),  # unhashable: must still be a typed error
    lambda d: d.update(severity={"info": 1}),
    lambda d: d.update(extra=1),
    lambda d: d.update(scores=[1, 2]),
    lambda d: d.update(data={"k": {"nested": 1}}),
    lambda d: d.update(user_id=""),
    lambda d: d.update(device="a/b"),
])
def test_decode_refuses_wrong_types(mutate) -> None:
    d = _good()
    mutate(d)
    with pytest.raises(EventDecodeError):
        decode(json.dumps(d).encode())


@pytest.mark.parametrize("raw", [b"", b"not json", b"\xff\xfe", b"[]", b"null", b'{"v": "1"}', b"{" * 5000,
                                 b'{"v": 1, "ts": NaN}', b"x" * (MAX_EVENT_BYTES + 1)])
def test_decode_refuses_garbage(raw: bytes) -> None:
    with pytest.raises(EventDecodeError):
        decode(raw)


def test_unknown_version_has_its_own_error() -> None:
    d = _good()
    d["v"] = 2
    with pytest.raises(UnknownEventVersionError):
        decode(json.dumps(d).encode())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_decode_never_raises_anything_but_typed_errors(raw: bytes) -> None:
    try:
        decode(raw)
    except EventDecodeError:
        pass


def test_event_ids_are_canonical_random_uuid4() -> None:
    import uuid

    from firmware.telemetry.events import new_event_id

    ids = [new_event_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for i in ids[:500]:
        u = uuid.UUID(i)
        assert str(u) == i and u.version == 4 and u.variant == uuid.RFC_4122


def _child_id(conn) -> None:
    from firmware.telemetry.events import new_event_id

    conn.send(new_event_id())
    conn.close()


def test_a_forked_child_never_repeats_the_parents_event_ids() -> None:
    """Ids come from a buffer of os.urandom bytes; a fork must not hand the child the same buffer."""
    import multiprocessing
    import os

    from firmware.telemetry.events import new_event_id

    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    new_event_id()  # the parent's buffer is now filled
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    p = ctx.Process(target=_child_id, args=(child_end,))
    p.start()
    child = parent_end.recv()
    p.join(10)
    assert child != new_event_id()
