# FaceLock developer entry points.  Every target uses the virtual environment
# .venv/ at the repo root, created by `make install` when missing, so that
# `make test` and `make demo` each work as the only command on a fresh machine.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PKGS := build-essential pkg-config python3-venv python3-dev mosquitto swtpm swtpm-tools libtss2-dev tpm2-tools systemd postgresql \
	libpam0g-dev pamtester chromium
PYTEST_ARGS ?=
SANITIZE_DIR := build/sanitize

.PHONY: install system-deps test demo demo-central console-shots bench lint sanitize models clean pam install-pam wheel wheel-smoke wheel-demo install-system

install: $(STAMP)

$(STAMP): setup.py pyproject.toml $(wildcard native/*.c native/*.h native/*.py)
	@$(MAKE) --no-print-directory system-deps
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[dev,tpm,central]'
	@touch $@

# Debian packages the tests need (a real mosquitto, a real swtpm, the TSS for
# tpm2-pytss); installed only where missing, with sudo when not root.
system-deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# The wheel a Pi installs (models, example config and systemd unit inside), built from an sdist like a
# release; wheel-smoke installs it into a fresh venv (not editable) and runs facelockd --check-config and the
# sha256-verified models from outside the checkout, so nothing of the source tree is on the path; wheel-demo
# then runs the demo's scenario from it.
DIST := build/dist
SMOKE_VENV := build/wheel-venv
wheel: install
	rm -rf $(DIST) && mkdir -p build && $(PY) -m build --outdir $(DIST) > build/wheel.log 2>&1 || { tail -40 build/wheel.log; exit 1; }
	@ls $(DIST)/*.whl

wheel-smoke: wheel
	rm -rf $(SMOKE_VENV) && python3 -m venv $(SMOKE_VENV)
	$(SMOKE_VENV)/bin/pip install -q "$$(ls $(DIST)/*.whl)[demo]"
	cd /tmp && $(abspath $(SMOKE_VENV))/bin/facelockd --check-config \
	  -c "$$($(abspath $(SMOKE_VENV))/bin/python -c 'import firmware, pathlib; print(pathlib.Path(firmware.__file__).parent / "facelock.example.toml")')"
	cd /tmp && $(abspath $(SMOKE_VENV))/bin/python -c 'import firmware; assert "site-packages" in firmware.__file__, firmware.__file__'
	cd /tmp && $(abspath $(SMOKE_VENV))/bin/python -c 'from firmware.vision.manifest import Manifest; \
	  m = Manifest.load(); assert "share/facelock/models" in str(m.directory), m.directory; \
	  print("models verified:", [m.verified_path(n).name for n in m.models])'

# The demo's scenario from the installed wheel (outside the checkout).
wheel-demo: wheel-smoke
	cd /tmp && $(abspath $(SMOKE_VENV))/bin/python -m provisioning.demo

# As root: the facelock user (gpio, video), /opt/facelock venv from the wheel, /etc/facelock/facelock.toml,
# the device secret, /var/lib/facelock (0700), the hardened unit verified and enabled.  ROOT=dir stages it.
install-system: wheel
	WHEEL="$$(ls $(abspath $(DIST))/*.whl)" ROOT="$(ROOT)" bash provisioning/system/install-system.sh

demo: install
	$(PY) -m provisioning.demo

# The centre: SQLite, mosquitto, two doors; enroll -> push -> A grants, B refuses -> revoke -> A refuses.
demo-central: install
	$(PY) -m central.demo

# The console's end-to-end browser test (real PostgreSQL, mosquitto, a simulated door, Debian's chromium),
# writing a screenshot of each page into build/console-shots/.
console-shots: install
	rm -rf build/console-shots && mkdir -p build/console-shots
	FACELOCK_CONSOLE_SHOTS=$(abspath build/console-shots) $(PY) -m pytest tests/console/test_browser.py -q
	@ls build/console-shots

# One JSON object per line: crypto, vision, mqtt (own broker), runtime (own daemon), pki, api (own lock + socket),
# fleet (own broker, PostgreSQL, centre).
bench: install
	@for b in crypto vision mqtt runtime pki api fleet; do $(VENV)/bin/facelock bench $$b --json || exit 1; done

lint: install
	$(VENV)/bin/ruff check firmware provisioning central tests native models

# Rebuild the native module with ASan+UBSan into build/ and run the native
# tests against it (the instrumented module is loaded via FACELOCK_NATIVE_LIB).
sanitize: install
	rm -rf $(SANITIZE_DIR) && mkdir -p $(SANITIZE_DIR)
	FACELOCK_SANITIZE=1 $(PY) native/build_native.py $(SANITIZE_DIR) > $(SANITIZE_DIR)/build.log
	FACELOCK_NATIVE_LIB=$$(ls $(SANITIZE_DIR)/firmware/_facelock_native*.so 2>/dev/null || ls $(SANITIZE_DIR)/_facelock_native*.so) \
	LD_PRELOAD=$$(gcc -print-file-name=libasan.so):$$(gcc -print-file-name=libubsan.so) \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	$(PY) -m pytest -p no:cacheprovider tests/native tests/crypto tests/security/test_native_tables.py -q
	# the PAM module, instrumented, driven by pamtester (the ASan runtime preloaded into pamtester only)
	mkdir -p $(SANITIZE_DIR)/pam
	gcc $(PAM_CFLAGS) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-wrapv \
		-fno-sanitize-recover=all -o $(SANITIZE_DIR)/pam/pam_facelock.so native/pam/pam_facelock.c -lpam
	FACELOCK_PAM_MODULE=$(CURDIR)/$(SANITIZE_DIR)/pam/pam_facelock.so \
	FACELOCK_PAM_PRELOAD=$$(gcc -print-file-name=libasan.so):$$(gcc -print-file-name=libubsan.so) \
	$(PY) -m pytest -p no:cacheprovider tests/pam -q

models:
	$(MAKE) -C models

# pam_facelock.so (native/pam/): face login through the daemon's Face Security API.  `make install-pam`
# copies it next to the system's PAM modules (then see README "Face login (PAM)" for /etc/pam.d).
PAM_DIR := build/pam
PAM_CFLAGS := -std=c11 -O2 -fPIC -shared -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wconversion \
	-fvisibility=hidden -D_FORTIFY_SOURCE=2 -fstack-protector-strong
PAM_MODDIR ?= $(patsubst %/,%,$(dir $(firstword $(wildcard /lib/*/security/pam_unix.so /usr/lib/*/security/pam_unix.so \
	/lib/security/pam_unix.so /usr/lib/security/pam_unix.so))))

pam: $(PAM_DIR)/pam_facelock.so

$(PAM_DIR)/pam_facelock.so: native/pam/pam_facelock.c
	@$(MAKE) --no-print-directory system-deps
	mkdir -p $(PAM_DIR)
	gcc $(PAM_CFLAGS) -o $@ $< -lpam

install-pam: pam
	@test -n "$(PAM_MODDIR)" || { echo "cannot find the PAM module directory: set PAM_MODDIR=" >&2; exit 1; }
	install -D -m 0644 $(PAM_DIR)/pam_facelock.so $(PAM_MODDIR)/pam_facelock.so

clean:
	rm -rf build $(VENV) *.egg-info firmware/_facelock_native*.so firmware/_facelock_native.c .pytest_cache .hypothesis
