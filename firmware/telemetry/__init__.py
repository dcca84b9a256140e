"""Device telemetry: the event schema, the durable outbox, the MQTT v5 client, commands, HA discovery.

The modules are small on purpose: `events` (schema shared with the central
monitor), `outbox` (SQLite, committed before publish), `commands` (Ed25519 +
freshness + nonce), `ha_discovery`, `topics`, `config` and `client` (the only
module that touches the network).
"""
