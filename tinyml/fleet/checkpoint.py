"""The server's state on disk: global parameters, the last completed round, the history.

Written after every round, atomically (a temporary file renamed over the old one), so a server
killed at any moment leaves either the previous round's checkpoint or the new one, never a
torn file. A restarted server resumes at the round after the checkpointed one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyml.errors import TinymlError


@dataclass
class Checkpoint:
    strategy: str
    round: int                      # last completed round (0: only the initial parameters)
    params: np.ndarray              # float32
    history: list[dict] = field(default_factory=list)  # one dict per completed round

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, params=np.asarray(self.params, np.float32),
                     meta=np.frombuffer(json.dumps({
                         "strategy": self.strategy, "round": int(self.round),
                         "history": self.history}).encode(), np.uint8))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> Checkpoint | None:
    """The checkpoint at ``path``, or None if there is none."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            params = data["params"].astype(np.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise TinymlError(f"checkpoint {path} is unreadable ({exc}); delete it to start over"
                          ) from None
    return Checkpoint(meta["strategy"], int(meta["round"]), params, meta.get("history", []))
