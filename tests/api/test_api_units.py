"""The API's pure parts without a daemon: protocol decoding, [api] config, access rules, rate limits, the
verify answer to the lock's decision, and the service's refusals (a fake lock that must never be asked)."""

from __future__ import annotations

import pytest

from firmware.api import access, attempts, protocol
from firmware.api.access import Peer
from firmware.api.config import AllowRule, ApiConfig
from firmware.api.protocol import ProtocolError, decode_request
from firmware.api.service import ApiService, Recorder
from firmware.config_errors import ConfigError
from firmware.lock.decider import Decision, Outcome


def test_a_good_verify_request_round_trips():
    raw = protocol.encode_request("verify", "alice", "sudo", 7.5)
    r = decode_request(raw.rstrip(b"\n"))
    assert (r.method, r.user, r.purpose, r.timeout_s) == ("verify", "alice", "sudo", 7.5)
    assert decode_request(b'{"v":1,"method":"status"}').method == "status"


@pytest.mark.parametrize(("raw", "code"), [
    (b"", "malformed"), (b"null", "malformed"), (b'"x"', "malformed"), (b"{}", "malformed"),
    (b'{"v":true,"method":"status"}', "malformed"), (b'{"v":1.0,"method":"status"}', "malformed"),
    (b'{"v":0,"method":"status"}', "unsupported_version"), (b'{"v":1,"method":5}', "malformed"),
    (b'{"v":1,"method":"users","params":{"all":true}}', "malformed"),
    (b'{"v":1,"method":"verify","params":{}}', "malformed"),
    (b'{"v":1,"method":"verify","params":{"purpose":"a","timeout_s":0}}', "malformed"),
    (b'{"v":1,"method":"verify","params":{"purpose":"a","timeout_s":true}}', "malformed"),
    (b'{"v":1,"method":"verify","params":{"purpose":"a","timeout_s":Infinity}}', "malformed"),
    (b'{"v":1,"method":"verify","params":{"purpose":"a","user":"x\\u0000"}}', "malformed"),
    (b'{"v":1,"method":"verify","params":{"purpose":"' + b"a" * 33 + b'"}}', "malformed"),
    (b" " * 4097, "too_large"),
])
def test_bad_requests_are_typed(raw, code):
    with pytest.raises(ProtocolError) as e:
        decode_request(raw)
    assert e.value.code == code and str(e.value)


def test_config_resolves_names_and_refuses_nonsense():
    cfg = ApiConfig.from_dict({"socket": "/run/x.sock", "socket_mode": "0660",
                               "allow": [{"user": "root"}, {"group": "root", "methods": ["status"]}]})
    assert cfg.socket_mode == 0o660 and cfg.allow[0].uid == 0 and cfg.allow[1].gid == 0
    assert ApiConfig().allow == (AllowRule(uid=0),)  # default: root only
    for bad in ({"sock": "/x"}, {"socket": "relative.sock"}, {"socket_mode": "4777"}, {"socket_mode": 666},
                {"allow": [{"uid": 0, "gid": 0}]}, {"allow": [{"user": "no-such-user-here"}]},
                {"allow": [{"uid": 1, "methods": ["unlock"]}]}, {"max_timeout_s": 0}, {"max_connections": 0},
                {"allow": {"uid": 0}}, {"enabled": "yes"}):
        with pytest.raises(ConfigError):
            ApiConfig.from_dict(bad)


def test_access_rules_by_uid_gid_groups_method_and_purpose():
    rules = (AllowRule(uid=0), AllowRule(gid=50, methods=frozenset({"verify"}), purposes=frozenset({"kiosk"})))
    root, member, other = Peer(1, 0, 0), Peer(2, 1000, 100, frozenset({50})), Peer(3, 1001, 100)
    assert access.may_call(rules, root, "users") and access.may_call(rules, root, "verify", "sudo")
    assert access.may_call(rules, member, "verify", "kiosk")
    assert not access.may_call(rules, member, "verify", "sudo") and not access.may_call(rules, member, "status")
    assert not access.may_connect(rules, other) and not access.may_call(rules, other, "status")


def test_rate_limit_is_a_sliding_window_and_refusals_do_not_count():
    rl = access.RateLimiter(3, window_s=10)
    assert [rl.allow(7, t) for t in (0, 1, 2, 3, 4)] == [True, True, True, False, False]
    assert rl.allow(8, 4)  # per uid
    assert rl.allow(7, 10.5)  # the first request left the window


def test_the_answer_never_names_another_user_nor_leaks_liveness_scores():
    ok = Decision(Outcome.GRANTED, "score=0.912", "bob", 0.91234, {"pad.attack_score": 0.01})
    assert attempts.answer(ok, "a1", None).to_wire()["scores"] == {"match": 0.91}
    assert attempts.answer(ok, "a1", None).attempt_id == "a1"
    wrong = attempts.answer(ok, "a1", frozenset({"alice"}))
    assert (wrong.ok, wrong.reason, wrong.user_id) == (False, "wrong_user", None)
    spoof = attempts.answer(Decision(Outcome.SPOOF, "liveness:pad", None, None, {"pad": 0.9}), "a2",
                            frozenset({"alice"}))
    assert (spoof.ok, spoof.reason, spoof.scores) == (False, "spoof_suspected", {})
    sched = attempts.answer(Decision(Outcome.REFUSED, "schedule", "alice", 0.8), "a3", frozenset({"alice"}))
    assert (sched.reason, sched.user_id) == ("schedule", "alice")
    # revoked between load and relay: just "not recognised", never the user
    rev = attempts.answer(Decision(Outcome.REFUSED, "revoked", "alice", 0.8), "a4", None)
    assert (rev.ok, rev.reason, rev.user_id) == (False, "no_match", None)
    assert attempts.answer(Decision(Outcome.ABANDONED, "timeout"), "a5", None).reason == "timeout"
    for o in Outcome:
        d = Decision(o, "lockout" if o is Outcome.REFUSED else "x", "bob" if o is Outcome.GRANTED else None, 0.5)
        assert attempts.answer(d, "x", None).reason in protocol.VERIFY_REASONS


class ExplodingLock:
    """A lock view that fails the test if anything asks it to verify."""

    def unavailable(self):
        raise AssertionError("the lock was consulted")

    lockout_remaining = status = unavailable

    def user_ref(self, _u):
        return None


class Sink:
    def __init__(self):
        self.events = []

    def emit(self, type_, **kw):
        self.events.append((type_, kw))


def test_refused_callers_never_reach_the_lock_and_are_recorded():
    sink = Sink()
    rec = Recorder(None, sink)
    svc = ApiService(ApiConfig(requests_per_minute=2), ExplodingLock(), None, rec)
    nobody = Peer(9, 65534, 65534)
    req = decode_request(b'{"v":1,"method":"verify","params":{"purpose":"x"}}')
    with pytest.raises(ProtocolError) as e:
        svc.authorise(nobody, req)
    assert e.value.code == "forbidden"
    root = Peer(1, 0, 0)
    status = decode_request(b'{"v":1,"method":"status"}')
    svc.authorise(root, status)
    svc.authorise(root, status)
    with pytest.raises(ProtocolError) as e:
        svc.authorise(root, status)
    assert e.value.code == "rate_limited"
    svc.refuse(nobody, "verify", "forbidden", svc.clock())
    assert rec.flush(5)
    rec.close()
    assert sink.events[-1][0] == "api_request" and sink.events[-1][1]["peer_uid"] == 65534
    assert sink.events[-1][1]["reason"] == "forbidden"
