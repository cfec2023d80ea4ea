"""Which device updates the server accepts.

A device's reply is its parameter vector after local training. A broken or malicious device
can send NaN or infinities (one poisoned step would spread them into the global model), a
vector of the wrong size (another model, a truncated message), or a vector far from the
global one (a diverged device, a scaling attack). Each is rejected with a reason the server
logs and the registry keeps; the round goes on with the others.
"""

from __future__ import annotations

import numpy as np

#: Default bound on ||W_i - phi||_2 (the device's move in one round).
DEFAULT_MAX_UPDATE_NORM = 100.0


def check_update(update, phi: np.ndarray, max_norm: float = DEFAULT_MAX_UPDATE_NORM
                 ) -> str | None:
    """None if ``update`` is acceptable, else the reason it is not."""
    values = np.asarray(update)
    if values.dtype.kind not in "fiu":
        return f"parameters of dtype {values.dtype}, expected float32"
    if values.size != phi.size:
        return f"wrong size: {values.size} parameters, the model has {phi.size}"
    values = values.reshape(-1).astype(np.float64)
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        return f"{bad} non-finite value(s) (NaN/Inf)"
    norm = float(np.linalg.norm(values - np.asarray(phi, np.float64).reshape(-1)))
    if max_norm > 0 and norm > max_norm:
        return f"update norm {norm:.4g} beyond the bound {max_norm:.4g}"
    return None
