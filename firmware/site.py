"""One site: everything a lock keeps, resolved from its config in one place.

The daemon, every ``facelock`` command and the tests open a lock's data through :func:`open_site`, so
they cannot disagree about where things are or which keystore seals them.  Before this module the CLI
chose the TPM whenever ``/dev/tpmrm0`` existed while the daemon fell back to the file keystore: on a Pi
with a TPM and no ``[keystore]`` section, enrolment and unlock used different keystores.

What a site resolves:

    data dir          [device] data_dir, else $FACELOCK_DATA_DIR, else /var/lib/facelock
    keystore backend  [keystore] when present; else the TPM when there is one (/dev/tpmrm0, or the TCTI
                      in $FACELOCK_TPM_TCTI, e.g. a simulator); else the file keystore
    template store    <data_dir>/users.db over that keystore
    audit log         <data_dir>/audit.db
    event outbox      <data_dir>/outbox.db (when [daemon] events = true)
    lock state        <data_dir>/lockstate.json
    status file       [daemon] status_file, else <data_dir>/status.json

It also builds what the lock decides with (:meth:`Site.decider`): the face pipeline and liveness from
the shipped, sha256-checked models, and the enrolled users, read through :class:`StoredUsers`, which the
lock loop polls for changes (a generation counter in ``users.db`` that every write bumps).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware.config import Config, load_config
from firmware.errors import FaceLockError
from firmware.keystore import KeystoreConfig, open_keystore
from firmware.lock.decider import AttemptDecider, AttemptRules, Enrolled
from firmware.lock.lockstate import LockStateFile

log = logging.getLogger("facelock.site")

TPM_DEVICE = Path("/dev/tpmrm0")
ENV_TPM_TCTI = "FACELOCK_TPM_TCTI"


class ComponentUnavailableError(FaceLockError):
    """Something the lock needs (models, liveness calibration, the template store) cannot be opened.

    The runtime turns it into FAULT (relay off, an event, retries), never into a lock that decides
    without it.
    """


def default_keystore_config(env: dict[str, str] | None = None) -> KeystoreConfig:
    """The keystore when the config has no ``[keystore]``: the TPM if this machine has one, else the file."""
    env = os.environ if env is None else env
    tcti = env.get(ENV_TPM_TCTI)
    if tcti:
        return KeystoreConfig(backend="tpm", tpm_tcti=tcti)
    if TPM_DEVICE.exists():
        return KeystoreConfig(backend="tpm", tpm_tcti=f"device:{TPM_DEVICE}")
    return KeystoreConfig()


class OutboxSink:
    """Events into the durable telemetry outbox (firmware.telemetry), which the MQTT client publishes."""

    def __init__(self, path: Path, device_id: str):
        from firmware.telemetry.events import make_event
        from firmware.telemetry.outbox import Outbox

        self._make = make_event
        self.outbox = Outbox(path)
        self.device_id = device_id

    def emit(self, type_: str, severity: str | None = None, user_id: str | None = None,
             reason: str | None = None, scores: dict[str, float] | None = None, **data: Any) -> None:
        clean = {k: v for k, v in data.items() if v is None or isinstance(v, (str, int, float, bool))}
        ev = self._make(self.device_id, type_, severity, user_id, reason,
                        {k: float(v) for k, v in (scores or {}).items()}, **clean)
        self.outbox.put(ev)

    def close(self) -> None:
        self.outbox.close()


class StoredUsers:
    """The enrolled users as ``users.db`` holds them, for the lock loop (firmware.lock.runtime.UserSource).

    ``generation()`` is what the loop polls every tick: one ``stat`` and one indexed read on a read-only
    connection (tens of microseconds).  It is the file's identity plus the counter that the store's
    triggers bump on every insert, update and delete, so a replaced file (a backup import) is noticed
    even when its counter happens to be equal.  ``is_active`` is the last check before the relay.
    """

    def __init__(self, site: Site):
        self.site = site
        self.path = site.data_dir / "users.db"
        self._db: sqlite3.Connection | None = None
        self._ino: int | None = None

    def _conn(self) -> sqlite3.Connection | None:
        try:
            ino = self.path.stat().st_ino
        except FileNotFoundError:
            self.close()
            return None
        if self._db is None or ino != self._ino:
            self.close()
            try:
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5,
                                           check_same_thread=False)
            except sqlite3.Error as exc:
                raise ComponentUnavailableError(f"{self.path}: cannot be read ({exc})") from None
            self._ino = ino
        return self._db

    def generation(self) -> Any:
        db = self._conn()
        if db is None:
            return (0, 0)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        except sqlite3.Error as exc:
            if "no such table" in str(exc):  # created, not yet initialised by the store
                return (self._ino, 0)
            raise ComponentUnavailableError(f"{self.path}: generation unreadable ({exc})") from None
        return (self._ino, int(row[0]) if row else 0)

    def exists(self, user_id: str) -> bool:
        """Enrolled (active or revoked)."""
        db = self._conn()
        try:
            return db is not None and db.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone() is not None
        except sqlite3.Error as exc:
            raise ComponentUnavailableError(f"{self.path}: cannot check user ({exc})") from None

    def is_active(self, user_id: str | None) -> bool:
        if user_id is None:
            return False
        db = self._conn()
        if db is None:
            return False
        try:
            row = db.execute("SELECT status FROM users WHERE id = ?", (user_id,)).fetchone()
        except sqlite3.Error as exc:
            raise ComponentUnavailableError(f"{self.path}: cannot check user ({exc})") from None
        return row is not None and row[0] == "active"

    def load(self, dim: int | None = None) -> Enrolled:
        """Active users' templates (decrypted into memory only), their audit pseudonyms and schedules."""
        from firmware.lock.policy import schedules_from_policies
        from firmware.pseudonym import audit_pseudonym
        from firmware.vision import EmbedderMismatchError, Gallery

        gen = self.generation()  # read first: a change during the load is seen by the next poll
        gallery = Gallery(dim=dim or self.site.embedding_dim())
        try:
            with self.site.templates() as store:
                refs = {}
                for c in store.candidates():
                    gallery.enroll(c.user_id, c.embeddings)
                    refs[c.user_id] = audit_pseudonym(store.keystore, c.user_id)
                schedules = schedules_from_policies({u.user_id: u.policy for u in store.list(include_revoked=False)})
        except EmbedderMismatchError as exc:  # 192-d templates vs a 512-d embedder: re-enrol, never compare
            raise ComponentUnavailableError(
                f"enrolled templates do not fit the configured embedder "
                f"{self.site.pipeline().embedder_spec.name!r}: {exc}") from exc
        except FaceLockError as exc:
            raise ComponentUnavailableError(f"template store cannot be read: {exc}") from exc
        return Enrolled(gallery, refs, schedules, gen)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


