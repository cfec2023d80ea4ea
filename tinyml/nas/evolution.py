"""Evolutionary search inside the chosen (resolution, width) sub-space, as MCUNet does.

A population of fitting genomes is trained with a cheap proxy (a few epochs, accuracy on a
held-out part of the training split; :func:`tinyml.nas.training.train`). Each generation keeps
the best :attr:`Evolution.parents` and refills the population with mutants and crossovers of
them; every child is checked by the compiler first (:mod:`.constraints`) and redrawn while it
does not fit, so no misfit is ever trained. The search stops at a deadline (the next
training must be expected to end before it) or after ``generations``.

Ranking: proxy accuracy, then lower proxy loss (a few epochs often leave several candidates
at the same accuracy on a small validation set).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from tinyml.nas.constraints import ConstraintChecker, Fit
from tinyml.nas.search_space import Arch, Genome, SearchSpace

#: Draws before giving up on finding a fitting genome for one population slot.
MAX_DRAWS = 60


@dataclass
class Candidate:
    arch: Arch
    genome: Genome
    fit: Fit
    accuracy: float
    loss: float
    seconds: float
    generation: int
    epoch_seconds: float = 0.0

    def rank(self) -> tuple:
        return (self.accuracy, -self.loss)


Evaluate = Callable[[Arch, Genome, Fit, int], dict]


class Evolution:
    def __init__(self, space: SearchSpace, resolution: int, width: float, classes: int,
                 channels: int, checker: ConstraintChecker, evaluate: Evaluate,
                 seed: int = 0, population: int = 8, parents: int = 3,
                 mutation_rate: float = 0.2,
                 on_check: Callable[[Arch, Fit, str], None] | None = None):
        self.space, self.resolution, self.width = space, resolution, width
        self.classes, self.channels = classes, channels
        self.checker, self.evaluate = checker, evaluate
        self.rng = np.random.default_rng(seed)
        self.population, self.parents = population, parents
        self.mutation_rate = mutation_rate
        self.on_check = on_check
        self.evaluated: dict[str, Candidate] = {}
        self.trained_seconds: list[float] = []

    def _arch(self, genome: Genome) -> Arch:
        return self.space.arch(genome, self.resolution, self.width, self.classes, self.channels)

    def _fitting(self, draw: Callable[[], Genome]) -> tuple[Genome, Arch, Fit] | None:
        for _ in range(MAX_DRAWS):
            genome = draw()
            arch = self._arch(genome)
            fit = self.checker.check(arch)
            if self.on_check:
                self.on_check(arch, fit, "evolution")
            if fit.fits:
                return genome, arch, fit
        return None

    def _expected_seconds(self) -> float:
        return float(np.mean(self.trained_seconds)) if self.trained_seconds else 0.0

    def _train(self, genome: Genome, arch: Arch, fit: Fit, generation: int,
               deadline: float) -> Candidate | None:
        key = arch.key()
        if key in self.evaluated:
            return self.evaluated[key]
        if time.monotonic() + self._expected_seconds() > deadline:
            return None
        result = self.evaluate(arch, genome, fit, generation)
        if not result.get("resumed"):
            self.trained_seconds.append(result["seconds"])
        candidate = Candidate(arch, genome, fit, result["accuracy"], result["loss"],
                              result["seconds"], generation, result.get("epoch_seconds", 0.0))
        self.evaluated[key] = candidate
        return candidate

    def run(self, deadline: float, generations: int = 1000,
            start: Genome | None = None) -> list[Candidate]:
        """All candidates trained, best first. ``start``: a genome for the first population
        (e.g. the smallest, known to fit)."""
        population: list[Candidate] = []
        seeds = [start] if start is not None else []
        for i in range(self.population):
            found = (self._fitting(lambda: seeds.pop()) if seeds else None) or \
                self._fitting(lambda: self.space.random_genome(self.rng))
            if found is None:
                break
            candidate = self._train(*found, 0, deadline)
            if candidate is None:
                return self.ranked()
            population.append(candidate)
        for generation in range(1, generations):
            if not population:
                break
            parents = sorted(population, key=Candidate.rank, reverse=True)[:self.parents]
            children: list[Candidate] = list(parents)
            while len(children) < self.population:
                if self.rng.random() < 0.5 or len(parents) < 2:
                    parent = parents[int(self.rng.integers(len(parents)))]
                    draw = lambda p=parent: self.space.mutate(p.genome, self.rng,  # noqa: E731
                                                              self.mutation_rate)
                else:
                    a, b = self.rng.choice(len(parents), 2, replace=False)
                    draw = lambda a=parents[a], b=parents[b]: self.space.mutate(  # noqa: E731
                        self.space.crossover(a.genome, b.genome, self.rng), self.rng,
                        self.mutation_rate / 2)
                found = self._fitting(draw)
                if found is None:
                    break
                candidate = self._train(*found, generation, deadline)
                if candidate is None:
                    return self.ranked()
                children.append(candidate)
            population = children
        return self.ranked()

    def ranked(self) -> list[Candidate]:
        return sorted(self.evaluated.values(), key=Candidate.rank, reverse=True)
