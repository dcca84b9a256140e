"""FaceLock management side: the `facelock` CLI and the central monitor."""
