"""The learning report: accuracy over time (matplotlib) and the figures, in one HTML file.

The plot shows the prequential accuracy (sliding window over the stream: each sample scored
by the prediction made before learning from it) and, when the stream carried held-out data,
the held-out accuracy at each evaluation. The PNG is embedded, so the file stands alone;
it is also saved next to it (same name, .png).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from tinyml.errors import TinymlError
from tinyml.learn.stream import WINDOW, StreamResult


def check_report_path(path: str | Path) -> Path:
    """Refuse, before any work, a report that could not be written: its folder must exist,
    and a .png name would be overwritten by the side PNG written next to the HTML."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        raise TinymlError(f"--report {path}: the report is an HTML file (the plot is embedded "
                          f"and also saved as {path.stem}.png); name it e.g. {path.stem}.html")
    if not path.parent.is_dir():
        raise TinymlError(f"--report {path}: folder '{path.parent}' does not exist")
    if path.is_dir():
        raise TinymlError(f"--report {path}: is a folder, expected an HTML file name")
    return path


def accuracy_plot_png(result: StreamResult, title: str) -> bytes:
    # A bare Figure (no pyplot): nothing global, the caller's backend stays as it is.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.2), dpi=110)
    axes = figure.subplots()
    steps = range(1, result.samples_seen + 1)
    axes.plot(steps, 100 * result.accuracy_curve(), label=f"prequential ({WINDOW}-sample window)")
    if result.evaluations:
        axes.plot([e["samples"] for e in result.evaluations],
                  [100 * e["accuracy"] for e in result.evaluations], "o-", label="held-out")
    rejected = [t + 1 for t, ok in enumerate(result.applied) if not ok]
    if rejected:
        axes.plot(rejected, [2] * len(rejected), "x", color="red", label="rejected steps")
    axes.set_xlabel("samples seen")
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(0, 102)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_learning_report(result: StreamResult, path: str | Path, title: str,
                          figures: list[tuple[str, str]]) -> Path:
    """``figures``: (name, value) rows of the table under the plot."""
    path = check_report_path(path)
    png = accuracy_plot_png(result, title)
    rows = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                     for k, v in figures)
    path.write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}
th{{text-align:left;padding-right:2em}}td{{font-family:monospace}}</style></head>
<body><h1>{html.escape(title)}</h1>
<img alt="accuracy over time" src="data:image/png;base64,{base64.b64encode(png).decode()}">
<table>{rows}</table></body></html>
""")
    path.with_suffix(".png").write_bytes(png)
    return path
