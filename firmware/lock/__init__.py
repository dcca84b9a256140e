"""The lock's decisions and their loop: the fail-secure state machine, access policy, lock state kept
across restarts, the controller that runs attempts, and signed remote commands mapped onto the lock.

Pure logic (statemachine, policy) does no I/O; hardware lives in :mod:`firmware.hw`, models in
:mod:`firmware.vision`, keys and templates in :mod:`firmware.keystore` / :mod:`firmware.templates`.
"""
