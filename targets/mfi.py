"""Multiplication-free inference (MFI) certificate: per synaptic edge, is every event an AC?

    python -m targets.mfi model.nir [--samples 100] [--json]   (or python -m convert.mfi)

NeuroBench's rule: an effective synaptic operation whose input is a binary spike is an
accumulate (AC); one whose input is any other value is a multiply-accumulate (MAC); bias is
excluded. Neuron decays (one fixed 12-bit constant product per neuron per step) are listed
separately, not as synaptic operations. Exit code 1 if any MAC edge remains.

A spike attention (``core.graph.SpikeAttention``, Spikformer's ``Q Kᵀ V``) is its own edge
kind, ``dynamic spike x spike product``: binary ANDs and coincidence counts, then additions of
those counts selected by binary spikes -- no multiplication, but the "weights" are computed at
run time from spikes, not stored. Its events are counted as ACs (ANDs + additions).

An exporter that replaced a float-model operation by an exact integer form records it in the
graph metadata ``neurodeploy_deploy_changes`` (a JSON list of ``{block, sources, readers, float,
deployed, reason}``; ``convert/export/sma_net.py``): every synapse leaving one of those
``sources`` is marked ``[deploy change]``, and the certificate lists each change with its
reason -- a MAC of the float model (a data-dependent attention weight times a spike) that the
deployed graph does not perform, replaced as stated.

Both columns of the table are per sample (T steps). The static worst case of an edge is what
one step costs when every entry of its source is nonzero, times T; it is what the measured
count reaches when every source entry is active at every step, so measured <= static always:

- Dense: the nonzero weights (one event per nonzero weight and active source entry);
- Conv: the nonzero kernel taps that land on a real source entry, summed over the
  convolution's OWN output positions (``Conv.conv_shape``, before any max pooling of the
  currents: every conv output is computed, the pooling compares them afterwards); taps that
  fall in the zero padding have no source neuron and cost nothing, so they are not counted.
  This is exactly the number of connections of the event simulator's fan-out table;
- bit planes: each plane is its own Dense/Conv edge with the same weights (counted as above);
- spike attention: ``2 * dim * N**2`` per step (every AND of q and k true, every count added
  for every v spike; ``fixedpoint.spike_attention_ops``'s two terms at their maxima).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convert import load_graph
from convert.quantize import bitplane_accuracy, calibrate_option, format_bitplane_accuracy
from core.cli import print_json, run_cli
from core.errors import UserError
from core.graph import INPUT, Conv, Dense, QGraph, SpikeAttention
from core.ops import conv2d
from core.plots import check_plot_dir
from targets.base import OVERFLOW_PREFIX
from targets.cli import (
    add_common_args,
    dt_summary,
    overflow_line,
    prepare,
    run_target,
    run_warnings,
    save_run_record,
    write_run_plots,
)

DYNAMIC_PRODUCT = "dynamic spike x spike product"
#: Graph metadata key of the exporter's deployment changes (docs/integer-nir.md).
DEPLOY_CHANGES = "neurodeploy_deploy_changes"
#: Suffix of the input kind of an edge whose weights an exporter changed for deployment.
CHANGED_MARK = "[deploy change]"


@dataclass
class Edge:
    synapse: str
    source: str
    target: str
    input_kind: str  # "binary spikes", "bit plane b", or "graded (MAC)"; "+max": max pooling
    static_ops_per_step: int  # every source entry active: the synapse's connections (exact)
    measured_ops: int | None = None  # summed over every sample of the measured run

    def static_ops_per_sample(self, timesteps: int) -> int:
        """The static worst case over one sample of ``timesteps`` steps (per step x T)."""
        return self.static_ops_per_step * int(timesteps)

    @property
    def is_mac(self) -> bool:
        return self.input_kind.startswith("graded")

    @property
    def is_dynamic(self) -> bool:
        return self.input_kind.startswith(DYNAMIC_PRODUCT)


def _fanout_total(s: Dense | Conv) -> int:
    """Synaptic events of one step with every source entry active: the synapse's connections.

    Dense: its nonzero weights. Conv: for every output position of the convolution itself
    (before max pooling), the nonzero kernel taps that read a real source entry (a tap in the
    zero padding reads no neuron); a convolution of a source of ones with the kernel's nonzero
    pattern counts them. Exact: the event-driven count reaches it when every entry is active.
    """
    nz = np.asarray(s.weight) != 0
    if isinstance(s, Conv):
        ones = np.ones((1, *s.in_shape))
        per_out = conv2d(ones, nz.astype(np.float64), s.stride, s.padding, s.groups)
        return int(np.rint(per_out).sum())
    return int(nz.sum())


def deploy_changes(graph: QGraph) -> list[dict[str, Any]]:
    """What the exporter changed for deployment (graph metadata ``neurodeploy_deploy_changes``,
    a JSON list of ``{block, sources, readers, float, deployed, reason}``); [] if none.

    Raises:
        UserError: the metadata is not such a JSON list.
    """
    raw = (graph.metadata or {}).get(DEPLOY_CHANGES)
    if raw in (None, ""):
        return []
    try:
        changes = json.loads(raw)
        if not all(isinstance(c, dict) and isinstance(c.get("sources"), list) for c in changes):
            raise ValueError("not a list of {sources, ...} objects")
    except (TypeError, ValueError) as e:
        raise UserError(f"graph metadata {DEPLOY_CHANGES} is unreadable: {e}") from None
    return changes


def certificate(graph: QGraph, counters: dict[str, Any] | None = None) -> list[Edge]:
    """Every synaptic edge of ``graph`` with its input kind and operation counts (module
    docstring); ``counters``: an event_sim run's counters, for the measured column."""
    edges = []
    changed = {p for c in deploy_changes(graph) for p in c["sources"]}
    for s in graph.synapses:
        if isinstance(s, SpikeAttention):
            edges.append(_attention_edge(graph, s, counters))
            continue
        graded = s.source == INPUT and not graph.input.binary
        kind = "graded (MAC)" if graded else "binary spikes"
        if s.source == INPUT and graph.input.bitplanes:
            # the plane is the slice it reads (its exponent is b, or b + e with shifted planes)
            plane = (s.source_slice[0] // graph.input.size if s.source_slice is not None
                     else s.weight_exp)
            kind = f"bit plane {plane}"
        if isinstance(s, Conv) and s.max_pool is not None:
            kind += " +max"
        if s.source in changed:
            kind += f" {CHANGED_MARK}"
        measured = None
        if counters is not None and f"events/{s.name}" in counters:
            measured = int(counters[f"events/{s.name}"])
        edges.append(Edge(s.name, s.source, s.target, kind, _fanout_total(s), measured))
    return edges


