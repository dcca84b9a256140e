"""A worker brings the broker's door accounts in step with the registry when it starts (`devices sync`):
a door approved while the broker could not be told connects once a worker has started; a revoked door
that still had an account loses it."""

from __future__ import annotations

from pathlib import Path

from central.app import Centre
from central.broker import BROKER_ADMIN_USER, central_files
from central.service import ServiceConfig, Worker
from central.simdoor import SimDoor
from tests.central.conftest import start_broker
from tests.central.test_onboarding import _connects


def _has_account(broker, device: str) -> bool:
    with broker.admin() as admin:
        (r,) = admin.run([{"command": "getClient", "username": device}], ok_errors=("not found",))
    return not r.get("error")


def test_a_worker_reconciles_the_broker_accounts_at_start(centre: Centre, pg_url: str, tmp_path: Path) -> None:
    broker = start_broker(centre, tmp_path / "broker")
    try:
        centre.registry.accounts = None  # the broker is not told: as if it was down at approval time
        late = SimDoor(tmp_path / "late", "door-late")
        late.install(centre.registry.submit(late.csr(), centre.registry.create_token("op")))
        gone = SimDoor(tmp_path / "gone", "door-gone")
        gone.install(centre.registry.submit(gone.csr(), centre.registry.create_token("op")))
        broker.register("door-gone")  # its account exists on the broker ...
        centre.registry.revoke("door-gone", "op")  # ... and stays there: nobody tells the broker
        assert not _connects(late, broker, timeout=3)
        assert _has_account(broker, "door-gone")
        cf, admin = central_files(broker), broker.raw_pki.client(BROKER_ADMIN_USER)
        cfg = ServiceConfig(data_dir=str(centre.dir), db=pg_url, host=broker.host, port=broker.port,
                            ca_file=str(broker.pki.ca), cert_file=str(cf.cert), key_file=str(cf.key),
                            broker_admin_cert=str(admin.cert), broker_admin_key=str(admin.key))
        w = Worker(cfg)
        try:
            assert w.sync_accounts() == {"active": 1, "revoked": 1}  # what run() does before serving
        finally:
            w.centre.close()
        assert _connects(late, broker)
        assert not _has_account(broker, "door-gone")
    finally:
        broker.stop()
