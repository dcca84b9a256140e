#!/usr/bin/env bash
# Install FaceLock on a Pi (or any Debian host) as a system service, from a built wheel.
#   make install-system               # builds the wheel, then runs this as root
#   ROOT=/some/dir make install-system  # the same into a staging root (tests; image builds)
# What it does, each step idempotent:
#   - the `facelock` system user, member of `gpio` and `video` (groups created when missing);
#   - a venv at $ROOT/opt/facelock with the wheel (not editable) and /usr/local/bin/facelockd, facelock links;
#   - $ROOT/etc/facelock/facelock.toml from the example config (an existing one is kept), 0640 root:facelock;
#   - the file keystore's device secret $ROOT/etc/facelock/device.secret (0600, facelock), made once;
#   - $ROOT/var/lib/facelock 0700 facelock:facelock;
#   - the hardened unit in $ROOT/etc/systemd/system, checked with `systemd-analyze verify`, then enabled.
set -euo pipefail
WHEEL=${WHEEL:?set WHEEL to the built facelock wheel}
ROOT=${ROOT:-}
EXTRAS=${EXTRAS:-tpm}
PY=${PYTHON:-python3}
venv="$ROOT/opt/facelock"
etc="$ROOT/etc/facelock"
state="$ROOT/var/lib/facelock"
units="$ROOT/etc/systemd/system"
bindir="$ROOT/usr/local/bin"

[ "$(id -u)" = 0 ] || { echo "install-system: run as root (it creates a user and system files)" >&2; exit 1; }

for g in gpio video; do getent group "$g" >/dev/null || groupadd --system "$g"; done
getent passwd facelock >/dev/null || useradd --system --user-group --home-dir /var/lib/facelock \
  --no-create-home --shell /usr/sbin/nologin facelock
usermod -a -G gpio,video facelock

[ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade "$WHEEL[$EXTRAS]" || "$venv/bin/pip" install -q --upgrade "$WHEEL"
mkdir -p "$bindir"
for exe in facelockd facelock; do ln -sfn "$venv/bin/$exe" "$bindir/$exe"; done
pkg=$("$venv/bin/python" -c 'import firmware, pathlib; print(pathlib.Path(firmware.__file__).parent)')

install -d -m 0750 -o root -g facelock "$etc"
[ -e "$etc/facelock.toml" ] || install -m 0640 -o root -g facelock "$pkg/facelock.example.toml" "$etc/facelock.toml"
install -d -m 0700 -o facelock -g facelock "$state"
FACELOCK_DEVICE_SECRET="$etc/device.secret" "$venv/bin/facelock" keys init-secret --owner facelock
FACELOCK_DATA_DIR="$state" "$venv/bin/facelockd" --check-config -c "$etc/facelock.toml"

install -d "$units"
sed -e "s#/usr/local/bin/facelockd#$bindir/facelockd#" -e "s#/etc/facelock/facelock.toml#$etc/facelock.toml#" \
  "$pkg/systemd/facelockd.service" > "$units/facelockd.service"
chmod 0644 "$units/facelockd.service"
systemd-analyze verify "$units/facelockd.service"
systemctl --root="${ROOT:-/}" enable facelockd.service
if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
echo "install-system: facelockd installed and enabled (start: systemctl start facelockd)"