def _attention_edge(graph: QGraph, s: SpikeAttention, counters: dict[str, Any] | None) -> Edge:
    """Worst case per step: every AND of q and k true (dim * N**2 count increments) and every
    count added for every v spike (dim * N**2 additions)."""
    dim, *tokens = graph.node_shape(s.target)
    n = int(np.prod(tokens))
    measured = None
    if counters is not None and f"events/{s.name}" in counters:
        measured = int(counters[f"events/{s.name}"])
    kind = f"{DYNAMIC_PRODUCT} (q,k,v = {','.join(s.sources)}; {s.heads} heads, shift {s.shift})"
    return Edge(s.name, s.source, s.target, kind, 2 * int(dim) * n * n, measured)


def certificate_summary(graph: QGraph, edges: list[Edge], n_samples: int | None
                        ) -> dict[str, Any]:
    """The certificate's fields, as :func:`format_certificate` prints them (JSON-ready).

    Operation counts are per sample (T steps): ``static_ops_per_sample`` =
    ``static_ops_per_step`` x T, the worst case (every source entry active at every step);
    ``measured`` ones are averages over the ``n_samples`` run (None for a static-only
    certificate), never above the static ones.
    """
    t = graph.timesteps
    macs = [e for e in edges if e.is_mac]
    dyn = [e for e in edges if e.is_dynamic]
    measured = None
    if n_samples:
        measured = {
            "ac": sum(e.measured_ops or 0 for e in edges if not e.is_mac) / n_samples,
            "mac": sum(e.measured_ops or 0 for e in macs) / n_samples,
        }
    return {
        "timesteps": t,
        "samples": n_samples,
        "edges": [{
            "synapse": e.synapse, "source": e.source, "target": e.target,
            "input": e.input_kind, "mac": e.is_mac, "dynamic": e.is_dynamic,
            "static_ops_per_step": e.static_ops_per_step,
            "static_ops_per_sample": e.static_ops_per_sample(t),
            "measured_ops_per_sample": (e.measured_ops / n_samples
                                        if n_samples and e.measured_ops is not None else None),
        } for e in edges],
        "static_per_sample": {
            "ac": sum(e.static_ops_per_step for e in edges if not e.is_mac) * t,
            "mac": sum(e.static_ops_per_step for e in macs) * t,
        },
        "measured_per_sample": measured,
        "neuron_decays_per_sample": sum(p.size for p in graph.populations.values()) * t,
        "max_pooling_of_currents": any("+max" in e.input_kind for e in edges),
        "dynamic_product_edges": [e.synapse for e in dyn],
        "mac_edges": [e.synapse for e in macs],
        "deploy_changes": deploy_changes(graph),
        "deploy_changed_edges": [e.synapse for e in edges if CHANGED_MARK in e.input_kind],
        "multiplication_free": not macs,
    }


