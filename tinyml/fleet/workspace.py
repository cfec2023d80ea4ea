"""A fleet's directory: the compiled model, one firmware copy per device, data, state.

Layout (created by :func:`create`, read back by :class:`Workspace`)::

    fleet.json            the fleet's settings (model, target, runner, devices, data, ...)
    model/                the trainable project compiled once (``--trainable last:K``)
    devices/dev-NN/       each device's own copy of it (its "flash"): a device builds and
                          runs its firmware there, so devices never share build files
    initial_params.npy    the head's parameters as compiled (the random init)
    checkpoints/RUN.npz   global parameters and round of each run (:mod:`.checkpoint`)
    progress/RUN.jsonl    one line per completed round, written by the server
                          (both belong to the settings of fleet.json: a fleet created again
                          with other settings recompiles and starts its runs over)
    registry.sqlite       devices, models, events (:mod:`.registry`)
    logs/                 SuperLink, SuperNode and ``flwr run`` output

The data file (``--data``) is read where it is: an .npz with ``x`` (samples), ``y`` (labels),
``device`` (which device holds each row) and optionally ``split`` (1: held out for the
adaptation metric; default 0). Labels are 0 and 1 (each device holds a 2-way task), and each
device needs ``max(shots, reptile_shots)`` training rows of each label for its episodes
(:func:`check_data`). Without held-out rows a device reports no accuracy (``-``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tinyml.errors import TinymlError


@dataclass
class FleetSettings:
    model: str
    target: str
    runner: str                 # "host" or "qemu"
    devices: int
    data: str
    trainable: str = "last:2"
    lr: float = 0.01
    reptile_steps: int = 120    # inner SGD steps per round over one few-shot episode: about
                                # FedAvg's epoch (126 rows a device), equal on-device work
    shots: int = 5              # examples per class of an adaptation (the metric)
    reptile_shots: int = 10     # examples per class of a Reptile training episode
    fedavg_epochs: int = 1      # FedAvg: passes over the local training data per round
    adapt_steps: int = 10       # SGD steps of the adaptation the accuracy metric measures
    eps_start: float = 3.0      # Reptile's outer step, annealed linearly to eps_end
    eps_end: float = 0.0
    max_update_norm: float = 100.0
    min_clients: int = 2
    round_timeout: float = 120.0
    seed: int = 0
    faults: dict = field(default_factory=dict)   # device index (str) -> "nan"|"wrong-size"|"huge"


def firmware_hash(project: Path) -> str:
    """Hash of the firmware's sources: the same model compiled the same way, the same hash."""
    digest = hashlib.sha256()
    for path in sorted(project.rglob("*")):
        if path.is_file() and path.suffix in (".c", ".h", ".json") and "build" not in path.parts:
            digest.update(str(path.relative_to(project)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class Workspace:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        path = self.root / "fleet.json"
        if not path.exists():
            raise TinymlError(f"{self.root} is not a fleet workspace (no fleet.json)")
        self.settings = FleetSettings(**json.loads(path.read_text()))

    # ---- paths -------------------------------------------------------------------------------
    @property
    def project(self) -> Path:
        return self.root / "model"

    def device_dir(self, index: int) -> Path:
        return self.root / "devices" / f"dev-{index:02d}"

    @staticmethod
    def device_id(index: int) -> str:
        return f"dev-{index:02d}"

    def checkpoint(self, run: str) -> Path:
        return self.root / "checkpoints" / f"{run}.npz"

    def progress(self, run: str) -> Path:
        return self.root / "progress" / f"{run}.jsonl"

    @property
    def registry(self) -> Path:
        return self.root / "registry.sqlite"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def initial_params(self) -> np.ndarray:
        return np.load(self.root / "initial_params.npy").astype(np.float32)

    # ---- data ----------------------------------------------------------------------------------
    def local_data(self, index: int) -> dict[str, np.ndarray]:
        """Device ``index``'s rows: x, y of its training split, and of its held-out split."""
        data = load_data(self.settings.data)
        mine = data["device"] == index
        split = data.get("split", np.zeros(len(data["y"]), np.int64))
        train, held = mine & (split == 0), mine & (split == 1)
        return {"x": data["x"][train], "y": data["y"][train],
                "query_x": data["x"][held], "query_y": data["y"][held]}

    def read_progress(self, run: str) -> list[dict]:
        path = self.progress(run)
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_data(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    try:
        with np.load(path) as f:
            data = {k: f[k] for k in f.files}
    except (OSError, ValueError) as exc:
        raise TinymlError(f"--data {path}: not a readable .npz file ({exc})") from None
    missing = [k for k in ("x", "y", "device") if k not in data]
    if missing:
        raise TinymlError(f"--data {path}: missing array(s) {', '.join(missing)} (expected x, y, "
                          f"device and optionally split)")
    n = len(data["y"])
    if len(data["x"]) != n or len(data["device"]) != n:
        raise TinymlError(f"--data {path}: x, y and device have different lengths")
    return data


def check_data(data: dict[str, np.ndarray], settings: FleetSettings) -> None:
    """What every device's ClientApp needs of its rows, checked before anything starts (else
    each ClientApp would fail in every round while the run "completes"): rows at all, labels
    0 and 1 only, and enough training rows of each label for its few-shot episodes."""
    where = f"--data {settings.data}"
    present = set(np.unique(data["device"]).tolist())
    absent = [i for i in range(settings.devices) if i not in present]
    if absent:
        raise TinymlError(f"{where}: no rows for device(s) {absent[:5]} of {settings.devices}")
    split = data.get("split", np.zeros(len(data["y"]), np.int64))
    bad_split = sorted(set(np.unique(split).tolist()) - {0, 1})
    if bad_split:
        raise TinymlError(f"{where}: split values {bad_split[:5]}; split is 0 (train) or 1 "
                          f"(held out)")
    need = max(settings.shots, settings.reptile_shots)
    for i in range(settings.devices):
        mine = data["device"] == i
        labels = sorted(set(np.unique(data["y"][mine]).tolist()) - {0, 1})
        if labels:
            raise TinymlError(f"{where}: device {Workspace.device_id(i)} has labels "
                              f"{labels[:5]}; each device's task is 2-way, labels 0 and 1")
        train_y = data["y"][mine & (split == 0)]
        for label in (0, 1):
            count = int(np.sum(train_y == label))
            if count < need:
                raise TinymlError(
                    f"{where}: device {Workspace.device_id(i)} has {count} training row(s) of "
                    f"label {label}; its episodes need {need} (max of shots={settings.shots}, "
                    f"reptile_shots={settings.reptile_shots})")


def create(root: str | Path, settings: FleetSettings) -> Workspace:
    """Compile the model (trainable) once, copy it to each device, register the devices.
    Reuses a workspace whose fleet.json matches, so a restarted fleet keeps its state; one
    whose fleet.json differs is recompiled and its checkpoints and progress deleted (their
    parameters belong to the old settings: another --trainable, another size)."""
    from tinyml.learn.device import compile_trainable
    from tinyml.fleet.registry import Registry
    from tinyml.targets import load_target

    root = Path(root).resolve()
    data = load_data(settings.data)
    check_data(data, settings)
    config = root / "fleet.json"
    wanted = json.dumps(asdict(settings), indent=2, sort_keys=True)
    if config.exists() and config.read_text() == wanted and (root / "initial_params.npy").exists():
        return Workspace(root)
    if config.exists():
        old = json.loads(config.read_text())
        if old.get("model") != settings.model or old.get("target") != settings.target:
            raise TinymlError(f"{root} holds a fleet of another model or target; use another "
                              f"--workdir (or delete it)")
    root.mkdir(parents=True, exist_ok=True)
    staging = root / "model.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        result = compile_trainable(settings.model, settings.target, staging,
                                   trainable=settings.trainable)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)   # the old fleet stays as it was
        raise
    shutil.rmtree(root / "checkpoints", ignore_errors=True)
    shutil.rmtree(root / "progress", ignore_errors=True)
    for stale in root.glob("*_final_params.npy"):
        stale.unlink()
    shutil.rmtree(root / "model", ignore_errors=True)
    staging.rename(root / "model")
    report = result.report()
    target = load_target(settings.target)
    np.save(root / "initial_params.npy", _initial_params(root / "model", settings.runner))
    fw_hash = firmware_hash(root / "model")
    shutil.rmtree(root / "devices", ignore_errors=True)
    with Registry(root / "registry.sqlite") as registry:
        for i in range(settings.devices):
            shutil.copytree(root / "model", root / "devices" / f"dev-{i:02d}",
                            ignore=shutil.ignore_patterns("build"))
            registry.register_device(
                Workspace.device_id(i), target=settings.target, firmware_hash=fw_hash,
                sram_bytes=target.sram_bytes, flash_bytes=target.flash_bytes,
                ram_used_bytes=report.get("ram_bytes"), flash_used_bytes=report.get("flash_bytes"),
                task=_task_name(data, i))
    config.write_text(wanted)
    return Workspace(root)


def _initial_params(project: Path, runner: str) -> np.ndarray:
    """The parameters the firmware starts with, read from the device itself."""
    from tinyml.learn.device import open_device

    with open_device(project, runner=runner) as device:
        return device.get_params()


def _task_name(data: dict, index: int) -> str | None:
    if "pairs" in data and index < len(data["pairs"]):
        a, b = (int(v) for v in data["pairs"][index])
        return f"digit {a} (label 0) vs {b} (label 1)"
    return None
