"""The Flower ``ServerApp``: Reptile or FedAvg over the fleet, with checkpoints and a registry.

The round loop is its own rather than ``Strategy.start``'s, for what a fleet of small devices
needs: replies are pulled every half second until every sampled device answered or the round's
deadline passed (a dead device costs one deadline, and is not asked again: a device killed
mid-round does not stall the next rounds); updates are validated before aggregation
(:mod:`.rounds`); after every round the global parameters and round number are checkpointed
(:mod:`.checkpoint`), the model version and events go to the registry, and one JSON line to
the progress file ``tinyml fleet`` prints from. On start the server resumes from the
checkpoint of its run, if there is one.

Its run config (keys and where they come from) is read by :mod:`.run_config`.
"""

from __future__ import annotations

import json
import time

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from tinyml.errors import TinymlError
from tinyml.fleet.checkpoint import Checkpoint, load_checkpoint
from tinyml.fleet.registry import Registry
from tinyml.fleet.rounds import Reply, aggregate_round
from tinyml.fleet.run_config import run_config
from tinyml.fleet.strategy import make_strategy
from tinyml.fleet.workspace import Workspace

app = ServerApp()
POLL_SECONDS = 0.5


def wait_for_nodes(grid: Grid, expected: int, wait: float) -> list[int]:
    deadline = time.monotonic() + wait
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= expected or time.monotonic() > deadline:
            return nodes
        time.sleep(POLL_SECONDS)


def exchange(grid: Grid, messages: list[Message], timeout: float
             ) -> tuple[list[tuple[int, Message]], set[int]]:
    """Push, then pull until all replies are in or ``timeout`` passed. Returns (destination
    node, reply) pairs and the nodes that did not answer. Replies are matched to their node
    by the message they answer: an error the SuperLink writes for a node that went away
    comes from the SuperLink, not from that node."""
    ids = list(grid.push_messages(messages))
    dest = {mid: m.metadata.dst_node_id for mid, m in zip(ids, messages)}
    pending, replies = set(ids), []
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for m in grid.pull_messages(list(pending)):
            mid = m.metadata.reply_to_message_id
            if mid in pending:
                pending.discard(mid)
                replies.append((dest[mid], m))
        if pending:
            time.sleep(POLL_SECONDS)
    return replies, {dest[mid] for mid in pending}


def to_reply(node: int, message: Message, names: dict[int, str]) -> Reply:
    if message.has_error():
        return Reply(names.get(node, f"node-{node}"), error=f"error: {message.error.reason}")
    content = message.content
    device = str(content["device"]["device-id"]) if "device" in content else f"node-{node}"
    names[node] = device
    params = content["arrays"].to_numpy_ndarrays()[0]
    return Reply(device, params, dict(content["metrics"]))


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = run_config(context)
    workspace = Workspace(str(cfg["workspace"]))
    run_fleet(grid, workspace, strategy_name=str(cfg["strategy"]),
              rounds=int(cfg["num-rounds"]), run=str(cfg["run"]),
              expected_nodes=int(cfg["expected-nodes"]), node_wait=float(cfg["node-wait"]))


def resume_point(workspace: Workspace, run: str, strategy_name: str) -> Checkpoint:
    """The run's checkpoint, or round 0 at the initial parameters. A checkpoint whose
    parameters are not the size of this fleet's model (written by a fleet compiled with
    other settings) is refused: every device would reject it in every round."""
    initial = workspace.initial_params()
    path = workspace.checkpoint(run)
    checkpoint = load_checkpoint(path)
    if checkpoint is None or checkpoint.strategy != strategy_name:
        return Checkpoint(strategy_name, 0, initial)
    if checkpoint.params.size != initial.size:
        raise TinymlError(f"checkpoint {path} holds {checkpoint.params.size} parameters, the "
                          f"fleet's model has {initial.size} (written by another fleet); "
                          f"delete it or run with --fresh")
    return checkpoint


def run_fleet(grid: Grid, workspace: Workspace, *, strategy_name: str, rounds: int, run: str,
              expected_nodes: int, node_wait: float) -> None:
    s = workspace.settings
    strategy = make_strategy(strategy_name, rounds, s.eps_start, s.eps_end)
    progress = workspace.progress(run)
    progress.parent.mkdir(parents=True, exist_ok=True)
    try:
        checkpoint = resume_point(workspace, run, strategy_name)
    except TinymlError as exc:
        # The command following the progress file raises it (Fleet.run, run_simulation).
        _emit(progress, {"event": "error", "run": run, "message": str(exc)})
        raise
    phi = checkpoint.params
    _emit(progress, {"event": "start", "run": run, "strategy": strategy_name, "rounds": rounds,
                     "resumed_from": checkpoint.round})
    nodes = wait_for_nodes(grid, expected_nodes, node_wait)
    names: dict[int, str] = {}
    dead: set[int] = set()
    with Registry(workspace.registry) as registry:
        if checkpoint.round == 0:
            registry.record_model(run, 0, strategy_name, phi, None, 0, 0)
        for server_round in range(checkpoint.round + 1, rounds + 1):
            nodes = [n for n in sorted(grid.get_node_ids()) if n not in dead]
            config = ConfigRecord({"strategy": strategy_name, "server-round": server_round})
            messages = [Message(content=RecordDict({"arrays": ArrayRecord([phi]),
                                                    "config": config}),
                                message_type=MessageType.TRAIN, dst_node_id=node)
                        for node in nodes]
            answers, silent = exchange(grid, messages, s.round_timeout)
            replies = [to_reply(node, m, names) for node, m in answers]
            # A node the SuperLink answers for (it went away) is not asked again either.
            silent |= {node for node, m in answers
                       if m.has_error() and m.metadata.src_node_id != node}
            answered = {node for node, _ in answers}
            for node in silent:
                dead.add(node)
                if node not in answered:
                    replies.append(Reply(names.get(node, f"node-{node}"),
                                         error=f"no reply within {s.round_timeout:g} s"))
            outcome = aggregate_round(phi, replies, strategy, server_round,
                                      max_update_norm=s.max_update_norm,
                                      min_clients=s.min_clients)
            phi = outcome.params
            record = outcome.to_json()
            checkpoint.history.append(record)
            Checkpoint(strategy_name, server_round, phi, checkpoint.history).save(
                workspace.checkpoint(run))
            for device in outcome.accepted:
                registry.device_answered(device, server_round, True)
            for device, reason in outcome.rejected.items():
                registry.device_answered(device, server_round, False)
                registry.log_event(run, server_round, device, "rejected", reason)
            for device, reason in outcome.failed.items():
                registry.device_missing(run, device, server_round, reason)
            if not outcome.aggregated:
                registry.log_event(run, server_round, None, "skipped",
                                   f"{len(outcome.accepted)} accepted update(s), fewer than "
                                   f"min_clients={s.min_clients}")
            registry.record_model(run, server_round, strategy_name, phi, outcome.accuracy,
                                  len(outcome.accepted),
                                  len(outcome.rejected))
            _emit(progress, {"event": "round", "run": run, **record})
    np.save(workspace.root / f"{run}_final_params.npy", phi)
    _emit(progress, {"event": "done", "run": run, "rounds": rounds})


def _emit(path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
