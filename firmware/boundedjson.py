"""JSON from files an attacker may have written, parsed with a nesting-depth cap.

`json.loads` recurses once per level of nesting, so 100,000 ``[`` in a
container's metadata, a keystore file or a user's policy column raised
`RecursionError` (a traceback out of `facelock decrypt`, a crashed daemon).
`loads` measures the depth *before* parsing, in linear time and without
recursion, and refuses anything deeper than ``max_depth`` with
`JsonDepthError` — a `ValueError`, so every caller that already maps a
malformed document to its own typed error (ContainerFormatError,
KeystoreCorruptError, BackupError, TemplateStoreCorruptError) does so for
this one too.  No FaceLock document nests deeper than 5 levels; the default
cap is 32.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

DEFAULT_MAX_DEPTH = 32

# A JSON string, or an unterminated one running to the end.  Possessive quantifiers: no backtracking,
# so an attacker's run of escaped quotes cannot make this quadratic.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.S)
_OPEN = np.frombuffer(b"[{", dtype=np.uint8)
_CLOSE = np.frombuffer(b"]}", dtype=np.uint8)


class JsonDepthError(ValueError):
    """The document nests deeper than the cap (refused before parsing)."""


def depth(data: bytes | bytearray | memoryview | str) -> int:
    """The deepest nesting of arrays/objects in a JSON text (brackets inside strings do not count)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    skeleton = np.frombuffer(_STRING.sub(b"", raw), dtype=np.uint8)
    if skeleton.size == 0:
        return 0
    step = np.isin(skeleton, _OPEN).astype(np.int64) - np.isin(skeleton, _CLOSE).astype(np.int64)
    return int(max(np.cumsum(step).max(), 0))


def loads(data: bytes | bytearray | memoryview | str, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """`json.loads` that refuses documents nested deeper than ``max_depth`` (JsonDepthError)."""
    d = depth(data)
    if d > max_depth:
        raise JsonDepthError(f"JSON nested {d} levels deep (the limit is {max_depth})")
    text = bytes(data) if isinstance(data, (bytearray, memoryview)) else data
    try:
        return json.loads(text)
    except RecursionError:  # cannot happen below the cap; kept so no RecursionError ever escapes
        raise JsonDepthError(f"JSON nested too deeply to parse (the limit is {max_depth})") from None
