"""The reference comparison's two plots (``--plot DIR``), written atomically as PNG files.

``agreement.png``: per population, the share of equal spike entries (reference vs chip) at each
step. ``reference_raster.png``: one sample (the first whose prediction flips, else the first that
differs), one row per population, the reference's spikes beside the chip's, with the entries
that differ marked. matplotlib's ``Figure`` with the Agg canvas: no pyplot, no display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from core.files import write_atomic


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def write_plots(folder: str | Path, rep: dict[str, Any], refs: dict[str, np.ndarray],
                deps: dict[str, np.ndarray], sample: int) -> list[str]:
    """Write ``agreement.png`` and ``reference_raster.png`` into ``folder`` (created if
    missing) from a report (:func:`targets.reference.report.reference_report`) and the
    compared records ``[N, T, size]``; ``sample`` is the one the raster shows. Returns the
    paths written."""
    folder = Path(folder)
    names = list(rep["populations"])
    written = []

    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot(1, 1, 1)
    for k in names:
        a = rep["populations"][k]["agreement_per_step"]
        ax.plot(range(len(a)), [100 * v for v in a], marker="o", ms=3, label=k)
    ax.set_xlabel("time step")
    ax.set_ylabel("equal spike entries (%)")
    ax.set_title(f"{rep['reference']} vs chip ({rep['deployed']}): agreement over time")
    if names:
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, folder / "agreement.png")
    written.append(str(folder / "agreement.png"))

    rows = max(1, len(names))
    fig = Figure(figsize=(9, 2.2 * rows))
    for r, k in enumerate(names):
        ref, dep = refs[k][sample], deps[k][sample]  # [T, size]
        diff = ref != dep
        for c, (title, rec) in enumerate(((rep["reference"], ref), ("chip", dep))):
            ax = fig.add_subplot(rows, 2, 2 * r + c + 1)
            t, i = np.nonzero(rec)
            ax.scatter(t, i, s=6, c="black", marker="|", label="spike")
            dt_, di = np.nonzero(diff)
            ax.scatter(dt_, di, s=14, facecolors="none", edgecolors="red", linewidths=0.6,
                       label="differs")
            ax.set_xlim(-0.5, rec.shape[0] - 0.5)
            ax.set_ylim(-0.5, rec.shape[1] - 0.5)
            ax.set_title(f"{k}: {title}", fontsize=8)
            ax.tick_params(labelsize=6)
            if r == rows - 1:
                ax.set_xlabel("time step", fontsize=7)
            if c == 0:
                ax.set_ylabel("neuron", fontsize=7)
    fig.suptitle(f"sample {sample}: {rep['reference']} vs chip (red: entries that differ)",
                 fontsize=9)
    fig.tight_layout()
    _save(fig, folder / "reference_raster.png")
    written.append(str(folder / "reference_raster.png"))
    return written
