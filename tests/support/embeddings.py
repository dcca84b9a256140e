"""Generated face embeddings: random unit vectors, and new "captures" at a chosen cosine."""

from __future__ import annotations

import numpy as np

DIM = 192


def unit(rng: np.random.Generator, d: int = DIM) -> np.ndarray:
    v = rng.standard_normal(d)
    return (v / np.linalg.norm(v)).astype(np.float32)


def near(rng: np.random.Generator, x: np.ndarray, cos: float) -> np.ndarray:
    """A unit vector at exactly this cosine to x: a new capture of the same face."""
    z = rng.standard_normal(x.size)
    z -= z.dot(x) * x
    z /= np.linalg.norm(z)
    return (cos * x + np.sqrt(1 - cos**2) * z).astype(np.float32)
