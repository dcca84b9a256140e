"""BatchedIOClient: batched writes, buffered reads and the PUBACK/PUBLISH fast paths change nothing on the
wire (same messages, same order, same acknowledgements), against a real mosquitto over mutual TLS, and
every packet the fast paths do not cover still goes through paho's own decoder."""

from __future__ import annotations

import struct
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from firmware.telemetry import paho_io
from firmware.telemetry.paho_io import BatchedIOClient
from firmware.telemetry.tls import client_context
from provisioning.mosquitto import MONITOR_USER, LocalBroker
from tests.support.mqtt_broker import Sniffer, wait_until


def _connect(broker: LocalBroker, identity: str) -> BatchedIOClient:
    files = broker.pki.client(identity)
    c = BatchedIOClient(CallbackAPIVersion.VERSION2, client_id=f"{identity}-{time.monotonic_ns()}",
                        protocol=mqtt.MQTTv5)
    c.tls_set_context(client_context(broker.pki.ca, files.cert, files.key))
    c.max_inflight_messages_set(0)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect(broker.host, broker.port)
    deadline = time.monotonic() + 10
    while not connected.is_set() and time.monotonic() < deadline:
        c.loop(0.05)
    assert connected.is_set(), "could not connect"
    return c


def test_paho_internals_are_the_ones_this_module_expects() -> None:
    # If a paho upgrade changes them, the class silently falls back to plain paho: this makes it loud.
    assert paho_io.SUPPORTED


def test_a_batch_is_written_in_few_tls_writes_and_arrives_whole_and_in_order(broker: LocalBroker) -> None:
    n = 1500
    watcher = Sniffer(broker, MONITOR_USER, ["facelock/door-7/event/#"])
    c = _connect(broker, "door-7")
    acks: list[tuple[int, bool]] = []
    c.on_publish = lambda client, userdata, mid, rc, props: acks.append((mid, rc.is_failure))
    try:
        writes_before = c.io_stats["socket_writes"]
        with c.batch():
            mids = [c.publish("facelock/door-7/event/heartbeat", b"event %05d" % i, qos=1).mid for i in range(n)]
        assert c.io_stats["socket_writes"] - writes_before < n // 20  # joined, not one write per packet
        assert c.io_stats["packets_joined"] >= n // 2
        deadline = time.monotonic() + 20
        while len(acks) < n and time.monotonic() < deadline:
            c.loop(0.05)
        assert sorted(m for m, _ in acks) == sorted(mids) and not any(failed for _, failed in acks)
        assert watcher.wait_for(lambda ms: len(ms) >= n, timeout=20)
        assert [m.payload for m in watcher.messages] == [b"event %05d" % i for i in range(n)]
    finally:
        c.disconnect()
        watcher.close()


def test_raw_qos0_publishes_arrive_whole_in_order_at_qos0(broker: LocalBroker) -> None:
    # send_qos0 (the monitor's receipts) writes the PUBLISH bytes itself: every size of remaining length
    # (1, 2 and 3 bytes) must arrive as published, in order, joined into few TLS writes.
    watcher = Sniffer(broker, "door-9", ["facelock/door-9/receipt"])
    c = _connect(broker, MONITOR_USER)
    sizes = [0, 1, 100, 121, 122, 200, 16_000, 16_400, 70_000] + [60] * 500
    bodies = [bytes([65 + i % 26]) * n for i, n in enumerate(sizes)]
    try:
        writes_before = c.io_stats["socket_writes"]
        with c.batch():
            for body in bodies:
                c.send_qos0("facelock/door-9/receipt", body)
        while c.want_write():
            c.loop_write()
        assert c.io_stats["socket_writes"] - writes_before < 50
        assert watcher.wait_for(lambda ms: len(ms) >= len(bodies), timeout=20)
        assert [m.payload for m in watcher.messages] == bodies
        assert {(m.topic, m.qos) for m in watcher.messages} == {("facelock/door-9/receipt", 0)}
        c.send_qos0("facelock/door-9/receipt", b"alone")  # outside batch(): written at once
        assert watcher.wait_for(lambda ms: len(ms) > len(bodies), timeout=10)
        assert watcher.messages[-1].payload == b"alone"
    finally:
        c.disconnect()
        watcher.close()
    for bad in ("facelock/+/receipt", "facelock/#", ""):
        try:
            c.send_qos0(bad, b"x")
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} accepted")


