"""The pictures every command writes with ``--plot DIR``: one module, used from every layer.

matplotlib is imported inside each function, never at module import: a command run without
``--plot`` never loads it (and the Lava environment, which has no matplotlib, can import
core). Figures are ``matplotlib.figure.Figure`` objects drawn by the Agg canvas (no pyplot, no
global backend, no display), each PNG written whole through :func:`core.files.write_atomic`.

- :func:`spike_rasters`: one sample's spikes, one panel per population (time step x neuron).
- :func:`rate_histograms`: per population, the histogram of neurons' firing rates (spikes per
  neuron per step, over every sample run).
- :func:`line_plot`: curves over a shared x axis (accuracy per epoch, accuracy vs timesteps).
- :func:`bar_plot`: one or more values per layer (quantization error, bits used, operations).
- :func:`divergence_plot`: per population, how many spike entries differ between two runs at
  each step (verify, when targets disagree).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.cli import check_writable
from core.files import write_atomic

__all__ = ["add_plot_flag", "bar_plot", "check_plot_dir", "divergence_plot", "line_plot",
           "rate_histograms", "spike_rasters"]

# Pixels per inch of every PNG: 110 dpi keeps a 6-inch-wide figure near 660 px, readable in a
# README and small enough to commit.
DPI = 110
# At most this many neurons drawn per raster panel (the first ones): a 10,000-neuron layer
# drawn whole is a grey block; the panel's title says when it is cut.
MAX_RASTER_NEURONS = 512


def add_plot_flag(ap: argparse.ArgumentParser, what: str) -> None:
    """Add ``--plot DIR`` to a command's parser; ``what``: the pictures, for ``--help``."""
    ap.add_argument("--plot", default=None, metavar="DIR",
                    help=f"write PNG pictures into DIR (created if missing): {what}; the "
                    "command prints each path it writes")


def check_plot_dir(folder: str | Path | None) -> Path | None:
    """Refuse a ``--plot`` folder that cannot be written, before any work (None: no plots).

    Raises:
        UserError: the folder cannot be created or written, or is a file.
    """
    if folder is None:
        return None
    p = Path(folder)
    if p.exists() and not p.is_dir():
        from core.errors import UserError

        raise UserError(f"--plot {p}: is a file; give a folder")
    check_writable(p / "probe.png", "--plot")
    return p


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")  # titles never overlap ticks
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI,
                                               bbox_inches="tight"))
    return path


