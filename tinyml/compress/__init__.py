"""Compression of Keras models before quantization: ``tinyml prune``.

- :mod:`.gradual_pruning`: Zhu & Gupta's gradual magnitude pruning, unstructured, per layer,
  with masks that keep pruned weights exactly zero (so int8 quantization keeps them zero).
- :mod:`.channel_pruning`: structured pruning of whole output channels; the network is rebuilt
  narrower, which cuts MACs, activations and weights for any runtime, dense kernels included.
- :mod:`.keras_graph`: the layer graph both walk; :mod:`.costs`: parameters and MACs;
  :mod:`.finetune`: data, training and accuracy; :mod:`.command`: the CLI and its report.

TensorFlow and Keras are imported only when a function needs them, so importing this package
(the CLI registers ``prune`` on every call) costs nothing.
"""
