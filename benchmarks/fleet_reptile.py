"""TinyReptile vs FedAvg vs random init on a Flower fleet, measured on new devices.

N emulated devices (the trainable firmware built for the host, or run in QEMU with --target
cortex-m4), each holding a different 2-way task over a pair of handwritten digits
(tinyml.fleet.digits_pairs: int8 backbone trained on digits 0-4, tasks over pairs of 5-9 with
random label orientations), run R rounds of Reptile and then R rounds of FedAvg on Flower's
deployment engine (SuperLink and SuperNodes as processes on loopback). Then 20 new devices,
each with a new task from held-out images, adapt from each init with 5 examples per class and
10 on-device SGD steps and are measured on the rest of their images.

    python benchmarks/fleet_reptile.py --devices 8 --rounds 20 [--json]

--replicates S adds the same comparison without Flower for seeds 0..S-1 (the same device
procedures and server steps on one host-built firmware process, sequentially): one seed's
figures move by a few points with the SGD order and which orientations the fleet happened to
hold, so the mean over seeds is the figure to trust.

--kill-devices K --kill-at-round T kills K devices (SuperNode, ClientApp, firmware) once round
T of the Reptile run has started; --nan-device I makes device I send NaN parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def evaluate_inits(project: Path, runner: str, inits: dict[str, np.ndarray], tasks, *,
                   steps: int, lr: float, seed: int) -> dict[str, float]:
    """Each new task on a new device (a fresh firmware process), adapting from each init."""
    from tinyml.fleet import device_ops
    from tinyml.learn.device import open_device

    scores = {name: [] for name in inits}
    for i, task in enumerate(tasks):
        with open_device(project, runner=runner) as device:
            for name, phi in inits.items():
                rng = np.random.default_rng([seed, i])  # same step order for every init
                scores[name].append(device_ops.adapt_and_evaluate(
                    device, phi, task.support_x, task.support_y, task.query_x, task.query_y,
                    steps=steps, lr=lr, rng=rng))
    return {name: float(np.mean(v)) for name, v in scores.items()}


def replicate(project: Path, settings, *, devices: int, rounds: int, seed: int, new: int,
              shots: int, adapt_steps: int) -> dict[str, float]:
    """One seed of the comparison without Flower: the devices' local work run in turn on
    one firmware process, the same server steps, then the same evaluation."""
    from tinyml.fleet import device_ops, digits_pairs
    from tinyml.fleet.strategy import make_strategy
    from tinyml.learn.device import open_device

    s = settings
    data = digits_pairs.fleet_dataset(devices, seed=seed)
    tasks = digits_pairs.new_tasks(new, shots, seed=seed)
    inits = {}
    with open_device(project, runner=s.runner) as device:
        inits["random"] = device.get_params()
        for name in ("reptile", "fedavg"):
            strategy = make_strategy(name, rounds, s.eps_start, s.eps_end)
            phi = inits["random"].copy()
            for r in range(1, rounds + 1):
                updates, weights = [], []
                for dev in range(devices):
                    rng = np.random.default_rng([seed, r, dev])
                    rows = (data["device"] == dev) & (data["split"] == 0)
                    x, y = data["x"][rows], data["y"][rows]
                    if name == "reptile":
                        out = device_ops.train_reptile(device, phi, x, y, shots=s.reptile_shots,
                                                       steps=s.reptile_steps, lr=s.lr, rng=rng)
                    else:
                        out = device_ops.train_fedavg(device, phi, x, y, epochs=s.fedavg_epochs,
                                                      lr=s.lr, rng=rng)
                    updates.append(out.params)
                    weights.append(len(y))
                phi = strategy.step(phi, updates, weights, r)
            inits[name] = phi
    return evaluate_inits(project, s.runner, inits, tasks, steps=adapt_steps, lr=s.lr,
                          seed=seed)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=8)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--target", default="host")
    p.add_argument("--new-tasks", type=int, default=20)
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--adapt-steps", type=int, default=10)
    p.add_argument("--strategies", default="reptile,fedavg")
    p.add_argument("--kill-devices", type=int, default=0)
    p.add_argument("--kill-at-round", type=int, default=3)
    p.add_argument("--nan-device", type=int, default=None)
    p.add_argument("--replicates", type=int, default=0)
    p.add_argument("--workdir", default="build/fleet_reptile")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from tinyml.fleet import digits_pairs
    from tinyml.fleet.command import fleet_run
    from tinyml.fleet.fleet_report import write_report
    from tinyml.fleet.workspace import Workspace

    started = time.time()
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print
    model = digits_pairs.build_model(work / "model", seed=args.seed)
    data = work / f"digits_pairs_{args.devices}dev.npz"
    np.savez(data, **digits_pairs.fleet_dataset(args.devices, seed=args.seed))
    faults = {str(args.nan_device): "nan"} if args.nan_device is not None else {}
    results, histories = {}, {}
    for strategy in args.strategies.split(","):
        kill = None
        if args.kill_devices and strategy == "reptile":
            victims = [i for i in range(args.devices) if i != args.nan_device][:args.kill_devices]
            kill = (args.kill_at_round, victims)
        say(f"== {strategy}: {args.devices} devices, {args.rounds} rounds"
            + (f", killing devices {kill[1]} in round {kill[0]}" if kill else ""))
        results[strategy] = fleet_run(
            model, args.target, args.devices, args.rounds, data, strategy=strategy,
            workdir=work / "fleet", fresh=True, progress=True if not args.json else False,
            kill=kill, faults=faults, shots=args.shots, adapt_steps=args.adapt_steps,
            seed=args.seed)
        histories[strategy] = results[strategy]["accuracy"]
        say(f"   {strategy}: {results[strategy]['rounds_completed']} rounds, accuracy per round "
            + " ".join(f"{100 * a:.0f}" for a in results[strategy]["accuracy"] if a is not None))
    ws = Workspace(work / "fleet")
    inits = {"random": ws.initial_params()}
    for strategy, result in results.items():
        inits[strategy] = np.load(result["final_params"])
    tasks = digits_pairs.new_tasks(args.new_tasks, args.shots, seed=args.seed)
    scores = evaluate_inits(ws.device_dir(0), ws.settings.runner, inits, tasks,
                            steps=args.adapt_steps, lr=ws.settings.lr, seed=args.seed)
    report = {
        "reptile_accuracy": scores.get("reptile"), "fedavg_accuracy": scores.get("fedavg"),
        "random_accuracy": scores["random"],
        "rounds_completed": min(r["rounds_completed"] for r in results.values()),
        "devices": args.devices, "rounds": args.rounds, "new_tasks": args.new_tasks,
        "shots": args.shots, "adapt_steps": args.adapt_steps, "target": args.target,
        "per_round_accuracy": histories,
        "rejected_updates": {s: r["rejected"] for s, r in results.items()},
        "failed_devices": {s: r["failed"] for s, r in results.items()},
        "final_params_finite": {s: bool(np.all(np.isfinite(inits[s]))) for s in results},
        "seconds": round(time.time() - started, 1),
    }
    if args.replicates:
        per_seed = []
        for seed in range(args.replicates):
            per_seed.append(replicate(ws.device_dir(0), ws.settings, devices=args.devices,
                                      rounds=args.rounds, seed=seed, new=args.new_tasks,
                                      shots=args.shots, adapt_steps=args.adapt_steps))
            say(f"   replicate seed {seed} (no Flower): " + ", ".join(
                f"{k} {100 * v:.1f} %" for k, v in per_seed[-1].items()))
        report["replicates"] = {
            name: {"mean": float(np.mean([r[name] for r in per_seed])),
                   "min": float(np.min([r[name] for r in per_seed])),
                   "per_seed": [r[name] for r in per_seed]}
            for name in per_seed[0]}
        report["seconds"] = round(time.time() - started, 1)
    runs = {}
    for strategy in results:
        runs[strategy] = [r for r in ws.read_progress(strategy) if r["event"] == "round"]
    write_report(runs, work / "fleet_reptile.html", title="TinyReptile vs FedAvg on a Flower "
                 f"fleet ({args.devices} devices, {args.rounds} rounds)",
                 summary={k: report[k] for k in ("reptile_accuracy", "fedavg_accuracy",
                                                 "random_accuracy", "rounds_completed")},
                 shots=args.shots)
    report["report"] = str(work / "fleet_reptile.html")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key in ("reptile_accuracy", "fedavg_accuracy", "random_accuracy"):
            if report[key] is not None:
                print(f"{key}: {100 * report[key]:.1f} %")
        print(f"rounds_completed: {report['rounds_completed']}  ({report['seconds']} s; report "
              f"{report['report']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
