"""The EVENT and COMMAND wire formats against their known-answer vectors (tests/vectors/{event,command}_v1.json),
in both directions: decode / verify the stored bytes, and encode the same inputs with the same fixed
randomness and time to the stored bytes exactly.  An independent reading (uuid for the id, a canonical-JSON
encoder and Ed25519 from pyca written from the README's description) checks the vectors themselves."""

from __future__ import annotations

import json
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware.telemetry.commands import CommandVerifier, NonceStore
from firmware.telemetry.errors import CommandRejected, EventDecodeError
from firmware.telemetry.events import decode
from tests.vectors import wire_vectors as wv

EVENTS = wv.load("event")["vectors"]
COMMANDS_DOC = wv.load("command")
COMMANDS = COMMANDS_DOC["vectors"]


def test_the_vectors_cover_the_cases():
    assert [v["name"] for v in EVENTS] == [c["name"] for c in wv.EVENT_CASES]
    assert [v["name"] for v in COMMANDS] == [c["name"] for c in wv.COMMAND_CASES]


@pytest.mark.parametrize("v", EVENTS, ids=lambda v: v["name"])
def test_event_vector_decodes(v):
    raw = bytes.fromhex(v["wire_hex"])
    assert raw == v["wire"].encode("utf-8")
    ev = decode(raw)
    # the id is the vector's 16 random bytes as an RFC 4122 version-4 UUID
    assert ev.id == str(uuid.UUID(bytes=bytes.fromhex(v["random"]), version=4))
    a = v["args"]
    assert (ev.ts, ev.seq, ev.device, ev.type) == (v["ts"], v["seq"], a["device"], a["type"])
    assert (ev.user_id, ev.reason) == (a.get("user_id"), a.get("reason"))
    assert dict(ev.scores) == a.get("scores", {}) and dict(ev.data) == v["data"]
    # independent: compact JSON, keys in the schema's order
    d = json.loads(raw)
    assert list(d) == ["v", "id", "ts", "seq", "device", "type", "severity", "user_id", "reason", "scores", "data"]
    assert json.dumps(d, separators=(",", ":"), ensure_ascii=False).encode() == raw


@pytest.mark.parametrize("v", EVENTS, ids=lambda v: v["name"])
def test_event_vector_encodes_to_the_same_bytes(v):
    assert wv.encode_event(v) == bytes.fromhex(v["wire_hex"])


def test_a_damaged_event_vector_is_refused():
    raw = EVENTS[0]["wire"].encode()
    for bad in (raw[:-1], raw.replace(b'"v":1', b'"v":9'), raw.replace(b'"seq":7', b'"seq":0')):
        with pytest.raises(EventDecodeError):
            decode(bad)


def test_command_key_is_the_vectors():
    assert wv.public_key_hex() == COMMANDS_DOC["public_key_hex"]
    assert bytes.fromhex(COMMANDS_DOC["key_seed_hex"]) == wv.COMMAND_KEY_SEED


@pytest.mark.parametrize("v", COMMANDS, ids=lambda v: v["name"])
def test_command_vector_verifies_on_the_device(v, tmp_path):
    pub = Ed25519PublicKey.from_public_bytes(bytes.fromhex(COMMANDS_DOC["public_key_hex"]))
    verifier = CommandVerifier(v["device"], pub, NonceStore(tmp_path / "n.db"), max_age_s=30,
                               clock=lambda: v["ts"] + 1.0)
    cmd = verifier.verify(f"facelock/{v['device']}/cmd/{v['command']}", v["wire"].encode())
    assert (cmd.name, cmd.device, cmd.ts, cmd.nonce, cmd.args) == (v["command"], v["device"], v["ts"], v["nonce"],
                                                                    v["args"])
    # independent: the signature is Ed25519 over the sorted, compact, ASCII JSON of everything but "sig"
    d = json.loads(v["wire"])
    body = {k: val for k, val in d.items() if k != "sig"}
    msg = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    pub.verify(bytes.fromhex(v["signature_hex"]), msg)
    assert set(d) == {"v", "name", "device", "ts", "nonce", "args", "sig"} and d["v"] == 1


@pytest.mark.parametrize("v", COMMANDS, ids=lambda v: v["name"])
def test_command_vector_encodes_to_the_same_bytes(v):
    assert wv.encode_command(v) == v["wire"].encode()


def test_an_altered_command_vector_is_refused(tmp_path):
    v = COMMANDS[0]
    pub = Ed25519PublicKey.from_public_bytes(bytes.fromhex(COMMANDS_DOC["public_key_hex"]))
    verifier = CommandVerifier(v["device"], pub, NonceStore(tmp_path / "n.db"), clock=lambda: v["ts"])
    altered = v["wire"].replace('"duration_s":3', '"duration_s":30').encode()
    with pytest.raises(CommandRejected) as e:
        verifier.verify(f"facelock/{v['device']}/cmd/unlock", altered)
    assert e.value.reason == "bad_signature"
