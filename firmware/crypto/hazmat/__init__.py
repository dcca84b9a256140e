"""Hazardous primitives: correct only when composed the way firmware.crypto.container does."""
