"""Run a real PostgreSQL (Debian's `postgresql` package) in a private directory, for tests and benchmarks.

initdb + pg_ctl in a temp dir, listening only on a Unix socket in that dir (no TCP port), trust auth for
the cluster's own superuser.  PostgreSQL refuses to run as root, so when we are root the cluster belongs
to the `postgres` system user (created by the Debian package) or, failing that, `nobody`.
`restart()` / `stop()` / `start()` let tests take the database away mid-stream.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from central.errors import CentralError


class PostgresError(CentralError):
    """PostgreSQL is not installed or could not be started."""


def _bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    cands = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not cands:
        raise PostgresError(f"{name} not found: install Debian's postgresql package (make system-deps)")
    return cands[-1]


class LocalPostgres:
    """A throwaway cluster.  `url` is the SQLAlchemy URL (psycopg 3, Unix socket)."""

    def __init__(self, directory: str | Path | None = None, dbname: str = "facelock") -> None:
        base = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="facelock-pg-"))
        base.mkdir(parents=True, exist_ok=True)
        self.base = base
        self.data = base / "data"
        self.sock = base / "sock"
        self.log = base / "postgres.log"
        self.dbname = dbname
        self.port = 5432  # only names the socket file (.s.PGSQL.5432); no TCP listener
        self.user = self._run_as()
        self._initdb()

    @staticmethod
    def _run_as() -> str | None:
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            try:
                pwd.getpwnam(name)
                return name
            except KeyError:
                continue
        raise PostgresError("running as root and neither a `postgres` nor a `nobody` user exists")

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", self.user, "--", *args] if self.user else list(args)

    def _initdb(self) -> None:
        self.sock.mkdir(exist_ok=True)
        if self.user:
            pw = pwd.getpwnam(self.user)
            for p in (self.base, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            self.base.chmod(0o700)
            # the parent must be traversable by that user
            parent = self.base.parent
            if subprocess.run(["runuser", "-u", self.user, "--", "test", "-x", str(parent)]).returncode != 0:
                raise PostgresError(f"{parent} is not traversable by {self.user}: use a directory under /tmp")
        r = subprocess.run(self._cmd(_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                                     "-E", "UTF8", "--no-instructions", "-N"),
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise PostgresError(f"initdb failed: {r.stderr[-800:]}")
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"\nlisten_addresses = ''\nunix_socket_directories = '{self.sock}'\n"
                    "fsync = on\nsynchronous_commit = on\nmax_connections = 200\nshared_buffers = 64MB\n")

    def start(self, timeout: float = 30.0) -> None:
        r = subprocess.run(self._cmd(_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                                     "-t", str(int(timeout)), "start"), capture_output=True, text=True)
        if r.returncode != 0:
            raise PostgresError(f"pg_ctl start failed: {r.stderr[-500:]} {self.log_tail()}")
        self._createdb()

    def _createdb(self, name: str | None = None) -> None:
        name = name or self.dbname
        if not name.replace("_", "").isalnum():
            raise PostgresError(f"bad database name {name!r}")
        r = subprocess.run(self._cmd(_bin("psql"), "-h", str(self.sock), "-U", "postgres", "-d", "postgres",
                                     "-tAc", f"select 1 from pg_database where datname='{name}'"),
                           capture_output=True, text=True)
        if r.stdout.strip() != "1":
            r = subprocess.run(self._cmd(_bin("createdb"), "-h", str(self.sock), "-U", "postgres", name),
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise PostgresError(f"createdb failed: {r.stderr[-500:]}")

    def create_database(self, name: str) -> str:
        """A new empty database in this cluster; returns its URL."""
        self._createdb(name)
        return self.url_for(name)

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(self._cmd(_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"),
                           capture_output=True, text=True)

    def restart(self, down_s: float = 0.0) -> None:
        self.stop("fast")
        time.sleep(down_s)
        self.start()

    @property
    def url(self) -> str:
        return self.url_for(self.dbname)

    def url_for(self, name: str) -> str:
        return f"postgresql+psycopg://postgres@/{name}?host={self.sock}&port={self.port}"

    def dump(self, name: str | None = None) -> bytes:
        """pg_dump of a database (plain SQL, data included), for the cleartext scan."""
        r = subprocess.run(self._cmd(_bin("pg_dump"), "-h", str(self.sock), "-U", "postgres", name or self.dbname),
                           capture_output=True)
        if r.returncode != 0:
            raise PostgresError(f"pg_dump failed: {r.stderr.decode(errors='replace')[-500:]}")
        return r.stdout

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()
