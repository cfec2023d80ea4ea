"""What the test modules share, so that no test module imports another.

- :mod:`.oracles`: LiteRT and TFLM interpreters, the independent oracles;
- :mod:`.tflite_zoo`: small Keras models converted (and cached) by the TFLite converter;
- :mod:`.int8_op_models`, :mod:`.nonlinear_models`: the int8 op zoo and the nonlinear-op
  models checked against TFLM, with their flatbuffer edits;
- :mod:`.onnx_cases`, :mod:`.onnx_models`: ONNX graphs and their onnxruntime values;
- :mod:`.quantize_oracles`: the TFLite converter and TFLM as oracles of the quantizer;
- :mod:`.c_harness`, :mod:`.graph_builder`: the C kernel harness (drivers built with the
  sanitizers) and one-op int8 graphs with random quantization;
- :mod:`.dsp_harness`: the same harness for the Cortex-M DSP kernels, on the host through
  ``acle_emulation.h``.
"""
