"""The Flower ``ClientApp``: one per device, driving that device's firmware.

A SuperNode is started with ``--node-config 'workspace="DIR" device=N'`` (what ``tinyml
fleet`` does): its ClientApp opens device N's firmware (:func:`tinyml.learn.device.open_device`,
on the host or in QEMU) for each message, and for a TRAIN message

1. measures the global init: a few-shot episode from its local training data, ``adapt_steps``
   SGD steps from phi, accuracy on its held-out examples (the per-round metric);
2. sets phi again and trains locally: Reptile's episode or FedAvg's epoch
   (:mod:`tinyml.fleet.device_ops`);
3. replies with its parameters and metrics.

``test-fault`` in the node config turns a device into a faulty one for the robustness checks
(its reply is corrupted after honest local training): ``nan``, ``wrong-size`` or ``huge``.
"""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from tinyml.fleet import device_ops
from tinyml.fleet.run_config import client_device
from tinyml.fleet.workspace import Workspace

app = ClientApp()


def corrupt(params: np.ndarray, fault: str) -> np.ndarray:
    """The faulty devices of the robustness checks."""
    params = params.copy()
    if fault == "nan":
        params[0] = np.nan
        return params
    if fault == "wrong-size":
        return params[:-1]
    if fault == "huge":
        return params * 1e6
    return params


def local_round(workspace: Workspace, device: int, phi: np.ndarray, strategy: str,
                server_round: int) -> tuple[np.ndarray, dict]:
    """The device's whole round: metric, then local training. Returns (params, metrics)."""
    from tinyml.learn.device import open_device

    s = workspace.settings
    data = workspace.local_data(device)
    rng = np.random.default_rng([s.seed, server_round, device])
    with open_device(workspace.device_dir(device), runner=s.runner) as dev:
        sx, sy = device_ops.episode(data["x"], data["y"], s.shots, rng, swap_labels=False)
        adapted = device_ops.adapt_and_evaluate(dev, phi, sx, sy, data["query_x"],
                                                data["query_y"], steps=s.adapt_steps, lr=s.lr,
                                                rng=rng)
        if strategy == "reptile":
            out = device_ops.train_reptile(dev, phi, data["x"], data["y"], shots=s.reptile_shots,
                                           steps=s.reptile_steps, lr=s.lr, rng=rng)
        else:
            out = device_ops.train_fedavg(dev, phi, data["x"], data["y"],
                                          epochs=s.fedavg_epochs, lr=s.lr, rng=rng)
    metrics = {"num-examples": int(len(data["y"])), "steps": out.steps,
               "rejected-steps": out.rejected_steps}
    if adapted is not None:   # no held-out rows: no accuracy (the round's mean skips it)
        metrics["adapt-accuracy"] = adapted
    return out.params, metrics


@app.train()
def train(msg: Message, context: Context) -> Message:
    workspace, device = client_device(context)
    phi = msg.content["arrays"].to_numpy_ndarrays()[0].astype(np.float32)
    config = msg.content["config"]
    params, metrics = local_round(workspace, device, phi, str(config["strategy"]),
                                  int(config["server-round"]))
    fault = str(context.node_config.get("test-fault", ""))
    if fault:
        params = corrupt(params, fault)
    return Message(content=RecordDict({
        "arrays": ArrayRecord([params]),
        "metrics": MetricRecord(metrics),
        "device": ConfigRecord({"device-id": Workspace.device_id(device)}),
    }), reply_to=msg)
