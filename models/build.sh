#!/usr/bin/env bash
# Build the device's TFLite models (see models/README.md): creates the build-time venv .venv-models
# (tensorflow-cpu 2.14.1 needs numpy<2, so it cannot share the device venv), then runs models/build.py.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-models
REQ=models/requirements-build.txt
if ! [ -f "$VENV/.installed" ] || ! cmp -s "$REQ" "$VENV/.installed"; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r "$REQ"
  cp "$REQ" "$VENV/.installed"
fi
exec "$VENV/bin/python" models/build.py "$@"
