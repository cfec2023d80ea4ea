"""The fleet's report: accuracy after adaptation per round, per run, plotted (matplotlib).

The per-round accuracy is what the devices measure each round before training: from the
global init, ``adapt_steps`` SGD steps on a few-shot episode of their own data, accuracy on
their held-out examples (:mod:`.client_app`). The HTML embeds the PNG and a table per run,
with the rejected updates and missing devices of each round.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path


def plot_accuracy(runs: dict[str, list[dict]], png: str | Path) -> Path:
    """The accuracy-per-round plot as a PNG. A bare ``Figure`` (no pyplot): the library
    neither switches the caller's matplotlib backend nor keeps figures alive."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for name, records in runs.items():
        rounds = [r["round"] for r in records if r.get("accuracy") is not None]
        acc = [100 * r["accuracy"] for r in records if r.get("accuracy") is not None]
        ax.plot(rounds, acc, marker="o", label=name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy after adaptation (%)")
    ax.set_title("fleet: devices adapting from the global init")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png = Path(png)
    fig.savefig(png, dpi=110)
    return png


def write_report(runs: dict[str, list[dict]], path: str | Path, title: str = "tinyml fleet",
                 summary: dict | None = None, shots: int | None = None) -> Path:
    """The HTML report; ``shots``: the fleet's examples per class of an adaptation
    (FleetSettings.shots), as the text says."""
    path = Path(path)
    support = (f"{shots} examples per class" if shots is not None
               else "a few examples per class")
    png = plot_accuracy(runs, path.with_suffix(".png"))
    image = base64.b64encode(png.read_bytes()).decode()
    parts = [f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
             f"<body><h1>{html.escape(title)}</h1>"]
    if summary:
        parts.append("<table border=1 cellpadding=4>" + "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
            for k, v in summary.items()) + "</table>")
    parts.append(f"<p><img src='data:image/png;base64,{image}'></p><p>Per round: the fleet's "
                 f"own devices adapting from the global init before training ({support}, "
                 "on-device SGD), accuracy on their held-out examples. FedAvg has "
                 "trained on these devices' labels, so this curve flatters it; adaptation on "
                 "new devices is the comparison of the inits.</p>")
    for name, records in runs.items():
        parts.append(f"<h2>{html.escape(name)}</h2><table border=1 cellpadding=4><tr><th>round"
                     "</th><th>accuracy</th><th>clients</th><th>epsilon</th><th>rejected</th>"
                     "<th>failed</th></tr>")
        for r in records:
            acc = "-" if r.get("accuracy") is None else f"{100 * r['accuracy']:.1f} %"
            parts.append(f"<tr><td>{r['round']}</td><td>{acc}</td><td>{r['clients']}</td>"
                         f"<td>{r['epsilon']:.3f}</td>"
                         f"<td>{html.escape(str(r['rejected'] or ''))}</td>"
                         f"<td>{html.escape(str(r['failed'] or ''))}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    path.write_text("".join(parts))
    return path
