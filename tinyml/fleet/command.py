"""``tinyml fleet``: a federated run over emulated devices, and ``tinyml fleet status``.

``tinyml fleet --model M --target T --devices N --rounds R --data DATA [--strategy
reptile|fedavg] [--simulation] [--json]`` compiles M trainable (``--trainable``, default
last:2) into a workspace (``--workdir``, default ``.tinyml-fleet``), starts Flower's SuperLink
and N SuperNodes on loopback (:mod:`.deployment`) and runs R rounds, printing one line per
round; the report (``report.html`` with the accuracy plot) lands in the workspace. Run the
same command again after a crash and the server resumes from its last checkpointed round
(``--fresh`` starts over). ``--simulation`` uses Flower's simulation engine instead (Ray,
``pip install 'tinyml[fleet-sim]'``).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

from tinyml.errors import TinymlError

DEFAULT_WORKDIR = ".tinyml-fleet"


def add_fleet_parser(sub) -> None:
    p = sub.add_parser("fleet", help="federated learning (Flower) over emulated devices: "
                                     "Reptile or FedAvg; 'fleet status' prints the registry")
    p.add_argument("action", nargs="?", choices=["run", "status"], default="run",
                   help="run (default) or status")
    p.add_argument("--model", help="the model (its last dense layers train on the devices)")
    p.add_argument("--target", default="host", help="device target (default: host)")
    p.add_argument("--devices", type=int, default=8, help="number of devices (default 8)")
    p.add_argument("--rounds", type=int, default=20, help="federated rounds (default 20)")
    p.add_argument("--data", help=".npz with x, y, device (and split) arrays")
    p.add_argument("--strategy", default="reptile", choices=["reptile", "fedavg"])
    p.add_argument("--simulation", action="store_true",
                   help="Flower's simulation engine instead of SuperLink/SuperNode processes")
    p.add_argument("--trainable", default="last:2", help="trainable layers (default last:2)")
    p.add_argument("--lr", type=float, default=0.01, help="on-device SGD learning rate")
    p.add_argument("--eps-start", type=float, default=3.0,
                   help="Reptile's outer step in round 1, annealed linearly to --eps-end "
                        "(default 3, chosen on the digit-pair tasks with 8 devices and 20 "
                        "rounds)")
    p.add_argument("--eps-end", type=float, default=0.0, help="Reptile's outer step after "
                                                             "the last round (default 0)")
    p.add_argument("--min-clients", type=int, default=2,
                   help="fewest accepted updates that make a round (default 2)")
    p.add_argument("--round-timeout", type=float, default=120.0,
                   help="seconds a round waits for its devices (default 120)")
    p.add_argument("--max-update-norm", type=float, default=100.0,
                   help="reject updates moving farther than this (L2) from the global params")
    p.add_argument("--workdir", default=DEFAULT_WORKDIR, help="the fleet's workspace")
    p.add_argument("--fresh", action="store_true", help="discard the checkpoint, start over")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=_fleet)


def _fleet(args) -> int:
    if args.action == "status":
        return _status(args)
    for name in ("model", "data"):
        if getattr(args, name) is None:
            raise TinymlError(f"tinyml fleet: --{name} is required")
    result = fleet_run(args.model, args.target, args.devices, args.rounds, args.data,
                       strategy=args.strategy, workdir=args.workdir, simulation=args.simulation,
                       trainable=args.trainable, lr=args.lr, min_clients=args.min_clients,
                       eps_start=args.eps_start, eps_end=args.eps_end,
                       round_timeout=args.round_timeout, max_update_norm=args.max_update_norm,
                       fresh=args.fresh, progress=not args.json)
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        print(f"{result['strategy']}: {result['rounds_completed']}/{args.rounds} rounds "
              f"(resumed from round {result['resumed_from']}); report {result['report']}, "
              f"global parameters {result['final_params']}")
    sys.stdout.flush()
    return 0 if result["rounds_completed"] == args.rounds else 1


def check_run_options(devices: int, rounds: int, *, min_clients: int = 2,
                      lr: float = 0.01) -> None:
    """The numbers a run cannot start with, refused before anything is compiled or started."""
    if devices < 1 or rounds < 1:
        raise TinymlError("tinyml fleet: --devices and --rounds must be at least 1")
    if not 1 <= min_clients <= devices:
        raise TinymlError(f"tinyml fleet: --min-clients {min_clients} must be between 1 and "
                          f"--devices ({devices}), else no round could aggregate")
    if not (math.isfinite(lr) and lr > 0):
        raise TinymlError(f"tinyml fleet: --lr {lr:g} must be a positive number")


def rounds_of_this_run(history: list[dict], rounds: int) -> dict[int, dict]:
    """The progress file's round records up to ``rounds``, by round. The file keeps the
    history of earlier, longer runs too: those rounds do not count for a run of ``rounds``."""
    return {r["round"]: r for r in history if r["event"] == "round" and r["round"] <= rounds}


def round_line(strategy: str, record: dict, rounds: int) -> str:
    """The line printed per round; a round whose devices had no held-out rows has no
    accuracy ("-")."""
    acc = "-" if record["accuracy"] is None else f"{100 * record['accuracy']:.1f} %"
    extra = ""
    if record["rejected"]:
        extra += f", rejected {sorted(record['rejected'])}"
    if record["failed"]:
        extra += f", failed {sorted(record['failed'])}"
    return (f"[{strategy}] round {record['round']}/{rounds}: accuracy after adaptation {acc}, "
            f"{record['clients']} device(s){extra}")


def settings_for(model, target, devices, data, **options):
    from tinyml.fleet.workspace import FleetSettings
    from tinyml.learn.runner import device_runner
    from tinyml.targets import load_target

    runner = device_runner(load_target(target))   # a board (not emulated) is refused
    return FleetSettings(model=str(Path(model).resolve()), target=target, runner=runner,
                         devices=devices, data=str(Path(data).resolve()), **options)


def fleet_run(model, target, devices, rounds, data, *, strategy="reptile",
              workdir=DEFAULT_WORKDIR, simulation=False, fresh=False, progress=True,
              kill=None, faults=None, **options) -> dict:
    """Create (or reuse) the workspace and run ``rounds`` rounds; the result as a dict."""
    from tinyml.fleet.fleet_report import write_report
    from tinyml.fleet.workspace import FleetSettings, create

    check_run_options(devices, rounds,
                      min_clients=options.get("min_clients", FleetSettings.min_clients),
                      lr=options.get("lr", FleetSettings.lr))
    settings = settings_for(model, target, devices, data, faults=faults or {}, **options)
    ws = create(workdir, settings)
    run = strategy
    if fresh:
        ws.checkpoint(run).unlink(missing_ok=True)
        ws.progress(run).unlink(missing_ok=True)

    def show(record):
        if progress:
            print(round_line(strategy, record, rounds), flush=True)

    if simulation:
        from tinyml.fleet.simulation import run_simulation
        records = run_simulation(ws, strategy, rounds, run, on_round=show)
    else:
        from tinyml.fleet.deployment import Fleet
        with Fleet(ws) as fleet:
            records = fleet.run(strategy, rounds, run, on_round=show, kill=kill)
    starts = [r for r in records if r["event"] == "start"]
    by_round = rounds_of_this_run(ws.read_progress(run), rounds)
    write_report({strategy: [by_round[k] for k in sorted(by_round)]}, ws.root / "report.html",
                 title=f"tinyml fleet: {strategy}, {devices} devices", shots=ws.settings.shots)
    return {"strategy": strategy, "devices": devices, "rounds": rounds,
            "rounds_completed": max(by_round, default=0),
            "resumed_from": starts[0]["resumed_from"] if starts else None,
            "accuracy": [by_round[k]["accuracy"] for k in sorted(by_round)],
            "rejected": {k: v["rejected"] for k, v in by_round.items() if v["rejected"]},
            "failed": {k: v["failed"] for k, v in by_round.items() if v["failed"]},
            "workspace": str(ws.root), "report": str(ws.root / "report.html"),
            "final_params": str(ws.root / f"{run}_final_params.npy")}


def _status(args) -> int:
    from tinyml.fleet.registry import Registry

    path = Path(args.workdir) / "registry.sqlite"
    if not path.exists():
        raise TinymlError(f"no fleet registry in {args.workdir} (run 'tinyml fleet' first)")
    with Registry(path) as reg:
        devices, models, events = reg.devices(), reg.models(), reg.events()
    if args.json:
        sys.stdout.write(json.dumps({"devices": devices, "models": models, "events": events},
                                    indent=2) + "\n")
        return 0
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=sys.stdout, width=160)
    table = Table(title="devices", title_justify="left")
    for col in ("device", "target", "SRAM", "flash", "RAM used", "firmware", "task", "status",
                "last round", "answered", "rejected"):
        table.add_column(col)
    for d in devices:
        table.add_row(*map(Text, map(str, (
            d["device_id"], d["target"], d["sram_bytes"] or "-", d["flash_bytes"] or "-",
            d["ram_used_bytes"] or "-", d["firmware_hash"], d["task"] or "-", d["status"],
            d["last_round"] if d["last_round"] is not None else "-", d["rounds_answered"],
            d["rejected_updates"]))))
    console.print(table)
    table = Table(title="models", title_justify="left")
    for col in ("run", "version", "strategy", "params hash", "params", "accuracy", "clients",
                "rejected"):
        table.add_column(col)
    for m in models:
        acc = "-" if m["accuracy"] is None else f"{100 * m['accuracy']:.1f} %"
        table.add_row(*map(Text, map(str, (m["run"], m["version"], m["strategy"],
                                           m["params_hash"], m["num_params"], acc,
                                           m["clients"], m["rejected"]))))
    console.print(table)
    if events:
        table = Table(title="events", title_justify="left")
        for col in ("run", "round", "device", "kind", "detail"):
            table.add_column(col)
        for e in events[-30:]:
            table.add_row(*map(Text, map(str, (e["run"], e["round"], e["device_id"] or "-",
                                               e["kind"], e["detail"]))))
        console.print(table)
    return 0


def remove_workspace(workdir) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
