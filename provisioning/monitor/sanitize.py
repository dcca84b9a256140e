"""Make device-supplied text safe to print on an operator's terminal (issue 11, item 14).

A device controls the `reason`, `user_id` and `data` strings of its events, and an alert's detail quotes
them.  Printed verbatim, `ESC ] 0 ; ... BEL` retitles the terminal, `ESC [ 2 J` wipes it, a CR rewrites the
line so an alert looks like something else, and a Unicode bidi override reorders what the operator reads.
Every such character becomes a visible `\\xNN` / `\\uNNNN` escape, so nothing is hidden and nothing acts.
"""

from __future__ import annotations

import unicodedata

# Cc: C0/C1 controls and DEL; Cf: format characters (bidi overrides U+202A-U+202E, U+2066-U+2069, zero
# width joiners...); Zl/Zp: line and paragraph separators; Cs: lone surrogates (from errors="surrogateescape").
_UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def _escape(ch: str) -> str:
    n = ord(ch)
    return f"\\x{n:02x}" if n < 0x100 else (f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}")


def printable(value: object, limit: int = 512) -> str:
    """`value` as text with every control/format character escaped, cut to about `limit` characters."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "…"
    if text.isprintable():  # fast path: nothing to escape (isprintable is False for all of the above, and space is fine)
        return text
    return "".join(_escape(c) if c != " " and unicodedata.category(c) in _UNSAFE else c for c in text)
