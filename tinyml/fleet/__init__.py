"""A federated fleet of emulated devices on Flower: TinyReptile and FedAvg.

Each device is a trainable firmware (:mod:`tinyml.learn`: a frozen int8 backbone, a float32
head the device trains itself) driven by one Flower ``ClientApp``; the ``ServerApp`` learns
the head's parameters across the fleet.

- :mod:`.strategy`: the server steps, Reptile (phi += eps * (mean W - phi), eps annealed) and
  FedAvg (phi = weighted mean W);
- :mod:`.validation`: which client updates are accepted (finite, right size, bounded norm);
- :mod:`.checkpoint`: the global parameters and round on disk, so a restarted server resumes;
- :mod:`.registry`: the SQLite registry of devices and models (``tinyml fleet status``);
- :mod:`.device_ops`: what a device does in a round (local training, few-shot adaptation,
  evaluation), through :class:`tinyml.learn.device.LearningDevice`;
- :mod:`.client_app`, :mod:`.server_app`: the Flower apps, configured by :mod:`.run_config`
  under either engine;
- :mod:`.workspace`: a fleet's directory (model, per-device firmware, data, config);
- :mod:`.deployment`: SuperLink and SuperNodes as real processes on loopback, ``flwr run``;
- :mod:`.digits_pairs`: the benchmark's task set (2-way tasks over pairs of digits);
- :mod:`.fleet_report`: accuracy per round, plotted into an HTML report;
- :mod:`.command`: ``tinyml fleet`` and ``tinyml fleet status``.
"""
