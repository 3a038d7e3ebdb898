"""One PNG for the claims table: a panel per claim sweep, measured trials and the fit."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from memsweep.claims.table import PLATEAU

if TYPE_CHECKING:
    from memsweep.claims.table import ClaimsTable, SweepFacts

GB = 1e9

PANELS: dict[str, tuple[str, str, str]] = {
    # sweep → (x factor, line factor, title)
    "replay_atari": ("replay_capacity", "", "Atari replay, uncompressed frames"),
    "replay_atari_lz4": ("replay_capacity", "", "Atari replay, LZ4-compressed frames"),
    "model_conv": ("num_workers", "model_params", "Small vs deep conv net"),
    "framework_eager": ("num_workers", "framework", "torch vs tf2 vs tf2-eager (old stack)"),
    "workers": ("num_workers", "", "Env runners"),
    "interaction": ("replay_capacity", "group", "Capacity × env runners × framework"),
}


def _panel(ax: Axes, sweep: SweepFacts) -> None:
    x_name, line_name, title = PANELS[sweep.name]
    table = sweep.analysis.trial_table.dropna(subset=[PLATEAU]).copy()
    if line_name == "group":
        table["group"] = (
            table["framework"].astype(str)
            + ", "
            + table["num_workers"].astype(int).astype(str)
            + " runners"
        )
    groups = table.groupby(line_name) if line_name else [("", table)]
    for label, group in groups:
        rows = group.sort_values(x_name)
        shown = f"{label:,.0f} params" if line_name == "model_params" else str(label)
        ax.plot(rows[x_name], rows[PLATEAU] / GB, marker="o", label=shown or None)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(x_name.replace("_", " "), fontsize=8)
    ax.set_ylabel("plateau (GB, PSS)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if line_name:
        ax.legend(fontsize=6)


def claims_figure(table: ClaimsTable, path: Path) -> Path | None:
    """Write the figure; None when no sweep has a plateau to show."""
    sweeps = [s for s in table.sweeps if s.name in PANELS]
    sweeps = [s for s in sweeps if s.analysis.trial_table[PLATEAU].notna().any()]
    if not sweeps:
        return None
    columns = 3
    rows = (len(sweeps) + columns - 1) // columns
    fig = Figure(figsize=(4.2 * columns, 3.2 * rows))
    FigureCanvasAgg(fig)
    for index, sweep in enumerate(sweeps):
        _panel(fig.add_subplot(rows, columns, index + 1), sweep)
    fig.suptitle("memsweep claims: memory once the replay buffer is full, per trial", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    _ = pd
    return path
