"""The server steps of the fleet: Reptile and FedAvg over flat float32 parameter vectors.

Both receive the same thing from the devices, their parameters W_i after local training from
the global phi. FedAvg replaces phi with the mean of the W_i weighted by each device's number
of examples: the one model that fits every device's data. Reptile (Nichol et al. 2018; on
microcontrollers, TinyReptile) moves phi by phi <- phi + eps * (mean W_i - phi), with eps
annealed linearly from ``eps_start`` to ``eps_end`` over the rounds (an outer step above 1
extrapolates past the mean early on; the fleet uses 3 -> 0, measured best of 1, 2 and 3 on
the digit-pair tasks over four seeds, see benchmarks/fleet_reptile.py): what it
learns is an initialization from which a device adapts to its own task in a few steps, not a
model that fits all tasks at once. With eps = 1 and the same local work Reptile *is* FedAvg;
the fleet's Reptile clients differ in their local work too (few-shot episodes with freshly
drawn labels, see :mod:`tinyml.fleet.device_ops`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyml.errors import TinymlError

STRATEGIES = ("reptile", "fedavg")


def weighted_mean(updates: list[np.ndarray], weights: list[float] | None = None) -> np.ndarray:
    """Mean of the update vectors (float64 accumulation), weighted if ``weights`` given."""
    if not updates:
        raise TinymlError("no updates to aggregate")
    stacked = np.stack([np.asarray(u, np.float64) for u in updates])
    w = np.ones(len(updates)) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (len(updates),) or np.any(w < 0) or w.sum() <= 0:
        raise TinymlError(f"aggregation weights {w.tolist()}: expected one positive weight "
                          f"per update")
    return (w[:, None] * stacked).sum(axis=0) / w.sum()


@dataclass
class Reptile:
    """phi <- phi + eps_t * (mean_i W_i - phi); eps_t linear from eps_start (first round) to
    eps_end (after the last)."""
    rounds: int
    eps_start: float = 1.0
    eps_end: float = 0.0
    name: str = "reptile"

    def epsilon(self, server_round: int) -> float:
        """eps of round ``server_round`` (1-based)."""
        if not 1 <= server_round <= self.rounds:
            raise TinymlError(f"round {server_round} outside 1..{self.rounds}")
        frac = (server_round - 1) / self.rounds
        return self.eps_start + (self.eps_end - self.eps_start) * frac

    def step(self, phi: np.ndarray, updates: list[np.ndarray], weights: list[float],
             server_round: int) -> np.ndarray:
        # Reptile averages the devices' end points without weighting by data size: every task
        # counts once, as in the meta-learning objective.
        mean = weighted_mean(updates)
        eps = self.epsilon(server_round)
        phi = np.asarray(phi, np.float64)
        return (phi + eps * (mean - phi)).astype(np.float32)


@dataclass
class FedAvg:
    """phi <- sum_i n_i W_i / sum_i n_i (McMahan et al. 2017)."""
    rounds: int
    name: str = "fedavg"

    def epsilon(self, server_round: int) -> float:
        return 1.0

    def step(self, phi: np.ndarray, updates: list[np.ndarray], weights: list[float],
             server_round: int) -> np.ndarray:
        return weighted_mean(updates, weights).astype(np.float32)


def make_strategy(name: str, rounds: int, eps_start: float = 1.0, eps_end: float = 0.0):
    if name == "reptile":
        return Reptile(rounds, eps_start, eps_end)
    if name == "fedavg":
        return FedAvg(rounds)
    raise TinymlError(f"--strategy '{name}': expected one of {', '.join(STRATEGIES)}")
