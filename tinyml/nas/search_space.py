"""The search space: MobileNetV2 inverted-residual stages, MCUNet-style.

Why this space: inverted residual blocks (1x1 expansion, KxK depthwise, 1x1 projection, a
residual connection when shapes allow) are what MCUNet searches, and every op they need has
an int8 kernel here and a patch-capable one in the first stages (:mod:`tinyml.schedule.patches`).

An :class:`Arch` is the explicit network (channels already scaled, every block's kernel and
expansion), so one builder serves both the searched models and the MobileNetV2 baseline
(:func:`mobilenet_v2`). A :class:`Genome` is what the search varies inside one
(resolution, width) sub-space: the depth of each stage and, per block slot, kernel size and
expansion ratio (slots beyond a stage's depth are inactive genes, kept so that a mutation of
the depth brings back a meaningful block).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from tinyml.errors import TinymlError


@dataclass(frozen=True)
class Block:
    kernel: int     # depthwise kernel size
    expand: int     # expansion ratio; 1: no expansion convolution (MobileNetV2's first block)


@dataclass(frozen=True)
class Stage:
    channels: int   # output channels of every block of the stage
    stride: int     # stride of the stage's first block
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Arch:
    """A network: stem conv 3x3 (stride 2), stages of inverted residual blocks, a 1x1 head
    conv, global average pooling, a fully connected classifier and a softmax."""

    resolution: int
    channels_in: int
    stem: int
    stages: tuple[Stage, ...]
    head: int
    classes: int
    width: float = 1.0
    family: str = "nas"

    @property
    def depth(self) -> int:
        return sum(len(s.blocks) for s in self.stages)

    def key(self) -> str:
        """A short unique text for the architecture (log and cache key)."""
        stages = "-".join(f"{s.channels}s{s.stride}[" + ",".join(
            f"k{b.kernel}e{b.expand}" for b in s.blocks) + "]" for s in self.stages)
        return (f"{self.family}:r{self.resolution}c{self.channels_in}:stem{self.stem}:"
                f"{stages}:head{self.head}:n{self.classes}")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Arch":
        stages = tuple(Stage(s["channels"], s["stride"], tuple(Block(**b) for b in s["blocks"]))
                       for s in data["stages"])
        return cls(**{**data, "stages": stages})


def make_divisible(value: float, divisor: int = 8) -> int:
    """MobileNetV2's channel rounding: a multiple of ``divisor``, never below 90 % of
    ``value`` (so narrow widths do not lose whole groups of channels)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@dataclass(frozen=True)
class StageChoice:
    base_channels: int
    stride: int
    min_depth: int
    max_depth: int
    fixed_expand: int | None = None   # the first stage: depthwise + projection only


@dataclass(frozen=True)
class Genome:
    """The searched genes inside one (resolution, width) sub-space."""

    depths: tuple[int, ...]
    kernels: tuple[tuple[int, ...], ...]      # per stage, per slot (max_depth slots)
    expands: tuple[tuple[int, ...], ...]

    def to_json(self) -> dict:
        return {"depths": list(self.depths), "kernels": [list(k) for k in self.kernels],
                "expands": [list(e) for e in self.expands]}

    @classmethod
    def from_json(cls, data: dict) -> "Genome":
        return cls(tuple(data["depths"]), tuple(tuple(k) for k in data["kernels"]),
                   tuple(tuple(e) for e in data["expands"]))


