"""The Face Security API: applications and logins on the device ask the lock "is this person here, alive,
and allowed?" over a local Unix socket (``/run/facelock/api.sock``).

Modules: ``protocol`` (the versioned JSON wire format, pure), ``config`` (the ``[api]`` section),
``access`` (peer credentials -> rules, rate limits; pure), ``attempts`` (what a caller learns from the
decision of its attempt; pure), ``service`` (verify / status / users, records), ``server`` (the socket), ``lockport`` (binding
to the running lock's port), ``client`` (the Python client that ``facelock verify`` uses).  The C PAM module in
``native/pam/`` speaks the same protocol.
"""
