"""Biometric keys from face embeddings via a fuzzy extractor (random projection, SimHash, BCH)."""

from firmware.biokey.errors import BiokeyError, HelperDataError, InvalidEmbeddingError, WrongFaceError
from firmware.biokey.extractor import BiokeyParams, HelperData, enroll, quantize, reproduce

__all__ = [
    "BiokeyError",
    "BiokeyParams",
    "HelperData",
    "HelperDataError",
    "InvalidEmbeddingError",
    "WrongFaceError",
    "enroll",
    "quantize",
    "reproduce",
]
