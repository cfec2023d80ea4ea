"""Where the Flower apps find their run: one reading of the configuration for both apps.

The two engines hand the configuration over differently. Under the deployment engine
(:mod:`.deployment`) ``flwr run --run-config`` gives the ServerApp its run config and each
SuperNode's ``--node-config`` names its workspace and device. Flower's simulation engine
(:mod:`.simulation`) takes no run config, so ``tinyml fleet --simulation`` passes it in the
environment variable :data:`RUN_ENV` (Ray's local workers inherit it), and a virtual node
knows only its ``partition-id``, which is its device index.

Run config keys: ``workspace`` (the fleet directory), ``strategy`` (reptile|fedavg),
``num-rounds``, ``run`` (checkpoint and registry name), ``expected-nodes`` and ``node-wait``
(how long the server waits for them to connect).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager

from tinyml.fleet.workspace import Workspace

#: The run config of a simulated run (JSON), for apps that get none from Flower.
RUN_ENV = "TINYML_FLEET_RUN"


@contextmanager
def simulated_run_config(config: dict):
    """Publish ``config`` to the apps of a simulated run while the block runs."""
    os.environ[RUN_ENV] = json.dumps(config)
    try:
        yield
    finally:
        os.environ.pop(RUN_ENV, None)


def run_config(context) -> dict:
    """The run config of a Flower ``Context``: Flower's own, or a simulated run's."""
    return dict(context.run_config) or json.loads(os.environ.get(RUN_ENV, "{}"))


def client_device(context) -> tuple[Workspace, int]:
    """The workspace and device index a ClientApp serves: from its SuperNode's node config
    (deployment), else from the run config and its ``partition-id`` (simulation)."""
    node = context.node_config
    workspace = node.get("workspace") or run_config(context)["workspace"]
    device = node["device"] if "device" in node else node["partition-id"]
    return Workspace(str(workspace)), int(device)
