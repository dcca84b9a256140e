"""The central monitor: MQTT v5 shared-subscription consumer, SQLite store, alert rules, notifications."""
