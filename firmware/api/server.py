"""The Face Security API's Unix socket server (protocol: :mod:`firmware.api.protocol`).

Threads: one accepts; each connection gets its own thread, at most ``max_connections`` at once (more
are answered ``busy`` at once).  None of them touches the lock loop's state: verify goes through the
lock's port (:meth:`firmware.lock.port.LockPort.verify`), records through the Recorder's thread.

Per connection, in this order: the peer's credentials from the kernel (SO_PEERCRED, SO_PEERGROUPS); the
request, at most MAX_REQUEST_BYTES, which must arrive whole within ``read_timeout_s`` (a client that
sends half a request and waits, or half-closes early, gets ``timeout`` / ``malformed`` instead of holding
a thread); decoding; authorisation and rate limits; only then the method.  Every failure is one error
line, and the daemon goes on serving the door whatever a client sends.
"""

from __future__ import annotations

import array
import contextlib
import logging
import os
import select
import socket
import stat
import struct
import threading
import time
from pathlib import Path

from firmware.api.access import Peer
from firmware.api.config import ApiConfig
from firmware.api.protocol import (
    MAX_REQUEST_BYTES,
    ProtocolError,
    Request,
    decode_request,
    encode_line,
    error_line,
    progress_line,
)
from firmware.api.service import ApiService
from firmware.errors import FaceLockError

log = logging.getLogger("facelock.api")

SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux >= 4.13


class ApiStartError(FaceLockError):
    """The API socket cannot be created (path in use by a live server, not a socket, no permission)."""