def test_block_reads_deliver_every_qos0_message_in_order_with_its_properties(broker: LocalBroker) -> None:
    n = 1200
    sub = _connect(broker, MONITOR_USER)
    got: list[tuple[str, bytes, int, object]] = []
    sub.on_message = lambda client, userdata, msg: got.append(
        (msg.topic, msg.payload, msg.qos, getattr(msg.properties, "UserProperty", None)))
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.subscribe([("facelock/+/event/#", 0)])
    while not subscribed.is_set():
        sub.loop(0.05)
    pub = Sniffer(broker, "door-8", [])
    try:
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = ("k", "v")
        for i in range(n):
            # Every 100th carries a property: it must take paho's own decoder and keep it.
            pub.client.publish(f"facelock/door-8/event/t{i % 3}", b"m%05d" % i, qos=1,
                               properties=props if i % 100 == 0 else None)
        assert wait_until(lambda: (sub.loop(0.05), len(got) >= n)[1], timeout=30)
        assert [p for _, p, _, _ in got] == [b"m%05d" % i for i in range(n)]
        assert [t for t, _, _, _ in got] == [f"facelock/door-8/event/t{i % 3}" for i in range(n)]
        assert all(q == 0 for _, _, q, _ in got)
        assert [i for i, (_, _, _, up) in enumerate(got) if up] == list(range(0, n, 100))
        assert got[0][3] == [("k", "v")]
        assert sub.io_stats["socket_reads"] <= n + 10  # at most one read per message (paho does three)
    finally:
        pub.close()
        sub.disconnect()


def _fake_in_packet(c: BatchedIOClient, command: int, packet: bytes) -> None:
    c._in_packet = {"command": command, "have_remaining": 1, "remaining_count": [], "remaining_mult": 1,
                    "remaining_length": len(packet), "packet": bytearray(packet), "to_process": 0, "pos": 0}


def _client_with_message_in_flight(mid: int) -> tuple[BatchedIOClient, list]:
    c = BatchedIOClient(CallbackAPIVersion.VERSION2, client_id="unit", protocol=mqtt.MQTTv5)
    msg = mqtt.MQTTMessage(mid, b"facelock/unit/event/tamper")
    msg.qos = 1
    c._out_messages[mid] = msg
    c._inflight_messages = 1
    seen: list = []
    c.on_publish = lambda client, userdata, m, rc, props: seen.append((m, rc.value, rc.is_failure))
    return c, seen


def test_plain_puback_takes_the_fast_path_and_a_refusal_keeps_its_reason_code() -> None:
    for packet, value, failed in ((b"\x00\x2a", 0, False), (b"\x00\x2a\x00", 0, False),
                                  (b"\x00\x2a\x87", 0x87, True), (b"\x00\x2a\x10\x00", 0x10, False)):
        c, seen = _client_with_message_in_flight(42)
        _fake_in_packet(c, 0x40, packet)
        assert c._handle_pubackcomp("PUBACK") == mqtt.MQTT_ERR_SUCCESS
        assert seen == [(42, value, failed)], packet
        assert 42 not in c._out_messages
    c, seen = _client_with_message_in_flight(42)
    _fake_in_packet(c, 0x40, b"\x00\x07")  # an unknown mid: ignored, like paho does
    c._handle_pubackcomp("PUBACK")
    assert seen == [] and 42 in c._out_messages


def test_qos0_publish_fast_path_matches_paho_decoder() -> None:
    topic = b"facelock/d1/event/tamper"
    plain = struct.pack("!H", len(topic)) + topic + b"\x00" + b'{"v":1}'
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = ("a", "b")
    with_props = struct.pack("!H", len(topic)) + topic + props.pack() + b'{"v":1}'
    for packet, header in ((plain, 0x30), (plain, 0x31), (with_props, 0x30)):
        c = BatchedIOClient(CallbackAPIVersion.VERSION2, client_id="unit", protocol=mqtt.MQTTv5)
        got: list[mqtt.MQTTMessage] = []
        c.on_message = lambda client, userdata, msg, got=got: got.append(msg)
        _fake_in_packet(c, header, packet)
        assert c._handle_publish() == mqtt.MQTT_ERR_SUCCESS
        (m,) = got
        assert (m.topic, m.payload, m.qos, m.retain) == ("facelock/d1/event/tamper", b'{"v":1}', 0, bool(header & 1))
        assert getattr(m.properties, "UserProperty", None) == ([("a", "b")] if packet is with_props else None)


