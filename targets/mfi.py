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
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from convert import load_graph
from core.cli import print_json, run_cli
from core.errors import UserError
from core.graph import INPUT, Conv, Dense, QGraph, SpikeAttention
from core.ops import conv2d
from targets import event_sim
from targets.base import OVERFLOW_PREFIX
from targets.cli import (
    add_common_args,
    dt_summary,
    overflow_line,
    prepare,
    run_warnings,
    save_run_record,
)

DYNAMIC_PRODUCT = "dynamic spike x spike product"


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


def certificate(graph: QGraph, counters: dict[str, Any] | None = None) -> list[Edge]:
    edges = []
    for s in graph.synapses:
        if isinstance(s, SpikeAttention):
            edges.append(_attention_edge(graph, s, counters))
            continue
        graded = s.source == INPUT and not graph.input.binary
        kind = "graded (MAC)" if graded else "binary spikes"
        if s.source == INPUT and graph.input.bitplanes:
            kind = f"bit plane {s.weight_exp}"
        if isinstance(s, Conv) and s.max_pool is not None:
            kind += " +max"
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
    macs = [e for e in edges if e.is_mac]
    if macs:
        lines.append("NOT multiplication-free: " + ", ".join(
            f"{e.synapse} ({e.source} -> {e.target}: graded input)" for e in macs))
    else:
        lines.append("multiplication-free: every synaptic edge receives binary spikes"
                     + (f" ({len(dyn)} of them as a {DYNAMIC_PRODUCT})" if dyn else ""))
    return "\n".join(lines)


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
    add_common_args(ap)
    ap.add_argument("--static-only", action="store_true", help="do not run samples")
    args = ap.parse_args(argv)
    if args.static_only:
        for flag, given in (("--record", args.record), ("--input", args.input),
                            ("--labels", args.labels), ("--samples", args.samples)):
            if given is not None:
                raise UserError(f"{flag} needs a measured run: drop --static-only")
        graph, report = load_graph(args.model, dt=args.dt, timesteps=args.timesteps,
                                   input_bitplanes=args.input_bitplanes)
        counters, n = None, None
        warnings = list(getattr(report, "warnings", None) or [])
    else:
        prep = prepare(args)
        graph = prep.graph
        result = event_sim.run(graph, prep.inputs, progress=prep.progress)
        save_run_record(prep, result)
        counters, n = result.counters, len(prep.inputs)
        warnings = run_warnings(prep, result)
    edges = certificate(graph, counters)
    dt = dt_summary(graph)
    # the measured run's overflow counters (overflow/<kind>/<population>), as every command
    overflow = {k: int(v) for k, v in (counters or {}).items() if k.startswith(OVERFLOW_PREFIX)}
    if args.json:
        print_json({**certificate_summary(graph, edges, n), "dt": dt, "warnings": warnings,
                    "overflow_events": sum(overflow.values()) if counters else None,
                    "overflow": overflow, "record": args.record})
    else:
        print(format_certificate(graph, edges, n))
        if counters is not None:
            print(overflow_line(overflow))
        if dt["value"] is not None:
            print(f"dt: {dt['value']:g} s ({dt['detail']})")
        if args.record:
            print(f"event_sim records written to {args.record}")
    for w in warnings:
        print(f"targets.mfi: warning: {w}", file=sys.stderr)
    if args.strict and warnings:
        return 1
    return 1 if any(e.is_mac for e in edges) else 0


if __name__ == "__main__":
    sys.exit(run_cli("targets.mfi", main))
