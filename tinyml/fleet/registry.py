"""The fleet's registry (semantic management): a SQLite file of devices, models and events.

Devices: what each one is (target, the part's SRAM and flash, what the firmware uses of them,
the firmware's hash, its task), whether it answered the last round and how many of its
updates were rejected. Models: one version per completed round of a run, with the hash of the
global parameters and the fleet's accuracy after adaptation that round. Events: every
rejected update and every device that missed a round, with the reason.

One file, opened per use (``with Registry(path) as reg``), so the server, the ``tinyml
fleet`` command and ``tinyml fleet status`` can each open it without sharing a connection.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    sram_bytes INTEGER,            -- the part's SRAM (target budget)
    flash_bytes INTEGER,           -- the part's flash
    ram_used_bytes INTEGER,        -- the firmware's measured RAM (NULL: not measured)
    flash_used_bytes INTEGER,      -- the firmware image's flash
    firmware_hash TEXT NOT NULL,
    task TEXT,
    status TEXT NOT NULL DEFAULT 'registered',
    last_round INTEGER,
    rounds_answered INTEGER NOT NULL DEFAULT 0,
    rejected_updates INTEGER NOT NULL DEFAULT 0,
    updated_at REAL
);
CREATE TABLE IF NOT EXISTS models (
    run TEXT NOT NULL,
    version INTEGER NOT NULL,      -- the round that produced it (0: the initial parameters)
    strategy TEXT NOT NULL,
    params_hash TEXT NOT NULL,
    num_params INTEGER NOT NULL,
    accuracy REAL,                 -- mean accuracy after adaptation reported by the devices
    clients INTEGER,
    rejected INTEGER,
    created_at REAL,
    PRIMARY KEY (run, version)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run TEXT, round INTEGER, device_id TEXT, kind TEXT NOT NULL, detail TEXT,
    created_at REAL
);
"""


def params_hash(params: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(params, "<f4").tobytes()).hexdigest()[:16]


class Registry:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.executescript(SCHEMA)

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.db.commit()
        self.db.close()

    # ---- writes ----------------------------------------------------------------------------

    def register_device(self, device_id: str, *, target: str, firmware_hash: str,
                        sram_bytes: int | None = None, flash_bytes: int | None = None,
                        ram_used_bytes: int | None = None, flash_used_bytes: int | None = None,
                        task: str | None = None) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO devices (device_id, target, sram_bytes, flash_bytes, ram_used_bytes,"
                " flash_used_bytes, firmware_hash, task, status, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'registered', ?)"
                " ON CONFLICT(device_id) DO UPDATE SET target=excluded.target,"
                " sram_bytes=excluded.sram_bytes, flash_bytes=excluded.flash_bytes,"
                " ram_used_bytes=excluded.ram_used_bytes,"
                " flash_used_bytes=excluded.flash_used_bytes,"
                " firmware_hash=excluded.firmware_hash, task=excluded.task,"
                " updated_at=excluded.updated_at",
                (device_id, target, sram_bytes, flash_bytes, ram_used_bytes, flash_used_bytes,
                 firmware_hash, task, time.time()))

    def device_answered(self, device_id: str, server_round: int, accepted: bool) -> None:
        with self.db:
            self.db.execute(
                "UPDATE devices SET status=?, last_round=?, rounds_answered=rounds_answered+1,"
                " rejected_updates=rejected_updates+?, updated_at=? WHERE device_id=?",
                ("online" if accepted else "rejected", server_round, 0 if accepted else 1,
                 time.time(), device_id))

    def device_missing(self, run: str, device_id: str, server_round: int, reason: str) -> None:
        """The device failed or said nothing in ``server_round``: offline, and a ``failed``
        event with the reason."""
        with self.db:
            self.db.execute("UPDATE devices SET status='offline', updated_at=? WHERE device_id=?",
                            (time.time(), device_id))
        self.log_event(run, server_round, device_id, "failed", reason)

    def log_event(self, run: str, server_round: int, device_id: str | None, kind: str,
                  detail: str) -> None:
        with self.db:
            self.db.execute("INSERT INTO events (run, round, device_id, kind, detail, created_at)"
                            " VALUES (?, ?, ?, ?, ?, ?)",
                            (run, server_round, device_id, kind, detail, time.time()))

    def record_model(self, run: str, version: int, strategy: str, params: np.ndarray,
                     accuracy: float | None, clients: int, rejected: int) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO models (run, version, strategy, params_hash, num_params,"
                " accuracy, clients, rejected, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run, version, strategy, params_hash(params), int(np.asarray(params).size),
                 accuracy, clients, rejected, time.time()))

    # ---- reads -----------------------------------------------------------------------------

    def devices(self) -> list[dict]:
        return [dict(r) for r in self.db.execute("SELECT * FROM devices ORDER BY device_id")]

    def models(self, run: str | None = None) -> list[dict]:
        query, args = "SELECT * FROM models", ()
        if run is not None:
            query, args = query + " WHERE run=?", (run,)
        return [dict(r) for r in self.db.execute(query + " ORDER BY run, version", args)]

    def events(self, run: str | None = None) -> list[dict]:
        query, args = "SELECT * FROM events", ()
        if run is not None:
            query, args = query + " WHERE run=?", (run,)
        return [dict(r) for r in self.db.execute(query + " ORDER BY id", args)]
