"""Energy and latency per inference: an ESTIMATE from measured activity and published constants.

Nothing here is measured on a chip. The activity is measured: the event simulator's counters
of a real run (synaptic events per synapse, spikes per population, neuron updates), split into
ACs and MACs per edge by the MFI certificate (:func:`targets.mfi.certificate`, NeuroBench's
rule), never recounted. The costs are published per-operation constants
(:mod:`targets.report.limits`) applied to that activity, on the placement of the resource map
(:func:`targets.report.resources.map_graph`):

- **chip energy** per node = synaptic ops into it x ``synop_pj`` + neuron updates (every
  compartment every step; the ones that spike at the active cost, the rest at the inactive
  cost) + spike messages out of it (spikes x destination cores per neuron) x (within-tile
  energy + mean mesh hops x hop energy). Static (leakage) power and the host's input I/O are
  left out;
- **chip latency**: every core works in parallel, a step lasts as long as the busiest core
  (its share of the node's synaptic ops and neuron updates, split evenly over the node's
  cores) plus the barrier synchronisation; one inference takes ``T + depth`` steps from its
  first input to its last output, and a stream of samples one every ``T`` steps;
- **MAC-based estimate** (the way the seed papers argue their savings): the float model on a
  GPU/CPU does every synaptic MAC of every step, dense (zero weights and silent inputs
  included): dense MACs x ``mac_pj``; and the same SNN's measured ACs x ``ac_pj`` + MACs x
  ``mac_pj`` on that arithmetic. Arithmetic only: memory traffic, which dominates real GPUs,
  is left out, as those papers leave it out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.graph import INPUT, Conv, Dense, QGraph, SpikeAttention
from core.ops import conv2d
from targets.mfi import certificate
from targets.report.limits import (
    HOROWITZ_45NM,
    LOIHI1_COSTS,
    ChipConstants,
    MacConstants,
)
from targets.report.resources import ResourceMap

__all__ = ["LayerEnergy", "EnergyReport", "estimate", "dense_macs_per_step", "mean_hops"]

ESTIMATE_NOTE = ("ESTIMATE, not a measurement: measured activity (event_sim counters) x "
                 "published per-operation constants (docs/loihi2.md)")


@dataclass
class LayerEnergy:
    """One node's activity and estimated cost per inference (one sample of T steps)."""

    node: str
    synops: float  # synaptic events into the node (ACs + MACs), measured
    ac: float
    mac: float
    neuron_updates: float  # compartments x T
    spikes: float  # measured (spike counts for graded populations)
    spike_messages: float  # spikes x destination cores per neuron
    chip_pj: float
    chip_synops_pj: float
    chip_neurons_pj: float
    chip_routing_pj: float
    core_step_ns: float  # busiest core of the node, per step
    dense_macs: float  # the float model's dense MACs into the node (all steps)
    gpu_pj: float  # dense_macs x mac_pj
    snn_45nm_pj: float  # measured ACs x ac_pj + MACs x mac_pj


