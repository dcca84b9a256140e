"""cffi build script for the native core (API mode, out of line).

Kept apart from the Python API (firmware.crypto.hazmat.native) the way
pyca/cryptography keeps its build scripts apart: setup.py imports
``ffibuilder`` from here, and ``make sanitize`` runs this file directly with
FACELOCK_SANITIZE=1 to build an instrumented copy elsewhere.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
MODULE_NAME = "firmware._facelock_native"
SOURCES = sorted(p for p in HERE.glob("*.c"))


def _cdef_text() -> str:
    header = (HERE / "facelock.h").read_text()
    match = re.search(r"/\* CDEF-BEGIN \*/(.*)/\* CDEF-END \*/", header, re.S)
    if match is None:
        raise RuntimeError("facelock.h lacks the CDEF-BEGIN/CDEF-END block")
    return match.group(1)


def _compile_args() -> list[str]:
    args = ["-std=c11", "-O3", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off"]
    if os.environ.get("FACELOCK_SANITIZE"):
        args = [a for a in args if a != "-O3"] + [
            "-O1",
            "-g",
            "-fno-omit-frame-pointer",
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=undefined",
            "-fno-wrapv",
        ]
    return args


def make_builder(absolute_sources: bool) -> FFI:
    """setuptools wants source paths relative to setup.py; a standalone
    compile() changes directory, so it needs absolute ones."""
    builder = FFI()
    builder.cdef(_cdef_text())
    builder.set_source(
        MODULE_NAME,
        '#include "facelock.h"\n',
        sources=[str(p) if absolute_sources else str(p.relative_to(HERE.parent)) for p in SOURCES],
        include_dirs=[str(HERE)],
        extra_compile_args=_compile_args(),
        extra_link_args=["-fsanitize=address,undefined"] if os.environ.get("FACELOCK_SANITIZE") else [],
    )
    return builder


ffibuilder = make_builder(absolute_sources=False)

if __name__ == "__main__":
    # Standalone build, e.g. the sanitizer build: python native/build_native.py OUTDIR
    out = Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parent / "build" / "native")
    out.mkdir(parents=True, exist_ok=True)
    print(make_builder(absolute_sources=True).compile(tmpdir=str(out), verbose=True))