def format_certificate(graph: QGraph, edges: list[Edge], n_samples: int | None) -> str:
    """The certificate as a table and its verdict lines (see :func:`certificate_summary`)."""
    s = certificate_summary(graph, edges, n_samples)
    t = s["timesteps"]
    w_syn = max([len("synapse"), *(len(e.synapse) for e in edges)]) + 2
    w_src = max([len("source"), *(len(e.source) for e in edges)]) + 2
    w_tgt = max([len("target"), *(len(e.target) for e in edges)]) + 2
    w_kind = max([len("input"), *(len(e.input_kind) for e in edges)]) + 2
    head = (f"{'synapse':<{w_syn}}{'source':<{w_src}}{'target':<{w_tgt}}{'input':<{w_kind}}"
            f"{'static/sample':>15}")
    if n_samples:
        head += f"{'measured/sample':>17}"
    lines = [head]
    for e, row_s in zip(edges, s["edges"], strict=True):
        row = (f"{e.synapse:<{w_syn}}{e.source:<{w_src}}{e.target:<{w_tgt}}"
               f"{e.input_kind:<{w_kind}}{e.static_ops_per_sample(t):>15}")
        if row_s["measured_ops_per_sample"] is not None:
            row += f"{row_s['measured_ops_per_sample']:>17.1f}"
        lines.append(row)
    st = s["static_per_sample"]
    lines.append(f"static worst case per sample (T={t}): {st['ac']} ACs, {st['mac']} MACs")
    if s["measured_per_sample"] is not None:
        m = s["measured_per_sample"]
        lines.append(f"measured per sample ({n_samples} samples): {m['ac']:.1f} ACs, "
                     f"{m['mac']:.1f} MACs")
    lines.append(f"neuron decays (not synaptic): {s['neuron_decays_per_sample']} constant "
                 "products per sample")
    if s["max_pooling_of_currents"]:
        lines.append("max pooling of currents: comparisons, no multiplication; needs "
                     "programmable neurons on Loihi (custom process in Lava)")
    dyn = [e for e in edges if e.is_dynamic]
    if dyn:
        lines.append(
            f"{DYNAMIC_PRODUCT} edges: " + ", ".join(f"{e.synapse} (-> {e.target})" for e in dyn)
            + ": binary ANDs + coincidence counts, counts accumulated where v spikes; no "
            "multiplication, but dynamic weights (needs a custom process in Lava; programmable "
            "cores on Loihi); counted as ACs")
    for c in s["deploy_changes"]:
        marked = [e.synapse for e in edges if e.source in c["sources"]]
        lines.append(f"deploy change ({c.get('block', '?')}; edges {', '.join(marked)}): float "
                     f"model: {c.get('float')}; deployed: {c.get('deployed')}; why: "
                     f"{c.get('reason')}")
    macs = [e for e in edges if e.is_mac]
    if macs:
        lines.append("NOT multiplication-free: " + ", ".join(
            f"{e.synapse} ({e.source} -> {e.target}: graded input)" for e in macs))
    else:
        lines.append("multiplication-free: every synaptic edge receives binary spikes"
                     + (f" ({len(dyn)} of them as a {DYNAMIC_PRODUCT})" if dyn else ""))
    return "\n".join(lines)


