"""Flower's deployment engine on loopback: a SuperLink, N SuperNodes, ``flwr run``.

Every piece is a real process, as on a real fleet: ``flower-superlink --insecure`` (its HTTP
Fleet, Control and Runtime APIs on one free loopback port), one ``flower-supernode
--insecure`` per device (``--node-config 'workspace=... device=N'``, its own runtime port),
and ``flwr run APP CONNECTION --stream`` submitting the app (:mod:`.server_app`,
:mod:`.client_app`) through the Control API. The SuperLink starts the ServerApp, each
SuperNode a ClientApp per message; the ClientApp starts the device's firmware.

Each SuperNode runs in its own process group, so one device (the SuperNode, its ClientApp and
its firmware) can be killed alone: ``kill`` = (round, [device indices]) kills those devices
once that round has started (the robustness drill of tests/test_fleet.py). The process groups
are written to ``pids.json`` in the workspace; a fleet started on a workspace whose previous
fleet was killed first ends that fleet's leftover processes (by their recorded ids).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tinyml.errors import TinymlError
from tinyml.fleet.workspace import Workspace

APP_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "tinyml-fleet"
version = "1.0.0"
description = "tinyml fleet: Reptile and FedAvg over emulated microcontrollers"
license = "Apache-2.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "tinyml"

[tool.flwr.app.components]
serverapp = "tinyml.fleet.server_app:app"
clientapp = "tinyml.fleet.client_app:app"

[tool.flwr.app.config]
workspace = ""
strategy = "reptile"
num-rounds = 1
run = "reptile"
expected-nodes = 1
node-wait = 60.0
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TinymlError(f"the Flower SuperLink exited ({process.returncode}); see {log}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TinymlError(f"the Flower SuperLink did not listen on 127.0.0.1:{port} within "
                      f"{timeout:.0f} s; see {log}")


def _bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise TinymlError(f"{name} not found next to {sys.executable}: install Flower with "
                          f"pip install 'tinyml[fleet]'")
    return str(path)


def _is_flower(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"flower-" in cmdline or b"flwr" in cmdline


class Fleet:
    """The processes of one deployment. Use as a context manager: leaving it ends them all."""

    def __init__(self, workspace: Workspace):
        self.ws = workspace
        self.processes: dict[str, subprocess.Popen] = {}
        self.home = workspace.root / "flwr_home"
        self.env = dict(os.environ, FLWR_HOME=str(self.home), FLWR_TELEMETRY_ENABLED="0",
                        FLWR_DISABLE_UPDATE_CHECK="1", TF_CPP_MIN_LOG_LEVEL="3",
                        PYTHONUNBUFFERED="1",
                        PATH=f"{Path(sys.executable).parent}{os.pathsep}"
                             f"{os.environ.get('PATH', '')}")

    # ---- processes -----------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        self.ws.logs.mkdir(parents=True, exist_ok=True)
        with open(self.ws.logs / f"{name}.log", "ab") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=self.env,
                                       cwd=self.ws.root, start_new_session=True)
        self.processes[name] = process
        (self.ws.root / "pids.json").write_text(json.dumps(
            {n: p.pid for n, p in self.processes.items()}))
        return process

    def end_leftovers(self) -> None:
        """End the process groups a killed previous fleet on this workspace left running."""
        path = self.ws.root / "pids.json"
        if not path.exists():
            return
        for pid in json.loads(path.read_text()).values():
            if _is_flower(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        path.unlink()

    def start(self) -> None:
        self.end_leftovers()
        self.port = _free_port()
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "fleet"\n\n[superlink.fleet]\n'
            f'address = "127.0.0.1:{self.port}"\ninsecure = true\n')
        link = self._spawn("superlink", [
            _bin("flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port",
            str(self.port), "--disable-runtime-dependency-installation"])
        _wait_port(self.port, link, self.ws.logs / "superlink.log")
        faults = self.ws.settings.faults
        for i in range(self.ws.settings.devices):
            config = f'workspace="{self.ws.root}" device={i}'
            if str(i) in faults:
                config += f' test-fault="{faults[str(i)]}"'
            self._spawn(f"supernode-{i:02d}", [
                _bin("flower-supernode"), "--insecure", "--superlink",
                f"127.0.0.1:{self.port}", "--port", str(_free_port()), "--node-config", config])

    def kill_device(self, index: int) -> None:
        """SIGKILL device ``index``: its SuperNode, ClientApp and firmware (one process group)."""
        process = self.processes.get(f"supernode-{index:02d}")
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 10
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # Children that outlived their group leader (the SuperExec the SuperLink/Node start).
        for process in self.processes.values():
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        (self.ws.root / "pids.json").unlink(missing_ok=True)

    def __enter__(self) -> "Fleet":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- a run ---------------------------------------------------------------------------------
    def run(self, strategy: str, rounds: int, run: str, *, on_round=None,
            kill: tuple[int, list[int]] | None = None, timeout: float | None = None) -> list[dict]:
        """Submit the app with ``flwr run`` and follow its progress file until it is done.
        ``on_round(record)`` is called per completed round. Returns the progress records."""
        app = self.ws.root / "app"
        app.mkdir(exist_ok=True)
        (app / "pyproject.toml").write_text(APP_PYPROJECT)
        overrides = (f'workspace="{self.ws.root}" strategy="{strategy}" num-rounds={rounds} '
                     f'run="{run}" expected-nodes={self.ws.settings.devices} node-wait=120.0')
        seen = len(self.ws.read_progress(run))
        submit = self._spawn(f"flwr-run-{run}", [_bin("flwr"), "run", str(app), "fleet",
                                                 "--run-config", overrides, "--stream"])
        limit = timeout or (rounds * (self.ws.settings.round_timeout + 60) + 300)
        deadline = time.monotonic() + limit
        killed = False
        records: list[dict] = []
        while True:
            fresh = self.ws.read_progress(run)[seen:]
            seen += len(fresh)
            for record in fresh:
                records.append(record)
                if record["event"] == "round" and on_round is not None:
                    on_round(record)
                if record["event"] == "done":
                    submit.wait(timeout=60)
                    return records
                if record["event"] == "error":
                    raise TinymlError(record["message"])
            started = (records[-1]["round"] + 1 if records and records[-1]["event"] == "round"
                       else next((r["resumed_from"] + 1 for r in reversed(records)
                                  if r["event"] == "start"), None))
            if kill is not None and not killed and started is not None and started >= kill[0]:
                time.sleep(2.0)  # into the round: the devices are training
                for index in kill[1]:
                    self.kill_device(index)
                killed = True
            if submit.poll() is not None and not self.ws.read_progress(run)[seen:]:
                raise TinymlError(f"the Flower run '{run}' ended before its last round "
                                  f"(flwr run exited {submit.returncode}); see "
                                  f"{self.ws.logs / f'flwr-run-{run}.log'}")
            if time.monotonic() > deadline:
                raise TinymlError(f"the Flower run '{run}' did not finish within {limit:.0f} s; "
                                  f"see {self.ws.logs}")
            time.sleep(0.5)
