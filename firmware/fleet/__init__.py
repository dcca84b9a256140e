"""The lock's side of the centre (facelock-central): its template key, policy bundles, the door agent.

`sealing` (HPKE to the door's X25519 key), `bundle` (the signed, versioned per-door policy: pure parsing
and verification), `store` (the applied bundle on disk, crash-safe, rollback-proof), `agent` (MQTT:
receive, verify, apply, acknowledge), `doorkey` (the X25519 key in the keystore and the enrollment CSR).
"""
