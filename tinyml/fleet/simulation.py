"""``tinyml fleet --simulation``: the same ServerApp and ClientApp on Flower's simulation engine.

Flower's simulation engine runs the SuperNodes as Ray actors in one process tree instead of
SuperLink/SuperNode processes; the apps do not change (each virtual node's ``partition-id``
is its device index). Ray is an optional extra: ``pip install 'tinyml[fleet-sim]'``.
"""

from __future__ import annotations

import importlib.util

from tinyml.errors import TinymlError
from tinyml.fleet.run_config import simulated_run_config
from tinyml.fleet.workspace import Workspace


def run_simulation(ws: Workspace, strategy: str, rounds: int, run: str, *, on_round=None
                   ) -> list[dict]:
    if importlib.util.find_spec("ray") is None:
        raise TinymlError("--simulation needs Flower's simulation engine (Ray): pip install "
                          "'tinyml[fleet-sim]', or drop --simulation to use the deployment "
                          "engine")
    from flwr.simulation import run_simulation as flower_simulation

    from tinyml.fleet.client_app import app as client_app
    from tinyml.fleet.server_app import app as server_app

    seen = len(ws.read_progress(run))
    overrides = {"workspace": str(ws.root), "strategy": strategy, "num-rounds": rounds,
                 "run": run, "expected-nodes": ws.settings.devices, "node-wait": 120.0}
    # Flower's run_simulation takes no run config: the apps read it from the environment.
    with simulated_run_config(overrides):
        flower_simulation(server_app=server_app, client_app=client_app,
                          num_supernodes=ws.settings.devices,
                          backend_config={"client_resources": {"num_cpus": 1}})
    records = ws.read_progress(run)[seen:]
    if on_round is not None:
        for record in records:
            if record["event"] == "round":
                on_round(record)
    errors = [r["message"] for r in records if r["event"] == "error"]
    if errors:
        raise TinymlError(errors[0])
    if not any(r["event"] == "done" for r in records):
        raise TinymlError(f"the simulated run '{run}' ended before its last round")
    return records
