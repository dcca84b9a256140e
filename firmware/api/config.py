"""The ``[api]`` config section: where the Face Security API listens and who may call it.

Why numeric ids after loading: the server authorises callers by the kernel's peer credentials
(SO_PEERCRED: uid, gid; SO_PEERGROUPS: supplementary groups), so every rule is resolved to numbers once,
when the daemon starts (a user or group named in a rule that does not exist is a config error, not a rule
that silently matches nobody).

Example (the default, when ``[api]`` is present without rules, is root only, every method and purpose)::

    [api]
    socket = "/run/facelock/api.sock"
    [[api.allow]]
    user = "root"                      # or uid = 0
    [[api.allow]]
    group = "facelock-api"             # or gid = 998
    methods = ["verify", "status"]     # default: every method
    purposes = ["kiosk"]               # default: ["*"] (any purpose)
"""

from __future__ import annotations

import grp
import math
import pwd
from dataclasses import dataclass
from typing import Any

from firmware.api.protocol import MAX_TIMEOUT_S, METHODS
from firmware.config_errors import ConfigError

DEFAULT_SOCKET = "/run/facelock/api.sock"


@dataclass(frozen=True)
class AllowRule:
    """Who (exactly one of uid or gid) may call which methods for which purposes."""

    uid: int | None = None
    gid: int | None = None
    methods: frozenset[str] = frozenset(METHODS)
    purposes: frozenset[str] = frozenset({"*"})


ROOT_ONLY = (AllowRule(uid=0),)


@dataclass(frozen=True)
class ApiConfig:
    enabled: bool = True
    socket: str = DEFAULT_SOCKET
    socket_mode: int = 0o666  # who may *connect*; who may *call* is decided by `allow` on the peer credentials
    allow: tuple[AllowRule, ...] = ROOT_ONLY
    max_timeout_s: float = 30.0  # the longest verify a caller may ask for
    max_connections: int = 8  # served at once; more are answered "busy"
    read_timeout_s: float = 2.0  # the whole request must arrive within this
    verify_per_minute: int = 12  # per caller uid: camera attempts are the scarce resource
    requests_per_minute: int = 120  # per caller uid, any method

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ApiConfig:
        if not isinstance(d, dict):
            raise ConfigError("api: must be a table")
        known = {"enabled", "socket", "socket_mode", "allow", "max_timeout_s", "max_connections",
                 "read_timeout_s", "verify_per_minute", "requests_per_minute"}
        for k in d:
            if k not in known:
                raise ConfigError(f"api.{k}: unknown key (allowed: {', '.join(sorted(known))})")
        kw: dict[str, Any] = {}
        if "enabled" in d:
            if not isinstance(d["enabled"], bool):
                raise ConfigError("api.enabled: expected true or false")
            kw["enabled"] = d["enabled"]
        if "socket" in d:
            s = d["socket"]
            if not isinstance(s, str) or not s.startswith("/") or len(s.encode()) > 107 or "\0" in s:
                raise ConfigError(f"api.socket: an absolute path of at most 107 bytes, got {s!r}")
            kw["socket"] = s
        if "socket_mode" in d:
            m = d["socket_mode"]
            if not isinstance(m, str) or len(m) not in (3, 4) or any(c not in "01234567" for c in m):
                raise ConfigError(f"api.socket_mode: an octal mode string such as \"0660\", got {m!r}")
            mode = int(m, 8)
            if mode & 0o7000:
                raise ConfigError(f"api.socket_mode: permission bits only (no setuid/setgid/sticky), got {m!r}")
            kw["socket_mode"] = mode
        for k, lo, hi in (("max_timeout_s", 0.1, MAX_TIMEOUT_S), ("read_timeout_s", 0.05, 60.0)):
            if k in d:
                v = d[k]
                if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) \
                        or not lo <= v <= hi:
                    raise ConfigError(f"api.{k}: a number of seconds in [{lo:g}, {hi:g}], got {v!r}")
                kw[k] = float(v)
        for k, lo, hi in (("max_connections", 1, 256), ("verify_per_minute", 1, 600),
                          ("requests_per_minute", 1, 6000)):
            if k in d:
                v = d[k]
                if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                    raise ConfigError(f"api.{k}: an integer in {lo}..{hi}, got {v!r}")
                kw[k] = v
        if "allow" in d:
            rules = d["allow"]
            if not isinstance(rules, list):
                raise ConfigError("api.allow: expected a list of tables ([[api.allow]])")
            kw["allow"] = tuple(_rule(f"api.allow[{i}]", r) for i, r in enumerate(rules))
        return cls(**kw)


def _rule(key: str, r: Any) -> AllowRule:
    if not isinstance(r, dict):
        raise ConfigError(f"{key}: expected a table")
    known = {"uid", "user", "gid", "group", "methods", "purposes"}
    for k in r:
        if k not in known:
            raise ConfigError(f"{key}.{k}: unknown key (allowed: {', '.join(sorted(known))})")
    who = [k for k in ("uid", "user", "gid", "group") if k in r]
    if len(who) != 1:
        raise ConfigError(f"{key}: exactly one of uid, user, gid or group")
    uid = gid = None
    w = who[0]
    v = r[w]
    if w in ("uid", "gid"):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**32 - 1:
            raise ConfigError(f"{key}.{w}: expected a numeric id, got {v!r}")
        uid, gid = (v, None) if w == "uid" else (None, v)
    elif w == "user":
        try:
            uid = pwd.getpwnam(str(v)).pw_uid
        except KeyError:
            raise ConfigError(f"{key}.user: no such user {v!r} on this system") from None
    else:
        try:
            gid = grp.getgrnam(str(v)).gr_gid
        except KeyError:
            raise ConfigError(f"{key}.group: no such group {v!r} on this system") from None
    methods = r.get("methods", list(METHODS))
    if not isinstance(methods, list) or not methods or not all(m in METHODS for m in methods):
        raise ConfigError(f"{key}.methods: a non-empty list of {', '.join(METHODS)}, got {methods!r}")
    purposes = r.get("purposes", ["*"])
    if not isinstance(purposes, list) or not purposes or not all(isinstance(p, str) and p for p in purposes):
        raise ConfigError(f"{key}.purposes: a non-empty list of purpose names (or \"*\"), got {purposes!r}")
    return AllowRule(uid, gid, frozenset(methods), frozenset(purposes))

