"""Build a generated project natively and run it on samples.

The harness (``firmware/harness/host_harness.c``) streams samples through stdin/stdout in
binary, so a run of hundreds of samples is one process. ``sanitize`` builds with
AddressSanitizer and UndefinedBehaviorSanitizer, aborting on the first report: generated code
and kernels must be free of out-of-bounds accesses, overflow and misaligned loads.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from tinyml.errors import TinymlError
from tinyml.ir import Graph
from tinyml.paths import FIRMWARE_DIR
from tinyml.sim.streams import decode_outputs, encode_samples

SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                  "-fno-omit-frame-pointer", "-g"]
STRICT_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror"]


def build(project_dir: str | Path, *, sanitize: bool = False, cc: str | None = None,
          optimize: str = "-O2", junk: bool = True, trace_rows: bool = False) -> Path:
    """Compile the project and the host harness into ``project_dir/harness[_san]``. ``junk``:
    the harness fills the arena with junk before each sample (``TINYML_ARENA_JUNK``), so an
    overlapped layer that overwrites input it still reads computes a wrong result.
    ``trace_rows`` (``--input-stream rows`` projects): the harness prints each
    ``tinyml_input_rows`` request on stderr (``TINYML_INPUT_ROWS_TRACE``)."""
    project_dir = Path(project_dir)
    cc = cc or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise TinymlError("no host C compiler (cc, gcc or clang) found on PATH")
    sources = [project_dir / "model.c", project_dir / "weights.c",
               *sorted((project_dir / "kernels").glob("*.c")),
               FIRMWARE_DIR / "harness" / "host_harness.c"]
    binary = project_dir / ("harness_san" if sanitize else "harness")
    flags = (STRICT_FLAGS + [optimize] + (SANITIZE_FLAGS if sanitize else []) +
             (["-DTINYML_ARENA_JUNK"] if junk else []) +
             (["-DTINYML_INPUT_ROWS_TRACE"] if trace_rows else []))
    command = [cc, *flags, f"-I{project_dir}", f"-I{project_dir / 'kernels'}",
               *map(str, sources), "-o", str(binary), "-lm"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise TinymlError(f"host build failed: {result.stderr.strip().splitlines()[0] if result.stderr.strip() else result.returncode}")
    return binary


def run(binary: str | Path, graph: Graph, samples: list[list[np.ndarray]],
        timeout: float = 600) -> list[list[np.ndarray]]:
    """Run ``samples`` (each a list with one array per graph input) through the harness."""
    payload = encode_samples(graph, samples)
    result = subprocess.run([str(binary)], input=payload, capture_output=True, timeout=timeout)
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        raise TinymlError(f"generated code failed (exit {result.returncode}): "
                          f"{detail[0] if detail else 'no message'}")
    return decode_outputs(graph, result.stdout, len(samples))
