"""No template, embedding or face at the centre in the clear: scan the PostgreSQL dump, the cluster's
files, the SQLite database and the centre's and doors' data dirs for the enrolled vectors in every
encoding they could take (raw float32, the template encoding, hex as pg_dump writes bytea, base64,
decimal text).  The scanner is first shown to find a vector that *is* stored in the clear."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import numpy as np
from sqlalchemy import text

from central.app import Centre
from central.db import sqlite_url
from central.pgserver import LocalPostgres
from central.simdoor import SimDoor
from firmware.fleet.bundle import encode_template

OP = "op"


def _needles(v: np.ndarray) -> list[bytes]:
    raw = v.astype("<f4").tobytes()
    out = []
    for off in range(0, len(raw) - 24, 96):  # windows across the whole vector
        w = raw[off:off + 24]
        out += [w, w.hex().encode(), base64.b64encode(w)[:28]]
    out.append(base64.b64encode(encode_template(v))[:40])
    out.append(f"{float(v[0]):.6f}".encode())  # as decimal text (e.g. a JSON list)
    out.append(repr(float(v[1]))[:10].encode())
    return out


def _files(root: Path) -> list[Path]:
    return [Path(d) / f for d, _, fs in os.walk(root) for f in fs]


def _found(blobs: list[tuple[str, bytes]], vectors: list[np.ndarray]) -> list[str]:
    hits = []
    for v in vectors:
        for n in _needles(v):
            for name, blob in blobs:
                if n in blob:
                    hits.append(f"{name}: {n[:16]!r}")
    return hits


def _populate(centre: Centre, tmp_path: Path) -> tuple[list[np.ndarray], list[SimDoor]]:
    rng = np.random.default_rng(11)
    vectors = [(v / np.linalg.norm(v)).astype(np.float32) for v in rng.standard_normal((4, 192))]
    doors = []
    for i in ("door-a", "door-b"):
        d = SimDoor(tmp_path / i, i)
        d.install(centre.registry.submit(d.csr(), centre.registry.create_token(OP)))
        centre.directory.add_door(i, i, OP)
        doors.append(d)
    centre.directory.add_group("g", OP)
    for i, name in enumerate(("Ann", "Ben")):
        centre.directory.add_person(name, OP)
        centre.directory.enroll(name, vectors[2 * i:2 * i + 2], OP)
        centre.directory.add_member("g", name, OP)
    centre.directory.grant("g", "door-a", OP)
    centre.directory.grant("g", "door-b", OP)
    centre.policy.refresh()
    for d in doors:  # the doors apply their bundles (store on their disk)
        with centre.db.session() as s:
            bundle = s.execute(text("select bundle from policy_state where door_id=:d"), {"d": d.id}).scalar()
        d.store().apply(bytes(bundle))
    return vectors, doors


def test_the_scanner_finds_a_vector_stored_in_the_clear(tmp_path: Path) -> None:
    v = np.random.default_rng(3).standard_normal(192).astype(np.float32)
    (tmp_path / "leak.bin").write_bytes(b"x" * 100 + v.astype("<f4").tobytes())
    (tmp_path / "leak.sql").write_bytes(b"\\x" + v.astype("<f4").tobytes().hex().encode())
    blobs = [(p.name, p.read_bytes()) for p in _files(tmp_path)]
    assert {h.split(":")[0] for h in _found(blobs, [v])} == {"leak.bin", "leak.sql"}


def test_postgres_dump_and_files_hold_no_template_in_the_clear(tmp_path: Path) -> None:
    pg = LocalPostgres()
    try:
        pg.start()
        centre = Centre(tmp_path / "centre", pg.url)
        centre.init()
        vectors, doors = _populate(centre, tmp_path)
        with centre.db.session() as s:
            assert s.execute(text("select count(*) from templates")).scalar() == 4
        centre.close()
        dump = pg.dump()
        assert b"COPY public.templates" in dump and b"Ann" in dump  # the dump really has the data
        pg.stop()  # flush everything to the data files
        blobs = [("pg_dump", dump)] + [(str(p), p.read_bytes()) for p in _files(pg.data) if p.is_file()]
        blobs += [(str(p), p.read_bytes()) for root in [tmp_path / "centre", *(d.dir for d in doors)]
                  for p in _files(root)]
        assert _found(blobs, vectors) == []
    finally:
        pg.destroy()


def test_sqlite_database_holds_no_template_in_the_clear(tmp_path: Path) -> None:
    centre = Centre(tmp_path / "centre", sqlite_url(tmp_path / "centre" / "central.db"))
    centre.init()
    vectors, doors = _populate(centre, tmp_path)
    centre.close()
    blobs = [(str(p), p.read_bytes()) for p in _files(tmp_path) if p.is_file()]
    assert any(name.endswith("central.db") for name, _ in blobs)
    assert _found(blobs, vectors) == []
