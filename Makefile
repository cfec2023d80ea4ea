# tinyml developer entry points. `make demo` and `make test` work on a fresh Debian machine:
# they install the system toolchain when missing and the Python packages into .venv/.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
APT_PACKAGES := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export TF_CPP_MIN_LOG_LEVEL := 3
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test test-all system-deps clean

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

$(STAMP): pyproject.toml | system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build out
