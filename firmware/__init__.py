"""FaceLock device runtime: camera -> face -> liveness -> match -> lock."""

__version__ = "0.1.0"
