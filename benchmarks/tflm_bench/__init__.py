"""Support of ``benchmarks/tflm_cortex_m.py``: TFLM (+ CMSIS-NN) built for a Cortex-M target
from source checkouts, run in QEMU beside tinyml.

- ``sources``: where the checkouts are and which of their files make the TFLM library.
- ``build``: compiles them with the target's flags into a cached static library and links one
  firmware image per model (``firmware_main.cc``, tinyml's startup/semihosting/counter C).
- ``compare``: pure functions: the firmware's console lines, TFLM operators matched to tinyml
  layers, ratios. Unit-tested without any checkout (``tests/test_tflm_bench.py``).
"""