def peer_of(conn: socket.socket) -> Peer:
    pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    groups: frozenset[int] = frozenset()
    with contextlib.suppress(OSError):
        raw = conn.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * 1024)
        groups = frozenset(array.array("I", raw[: len(raw) // 4 * 4]))
    return Peer(pid, uid, gid, groups)


def _bind(path: Path, mode: int) -> socket.socket:
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        st = path.lstat()
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise ApiStartError(f"{path} exists and is not a socket: not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(0.5)
            probe.connect(str(path))
            raise ApiStartError(f"{path}: another server is listening there")
        except OSError:
            path.unlink()  # a stale socket of a previous run
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        old = os.umask(0o177)  # created 0600, then opened up to `mode`: never briefly wider
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, mode)
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise ApiStartError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    return sock


class ApiServer:
    def __init__(self, cfg: ApiConfig, service: ApiService, path: Path | None = None):
        self.cfg = cfg
        self.service = service
        self.path = Path(path or cfg.socket)
        self.sock = _bind(self.path, cfg.socket_mode)
        self._stop = threading.Event()
        self._active = 0
        self._alock = threading.Lock()
        self.served = 0
        self._lingering: list[tuple[socket.socket, float]] = []  # answered "busy", being drained
        self._llock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, name="api-accept", daemon=True)
        self._thread.start()
        self._linger = threading.Thread(target=self._linger_loop, name="api-linger", daemon=True)
        self._linger.start()
        log.info("Face Security API listening on %s", self.path)

    # ------------------------------------------------------------------------------------------ accept
    def _accept_loop(self) -> None:
        self.sock.settimeout(0.25)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                time.sleep(0.05)  # EMFILE and the like: do not spin
                continue
            with self._alock:
                full = self._active >= self.cfg.max_connections
                if not full:
                    self._active += 1
            if full:
                self._busy(conn)
                continue
            threading.Thread(target=self._serve, args=(conn,), name="api-conn", daemon=True).start()

    def _busy(self, conn: socket.socket) -> None:
        """Answer "busy" without a thread; the connection lingers (drained) until the client is done, so it
        reads the answer instead of a reset."""
        started = time.monotonic()
        try:
            peer = peer_of(conn)
            conn.setblocking(False)
            conn.send(error_line("busy", f"more than {self.cfg.max_connections} requests at once; retry"))
            conn.shutdown(socket.SHUT_WR)
            self.service.refuse(peer, "?", "busy", started)
        except OSError:
            conn.close()
            return
        with self._llock:
            if len(self._lingering) >= 256:
                conn.close()
                return
            self._lingering.append((conn, time.monotonic() + 0.5))

    def _linger_loop(self) -> None:
        while not self._stop.is_set():
            with self._llock:
                conns = list(self._lingering)
            if not conns:
                time.sleep(0.05)
                continue
            p = select.poll()
            for c, _ in conns:
                p.register(c, select.POLLIN | select.POLLHUP)
            with contextlib.suppress(OSError):
                p.poll(50)
            now = time.monotonic()
            done = []
            for c, deadline in conns:
                try:
                    while True:
                        chunk = c.recv(4096)
                        if not chunk:
                            done.append(c)
                            break
                except BlockingIOError:
                    if now > deadline:
                        done.append(c)
                except OSError:
                    done.append(c)
            if done:
                with self._llock:
                    self._lingering = [(c, d) for c, d in self._lingering if c not in done]
                for c in done:
                    c.close()

    # ------------------------------------------------------------------------------------------ serve
    def _serve(self, conn: socket.socket) -> None:
        started = self.service.clock()
        method = "?"
        peer = Peer(-1, -1, -1)
        try:
            peer = peer_of(conn)
            req = self._read_request(conn)
            method = req.method
            self.service.authorise(peer, req)
            final = self.service.run(peer, req, lambda stage: self._send(conn, progress_line(stage)),
                                     lambda: self._gone(conn))
            self._send(conn, encode_line(final))
        except ProtocolError as exc:
            if method == "?" or exc.code in ("forbidden", "rate_limited"):
                self.service.refuse(peer, method, exc.code, started)
            self._send(conn, error_line(exc.code, str(exc)))
            self._drain(conn, seconds=self.cfg.read_timeout_s)
        except OSError as exc:
            log.debug("API client went away: %s", exc)
        except Exception as exc:  # noqa: BLE001 - a bug answers "internal", the daemon goes on
            log.exception("API request failed")
            self.service.refuse(peer, method, "internal", started)
            self._send(conn, error_line("internal", f"internal error ({type(exc).__name__})"))
        finally:
            with contextlib.suppress(OSError):
                conn.close()
            with self._alock:
                self._active -= 1
                self.served += 1

    def _read_request(self, conn: socket.socket) -> Request:
        deadline = time.monotonic() + self.cfg.read_timeout_s
        buf = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProtocolError("timeout", f"no complete request within {self.cfg.read_timeout_s:g} s")
            conn.settimeout(left)
            try:
                chunk = conn.recv(MAX_REQUEST_BYTES + 1 - len(buf))
            except TimeoutError:
                raise ProtocolError("timeout", f"no complete request within {self.cfg.read_timeout_s:g} s") from None
            if not chunk:  # the client shut down its side: whatever came is the request
                if not buf:
                    raise ProtocolError("malformed", "the connection was closed before any request arrived")
                return decode_request(buf, self.cfg.max_timeout_s)
            buf += chunk
            nl = buf.find(b"\n")
            if nl >= 0:
                if buf[nl + 1:].strip():
                    raise ProtocolError("malformed", "one request per connection (bytes after the newline)")
                return decode_request(buf[:nl], self.cfg.max_timeout_s)
            if len(buf) > MAX_REQUEST_BYTES:
                raise ProtocolError("too_large", f"request larger than {MAX_REQUEST_BYTES} bytes")

    @staticmethod
    def _send(conn: socket.socket, line: bytes) -> None:
        with contextlib.suppress(OSError):
            conn.settimeout(2.0)
            conn.sendall(line)

    @staticmethod
    def _gone(conn: socket.socket) -> bool:
        """The client closed the connection entirely (a half-close of its write side is not hanging up)."""
        p = select.poll()
        p.register(conn, select.POLLHUP | select.POLLERR)
        return any(ev & (select.POLLHUP | select.POLLERR) for _, ev in p.poll(0))

    @staticmethod
    def _drain(conn: socket.socket, limit: int = 8 << 20, seconds: float = 0.2) -> None:
        """After an error answer: read (and drop) what the client still sends, so it reads the answer
        instead of a connection reset."""
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)
            end = time.monotonic() + seconds
            got = 0
            while got < limit and time.monotonic() < end:
                conn.settimeout(max(0.01, end - time.monotonic()))
                chunk = conn.recv(4096)
                if not chunk:
                    return
                got += len(chunk)

    # ------------------------------------------------------------------------------------------ stop
    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.sock.close()
        self._thread.join(2.0)
        self._linger.join(2.0)
        with self._llock:
            for c, _ in self._lingering:
                c.close()
            self._lingering = []
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
