"""A paho client that reads and writes the TLS socket in blocks instead of a few bytes at a time.

Why: the device publishes from the lock's own process, so its network thread shares the interpreter
lock with the thread that puts events; the monitor likewise shares it between its network thread and
its store writer.  Stock paho does several small system calls per message: to send, a wake-up byte on
its socket pair plus one TLS write per packet; to receive, one TLS read for the command byte, one per
remaining-length byte and one for the body.  Every such call releases the interpreter lock, the other
thread takes it, and the network thread then waits to get it back.  Profiling `facelock bench mqtt`
showed both processes spending most of their time in those hand-offs rather than in work.  A subscriber
at QoS 0 also gets only one packet handled per `loop()` call (paho reads as many packets as it has
messages in flight), so each message paid a `select()` as well.

So, with no change to what goes over the wire (the same packets, in the same order, on the same
connection; message ids, PUBACKs and QoS 1 bookkeeping stay paho's own):
  * inside `batch()`, publishes are only queued, and leaving the block writes them, consecutive packets
    joined into one buffer (one TLS write for a pump of hundreds of events);
  * reads fetch up to READ_CHUNK bytes at once and serve paho's small reads from that buffer, and
    `loop_read` keeps handling packets while bytes are buffered or the socket has more (up to
    READ_BUDGET_BYTES per call, so a flood cannot keep the caller from its own work; the rest waits in
    the socket, where paho's `select()` sees it);
  * a successful PUBACK without properties, and a QoS 0 or 1 PUBLISH without properties (one per event
    on the device and on the monitor, one per receipt on a lock), skip paho's decoder, which builds a
    ReasonCode and a Properties object (several dicts each) per packet; every other packet goes through
    paho unchanged; what handling a read block queues (its PUBACKs) leaves in one TLS write;
  * with no per-filter callback (`message_callback_add`), a message goes straight to `on_message`.

This relies on private paho methods (`_packet_queue`, `_packet_write`, `_sock_recv`, `_handle_publish`,
`_handle_pubackcomp`, ...) and the layout of its queued-packet dicts, stable across paho 1.x and 2.x.  If
their signatures differ from what is expected here, `SUPPORTED` is False and the class behaves exactly
like `paho.mqtt.client.Client` (and tests/telemetry/test_paho_io.py fails, so it does not go unnoticed).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

_PUBLISH = 0x30
_DISCONNECT = 0xE0
COALESCE_MAX_BYTES = 64 * 1024
READ_CHUNK = 64 * 1024
READ_BUDGET_BYTES = 256 * 1024  # socket bytes one loop_read call may take in (then it returns)


def _params(name: str) -> list[str] | None:
    try:
        return list(inspect.signature(getattr(mqtt.Client, name)).parameters)
    except (AttributeError, TypeError, ValueError):
        return None


SUPPORTED = (_params("_packet_queue") == ["self", "command", "packet", "mid", "qos", "info"]
             and _params("_packet_write") == ["self"] and _params("_sock_recv") == ["self", "bufsize"]
             and _params("loop_read") == ["self", "max_packets"] and _params("_handle_publish") == ["self"]
             and _params("_handle_pubackcomp") == ["self", "cmd"] and _params("_send_puback") == ["self", "mid"]
             and _params("_do_on_publish") == ["self", "mid", "reason_code", "properties"]
             and _params("_handle_on_message") == ["self", "message"]
             and _params("message_callback_add") == ["self", "sub", "callback"]
             and _params("message_callback_remove") == ["self", "sub"]
             and set(getattr(mqtt.MQTTMessage, "__slots__", ())) == {
                 "_topic", "dup", "info", "mid", "payload", "properties", "qos", "retain", "state", "timestamp"})

# Shared, empty, never modified: what paho would build afresh for every plain PUBACK and PUBLISH.
_PUBACK_SUCCESS = ReasonCode(PacketTypes.PUBACK)
_NO_PUBACK_PROPERTIES = Properties(PacketTypes.PUBACK)
_NO_PUBLISH_PROPERTIES = Properties(PacketTypes.PUBLISH)
_NO_MESSAGE_INFO = mqtt.MQTTMessageInfo(0)  # a received QoS 0 message's `info` (paho makes one, Condition and all)


class BatchedIOClient(mqtt.Client):
    """`paho.mqtt.client.Client` with block reads and `batch()`; drive it from one thread (the one that
    calls `loop()`), as the device client and the monitor do."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batching = False
        self._rsock: Any = None
        self._rbuf = b""
        self._rpos = 0
        self._read_budget: int | None = None  # socket bytes left for this loop_read; None = unlimited
        self._filters: set[str] = set()  # topic filters with their own callback (message_callback_add)
        self.io_stats = {"socket_reads": 0, "socket_writes": 0, "packets_joined": 0}

    # -- writing -----------------------------------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[None]:
        """Queue the packets of every publish inside the block; write them all when it ends."""
        if not SUPPORTED or self._batching:
            yield
            return
        self._batching = True
        try:
            yield
        finally:
            self._batching = False
        if self._out_packet and self._sock is not None:
            self.loop_write()

    def _packet_queue(self, command: int, packet: bytes, mid: int, qos: int, info: Any = None) -> Any:
        if not self._batching:
            return super()._packet_queue(command, packet, mid, qos, info)
        # The dict paho itself builds, minus its wake-up byte and immediate write: batch() writes.
        self._out_packet.append({"command": command, "mid": mid, "qos": qos, "pos": 0,
                                 "to_process": len(packet), "packet": packet, "info": info})
        return mqtt.MQTT_ERR_SUCCESS

    def send_qos0(self, topic: str, payload: bytes) -> None:
        """Queue one QoS 0 PUBLISH without properties as raw bytes: no MQTTMessage, no MQTTMessageInfo
        (and its Condition), no on_publish; there is nothing to wait for at QoS 0.  Same bytes on the wire
        as `publish(topic, payload, qos=0)`.  Inside `batch()` it joins the block; outside, it is written
        at once.  Call it from the thread that drives the loop (the monitor's receipts)."""
        if not SUPPORTED:
            self.publish(topic, payload, qos=0)
            return
        t = topic.encode("utf-8")
        if not t or len(t) > 65535 or b"+" in t or b"#" in t:
            raise ValueError("invalid topic for a publish")
        n = 2 + len(t) + 1 + len(payload)  # topic length, topic, empty properties, payload
        head = bytearray([_PUBLISH])
        while True:  # the remaining length, 7 bits a byte
            n, digit = n >> 7, n & 0x7F
            head.append(digit | (0x80 if n else 0))
            if not n:
                break
        packet = bytes(head) + len(t).to_bytes(2, "big") + t + b"\x00" + payload
        # Marked like a joined block (a QoS 1 header in the queue entry): paho then does nothing after
        # writing it, which is right for a PUBLISH nobody waits on, and _coalesce may join it.
        self._out_packet.append({"command": _PUBLISH | 0x02, "mid": 0, "qos": 1, "pos": 0,
                                 "to_process": len(packet), "packet": packet, "info": None})
        if not self._batching and self._sock is not None:
            self.loop_write()

    def _packet_write(self) -> Any:
        if SUPPORTED and len(self._out_packet) > 1:
            self._coalesce()
        self.io_stats["socket_writes"] += 1
        return super()._packet_write()

    def _coalesce(self) -> None:
        """Join the leading run of queued packets into one, up to COALESCE_MAX_BYTES.

        Only packets paho does nothing with once written are joined: not a QoS 0 PUBLISH (on_publish
        fires when it is written), not a DISCONNECT (closes the socket), not one already partly written.
        The joined block carries a QoS 1 PUBLISH header, which keeps those after-write actions off it.
        """
        out = self._out_packet
        parts: list[bytes] = []
        size = 0
        while out:
            p = out[0]
            kind = p["command"] & 0xF0
            if p["pos"] or (kind == _PUBLISH and p["qos"] == 0) or kind == _DISCONNECT:
                break
            if parts and size + p["to_process"] > COALESCE_MAX_BYTES:
                break
            out.popleft()
            parts.append(p["packet"])
            size += p["to_process"]
        if len(parts) > 1:
            self.io_stats["packets_joined"] += len(parts)
        if parts:
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            out.appendleft({"command": _PUBLISH | 0x02, "mid": 0, "qos": 1, "pos": 0, "to_process": len(data),
                            "packet": data, "info": None})

    # -- decoding the two packets that come once per event ------------------------------------------
    def _handle_pubackcomp(self, cmd: str) -> Any:
        """A successful PUBACK without properties (all mosquitto sends for an accepted event) skips
        paho's decoder, which builds a ReasonCode and a Properties object (several dicts each) per
        packet; anything else goes through paho unchanged."""
        packet = self._in_packet["packet"]
        n = len(packet)
        if (SUPPORTED and cmd == "PUBACK" and self._protocol == mqtt.MQTTv5
                and (n == 2 or (n == 3 and packet[2] == 0) or (n == 4 and packet[2] == 0 and packet[3] == 0))):
            mid = (packet[0] << 8) | packet[1]
            with self._out_message_mutex:
                if mid in self._out_messages:
                    return self._do_on_publish(mid, _PUBACK_SUCCESS, _NO_PUBACK_PROPERTIES)
            return mqtt.MQTT_ERR_SUCCESS
        return super()._handle_pubackcomp(cmd)

    def _handle_publish(self) -> Any:
        """A QoS 0 or QoS 1 PUBLISH without properties (each event the monitor receives; each receipt and
        bundle a lock receives) skips paho's decoder and its per-packet Properties object; its
        `properties` is a shared empty one.  QoS 1 is then acknowledged as paho does (PUBACK after
        on_message, unless manual_ack).  Anything else (QoS 2, properties present, MQTT 3) goes through
        paho unchanged."""
        header = self._in_packet["command"]
        packet = self._in_packet["packet"]
        qos = (header & 0x06) >> 1
        if SUPPORTED and qos < 2 and self._protocol == mqtt.MQTTv5 and len(packet) >= 3:
            end = 2 + ((packet[0] << 8) | packet[1])
            mid = 0
            if qos:
                if len(packet) < end + 2:
                    return super()._handle_publish()
                mid = (packet[end] << 8) | packet[end + 1]
                end += 2
            if len(packet) > end and packet[end] == 0 and (mid or not qos):
                # The fields MQTTMessage.__init__ sets, without the MQTTMessageInfo (and its Condition) it
                # builds for every message: a received message never uses it.
                message = object.__new__(mqtt.MQTTMessage)
                message._topic = bytes(packet[2:2 + ((packet[0] << 8) | packet[1])])
                message.mid = mid
                message.qos = qos
                message.state = mqtt.mqtt_ms_invalid
                message.info = _NO_MESSAGE_INFO
                message.dup = bool(header & 0x08)
                message.retain = bool(header & 0x01)
                message.properties = _NO_PUBLISH_PROPERTIES
                message.payload = bytes(packet[end + 1:])
                message.timestamp = time.monotonic()  # what paho stamps received messages with
                self._handle_on_message(message)
                if qos and not self._manual_ack:
                    return self._send_puback(mid)
                return mqtt.MQTT_ERR_SUCCESS
        return super()._handle_publish()

    def message_callback_add(self, sub: str, callback: Any) -> None:
        super().message_callback_add(sub, callback)
        self._filters.add(sub)

    def message_callback_remove(self, sub: str) -> None:
        super().message_callback_remove(sub)
        self._filters.discard(sub)

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        """With no per-filter callback registered, straight to `on_message`: paho matches every message's
        topic against its (empty) filter tree first, 9% of the monitor's network thread at 1,000 doors."""
        if not SUPPORTED or self._filters:
            return super()._handle_on_message(message)
        on_message = self.on_message
        if on_message:
            with self._in_callback_mutex:
                try:
                    on_message(self, self._userdata, message)
                except Exception as err:  # paho's own handling: logged, raised unless suppressed
                    self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                    if not self.suppress_exceptions:
                        raise
        return None

    # -- reading -----------------------------------------------------------------------------------
    def _sock_recv(self, bufsize: int) -> bytes:
        if not SUPPORTED:
            return super()._sock_recv(bufsize)
        if self._rsock is not self._sock:  # a new connection: nothing buffered belongs to it
            self._rsock, self._rbuf, self._rpos = self._sock, b"", 0
        pos = self._rpos
        if pos < len(self._rbuf):
            end = pos + bufsize
            self._rpos = end
            return self._rbuf[pos:end]
        if self._read_budget is not None and self._read_budget <= 0:
            raise BlockingIOError()  # enough for this call; the rest waits in the socket
        data = super()._sock_recv(max(bufsize, READ_CHUNK))
        self.io_stats["socket_reads"] += 1
        if self._read_budget is not None:
            self._read_budget -= len(data)
        if len(data) <= bufsize:
            self._rbuf, self._rpos = b"", 0
            return data
        self._rbuf, self._rpos = data, bufsize
        return data[:bufsize]

    def _buffered(self) -> bool:
        return self._rpos < len(self._rbuf) and self._rsock is self._sock

    def loop_read(self, max_packets: int = 1) -> Any:
        """paho's loop_read, continued until no buffered byte is left (a whole block is handled per
        call, instead of one packet per `loop()` for a QoS 0 subscriber)."""
        if not SUPPORTED:
            return super().loop_read(max_packets)
        self._read_budget = READ_BUDGET_BYTES
        # What handling the block queues (PUBACKs of QoS 1 messages, replies published from on_message)
        # leaves in one TLS write at the end, not one write each.
        outer = self._batching
        self._batching = True
        try:
            rc = super().loop_read(max_packets)
            # paho stops after as many packets as it has messages in flight (one, for a QoS 0
            # subscriber): go on while there is more to read, until the socket is empty or the
            # budget is spent (then the next read raises BlockingIOError, which paho takes as "empty").
            while (rc == mqtt.MQTT_ERR_SUCCESS and self._sock is not None
                   and (self._buffered() or self._read_budget > 0)):
                before = self.io_stats["socket_reads"], self._rpos
                rc = super().loop_read(max_packets)
                if (self.io_stats["socket_reads"], self._rpos) == before:
                    break  # nothing read: the socket is empty
        finally:
            self._read_budget = None
            self._batching = outer
        if not outer and self._out_packet and self._sock is not None:
            self.loop_write()
        return rc
