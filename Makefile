# tinyml developer entry points. `make demo` and `make test` work on a fresh Debian machine:
# they install the system toolchain when missing and the Python packages into .venv/.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Every distribution the venv gets, at an exact version (`make lock` refreshes it). The stamp
# carries the lock's hash, so a changed lock rebuilds the venv from scratch.
LOCK := requirements.lock
LOCK_HASH := $(shell sha256sum $(LOCK) 2>/dev/null | cut -c1-16)
STAMP := $(VENV)/.installed-$(LOCK_HASH)
# `make test-latest`: the same suite against the newest releases pyproject.toml allows.
LATEST_VENV := .venv-latest
APT_PACKAGES := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export TF_CPP_MIN_LOG_LEVEL := 3
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test test-all test-latest lock system-deps clean

EXAMPLE := examples/tiny_kws_int8.tflite

# The bundled example end to end: inspect it, compile it for a Cortex-M4 (the firmware is
# built with arm-none-eabi-gcc and its size and stack measured), run the firmware in QEMU,
# then verify it there bit for bit against the reference interpreter and TFLM.
demo: $(STAMP)
	$(VENV)/bin/tinyml inspect $(EXAMPLE)
	$(VENV)/bin/tinyml compile $(EXAMPLE) --target cortex-m4 -o out/tiny_kws_m4
	$(MAKE) -s -C out/tiny_kws_m4 run
	$(VENV)/bin/tinyml verify $(EXAMPLE) --target cortex-m4 --samples 100

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m ""

# Drift found on purpose: a throw-away venv with the newest releases pyproject.toml allows
# (no lock), then the default suite. Not part of `make test`.
test-latest: system-deps
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade -e '.[test]'
	$(LATEST_VENV)/bin/python -m pip list --format=freeze > $(LATEST_VENV)/versions.txt
	TINYML_UNLOCKED=1 $(LATEST_VENV)/bin/python -m pytest -q

# Refresh the lock: resolve pyproject.toml's ranges (with the test extra) to the newest releases
# with pip-tools, which resolves as pip installs (Requires-Python upper bounds included), for
# this CPython 3.11. Review the diff, then run `make test`.
lock:
	test -x .venv-lock/bin/pip-compile || { $(PYTHON) -m venv .venv-lock && \
		.venv-lock/bin/pip install -q 'pip-tools>=7.4,<8'; }
	.venv-lock/bin/pip-compile -q --upgrade --extra test --strip-extras --allow-unsafe \
		--no-emit-index-url --no-emit-find-links -o $(LOCK) pyproject.toml

# The Arm toolchain and QEMU (for firmware builds and emulation), and venv support for Python.
system-deps:
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		echo "installing $(APT_PACKAGES)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi
	@if ! $(PYTHON) -c "import ensurepip, venv" >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq python3-venv >/dev/null; \
	fi

# The venv from the lock alone: its exact versions (setuptools included, which then builds
# tinyml's editable install without fetching anything unlocked), then tinyml with no deps.
$(STAMP): $(LOCK) pyproject.toml | system-deps
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-deps -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $(STAMP)

clean:
	rm -rf $(VENV) $(LATEST_VENV) .venv-lock build out
