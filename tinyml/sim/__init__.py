"""Runners for generated code: the host (native build) and, for Cortex-M targets, QEMU."""
