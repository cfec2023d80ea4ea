"""``tinyml nas`` on scikit-learn's digits, against a scaled MobileNetV2 baseline.

1. ``tinyml nas --data digits --sram 32KB --flash 128KB --target cortex-m4 --time-budget 15m``:
   the firmware's measured RAM (ELF .data + .bss + stack measured in QEMU) <= 32 KB, flash
   <= 128 KB, int8 test accuracy (TFLM on the test split) >= 97 % and above the scaled
   MobileNetV2 baseline trained for the same epochs;
2. ``tinyml verify`` of the searched int8 model on cortex-m4 in QEMU, with the schedule the
   firmware uses: bit-exact against tinyml's reference and TFLM;
3. ``--sram 16KB``: a fitting model (checked the same way) or the one-line infeasible message.

    .venv/bin/python benchmarks/nas_digits.py [--out DIR] [--time-budget 15m]
        [--small-time-budget 10m]

Prints every figure and exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def tinyml(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinyml.cli", *args], capture_output=True,
                          text=True, cwd=REPO)


def patch_option(result: dict) -> str:
    """The --patch option reproducing the firmware's schedule."""
    patch = result["patch"]
    if patch is None:
        return "off"
    return f"{patch['split_index']}:{patch['grid'][0]}x{patch['grid'][1]}"


def search(out: Path, sram: str, budget: str) -> tuple[dict | None, str]:
    run = tinyml("nas", "--data", "digits", "--sram", sram, "--flash", "128KB", "--target",
                 "cortex-m4", "--time-budget", budget, "-o", str(out), "--json")
    if run.returncode != 0:
        return None, run.stderr.strip()
    return json.loads(run.stdout), ""


def check(name: str, ok: bool, failures: list[str]) -> None:
    print(f"  [{'ok' if ok else 'FAIL'}] {name}")
    if not ok:
        failures.append(name)


def verify(result: dict, failures: list[str]) -> dict:
    run = tinyml("verify", result["tflite_model"], "--target", "cortex-m4", "--samples", "20",
                 "--patch", patch_option(result), "--json")
    if run.returncode not in (0, 1):
        check(f"tinyml verify runs ({run.stderr.strip()})", False, failures)
        return {}
    report = json.loads(run.stdout)
    print(f"  verify: {report['mismatched_outputs']} / {report['samples']} mismatched against "
          f"{report['oracle']}, {report.get('instructions_per_inference', 0):,} instructions "
          f"per inference")
    check("bit-exact in QEMU (verify)", report["mismatched_outputs"] == 0, failures)
    return report


def describe(result: dict) -> None:
    keys = ("ram_bytes", "flash_bytes", "test_accuracy", "float_test_accuracy",
            "baseline_accuracy", "baseline_float_accuracy", "candidates_evaluated",
            "candidates_checked", "arch", "baseline_arch", "macs", "baseline_macs",
            "peak_sram_bytes", "peak_sram_bytes_layerwise", "patch", "stack_bytes",
            "estimated_ram_bytes", "estimated_flash_bytes", "instructions_per_inference",
            "predicted_instructions", "epochs", "seconds")
    for key in keys:
        print(f"  {key}: {result.get(key)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="keep the outputs here (default: a temporary directory)")
    parser.add_argument("--time-budget", default="15m")
    parser.add_argument("--small-time-budget", default="10m")
    args = parser.parse_args()
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tinyml-nas-bench-") as tmp:
        root = Path(args.out) if args.out else Path(tmp)

        print(f"tinyml nas --sram 32KB --flash 128KB --time-budget {args.time_budget}")
        result, error = search(root / "sram32k", "32KB", args.time_budget)
        if result is None:
            check(f"search succeeds ({error})", False, failures)
        else:
            describe(result)
            check("RAM <= 32 KB (ELF + stack)", result["ram_bytes"] <= 32 * 1024, failures)
            check("flash <= 128 KB (ELF)", result["flash_bytes"] <= 128 * 1024, failures)
            check("int8 test accuracy >= 97 %", result["test_accuracy"] >= 0.97, failures)
            check("above the scaled MobileNetV2 baseline",
                  result["baseline_accuracy"] is not None
                  and result["test_accuracy"] > result["baseline_accuracy"], failures)
            verify(result, failures)

        print(f"tinyml nas --sram 16KB --flash 128KB --time-budget {args.small_time_budget}")
        result, error = search(root / "sram16k", "16KB", args.small_time_budget)
        if result is None:
            print(f"  {error}")
            check("a clear one-line infeasible message",
                  error.startswith("tinyml: error: the budget is infeasible")
                  and len(error.splitlines()) == 1, failures)
        else:
            describe(result)
            check("RAM <= 16 KB (ELF + stack)", result["ram_bytes"] <= 16 * 1024, failures)
            check("flash <= 128 KB (ELF)", result["flash_bytes"] <= 128 * 1024, failures)
            verify(result, failures)
    print("FAILED: " + "; ".join(failures) if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
