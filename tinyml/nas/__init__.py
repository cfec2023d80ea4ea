"""Neural architecture search under SRAM and flash budgets, jointly with the patch schedule.

Why: a user with a 64 KB / 256 KB part and a dataset wants the most accurate model that
*compiles* for it. MCUNet/MCUNetV2 show that searching the architecture together with the
inference schedule, against the real memory model, beats scaling a stock network down.

How (``tinyml nas``, :func:`tinyml.nas.pipeline.run_nas`):

1. :mod:`.search_space`: MobileNetV2 inverted-residual stages; per block kernel size
   (3/5/7) and expansion (3/4/6), depth per stage, width multiplier, input resolution.
2. :mod:`.constraints`: every candidate is built as a float graph (:mod:`.ir_builder`),
   quantized by tinyml's quantizer, lowered and planned by the compiler with the patch search
   (exact peak SRAM), its flash = constants + a code-size model and its RAM = arena + static
   data + stack, both calibrated on real ELFs (:mod:`.calibration`). Misfits never train.
3. :mod:`.latency`: instructions per op from a linear model on MACs and elements per kernel,
   fitted on QEMU profiling runs (stored in ``data/<target>.json``).
4. :mod:`.space_optimization`: MCUNet's search-space optimization: the (resolution, width) whose fitting
   samples have the most MACs.
5. :mod:`.evolution`: evolutionary search with a few-epoch proxy; every candidate is logged
   (:mod:`.log`, JSON lines), and a rerun on the same directory resumes from the log.
6. :mod:`.pipeline`: final training, the scaled MobileNetV2 baseline, int8 export, the
   compiled firmware (sizes measured on the ELF) and the report (:mod:`.search_report`).
"""
