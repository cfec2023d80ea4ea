"""One server round, independent of Flower: validate the replies, aggregate, account.

:func:`aggregate_round` takes the global parameters and what came back from the devices (each
a :class:`Reply`: parameters and metrics, or the error or silence of a device) and returns the
new global parameters with the accounting the server logs, checkpoints and registers. A round
whose accepted updates number fewer than ``min_clients`` leaves phi unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tinyml.fleet.validation import check_update


@dataclass
class Reply:
    device_id: str
    params: np.ndarray | None = None      # None: the device failed or said nothing
    metrics: dict = field(default_factory=dict)
    error: str | None = None              # why there are no parameters


@dataclass
class RoundOutcome:
    round: int
    params: np.ndarray
    accepted: list[str]
    rejected: dict[str, str]              # device -> reason
    failed: dict[str, str]                # device -> error / timeout
    accuracy: float | None                # mean adapt-accuracy of the accepted devices
    epsilon: float
    aggregated: bool                      # False: too few accepted updates, phi unchanged

    def to_json(self) -> dict:
        return {"round": self.round, "accuracy": self.accuracy, "clients": len(self.accepted),
                "rejected": self.rejected, "failed": self.failed, "epsilon": self.epsilon,
                "aggregated": self.aggregated,
                "params_norm": float(np.linalg.norm(self.params.astype(np.float64)))}


def aggregate_round(phi: np.ndarray, replies: list[Reply], strategy, server_round: int, *,
                    max_update_norm: float, min_clients: int) -> RoundOutcome:
    accepted, weights, updates, accuracies = [], [], [], []
    rejected, failed = {}, {}
    for reply in replies:
        if reply.params is None:
            failed[reply.device_id] = reply.error or "no reply"
            continue
        reason = check_update(reply.params, phi, max_update_norm)
        if reason is not None:
            rejected[reply.device_id] = reason
            continue
        accepted.append(reply.device_id)
        updates.append(np.asarray(reply.params, np.float32).reshape(-1))
        weights.append(float(reply.metrics.get("num-examples", 1)))
        if "adapt-accuracy" in reply.metrics:
            accuracies.append(float(reply.metrics["adapt-accuracy"]))
    aggregated = len(accepted) >= max(1, min_clients)
    new_phi = strategy.step(phi, updates, weights, server_round) if aggregated else phi.copy()
    accuracy = float(np.mean(accuracies)) if accuracies else None
    return RoundOutcome(server_round, new_phi, accepted, rejected, failed, accuracy,
                        strategy.epsilon(server_round), aggregated)
