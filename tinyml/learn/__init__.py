"""On-device learning: a trainable float32 head on a frozen int8 backbone.

- :mod:`.head`: which layers train (``--trainable last:K``), split off the graph, as floats;
- :mod:`.memory`: the training RAM, planned with the inference arena;
- :mod:`.codegen`: what ``learn.c`` and ``learn.json`` of a trainable project are made of;
- :mod:`.reference`: the numpy reference of the device's arithmetic (forward, backward, SGD,
  clipping, the NaN/Inf guard);
- :mod:`.device`: a compiled trainable firmware as a long-lived process (host or QEMU);
- :mod:`.stream`: ``tinyml run --learn``: a labelled stream through the device;
- :mod:`.learning_report`: accuracy over time, plotted into an HTML report.
"""
