"""One centre: its data dir (keys, CA, CRL) and its database, with the services built on them.

`Centre(data_dir, db_url)` is what the CLI, `facelock-central run`, the demo, the benchmark and the tests
all construct, so they share one wiring.  The database URL defaults to SQLite in the data dir.
"""

from __future__ import annotations

from pathlib import Path

from central.db import Database, open_database, sqlite_url
from central.directory import Directory
from central.keys import CentreKeys
from central.monitor_store import SqlMonitorStore
from central.policy import PolicyBuilder
from central.registry import Registry

DB_FILE = "central.db"


class Centre:
    def __init__(self, data_dir: str | Path, db_url: str | None = None, migrate: bool = True,
                 scrypt_log2_n: int = 15, accounts=None) -> None:
        self.dir = Path(data_dir)
        self.keys = CentreKeys(self.dir, scrypt_log2_n=scrypt_log2_n)
        self.db: Database = open_database(db_url or sqlite_url(self.dir / DB_FILE), migrate=migrate)
        self.registry = Registry(self.db, self.keys, accounts=accounts)  # accounts: central.broker.Accounts
        self.directory = Directory(self.db, self.keys)
        self.policy = PolicyBuilder(self.db, self.keys, self.directory)
        self.monitor = SqlMonitorStore(self.db)

    def init(self) -> None:
        self.keys.init()
        if not self.keys.crl_path.exists():
            self.registry.write_crl()

    def close(self) -> None:
        self.db.dispose()
