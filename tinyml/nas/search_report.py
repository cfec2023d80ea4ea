"""The search's HTML report: figures of the chosen model and the Pareto front of the search.

One self-contained file (plots are PNGs embedded in base64, as ``tinyml report`` does):

- the result: accuracies (float, int8, baseline), measured RAM and flash against the budgets,
  the estimates the search used, instructions measured in QEMU and predicted;
- the Pareto front: every trained candidate's proxy accuracy against its MACs and against its
  predicted instructions, the non-dominated ones joined, the chosen one marked;
- the search-space optimization: per (resolution, width), how many samples fit and their
  median MACs;
- the table of trained candidates.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both cost (lower) and accuracy (higher),
    sorted by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _pareto_plot(proxies: list[dict], chosen: str) -> str:
    # A Figure of its own, not pyplot: a library must not switch the caller's backend.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2))
    axes = figure.subplots(1, 2)
    for ax, cost, label in ((axes[0], "macs", "MACs per inference"),
                            (axes[1], "instructions", "predicted instructions per inference")):
        xs = [p[cost] for p in proxies]
        ys = [100 * p["accuracy"] for p in proxies]
        ax.scatter(xs, ys, s=18, color="#7f8c8d", label="trained candidates")
        front = pareto_front(list(zip(xs, ys)))
        ax.plot([xs[i] for i in front], [ys[i] for i in front], "-o", color="#c0392b", ms=5,
                label="Pareto front")
        for p, x, y in zip(proxies, xs, ys):
            if p["arch"] == chosen:
                ax.scatter([x], [y], s=120, facecolors="none", edgecolors="#2c3e50",
                           linewidths=2, label="chosen")
        ax.set_xlabel(label)
        ax.set_ylabel("proxy accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    figure.suptitle("search: proxy accuracy against cost (every candidate fits the budgets)")
    return _png(figure)


def _row(cells) -> str:
    return "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def write_report(path: Path, result: dict, events: list[dict], scores) -> None:
    proxies = [e for e in events if e.get("event") == "proxy"]
    plot = _pareto_plot(proxies, result["arch"]) if proxies else None
    figures = [
        ("int8 test accuracy", _percent(result["test_accuracy"]),
         "TFLM on the test split"),
        ("float test accuracy", _percent(result["float_test_accuracy"]), "Keras"),
        ("baseline int8 test accuracy", _percent(result["baseline_accuracy"]),
         f"{result['baseline_arch'] or 'none fits'}, same epochs"),
        ("RAM", f"{result['ram_bytes']:,} B of {result['sram_budget_bytes']:,} B",
         f"measured: .data + .bss + stack {result['stack_bytes']:,} B "
         f"(search estimate {result['estimated_ram_bytes']:,} B)"),
        ("flash", f"{result['flash_bytes']:,} B of {result['flash_budget_bytes']:,} B",
         f"measured: code {result['text_bytes']:,} + constants {result['rodata_bytes']:,} + "
         f"data {result['data_bytes']:,} (search estimate {result['estimated_flash_bytes']:,} "
         f"B)"),
        ("peak SRAM (arena)", f"{result['peak_sram_bytes']:,} B",
         f"layer by layer {result['peak_sram_bytes_layerwise']:,} B; patches: "
         + (f"{result['patch']['grid'][0]}x{result['patch']['grid'][1]} up to "
            f"{result['patch']['split_layer']}" if result["patch"] else "none")),
        ("instructions", f"{result['instructions_per_inference'] or 0:,}",
         f"measured in QEMU (predicted {result['predicted_instructions']:,})"),
        ("MACs", f"{result['macs']:,}", ""),
        ("architecture", result["arch"], f"sub-space {result['subspace']}"),
        ("search", f"{result['candidates_evaluated']} trained, "
                   f"{result['candidates_checked']} checked",
         f"{result['proxy_epochs']} proxy epochs, {result['epochs']} final epochs, "
         f"{result['seconds']:.0f} s"),
    ]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>tinyml nas report</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:3px 8px;font-size:13px;text-align:left}</style></head><body>",
        f"<h1>tinyml nas: {html.escape(result['target'])}</h1>",
        "<table>", *(_row(r) for r in figures), "</table>",
    ]
    if plot:
        parts.append(f"<h2>Pareto front</h2><img alt='Pareto front' "
                     f"src='data:image/png;base64,{plot}'>")
    parts += ["<h2>Search-space optimization</h2><table>",
              _row(("resolution", "width", "samples fitting", "median MACs of fitting"))]
    parts += [_row((s.resolution, s.width, f"{s.fitting}/{s.samples}",
                    f"{s.median_macs:,.0f}")) for s in scores]
    parts += ["</table><h2>Trained candidates</h2><table>",
              _row(("generation", "proxy accuracy", "MACs", "est. RAM B", "est. flash B",
                    "patches", "architecture"))]
    for p in sorted(proxies, key=lambda p: -p["accuracy"]):
        parts.append(_row((p["generation"], _percent(p["accuracy"]), f"{p['macs']:,}",
                           f"{p['ram_bytes']:,}", f"{p['flash_bytes']:,}", p["patch"],
                           p["arch"])))
    parts.append("</table></body></html>")
    Path(path).write_text("\n".join(parts))
