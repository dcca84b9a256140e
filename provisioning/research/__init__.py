"""Research, training and evaluation code: never imported by the device runtime (a test walks its imports).

Metrics (ROC, FAR/TAR), liveness evaluation with its feature cache, synthetic attack sequences and PAD
training run on a development machine or at model-build time, on data the lock never holds.
"""
