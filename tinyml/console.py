"""What the commands print on the terminal: one look for every summary table.

The command line (:mod:`tinyml.cli`) and the library's own command drivers (``tinyml run
--learn`` in :mod:`tinyml.learn.runner`, ``tinyml nas``) print the same kind of summary: a
titled table of (figure, value, what it means) rows. Keeping it here lets library code print
one without importing the command line, which imports library code.

Every cell goes in as ``rich.text.Text``: names come from the user's files and may contain
``[...]``, which rich would otherwise parse as markup. rich is imported on use, so importing
this module costs nothing.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager


def print_report(title: str, rows: list[tuple[str, str, str]]) -> None:
    """A titled table of (figure, value, note) rows on stdout; long cells fold."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title), title_justify="left", show_header=False)
    for _ in range(3):
        table.add_column(overflow="fold")
    for row in rows:
        table.add_row(*(Text(str(cell)) for cell in row))
    Console(file=sys.stdout).print(table)


@contextmanager
def native_stderr_silenced():
    """TensorFlow's C++ runtime writes start-up notes to file descriptor 2 (not through
    Python) while training runs in this process; they would break the one-line-error and
    clean-stderr contract. Python's own ``sys.stderr`` (progress bar, errors) keeps the real
    stderr; descriptor 2 goes to /dev/null until the command ends. ``TINYML_DEBUG`` keeps
    everything."""
    if os.environ.get("TINYML_DEBUG"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    python_stderr = sys.stderr
    sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1)
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr.close()
        sys.stderr = python_stderr
        os.dup2(saved, 2)
        os.close(saved)