def spike_rasters(path: str | Path, spikes: Mapping[str, np.ndarray], *, sample: int = 0,
                  title: str = "") -> Path:
    """Write one sample's spike raster per population to ``path`` (PNG).

    ``spikes``: population -> bool/int ``[N, T, size]`` (a target's ``RunResult.spikes``);
    ``sample``: the index drawn. Panels are stacked, heights by neuron count (clamped), at
    most :data:`MAX_RASTER_NEURONS` neurons each. Returns ``path``.
    """
    names = list(spikes)
    heights = [min(max(spikes[k].shape[-1], 8), 64) for k in names] or [1]
    fig = _figure(7.0, 1.2 + 0.045 * sum(heights) + 0.35 * len(names))
    axes = fig.subplots(max(1, len(names)), 1, squeeze=False,
                        gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, k in zip(axes, names, strict=False):
        rec = np.asarray(spikes[k][sample]).reshape(spikes[k].shape[1], -1)  # [T, size]
        shown = rec[:, :MAX_RASTER_NEURONS]
        # one cell per (step, neuron), black = spike: readable for 4 steps and for 400
        ax.imshow(shown.T != 0, aspect="auto", cmap="Greys", interpolation="nearest",
                  origin="lower", vmin=0, vmax=1)
        ax.xaxis.get_major_locator().set_params(integer=True)
        cut = f", first {shown.shape[1]} of {rec.shape[1]}" if shown.shape[1] < rec.shape[1] \
            else ""
        ax.set_title(f"{k}: {int(rec.sum())} spikes, {rec.shape[1]} neurons{cut}", fontsize=8,
                     loc="left")
        ax.set_ylabel("neuron", fontsize=7)
        ax.tick_params(labelsize=6)
    axes[-1].set_xlabel("time step", fontsize=7)
    fig.suptitle(f"{title} spike raster, sample {sample}".strip(), fontsize=9)
    return _save(fig, Path(path))


def rate_histograms(path: str | Path, spikes: Mapping[str, np.ndarray], *,
                    title: str = "") -> Path:
    """Write, per population, the histogram of its neurons' firing rates to ``path`` (PNG).

    ``spikes``: population -> ``[N, T, size]``; a neuron's rate is its spikes per step over
    all ``N`` samples (0..1 for single spikes). The panel's title gives the share of silent
    neurons (rate 0). Returns ``path``.
    """
    names = list(spikes)
    cols = min(3, max(1, len(names)))
    rows = -(-max(1, len(names)) // cols)
    fig = _figure(3.0 * cols, 2.3 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, k in zip(axes, names, strict=False):
        s = np.asarray(spikes[k])
        rate = s.reshape(s.shape[0] * s.shape[1], -1).mean(axis=0) if s.size else np.zeros(1)
        ax.hist(rate, bins=20, color="C0")
        ax.set_title(f"{k}: {np.mean(rate == 0) * 100:.0f}% silent", fontsize=8)
        ax.set_xlabel("spikes per neuron per step", fontsize=7)
        ax.set_ylabel("neurons", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"{title} firing rates".strip(), fontsize=9)
    return _save(fig, Path(path))


def line_plot(path: str | Path, series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
              *, xlabel: str, ylabel: str, title: str = "", percent: bool = False) -> Path:
    """Write curves to ``path`` (PNG): ``series`` label -> (xs, ys), one marked line each;
    ``percent``: ys are fractions drawn as percentages. Returns ``path``."""
    fig = _figure(6.0, 3.5)
    ax = fig.add_subplot(1, 1, 1)
    for label, (xs, ys) in series.items():
        ys_ = [np.nan if y is None else (100 * y if percent else y) for y in ys]
        ax.plot(list(xs), ys_, marker="o", ms=4, label=label)
    ax.xaxis.get_major_locator().set_params(integer=True)  # epochs, timesteps: no 1.25
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel + (" (%)" if percent else ""))
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=7)
    return _save(fig, Path(path))


def bar_plot(path: str | Path, labels: Sequence[str], values: Mapping[str, Sequence[float]], *,
             ylabel: str, title: str = "", log: bool = False,
             limit: tuple[float, str] | None = None) -> Path:
    """Write grouped bars to ``path`` (PNG): one group per label (a layer), one bar per entry
    of ``values`` (series name -> one value per label); ``log``: log-scaled y (zeros drawn
    empty); ``limit``: (value, label) drawn as a dashed red line across. Returns ``path``."""
    n = max(1, len(values))
    width = 0.8 / n
    fig = _figure(min(20.0, max(6.0, 0.4 * len(labels) * n + 2)), 4.0)  # <= 2200 px wide
    ax = fig.add_subplot(1, 1, 1)
    xs = np.arange(len(labels))
    for j, (name, vals) in enumerate(values.items()):
        v = np.asarray([np.nan if x is None else float(x) for x in vals])
        if log:
            v = np.where(v > 0, v, np.nan)
        ax.bar(xs + (j - (n - 1) / 2) * width, v, width=width, label=name)
    if limit is not None:
        ax.axhline(limit[0], color="red", linestyle="--", linewidth=1, label=limit[1])
    if log:
        ax.set_yscale("log")
    ax.set_xticks(xs, list(labels), rotation=45 if len(labels) > 4 else 0, ha="right"
                  if len(labels) > 4 else "center", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if len(values) > 1 or limit is not None:
        ax.legend(fontsize=7)
    return _save(fig, Path(path))


def divergence_plot(path: str | Path, a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray],
                    *, names: tuple[str, str], title: str = "") -> Path:
    """Write, per population, the number of spike entries that differ between runs ``a`` and
    ``b`` at each step (summed over samples and neurons) to ``path`` (PNG), with the first
    divergence (sample, step, neuron) in the legend. ``a``/``b``: population -> ``[N, T,
    size]``; ``names``: the two runs' names. Returns ``path``."""
    fig = _figure(6.5, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    for k in a:
        if k not in b:
            continue
        d = np.asarray(a[k]) != np.asarray(b[k])
        per_step = d.reshape(d.shape[0], d.shape[1], -1).sum(axis=(0, 2))
        first = ""
        if d.any():
            n_, t_, i_ = (int(v[0]) for v in np.nonzero(d.reshape(d.shape[0], d.shape[1], -1)))
            first = f" (first: sample {n_}, step {t_}, neuron {i_})"
        ax.plot(range(len(per_step)), per_step, marker="o", ms=3, label=f"{k}{first}")
    ax.set_xlabel("time step")
    ax.set_ylabel("differing spike entries")
    ax.set_title(f"{title} {names[0]} vs {names[1]}: where the spikes diverge".strip(),
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, Path(path))
