"""The centre's policy-ack parser: what a door (or anything on its topic) sends is checked field by field
before it moves a door's acked version; a malformed one is dropped, never an exception."""

from __future__ import annotations

import json

from central.distributor import MAX_ACK_BYTES, parse_ack
from firmware.fleet import topics as fleet_topics


def _ack(**over) -> bytes:
    body = {"v": 1, "door": "door-a", "version": 3, "status": "applied", "offered": 3, "reason": None} | over
    return json.dumps(body).encode()


def test_a_valid_ack_is_read() -> None:
    topic = fleet_topics.policy_ack("door-a")
    assert parse_ack(topic, _ack()) == {"door": "door-a", "version": 3, "status": "applied", "reason": None}
    got = parse_ack(topic, _ack(status="refused", reason="x" * 500))
    assert got is not None and got["status"] == "refused" and got["reason"] == "x" * 200


def test_malformed_acks_are_dropped() -> None:
    topic = fleet_topics.policy_ack("door-a")
    bad = [_ack(door="door-b"), _ack(v=2), _ack(version=True), _ack(version=-1), _ack(version="3"),
           _ack(status="done"), b"\xff\xfe", b"[1, 2]", b"not json", b"{" * 600 + b"}" * 600,
           b"[" * 1000, _ack(reason="r" * MAX_ACK_BYTES), b'{"v": NaN}']
    for payload in bad:
        assert parse_ack(topic, payload) is None, payload[:40]
    assert parse_ack("facelock/door-a/policy", _ack()) is None  # not an ack topic
