"""The report's pictures (``--plot DIR``): cores per layer with the binding constraint, and the
estimated energy per layer on the chip beside the GPU/CPU estimate. matplotlib (Agg), PNG,
each file written whole (``core.files.write_atomic``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.files import write_atomic
from targets.report import ChipReport
from targets.report.resources import RESOURCES

__all__ = ["write_plots"]

# one colour per resource, the same in every plot (matplotlib's default cycle)
_COLOURS = dict(zip(RESOURCES, ("C0", "C1", "C2", "C3"), strict=True))


def _save(fig: Any, path: Path) -> None:
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))


def write_plots(rep: ChipReport, out_dir: str | Path, title: str = "") -> list[Path]:
    """Write ``resources.png`` (cores per layer, coloured by binding constraint, with the
    fullest core's use of that resource) and, with an energy estimate, ``energy.png`` (per
    layer: chip estimate vs GPU/CPU dense-MAC estimate, log scale). Returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    r = rep.resources
    names = [lay.node for lay in r.layers]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(names) + 2), 4))
    bars = ax.bar(range(len(names)), [lay.cores for lay in r.layers],
                  color=[_COLOURS[lay.binding] for lay in r.layers])
    for b, lay in zip(bars, r.layers, strict=True):
        ax.text(b.get_x() + b.get_width() / 2, b.get_height(),
                f"{lay.utilisation[lay.binding] * 100:.0f}%", ha="center", va="bottom",
                fontsize=7)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("neuro-cores")
    ax.set_ylim(0, max((lay.cores for lay in r.layers), default=1) * 1.4)
    ax.set_title(f"{title} {r.chip}: {r.cores} cores, {r.chips} chip(s); label: fullest "
                 "core's use of its binding resource".strip(), fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in _COLOURS.values()]
    ax.legend(handles, [f"binding: {k}" for k in _COLOURS], fontsize=7, loc="upper right")
    p = out / "resources.png"
    _save(fig, p)
    plt.close(fig)
    written.append(p)
    e = rep.energy
    if e is not None:
        fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(names) + 2), 4))
        xs = range(len(e.layers))
        ax.bar([x - 0.2 for x in xs], [max(lay.chip_pj * 1e-3, 1e-6) for lay in e.layers],
               width=0.4, label=f"Loihi 2 estimate ({e.chip_uj:.3f} uJ)")
        ax.bar([x + 0.2 for x in xs], [max(lay.gpu_pj * 1e-3, 1e-6) for lay in e.layers],
               width=0.4, label=f"GPU/CPU dense MACs, 45 nm ({e.gpu_uj:.3f} uJ)")
        ax.set_yscale("log")
        top = max([lay.chip_pj for lay in e.layers] + [lay.gpu_pj for lay in e.layers]
                  + [1.0]) * 1e-3
        ax.set_ylim(top=top * 30)  # room for the legend above the bars
        ax.set_xticks(list(xs), [lay.node for lay in e.layers], rotation=60, ha="right",
                      fontsize=7)
        ax.set_ylabel("nJ per inference (ESTIMATE)")
        ax.set_title(f"{title} energy per layer, estimated from {e.samples} measured "
                     "sample(s)".strip(), fontsize=9)
        ax.legend(fontsize=7)
        p = out / "energy.png"
        _save(fig, p)
        plt.close(fig)
        written.append(p)
    return written