@dataclass(frozen=True)
class SearchSpace:
    """Choices of the search. The stage layout suits small images (16 to 32 px after the
    stride-2 stem, three more stride-2 stages end at 1 to 2 px)."""

    resolutions: tuple[int, ...] = (16, 20, 24, 28, 32)
    widths: tuple[float, ...] = (0.25, 0.35, 0.5, 0.75, 1.0)
    kernels: tuple[int, ...] = (3, 5, 7)
    expands: tuple[int, ...] = (3, 4, 6)
    stem: int = 16
    stages: tuple[StageChoice, ...] = field(default_factory=lambda: (
        StageChoice(16, 1, 1, 1, fixed_expand=1),
        StageChoice(24, 2, 1, 3),
        StageChoice(40, 2, 1, 3),
        StageChoice(80, 2, 1, 3),
        StageChoice(96, 1, 0, 2),
    ))
    head: int = 160

    # ---- genomes ------------------------------------------------------------------------------

    def random_genome(self, rng: np.random.Generator) -> Genome:
        depths, kernels, expands = [], [], []
        for choice in self.stages:
            depths.append(int(rng.integers(choice.min_depth, choice.max_depth + 1)))
            kernels.append(tuple(int(rng.choice(self.kernels)) for _ in range(choice.max_depth)))
            expands.append(tuple(choice.fixed_expand or int(rng.choice(self.expands))
                                 for _ in range(choice.max_depth)))
        return Genome(tuple(depths), tuple(kernels), tuple(expands))

    def smallest_genome(self) -> Genome:
        """Fewest blocks, smallest kernels and expansions: the least memory and flash."""
        return Genome(tuple(c.min_depth for c in self.stages),
                      tuple((min(self.kernels),) * c.max_depth for c in self.stages),
                      tuple((c.fixed_expand or min(self.expands),) * c.max_depth
                            for c in self.stages))

    def mutate(self, genome: Genome, rng: np.random.Generator, rate: float = 0.15) -> Genome:
        """Each gene is redrawn with probability ``rate``; at least one changes."""
        while True:
            fresh = self.random_genome(rng)
            depths = tuple(f if rng.random() < rate else g
                           for g, f in zip(genome.depths, fresh.depths))
            kernels = tuple(tuple(f if rng.random() < rate else g for g, f in zip(gs, fs))
                            for gs, fs in zip(genome.kernels, fresh.kernels))
            expands = tuple(tuple(f if rng.random() < rate else g for g, f in zip(gs, fs))
                            for gs, fs in zip(genome.expands, fresh.expands))
            child = Genome(depths, kernels, expands)
            if self.active(child) != self.active(genome):
                return child

    def crossover(self, a: Genome, b: Genome, rng: np.random.Generator) -> Genome:
        """Each stage's depth and each slot's genes from either parent."""
        pick = lambda x, y: x if rng.random() < 0.5 else y  # noqa: E731
        return Genome(tuple(pick(x, y) for x, y in zip(a.depths, b.depths)),
                      tuple(tuple(pick(x, y) for x, y in zip(ks, ls))
                            for ks, ls in zip(a.kernels, b.kernels)),
                      tuple(tuple(pick(x, y) for x, y in zip(es, fs))
                            for es, fs in zip(a.expands, b.expands)))

    def active(self, genome: Genome) -> tuple:
        """The genes that shape the network (inactive slots excluded)."""
        return tuple((d, k[:d], e[:d]) for d, k, e in
                     zip(genome.depths, genome.kernels, genome.expands))

    # ---- networks -----------------------------------------------------------------------------

    def arch(self, genome: Genome, resolution: int, width: float, classes: int,
             channels_in: int = 1) -> Arch:
        stages = []
        for choice, depth, kernels, expands in zip(self.stages, genome.depths, genome.kernels,
                                                   genome.expands):
            if depth == 0:
                continue
            blocks = tuple(Block(k, e) for k, e in zip(kernels[:depth], expands[:depth]))
            stages.append(Stage(make_divisible(choice.base_channels * width), choice.stride,
                                blocks))
        return Arch(resolution, channels_in, make_divisible(self.stem * width), tuple(stages),
                    make_divisible(self.head * width), classes, width, "nas")

    def subspaces(self) -> list[tuple[int, float]]:
        return [(r, w) for r in self.resolutions for w in self.widths]


#: MobileNetV2's layout (Sandler et al. 2018, table 2): expansion, channels, blocks, stride.
MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))
#: Widths and resolutions the baseline is scaled over.
BASELINE_WIDTHS = (0.1, 0.15, 0.2, 0.25, 0.35, 0.5, 0.75, 1.0)


def mobilenet_v2(width: float, resolution: int, classes: int, channels_in: int = 1) -> Arch:
    """MobileNetV2 scaled by ``width`` and ``resolution`` (3x3 depthwise kernels). Unlike the
    Keras application, the 1280-channel head is scaled too: unscaled it alone would not fit
    the flash of the parts this targets."""
    stages = tuple(Stage(make_divisible(c * width), s, (Block(3, t),) * n)
                   for t, c, n, s in MOBILENET_V2)
    return Arch(resolution, channels_in, make_divisible(32 * width), stages,
                make_divisible(1280 * width), classes, width, "mobilenetv2")


def parse_bytes(text: str, what: str) -> int:
    """'64KB', '256kb', '1MB', '32768' -> bytes (KB = 1024 B). A finite size of at least one
    byte: 'nan', 'inf' or '0.0001KB' are no budget."""
    raw = str(text).strip().upper().replace(" ", "")
    units = {"KIB": 1024, "KB": 1024, "K": 1024, "MIB": 1 << 20, "MB": 1 << 20, "M": 1 << 20,
             "B": 1, "": 1}
    for unit in sorted(units, key=len, reverse=True):
        if raw.endswith(unit):
            number = raw[:len(raw) - len(unit)]
            try:
                value = float(number) * units[unit]
            except ValueError:
                break
            if not math.isfinite(value) or value < 1:
                break
            return int(value)
    raise TinymlError(f"{what} '{text}': expected a size of at least 1 B such as 64KB, 256KB "
                      f"or 1MB")
