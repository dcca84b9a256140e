"""The audit chain: append-only, crash-safe, and `facelock audit verify` names an edited/deleted/reordered record."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

from firmware.audit import AuditLog, record_hash
from provisioning.cli import main as cli


@pytest.fixture
def log_path(tmp_path):
    p = tmp_path / "audit.db"
    with AuditLog(p) as log:
        for i in range(1, 11):
            log.append("granted" if i % 2 else "denied", user=f"u{i}", i=i)
    return p


def tamper(path, *sql):
    """What an intruder with the file can do: drop the guard triggers and rewrite rows."""
    con = sqlite3.connect(path)
    con.execute("DROP TRIGGER audit_no_update")
    con.execute("DROP TRIGGER audit_no_delete")
    for s in sql:
        con.execute(s)
    con.commit()
    con.close()


def run_verify(path):
    r = CliRunner().invoke(cli, ["audit", "verify", "--data-dir", str(path.parent), "--json"])
    return r.exit_code, json.loads(r.output.strip().splitlines()[-1])


def test_intact_chain_verifies(log_path):
    code, res = run_verify(log_path)
    assert code == 0 and res["ok"] and res["records"] == 10


def test_append_only_for_honest_sql(log_path):
    con = sqlite3.connect(log_path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("UPDATE audit SET kind='x' WHERE seq=3")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("DELETE FROM audit WHERE seq=3")
    con.close()


def test_edited_record_is_named(log_path):
    tamper(log_path, """UPDATE audit SET data='{"i":4,"user":"mallory"}' WHERE seq=4""")
    code, res = run_verify(log_path)
    assert code == 3 and res["bad_record"] == 4 and "edited" in res["reason"]


def test_edit_with_recomputed_hash_is_caught_at_the_next_link(log_path):
    con = sqlite3.connect(log_path)
    seq, ts, kind, _data, prev = con.execute("SELECT seq, ts, kind, data, prev FROM audit WHERE seq=6").fetchone()
    con.close()
    data = '{"i":6,"user":"mallory"}'
    tamper(log_path, f"UPDATE audit SET data='{data}', hash='{record_hash(seq, ts, kind, data, prev)}' WHERE seq=6")
    code, res = run_verify(log_path)
    assert code == 3 and res["bad_record"] == 7 and "link" in res["reason"]


def test_deleted_record_is_named(log_path):
    tamper(log_path, "DELETE FROM audit WHERE seq=5")
    code, res = run_verify(log_path)
    assert code == 3 and res["bad_record"] == 5 and "deleted" in res["reason"]


def test_reordered_records_are_named(log_path):
    tamper(log_path, "UPDATE audit SET seq=-1 WHERE seq=3", "UPDATE audit SET seq=3 WHERE seq=8",
           "UPDATE audit SET seq=8 WHERE seq=-1")
    code, res = run_verify(log_path)
    assert code == 3 and res["bad_record"] == 3


def test_cut_tail_needs_outside_anchor(log_path):
    tamper(log_path, "DELETE FROM audit WHERE seq > 8")
    assert run_verify(log_path)[0] == 0  # a shorter chain is self-consistent...
    r = CliRunner().invoke(cli, ["audit", "verify", "--data-dir", str(log_path.parent), "--expect-at-least", "10"])
    assert r.exit_code == 3 and "record 9" in r.output  # ...but not against the last published seq


def test_show_lists_records(log_path):
    r = CliRunner().invoke(cli, ["audit", "show", "--data-dir", str(log_path.parent), "--json", "-n", "3"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in r.output.splitlines()]
    assert [x["seq"] for x in rows] == [1, 2, 3] and rows[0]["data"]["user"] == "u1"


def test_missing_log_is_a_clear_error(tmp_path):
    r = CliRunner().invoke(cli, ["audit", "verify", "--data-dir", str(tmp_path)])
    assert r.exit_code == 1 and "does not exist" in r.output