def write_ops_plot(graph: QGraph, edges: list[Edge], n_samples: int | None,
                   folder: Path) -> str:
    """``folder/ops.png``: per synaptic edge, its operations per sample (T steps): the static
    worst case beside the measured mean over ``n_samples`` (absent for a static-only
    certificate), log scale; a MAC edge's label ends in ``(MAC)``. Returns the path."""
    from core.plots import bar_plot

    t = graph.timesteps
    labels = [f"{e.synapse}{' (MAC)' if e.is_mac else ''}" for e in edges]
    values = {"static worst case": [e.static_ops_per_sample(t) for e in edges]}
    if n_samples:
        values[f"measured (mean of {n_samples})"] = [
            None if e.measured_ops is None else e.measured_ops / n_samples for e in edges]
    return str(bar_plot(folder / "ops.png", labels, values, ylabel="operations per sample (log)",
                        log=True, title=f"synaptic operations per edge, T={t}"))


def main(argv: list[str] | None = None) -> int:
    """``python -m targets.mfi`` (and ``python -m convert.mfi``): print the certificate; exit
    1 if any MAC edge remains, 2 on bad input."""
    ap = argparse.ArgumentParser(
        prog="python -m targets.mfi",
        description="Multiplication-free inference certificate: lists every synaptic edge "
        "with its input kind and its synaptic operations (static worst case, and measured by "
        "the event simulator on real inputs), split into ACs and MACs by NeuroBench's rule. "
        "Exit 1 if any MAC edge remains. --record saves the event simulator's records of the "
        "measured run (layout: targets/records.py).",
    )
    add_common_args(ap, plot_help="ops.png (synaptic operations per edge and sample: static "
                    "worst case beside measured, MAC edges marked) and, from a measured run, "
                    "raster.png and rates.png")
    ap.add_argument("--static-only", action="store_true", help="do not run samples")
    args = ap.parse_args(argv)
    plot_dir = check_plot_dir(args.plot)
    run_plots: list[str] = []
    if args.static_only:
        for flag, given in (("--record", args.record), ("--input", args.input),
                            ("--labels", args.labels), ("--samples", args.samples)):
            if given is not None:
                raise UserError(f"{flag} needs a measured run: drop --static-only")
        graph, report = load_graph(args.model, dt=args.dt, timesteps=args.timesteps,
                                   input_bitplanes=args.input_bitplanes,
                                   **calibrate_option(args))
        counters, n, bp_acc = None, None, None
        warnings = list(getattr(report, "warnings", None) or [])
    else:
        prep = prepare(args)
        graph = prep.graph
        result = run_target(prep, "event_sim")  # --workers/--cluster, pieces (targets/cli.py)
        save_run_record(prep, result)
        counters, n = result.counters, len(prep.inputs)
        warnings = run_warnings(prep, result)
        run_plots = write_run_plots("targets.mfi", prep, result)
        # what the bit planes cost, where the user chose them: float vs graded vs bit planes
        bp_acc = (bitplane_accuracy(args, graph, prep.inputs, prep.labels)
                  if args.input_bitplanes and prep.labels is not None else None)
    edges = certificate(graph, counters)
    dt = dt_summary(graph)
    # the measured run's overflow counters (overflow/<kind>/<population>), as every command
    overflow = {k: int(v) for k, v in (counters or {}).items() if k.startswith(OVERFLOW_PREFIX)}
    plots = ([write_ops_plot(graph, edges, n, plot_dir)] if plot_dir else []) + run_plots
    if args.json:
        print_json({**certificate_summary(graph, edges, n), "dt": dt, "warnings": warnings,
                    "plots": plots,
                    "overflow_events": sum(overflow.values()) if counters else None,
                    "overflow": overflow, "record": args.record,
                    **({"bitplane_accuracy": bp_acc} if bp_acc is not None else {})})
    else:
        print(format_certificate(graph, edges, n))
        if counters is not None:
            print(overflow_line(overflow))
        if bp_acc is not None:
            print(format_bitplane_accuracy(bp_acc))
        if dt["value"] is not None:
            print(f"dt: {dt['value']:g} s ({dt['detail']})")
        if args.record:
            print(f"event_sim records written to {args.record}")
        for path in plots:
            print(f"plot written to {path}")
    for w in warnings:
        print(f"targets.mfi: warning: {w}", file=sys.stderr)
    if args.strict and warnings:
        return 1
    return 1 if any(e.is_mac for e in edges) else 0


if __name__ == "__main__":
    sys.exit(run_cli("targets.mfi", main))
