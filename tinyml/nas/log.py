"""The search's log: one JSON line per event, which is also what a rerun resumes from.

Every candidate the search looks at gets a line: the constraint check (``"event": "check"``,
with the compiler's figures and whether it fits) and, for the ones trained,
``"event": "proxy"`` with the proxy accuracy. Lines are appended and flushed one at a time,
so an interrupted search loses at most the candidate being trained.

Resuming: the search is deterministic given its seed except for training, so a rerun on the
same output directory replays it, taking every proxy result already in the log instead of
training again (:meth:`SearchLog.proxy`). The log's header line records the settings; a rerun
with other settings (data, budgets, target, space) starts a new log.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tinyml.errors import TinymlError

LOG_NAME = "nas_log.jsonl"


class SearchLog:
    def __init__(self, directory: Path, settings: dict):
        self.path = Path(directory) / LOG_NAME
        self.settings = settings
        self.proxies: dict[str, dict] = {}
        self.checks: dict[str, dict] = {}
        self.events: list[dict] = []
        self.resumed = 0
        if self.path.exists():
            self._read()
        if not self.events:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("")
            self.append({"event": "start", "settings": settings})

    def _read(self) -> None:
        lines = [line for line in self.path.read_text().splitlines() if line.strip()]
        try:
            events = [json.loads(line) for line in lines]
        except json.JSONDecodeError:
            # A line cut by an interruption: keep what parsed before it.
            events = []
            for line in lines:
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    break
        if not events or events[0].get("event") != "start" or \
                events[0].get("settings") != self.settings:
            archive = self.path.with_suffix(f".{int(time.time())}.jsonl")
            try:
                self.path.rename(archive)
            except OSError as exc:
                raise TinymlError(f"{self.path}: cannot move the previous log aside ({exc})")
            return
        self.events = events
        for e in events:
            if e.get("event") == "proxy":
                self.proxies[e["arch"]] = e
            elif e.get("event") == "check":
                self.checks[e["arch"]] = e

    def append(self, event: dict) -> None:
        event = {"time": round(time.time(), 3), **event}
        self.events.append(event)
        with self.path.open("a") as f:
            f.write(json.dumps(event) + "\n")
            f.flush()

    def proxy(self, key: str) -> dict | None:
        """The proxy result already logged for ``key`` (a resumed run), or None."""
        return self.proxies.get(key)

    def record_check(self, event: dict) -> None:
        """A constraint check, logged once per architecture (a resumed run checks again)."""
        if event["arch"] not in self.checks:
            self.checks[event["arch"]] = event
            self.append({"event": "check", **event})

    def record_proxy(self, event: dict) -> None:
        self.proxies[event["arch"]] = event
        self.append({"event": "proxy", **event})
