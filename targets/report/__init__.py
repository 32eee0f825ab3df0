"""Before booking chip time: the Loihi 2 resource map, energy and latency ESTIMATES per
inference, and NeuroBench's metrics, for one graph.

    python -m targets.report model.nir [--samples 100 | --input x.npy] [--json] [--plot DIR]

- :mod:`~targets.report.resources`: populations and synapses assigned to neuro-cores under
  Loihi 2's per-core limits (:mod:`~targets.report.limits`, cited in docs/loihi2.md); cores,
  chips, the binding constraint per layer, what needs neuron programs or custom processes;
- :mod:`~targets.report.energy`: energy and latency per inference from the event simulator's
  measured counters and published per-operation constants, beside the MAC-based GPU/CPU
  estimate of the same float model (an estimate, and said so everywhere it is printed);
- :mod:`~targets.report.nbmetrics`: NeuroBench's footprint, sparsities and synaptic
  operations, by the ``neurobench`` package on the float model, beside ours on the deployed one;
- :mod:`~targets.report.plots`: cores per layer with the binding constraint, energy per layer.

:func:`chip_report` builds the :class:`ChipReport` (plain dataclasses, printed with
``core.cli.print_json`` under ``--json``); :func:`format_report` is the text form;
:func:`report_section` the short form that ``lava_sim`` and ``verify`` append.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.graph import QGraph
from targets.report.energy import (
    ESTIMATE_NOTE,
    EnergyReport,
    dense_macs_per_step,
    estimate,
)
from targets.report.limits import HOROWITZ_45NM, LOIHI1_COSTS, LOIHI2, CoreLimits
from targets.report.nbmetrics import NeuroBenchMetrics, deployed_metrics
from targets.report.resources import ResourceMap, map_graph

__all__ = ["ChipReport", "chip_report", "format_report", "report_section", "chip_section",
           "ResourceMap",
           "EnergyReport", "NeuroBenchMetrics", "map_graph", "estimate"]


@dataclass
class ChipReport:
    """The whole report: the map always; the estimate and metrics with a measured run."""

    resources: ResourceMap
    energy: EnergyReport | None
    neurobench: list[NeuroBenchMetrics] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def chip_report(graph: QGraph, counters: dict[str, Any] | None = None,
                n_samples: int | None = None, *, float_graph: Any = None,
                inputs: np.ndarray | None = None, limits: CoreLimits = LOIHI2,
                neurobench: bool = True, checkpoint: str | None = None) -> ChipReport:
    """The report of ``graph``: its resource map; with a measured run (event_sim ``counters``
    over ``n_samples`` samples) the energy/latency estimate and our NeuroBench-style counts;
    with ``float_graph`` (:class:`convert.float_graph.FGraph`) and the run's ``inputs``, also
    NeuroBench's own metrics on the float model (``neurobench=False`` skips them); with
    ``checkpoint`` (``python -m train``'s file), also on the trained torch model itself.

    Raises:
        GraphError: a synapse whose shapes disagree (from the fan-out tables).
        EnvironmentMissingError: NeuroBench was asked for and torch/neurobench are missing.
    """
    rmap = map_graph(graph, limits)
    warnings = []
    if not rmap.fits:
        warnings.append("the graph does not fit Loihi 2's per-core limits: "
                        + "; ".join(f"{lay.node}: {lay.reason}" for lay in rmap.layers
                                    if not lay.fits))
    if counters is None or not n_samples:
        return ChipReport(rmap, None, [], warnings)
    energy = estimate(graph, rmap, counters, n_samples)
    dense = float(sum(dense_macs_per_step(graph, s) for s in graph.synapses)
                  * graph.timesteps)
    metrics = [deployed_metrics(graph, counters, n_samples, dense)]
    if neurobench and float_graph is not None and inputs is not None:
        from targets.report.nbmetrics import float_metrics

        metrics.insert(0, float_metrics(float_graph, inputs))
    if neurobench and checkpoint is not None and inputs is not None:
        from targets.report.nbmetrics import checkpoint_metrics

        metrics.insert(0, checkpoint_metrics(checkpoint, inputs))
    if neurobench and float_graph is None and checkpoint is None:
        warnings.append("NeuroBench on the float model: not available for an integer NIR file "
                        "(no float weights); run the report on the float graph")
    return ChipReport(rmap, energy, metrics, warnings)


def _fmt_bits(bits: int) -> str:
    return f"{bits / 8 / 1024:.1f} KiB"


def format_report(rep: ChipReport) -> str:
    """The report as tables and lines (what ``python -m targets.report`` prints)."""
    r = rep.resources
    lines = [f"{r.chip} resource map: {r.cores} neuro-core(s) on {r.chips} chip(s)"
             + ("" if r.fits else "  -- DOES NOT FIT (see below)")]
    w = max([len("layer"), *(len(lay.node) for lay in r.layers)]) + 2
    lines.append(f"{'layer':<{w}}{'neurons':>8}{'cores':>6}{'n/core':>8}{'fan-in':>8}"
                 f"{'fan-out':>8}{'memory':>11}{'w bits':>7}  binding constraint")
    for lay in r.layers:
        util = lay.utilisation
        wb = sorted(set(lay.weight_bits.values()))
        lines.append(
            f"{lay.node:<{w}}{lay.neurons:>8}{lay.cores:>6}{lay.neurons_per_core:>8}"
            f"{lay.used['fan-in axons']:>8}{lay.used['fan-out axons']:>8}"
            f"{_fmt_bits(lay.used['memory']):>11}{'/'.join(map(str, wb)) or '-':>7}  "
            f"{lay.binding} {util[lay.binding] * 100:.0f}%"
            + ("" if lay.fits else f"  NOT FITTING: {lay.reason}"))
    lim = r.layers[0].limit if r.layers else {}
    if lim:
        lines.append(f"per-core limits: {lim['neurons']} neurons, {lim['fan-in axons']} fan-in "
                     f"and {lim['fan-out axons']} fan-out axons, {_fmt_bits(lim['memory'])} "
                     "memory (docs/loihi2.md: sources and assumptions)")
    needs = [(lay.node, n) for lay in r.layers for n in lay.needs]
    if needs:
        lines.append("needs more than stock LIF neuro-cores:")
        lines += [f"  {node}: {n}" for node, n in needs]
    lines += [f"not mapped: {u}" for u in r.unmapped]
    lines += [f"note: {n}" for n in r.notes]
    e = rep.energy
    if e is not None:
        lines.append("")
        lines.append(f"energy and latency per inference: {ESTIMATE_NOTE}")
        lines.append(f"  measured on {e.samples} sample(s), T={e.timesteps}, depth {e.depth}")
        lines.append(f"{'layer':<{w}}{'synops':>11}{'spikes':>9}{'updates':>9}"
                     f"{'chip nJ':>10}{'GPU nJ':>11}{'SNN@45nm nJ':>13}")
        for lay in e.layers:
            lines.append(f"{lay.node:<{w}}{lay.synops:>11.1f}{lay.spikes:>9.1f}"
                         f"{lay.neuron_updates:>9.0f}{lay.chip_pj * 1e-3:>10.2f}"
                         f"{lay.gpu_pj * 1e-3:>11.2f}{lay.snn_45nm_pj * 1e-3:>13.2f}")
        lines.append(f"total: Loihi 2 (per-op constants: {LOIHI1_COSTS.name}) "
                     f"{e.chip_uj:.3f} uJ; GPU/CPU float model, dense MACs x "
                     f"{HOROWITZ_45NM.mac_pj} pJ: {e.gpu_uj:.3f} uJ "
                     f"(ratio {e.gpu_uj / e.chip_uj if e.chip_uj else float('nan'):.2f}); "
                     f"same SNN's ACs/MACs at 45 nm: {e.snn_45nm_uj:.3f} uJ")
        lines.append(f"latency: {e.step_ns:.0f} ns per step (busiest core + barrier); "
                     f"{e.latency_us:.2f} us from first input to last output "
                     f"({e.timesteps}+{e.depth} steps), one sample every "
                     f"{e.throughput_us:.2f} us in a stream")
        lines += [f"  assumption: {a}" for a in e.assumptions]
    if rep.neurobench:
        lines.append("")
        lines.append("NeuroBench metrics (per sample, all T steps):")
        lines.append(f"{'model':<24}{'footprint B':>12}{'conn. sp.':>10}{'act. sp.':>10}"
                     f"{'dense':>13}{'eff. MACs':>12}{'eff. ACs':>12}")
        for m in rep.neurobench:
            def num(v: float | None, f: str) -> str:
                return "-" if v is None else format(v, f)
            lines.append(f"{m.model:<24}{num(m.footprint_bytes, 'd'):>12}"
                         f"{num(m.connection_sparsity, '.4f'):>10}"
                         f"{num(m.activation_sparsity, '.4f'):>10}"
                         f"{num(m.dense_synops, '.0f'):>13}{num(m.effective_macs, '.1f'):>12}"
                         f"{num(m.effective_acs, '.1f'):>12}")
        for m in rep.neurobench:
            lines += [f"  {m.model}: not counted: {n}" for n in m.not_counted]
            lines.append(f"  {m.model}: {m.source}, {m.samples} sample(s)")
    return "\n".join(lines)


def report_section(graph: QGraph, counters: dict[str, Any], n_samples: int) -> dict[str, Any]:
    """The short chip report that ``lava_sim`` and ``verify`` append: cores, chips, binding
    constraint per layer, energy and latency per inference (JSON-ready dict with a ``text``
    field of a few lines). No NeuroBench run (it needs the float model)."""
    rep = chip_report(graph, counters, n_samples, neurobench=False)
    r, e = rep.resources, rep.energy
    out: dict[str, Any] = {
        "cores": r.cores, "chips": r.chips, "fits": r.fits,
        "binding": {lay.node: lay.binding for lay in r.layers},
        "energy_uj": None if e is None else e.chip_uj,
        "gpu_uj": None if e is None else e.gpu_uj,
        "latency_us": None if e is None else e.latency_us,
        "estimate": ESTIMATE_NOTE,
    }
    text = [f"Loihi 2: {r.cores} core(s), {r.chips} chip(s)"
            + ("" if r.fits else " (does not fit: python -m targets.report for details)")
            + "; binding: " + ", ".join(f"{lay.node} {lay.binding}" for lay in r.layers)]
    if e is not None:
        text.append(f"estimate per inference (event_sim activity, {n_samples} samples): Loihi 2 "
                    f"{e.chip_uj:.3f} uJ, {e.latency_us:.2f} us; GPU/CPU float model (dense "
                    f"MACs, 45 nm) {e.gpu_uj:.3f} uJ (python -m targets.report, docs/loihi2.md)")
    out["text"] = "\n".join(text)
    return out


def chip_section(graph: QGraph, inputs: np.ndarray, results: dict[str, Any] | None = None,
                 max_samples: int = 100) -> dict[str, Any]:
    """:func:`report_section` for a command that has run ``inputs`` (int [N, T, ...]) on some
    targets (``results``: target name -> RunResult or RunTotals): the activity is event_sim's,
    taken from ``results["event_sim"]`` when it ran, else measured now by running event_sim on
    the first ``max_samples`` inputs (the Lava target does not count synaptic events;
    event_sim's spikes equal every target's, as ``targets.verify`` checks). An estimate per
    inference is an average: a hundred samples give it to about a percent on our models.

    Raises:
        UserError: ``inputs`` do not fit the graph (targets.base.check_inputs).
    """
    res = (results or {}).get("event_sim")
    n = len(inputs)
    if res is None:
        from targets import event_sim

        n = min(n, max_samples)
        res = event_sim.run(graph, inputs[:n])
    sec = report_section(graph, res.counters, n)
    sec["samples"] = n
    return sec
