"""The project's venv holds exactly the locked distributions.

``make demo`` and ``make test`` build ``.venv`` from ``requirements.lock`` (pip-tools' resolution
of pyproject.toml's ranges), so a new user and CI run the versions this suite last passed
with. This test reads the lock and the venv's installed distributions and fails on any
difference: a version that moved, a locked distribution missing, or one installed that the lock
does not name. ``make test-latest`` runs the suite against the newest releases instead
(``TINYML_UNLOCKED=1``), where this comparison does not apply.
"""

from __future__ import annotations

import os
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
# Not in the lock: the project itself (installed editable, without dependencies) and pip, the
# installer the venv is created with.
UNLOCKED = {"tinyml", "pip"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)\s*(?:;(.*))?$")


def locked_versions(text: str) -> dict[str, str]:
    """``{name: version}`` for every pin of a pip-tools lock whose marker holds here."""
    pins = {}
    for line in text.splitlines():
        match = PIN.match(line.strip())
        if match is None:
            continue
        name, version, marker = match.groups()
        if marker and not Marker(marker).evaluate():
            continue
        pins[canonicalize_name(name)] = version
    return pins


def installed_versions() -> dict[str, str]:
    return {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}


def test_lock_parser_reads_pins_and_markers():
    text = ("# header\nNumPy==2.4.6\n    # via tinyml\nfoo-bar==1.0 ; sys_platform == 'nope'\n"
            "baz_qux==3.1.post2 ; python_version >= '3'\n")
    assert locked_versions(text) == {"numpy": "2.4.6", "baz-qux": "3.1.post2"}


def test_venv_matches_the_lock():
    if os.environ.get("TINYML_UNLOCKED"):
        pytest.skip("make test-latest: the venv holds the newest releases, not the lock")
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip(f"not running in the project's .venv ({sys.prefix}): `make test` builds it "
                    f"from the lock")
    locked = locked_versions(LOCK.read_text())
    installed = {n: v for n, v in installed_versions().items() if n not in UNLOCKED}
    assert len(locked) > 50, "the lock names the transitive dependencies too"
    moved = {n: (locked[n], v) for n, v in installed.items() if n in locked and locked[n] != v}
    missing = sorted(set(locked) - set(installed))
    extra = sorted(set(installed) - set(locked))
    assert not moved and not missing and not extra, (
        f"venv differs from {LOCK.name}: versions (locked, installed) {moved}; "
        f"locked but not installed {missing}; installed but not locked {extra}")