@dataclass
class Site:
    """A lock's config and everything it resolves to (see the module docstring)."""

    config: Config
    data_dir: Path
    keystore_config: KeystoreConfig
    _keystore: Any = field(default=None, repr=False)
    _pipeline: Any = field(default=None, repr=False)
    #: the centre's match_threshold (firmware.fleet.settings): a floor under the calibrated threshold
    threshold_floor: float | None = None
    _pipeline_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # ---------------------------------------------------------------------------------- storage
    def keystore(self, passphrase: str | None = None) -> Any:
        """The device keystore under <data_dir>/keystore (created on first use), opened once."""
        if self._keystore is None or passphrase is not None:
            self._keystore = open_keystore(self.keystore_config, self.data_dir, passphrase)
        return self._keystore

    def templates(self) -> Any:
        """The protected template store (users.db) over the site's keystore; close it (or use ``with``)."""
        from firmware.templates import TemplateStore

        return TemplateStore(self.data_dir, self.keystore())

    def users(self) -> StoredUsers:
        return StoredUsers(self)

    def audit(self, readonly: bool = False) -> Any:
        """The audit log, its chain keyed (HMAC) under the site keystore's audit-chain key."""
        from firmware.audit import AuditLog, chain_key

        key = chain_key(self.data_dir, self.keystore_config, create=not readonly)
        return AuditLog(self.data_dir / "audit.db", readonly=readonly, key=key)

    def event_sink(self) -> OutboxSink | None:
        """The durable event outbox, or None when ``[daemon] events = false``."""
        return OutboxSink(self.data_dir / "outbox.db", self.config.device.id) if self.config.daemon.events else None

    def lockstate(self) -> LockStateFile:
        return LockStateFile(self.data_dir / "lockstate.json")

    @property
    def status_path(self) -> Path:
        return Path(self.config.daemon.status_file) if self.config.daemon.status_file else self.data_dir / "status.json"

    @property
    def sim_socket(self) -> Path:
        return self.data_dir / "sim.sock"

    # ------------------------------------------------------------------------------ the decider
    def pipeline(self, num_threads: int = 1) -> Any:
        """The face pipeline from the shipped models (sha256-checked), built once per site (the lock loop and
        the fleet agent's template check may ask at once: the lock keeps them from loading it twice)."""
        with self._pipeline_lock:
            return self._load_pipeline(num_threads)

    def _load_pipeline(self, num_threads: int) -> Any:
        if self._pipeline is None:
            from firmware.vision import FacePipeline
            from firmware.vision.manifest import research_dir

            vision = self.config.sections.get("vision")
            overlay = research_dir(self.data_dir)  # opt-in research models this machine's user installed
            try:
                self._pipeline = (FacePipeline.from_config(vision, overlay=overlay) if vision is not None
                                  else FacePipeline.from_manifest(num_threads=num_threads, overlay=overlay))
            except FaceLockError as exc:
                raise ComponentUnavailableError(f"face pipeline cannot load its models: {exc}") from exc
        return self._pipeline

    def embedding_dim(self) -> int:
        return int(self.pipeline().embedder_spec.output_size)

    def liveness(self) -> Any:
        """Liveness per ``[lock] liveness``: "required" (default: anything missing is a FAULT), "auto" (used
        when its calibration files are installed; a file that exists but fails its check is still a
        FAULT), or "off" (development only).

        Why "required" by default: deleting a liveness file must not quietly turn anti-spoofing off.
        """
        from firmware.vision.liveness import LivenessConfig, LivenessPolicy

        mode = self.config.lock.liveness
        if mode == "off":
            log.warning("liveness is OFF by config: a photo of an enrolled user may unlock")
            return None
        try:
            return LivenessPolicy.from_files(self.config.sections.get("liveness") or LivenessConfig())
        except FaceLockError as exc:
            if mode == "auto" and isinstance(exc.__cause__, FileNotFoundError):
                log.warning("liveness calibration not installed (%s): attempts are decided without liveness", exc)
                return None
            raise ComponentUnavailableError(f"liveness cannot load: {exc}") from exc

    def decider(self, num_threads: int = 1, enrolled: Enrolled | None = None) -> AttemptDecider:
        """Everything a decision needs; ComponentUnavailableError (-> FAULT) when anything is missing.

        The ``[vision]`` section (when present) configures the pipeline, its operating point / threshold
        override and the 1:N margin; otherwise the manifest's calibrated values are used.
        """
        pipe = self.pipeline(num_threads)

        def threshold_for(n: int) -> float:
            # 1:N: with [vision] stranger_far the threshold follows from the gallery size (max(gallery_size, n))
            try:
                calibrated = float(pipe.threshold(enrolled=n))
                return calibrated if self.threshold_floor is None else max(calibrated, self.threshold_floor)
            except FaceLockError as exc:
                raise ComponentUnavailableError(f"no calibrated match threshold for {n} enrolled: {exc}") from exc

        liveness = self.liveness()
        if enrolled is None:
            enrolled = self.users().load(self.embedding_dim())
        return AttemptDecider(pipe, liveness, enrolled, threshold_for(len(enrolled.gallery)), pipe.margin(),
                              AttemptRules.from_lock(self.config.lock), threshold_for=threshold_for)


def open_site(config: Config | str | Path | None = None, data_dir: Path | str | None = None) -> Site:
    """The site of a config (a parsed Config, a TOML path, or None for the defaults).

    ``data_dir`` overrides the config's (the CLI's ``--data-dir``).
    """
    if config is None:
        cfg = Config()
    elif isinstance(config, Config):
        cfg = config
    else:
        cfg = load_config(config)
    root = Path(data_dir) if data_dir is not None else cfg.data_dir
    ks = cfg.sections.get("keystore") or default_keystore_config()
    return Site(cfg, root, ks)
