"""MCUNet's search-space optimization: pick the input resolution and width multiplier.

Why: under a memory budget a larger resolution or width is not free: it forces smaller
kernels, expansions and depths. MCUNet (Lin et al. 2020, section 3.1) observes that, among
sub-spaces, the one whose *fitting* models have the most MACs tends to hold the most accurate
ones, and MACs cost no training to compute. So: draw the same number of random genomes in
every (resolution, width) sub-space, ask the compiler which fit (:mod:`.constraints`), and
keep the sub-space whose fitting samples have the largest median MACs. A sub-space where
fewer than :data:`MIN_FIT_FRACTION` of the samples fit is passed over (evolution could hardly
find fitting children there), unless none has more.

The samples are drawn from one seeded generator, so a rerun (resume) checks the same
candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from tinyml.nas.constraints import ConstraintChecker, Fit
from tinyml.nas.search_space import Arch, SearchSpace

MIN_FIT_FRACTION = 0.25


@dataclass
class SubspaceScore:
    resolution: int
    width: float
    samples: int
    fitting: int
    median_macs: float            # of the fitting samples (0 when none fits)
    macs: list[int]               # of the fitting samples

    @property
    def fit_fraction(self) -> float:
        return self.fitting / max(self.samples, 1)

    def to_json(self) -> dict:
        return {"resolution": self.resolution, "width": self.width, "samples": self.samples,
                "fitting": self.fitting, "median_macs": self.median_macs}


def score_subspaces(space: SearchSpace, checker: ConstraintChecker, classes: int,
                    channels: int, samples: int, seed: int = 0,
                    on_check: Callable[[Arch, Fit, str], None] | None = None
                    ) -> list[SubspaceScore]:
    rng = np.random.default_rng(seed)
    genomes = [space.random_genome(rng) for _ in range(samples)]
    scores = []
    for resolution, width in space.subspaces():
        macs = []
        for genome in genomes:
            arch = space.arch(genome, resolution, width, classes, channels)
            fit = checker.check(arch)
            if on_check:
                on_check(arch, fit, "space")
            if fit.fits:
                macs.append(fit.macs)
        scores.append(SubspaceScore(resolution, width, samples, len(macs),
                                    float(np.median(macs)) if macs else 0.0, macs))
    return scores


def choose_subspace(scores: list[SubspaceScore]) -> SubspaceScore | None:
    """The sub-space with the largest median MACs among those where enough samples fit
    (among all where any fits, if none reaches the fraction); None when nothing fits."""
    candidates = [s for s in scores if s.fit_fraction >= MIN_FIT_FRACTION] or \
        [s for s in scores if s.fitting]
    if not candidates:
        return None
    return max(candidates, key=lambda s: (s.median_macs, s.fit_fraction, -s.resolution))
