"""Calibrate ``tinyml nas``'s image model for a target on real ELFs and QEMU runs.

Compiles the calibration candidates (tinyml.nas.calibration.calibration_archs) for the target,
reads what the linker map attributes to each kernel file, the static data and the measured
stack, profiles every layer's instructions in QEMU, fits the code-size and latency models and
writes them to ``tinyml/nas/data/<target>.json``; prints how well the fit reproduces each
calibration image's flash and the instructions of its inference.

    .venv/bin/python benchmarks/nas_calibrate.py [--target cortex-m4]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tinyml.nas.calibration import calibrate, data_path  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="cortex-m4")
    args = parser.parse_args()
    model = calibrate(args.target)
    path = data_path(args.target)
    path.write_text(json.dumps(model.to_json(), indent=1) + "\n")
    print(f"wrote {path}")
    for s in model.samples:
        measured = sum(layer["instructions"] for layer in s.get("layers", []))
        predicted = sum(model.latency.predict_call(layer["function"], layer["features"])
                        for layer in s.get("layers", []))
        print(f"{s['arch']}\n  flash {s['flash_bytes']:,} B (constants {s['constant_bytes']:,}"
              f" B), RAM {s['ram_bytes']:,} B (arena {s['arena_bytes']:,} B, stack "
              f"{s['stack_bytes']} B); layer instructions measured {measured:,}, model "
              f"{predicted:,.0f} ({100 * (predicted / measured - 1):+.1f} %)")
    print(f"code base {model.code_base_bytes:,} B, per call {model.per_call_bytes:.1f} B, "
          f"kernel files {model.file_bytes}, static RAM {model.static_ram_bytes} B, stack "
          f"{model.stack_bytes} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