def test_qos1_publish_fast_path_matches_paho_and_acknowledges() -> None:
    topic = b"facelock/d1/receipt"
    mid = struct.pack("!H", 0x1234)
    plain = struct.pack("!H", len(topic)) + topic + mid + b"\x00" + b'{"v":1}'
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = ("a", "b")
    with_props = struct.pack("!H", len(topic)) + topic + mid + props.pack() + b'{"v":1}'
    for packet, header, manual in ((plain, 0x32, False), (plain, 0x3B, False), (with_props, 0x32, False),
                                   (plain, 0x32, True)):
        c = BatchedIOClient(CallbackAPIVersion.VERSION2, client_id="unit", protocol=mqtt.MQTTv5,
                            manual_ack=manual)
        got: list[mqtt.MQTTMessage] = []
        c.on_message = lambda client, userdata, msg, got=got: got.append(msg)
        _fake_in_packet(c, header, packet)
        with c.batch():  # no socket here: the PUBACK is only queued
            assert c._handle_publish() == mqtt.MQTT_ERR_SUCCESS
        (m,) = got
        assert (m.topic, m.payload, m.qos, m.mid, m.retain, m.dup) == (
            "facelock/d1/receipt", b'{"v":1}', 1, 0x1234, bool(header & 1), bool(header & 8))
        assert getattr(m.properties, "UserProperty", None) == ([("a", "b")] if packet is with_props else None)
        pubacks = [p["packet"] for p in c._out_packet if p["command"] & 0xF0 == 0x40]
        assert pubacks == ([] if manual else [b"\x40\x02\x12\x34"])  # PUBACK for mid 0x1234, as paho sends it


def test_per_filter_callbacks_still_get_their_messages_on_the_fast_path() -> None:
    # on_message is called directly only while no message_callback_add filter exists.
    topic = b"facelock/d1/event/tamper"
    packet = struct.pack("!H", len(topic)) + topic + b"\x00" + b"{}"
    c = BatchedIOClient(CallbackAPIVersion.VERSION2, client_id="unit", protocol=mqtt.MQTTv5)
    plain: list[str] = []
    filtered: list[str] = []
    c.on_message = lambda client, userdata, msg: plain.append(msg.topic)
    for expect_filtered in (False, True, False):
        if expect_filtered:
            c.message_callback_add("facelock/+/event/#", lambda client, userdata, msg: filtered.append(msg.topic))
        elif filtered:
            c.message_callback_remove("facelock/+/event/#")
        _fake_in_packet(c, 0x30, packet)
        c._handle_publish()
    assert plain == ["facelock/d1/event/tamper"] * 2 and filtered == ["facelock/d1/event/tamper"]
    c.on_message = lambda client, userdata, msg: 1 / 0  # a failing callback raises, as with paho
    _fake_in_packet(c, 0x30, packet)
    try:
        c._handle_publish()
    except ZeroDivisionError:
        pass
    else:
        raise AssertionError("the callback's exception was swallowed")


def test_only_packets_with_no_after_write_action_are_joined() -> None:
    c = BatchedIOClient(CallbackAPIVersion.VERSION2, client_id="unit", protocol=mqtt.MQTTv5)

    def pkt(command: int, qos: int, data: bytes, pos: int = 0) -> dict:
        return {"command": command, "mid": 1, "qos": qos, "pos": pos, "to_process": len(data) - pos,
                "packet": data, "info": None}

    c._out_packet.extend([pkt(0x32, 1, b"a"), pkt(0x40, 0, b"b"), pkt(0x32, 1, b"c"), pkt(0x30, 0, b"q0"),
                          pkt(0x32, 1, b"d"), pkt(0xE0, 0, b"bye")])
    c._coalesce()
    assert [p["packet"] for p in c._out_packet] == [b"abc", b"q0", b"d", b"bye"]
    c._out_packet.popleft()
    c._out_packet.popleft()  # QoS 0 PUBLISH at the head: left alone
    c._coalesce()
    assert [p["packet"] for p in c._out_packet] == [b"d", b"bye"]
    c._out_packet.clear()
    c._out_packet.extend([pkt(0x32, 1, b"xyz", pos=1), pkt(0x32, 1, b"e")])  # partly written head
    c._coalesce()
    assert [p["packet"] for p in c._out_packet] == [b"xyz", b"e"]
    big = b"x" * (paho_io.COALESCE_MAX_BYTES - 10)
    c._out_packet.clear()
    c._out_packet.extend([pkt(0x32, 1, big), pkt(0x32, 1, b"y" * 20), pkt(0x32, 1, b"z")])
    c._coalesce()
    assert [len(p["packet"]) for p in c._out_packet] == [len(big), 20, 1]  # size cap