@dataclass
class EnergyReport:
    """Per-inference estimate for the whole graph, per node in graph order."""

    samples: int
    timesteps: int
    depth: int
    layers: list[LayerEnergy]
    chip_uj: float  # per inference, microjoules
    gpu_uj: float
    snn_45nm_uj: float
    step_ns: float  # one chip time step: busiest core + barrier
    latency_us: float  # (T + depth) steps: first input to last output of one sample
    throughput_us: float  # T steps: one sample of a stream
    chip_constants: str
    mac_constants: str
    note: str = ESTIMATE_NOTE
    assumptions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready form (plain types; :func:`core.cli.to_jsonable` does the rest)."""
        from dataclasses import asdict
        return asdict(self)


def dense_macs_per_step(graph: QGraph, s: Dense | Conv | SpikeAttention) -> int:
    """MACs one step of the float model does for synapse ``s``, dense: every weight (zero or
    not) times every source entry it reads. A Conv counts its kernel taps that land on a real
    source entry at every output of the convolution itself (before max pooling). The bit
    planes of a graded input are one input layer in the float model: only plane 0 counts (the
    others 0). An attention counts ``2 * dim * N**2`` (Q Kᵀ and the product with V)."""
    if isinstance(s, SpikeAttention):
        dim, *tokens = graph.node_shape(s.target)
        n = int(np.prod(tokens))
        return 2 * int(dim) * n * n
    if s.source == INPUT and graph.input.bitplanes and s.source_slice is not None \
            and s.source_slice[0] != 0:
        return 0
    if isinstance(s, Conv):
        ones = np.ones((1, *s.in_shape))
        taps = conv2d(ones, np.ones(s.weight.shape), s.stride, s.padding, s.groups)
        return int(np.rint(taps).sum())
    return int(np.asarray(s.weight).size)


def mean_hops(start_a: int, k_a: int, start_b: int, k_b: int, columns: int) -> float:
    """Mean Manhattan distance between the cores ``[start_a, start_a + k_a)`` and
    ``[start_b, start_b + k_b)`` placed row-major on a mesh ``columns`` wide."""
    a = np.arange(start_a, start_a + k_a)
    b = np.arange(start_b, start_b + k_b)
    dy = np.abs(a[:, None] // columns - b[None, :] // columns)
    dx = np.abs(a[:, None] % columns - b[None, :] % columns)
    return float((dx + dy).mean())


def estimate(graph: QGraph, rmap: ResourceMap, counters: dict[str, Any], n_samples: int,
             chip: ChipConstants = LOIHI1_COSTS, mac: MacConstants = HOROWITZ_45NM
             ) -> EnergyReport:
    """Energy and latency per inference from a run's ``counters`` (event_sim's: ``events/<s>``,
    ``spikes/<population>``) over ``n_samples`` samples, placed as ``rmap`` says.

    Energies in pJ per node and µJ in total, times in ns per step and µs per inference.

    Raises:
        ValueError: ``n_samples`` < 1 (there is no activity to average).
    """
    if n_samples < 1:
        raise ValueError("an energy estimate needs a measured run of at least one sample")
    t = graph.timesteps
    edges = {e.synapse: e for e in certificate(graph, counters)}
    start, pos = {}, 0
    for lay in rmap.layers:  # cores in graph order, row-major on the mesh
        start[lay.node] = pos
        pos += lay.cores
    by_node = {lay.node: lay for lay in rmap.layers}
    layers = []
    for lay in rmap.layers:
        n = lay.node
        into = [s for s in graph.synapses if s.target == n]
        ac = sum((edges[s.name].measured_ops or 0) for s in into
                 if not edges[s.name].is_mac) / n_samples
        macs = sum((edges[s.name].measured_ops or 0) for s in into
                   if edges[s.name].is_mac) / n_samples
        updates = float(lay.neurons * lay.compartments_per_neuron * t)
        spikes = float(counters.get(f"spikes/{n}", 0)) / n_samples
        active = min(spikes, updates)
        outs = [s for s in graph.synapses if n in getattr(s, "sources", (s.source,))
                and s.target in by_node and not isinstance(s, SpikeAttention)]
        hops = (np.mean([mean_hops(start[n], lay.cores, start[s.target],
                                   by_node[s.target].cores, chip.mesh_columns) for s in outs])
                if outs else 0.0)
        messages = spikes * lay.out_axons_per_neuron
        e_syn = (ac + macs) * chip.synop_pj
        e_neu = (active * chip.neuron_update_active_pj
                 + (updates - active) * chip.neuron_update_inactive_pj)
        e_route = messages * (chip.spike_within_tile_pj + hops * chip.hop_pj)
        per_core_steps = lay.cores * t
        core_ns = ((ac + macs) / per_core_steps * chip.synop_ns
                   + updates / per_core_steps * chip.neuron_update_inactive_ns
                   + active / per_core_steps
                   * (chip.neuron_update_active_ns - chip.neuron_update_inactive_ns))
        dense = float(sum(dense_macs_per_step(graph, s) for s in into) * t)
        layers.append(LayerEnergy(
            node=n, synops=ac + macs, ac=ac, mac=macs, neuron_updates=updates, spikes=spikes,
            spike_messages=messages, chip_pj=e_syn + e_neu + e_route, chip_synops_pj=e_syn,
            chip_neurons_pj=e_neu, chip_routing_pj=e_route, core_step_ns=core_ns,
            dense_macs=dense, gpu_pj=dense * mac.mac_pj,
            snn_45nm_pj=ac * mac.ac_pj + macs * mac.mac_pj))
    step_ns = max((lay.core_step_ns for lay in layers), default=0.0) + chip.barrier_ns
    depth = graph.depth
    return EnergyReport(
        samples=n_samples, timesteps=t, depth=depth, layers=layers,
        chip_uj=sum(lay.chip_pj for lay in layers) * 1e-6,
        gpu_uj=sum(lay.gpu_pj for lay in layers) * 1e-6,
        snn_45nm_uj=sum(lay.snn_45nm_pj for lay in layers) * 1e-6,
        step_ns=step_ns, latency_us=(t + depth) * step_ns * 1e-3,
        throughput_us=t * step_ns * 1e-3, chip_constants=chip.name, mac_constants=mac.name,
        assumptions=[
            "chip per-operation constants are Loihi 1's (Davies et al. 2018); none are "
            "published for Loihi 2, so these are an upper bound for it",
            "a neuron update is active on the steps it spikes, inactive otherwise",
            "a node's synaptic ops and updates are spread evenly over its cores",
            "cores are placed in graph order, row-major on an 8-wide mesh; one chip "
            "(chip-to-chip hops are not charged)",
            "no static/leakage power, no host I/O of inputs and readouts",
            "GPU/CPU: arithmetic only (4.6 pJ per 32-bit float MAC, 45 nm), no memory "
            "traffic: a lower bound for a real GPU",
        ])
