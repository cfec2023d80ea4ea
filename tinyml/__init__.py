"""tinyml: deploy trained neural networks to microcontrollers.

The pipeline: frontends -> ir -> quantize -> passes -> schedule -> codegen, with a bit-exact
numpy int8 reference (``tinyml.reference``) as the oracle for everything generated.
"""

__version__ = "0.1.0"
