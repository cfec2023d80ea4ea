"""Where tinyml finds the non-Python parts of the repository.

Templates, hand-written firmware and target descriptions live at the top of the repository
(``templates/``, ``firmware/``, ``targets/``) so that embedded engineers find them where they
expect; the package is installed in editable mode, so they sit beside it.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATES_DIR = REPO_ROOT / "templates"
FIRMWARE_DIR = REPO_ROOT / "firmware"
KERNELS_DIR = FIRMWARE_DIR / "kernels"
TARGETS_DIR = REPO_ROOT / "targets"
