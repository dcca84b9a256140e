"""Parse `facelock policy set` arguments into the schedule windows of firmware.lock.policy.

Pure: strings in, a validated window dict out (the same shape as a
``[[policy.schedule.<user>]]`` entry of the config file), so the CLI and the
config share one validator (firmware.lock.policy.window_from_dict).
"""

from __future__ import annotations

from typing import Any

from provisioning.errors import ProvisioningError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALIASES = {
    "all": DAYS,
    "daily": DAYS,
    "weekdays": DAYS[:5],
    "weekend": DAYS[5:],
}


def parse_days(spec: str) -> list[str]:
    """"mon-fri", "mon,wed,fri", "sat-mon" (wraps), "weekdays", "weekend", "all" -> ordered day names."""
    out: list[str] = []
    for part in (p.strip().lower() for p in spec.split(",")):
        if not part:
            raise ProvisioningError(f"invalid --days {spec!r}: empty item")
        if part in ALIASES:
            out.extend(ALIASES[part])
            continue
        if "-" in part:
            a, _, b = part.partition("-")
            if a not in DAYS or b not in DAYS:
                raise ProvisioningError(f"invalid --days {spec!r}: {part!r} is not a range of {', '.join(DAYS)}")
            i, j = DAYS.index(a), DAYS.index(b)
            out.extend(DAYS[(i + k) % 7] for k in range((j - i) % 7 + 1))
            continue
        if part not in DAYS:
            raise ProvisioningError(f"invalid --days {spec!r}: {part!r} is not one of {', '.join(DAYS)} "
                                    "(or a range like mon-fri, or weekdays/weekend/all)")
        out.append(part)
    return [d for d in DAYS if d in set(out)]


def window(days: str, start: str, end: str) -> dict[str, Any]:
    """A schedule window, validated by firmware.lock.policy (HH:MM, 24 h; end <= start crosses midnight)."""
    from firmware.config_errors import ConfigError
    from firmware.lock.policy import window_from_dict

    w = {"days": parse_days(days), "start": start, "end": end}
    try:
        window_from_dict("policy", w)
    except ConfigError as exc:
        raise ProvisioningError(f"invalid schedule: {exc}") from exc
    return w


def describe(w: dict[str, Any]) -> str:
    days = w["days"]
    if list(days) == list(DAYS):
        d = "every day"
    elif list(days) == list(DAYS[:5]):
        d = "mon-fri"
    else:
        d = ",".join(days)
    return f"{d} {w['start']}-{w['end']}"
