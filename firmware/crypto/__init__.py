"""Cryptography for FaceLock.

`container` is the recipe callers use (a versioned, authenticated image
container, like Fernet).  `hazmat` holds the primitives under it: the native
chaotic layer, its numpy reference, feature hashing.  Use hazmat only when
you know why the recipe does not fit.
"""
