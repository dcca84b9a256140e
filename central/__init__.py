"""facelock-central: the management service for a fleet of locks.

Device registry and onboarding, people / access groups / doors, per-door signed policy bundles pushed over
MQTT, and monitoring, with all state in one database (PostgreSQL for a fleet, SQLite embedded) through
SQLAlchemy 2 and Alembic.  Workers are stateless: any number of `facelock-central run` processes may share
one database and one broker (MQTT v5 shared subscriptions).

Imports go central -> provisioning -> firmware, never back: the lock never imports the centre.
"""
