"""Our event-driven simulator of the deployed chip (numpy only: no torch).

It executes a :class:`~core.graph.QGraph` the way the chip does, not the way the model was
trained (see docs/event_sim.md):

- one global timeline: samples run back to back, input step t of sample s is emitted at global
  step ``s*T + t``;
- every synapse delivers ``1 + delay`` steps later: what its source emits at step k is
  accumulated, turned into output currents (exponent shift, Conv wrap and max pooling) and put
  on its delay line of depth ``1 + delay``; it reaches the target's ``u`` at step k+1+delay;
  a recurrent synapse (a population onto itself) carries nothing that would arrive in the next
  sample (:func:`core.graph.recurrent_carries`), nor does one with a model delay (a NIR Delay,
  ``lag``: :func:`core.graph.lag_carries`);
- every population resets ``u`` and ``v`` to 0 at the global steps where
  ``(step - latency) % T == 0``, i.e. exactly when the first input of its next sample arrives;
- every neuron is updated with :func:`core.fixedpoint.lif_step_overflow` at every step (the
  bias integrates even when nothing arrives, as on the chip); its overflow events are counted
  on the steps of real samples (counters ``overflow/<kind>/<population>``, as every target);
- the run lasts ``n*T + depth`` steps, then each record is cut back to [sample, timestep] with
  :func:`targets.base.unpipeline` and the node's latency.

Work is proportional to events: each synapse is a fan-out table (CSR over source neurons, zero
weights dropped; a Conv becomes such a table too), and each step only the nonzero source entries
are propagated, vectorized over the active set.

``lanes=k`` runs k independent copies of that timeline side by side (k chips), each on a
contiguous block of samples; because every population is reset between samples the records are
identical for every k (tested), it only amortizes the per-step Python overhead.

The package: :mod:`~targets.event_sim.fanout` compiles synapses into fan-out tables,
:mod:`~targets.event_sim.synapses` delivers them (one :class:`DelayLine` per synapse), this
module runs the loop (:func:`simulate`, :func:`run`), and ``__main__`` is the command line::

    python -m targets.event_sim model.nir --samples 10000
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from core import fixedpoint as fx
from core.cli import progress_bar
from core.graph import INPUT, QGraph, lag_carries, recurrent_carries
from targets.base import (
    OverflowCounter,
    RunResult,
    check_inputs,
    lanes_in_sample,
    unpipeline,
)
from targets.event_sim.fanout import (
    CompiledSynapse,
    FanOut,
    compile_synapse,
    conv_table,
    dense_table,
    fanout_table,
)
from targets.event_sim.synapses import (
    AttentionSynapse,
    DelayLine,
    Synapse,
    TableSynapse,
    build_synapses,
    compile_graph,
)

__all__ = [
    "DENSE_ROWS_MIN_DENSITY", "NEURON_BLOCK", "Timeline", "simulate", "run", "iter_run",
    "merge_counters", "compile_graph",
    "FanOut", "CompiledSynapse", "compile_synapse", "conv_table", "dense_table", "fanout_table",
    "DelayLine", "Synapse", "TableSynapse", "AttentionSynapse", "build_synapses",
]

# A table at least this dense is also kept as rows [n_in, n_out]: summing the gathered rows of
# the active sources is several times faster than scattering their CSR entries one by one
# (measured on the benchmark MLP; docs/event_sim.md). Read when each run starts.
DENSE_ROWS_MIN_DENSITY = 0.25

# Neurons per call of the neuron update: core.fixedpoint's ~30 array operations per step are
# limited by memory traffic on large arrays; blocks of about this many neurons keep their
# temporaries in the L2 cache (measured on 64 lanes x 6272 neurons: 21-24 ns per neuron
# update in blocks of 1-4 lanes, 57-59 ns on the whole array; benchmarks/event_sim_speed.py).
NEURON_BLOCK = 12288


@dataclass
class Timeline:
    """The deployed timeline as the chip lives it, before records are cut back into samples.

    Arrays are [global step, lane, size]; lane b runs samples ``b*per_lane ...`` back to back,
    so its input step t of its j-th sample is emitted at global step ``j*T + t``.
    """

    spikes: dict[str, np.ndarray]  # bool
    readouts: dict[str, np.ndarray]  # int64, what the readout receives at each step
    u: dict[str, np.ndarray]  # int64, only with record_state
    v: dict[str, np.ndarray]
    latency: dict[str, int]
    n_samples: int
    per_lane: int
    timesteps: int
    counters: dict[str, int]

    @property
    def lanes(self) -> int:
        """Number of lanes the timeline ran."""
        return int(self.counters["lanes"])

    def cut(self, raw: np.ndarray, node: str) -> np.ndarray:
        """[steps, lanes, size] -> [sample, timestep, size] via the node's latency."""
        lat = self.latency[node]
        if self.n_samples == 0:
            return np.zeros((0, self.timesteps, raw.shape[-1]), dtype=raw.dtype)
        parts = [unpipeline(raw[:, b], lat, self.per_lane, self.timesteps)
                 for b in range(raw.shape[1])]
        return (parts[0] if len(parts) == 1 else np.concatenate(parts))[: self.n_samples]


def simulate(
    graph: QGraph,
    x: np.ndarray,
    *,
    record_state: bool = False,
    progress: bool = False,
    lanes: int = 1,
    compiled: list | None = None,
) -> Timeline:
    """Run the deployed timeline for ``x`` (int [N, T, input.flat_size], from check_inputs).

    ``record_state``: also keep ``u`` and ``v`` of every population at every step.
    ``progress``: a progress bar on stderr, drawn only when stderr is a terminal.
    ``lanes``: independent copies of the timeline side by side (at most N; see the module
    docstring). ``compiled``: the graph's tables from :func:`compile_graph` (compiled here
    when None).

    Raises:
        GraphError: a Conv whose shapes disagree (found when its table is compiled).
    """
    n, t_steps = x.shape[:2]
    lat = graph.latency()
    depth = graph.depth
    lanes = max(1, min(int(lanes), n)) if n else 1
    per_lane = -(-n // lanes) if n else 0
    lanes = -(-n // per_lane) if n else 1  # no lane of pure padding
    pad = lanes * per_lane - n
    if pad:
        x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), dtype=x.dtype)])
    # lane b runs samples b*per_lane ... b*per_lane + per_lane - 1 back to back; stored
    # [step, lane, entry] so that what the input emits at one step is one contiguous block
    x = x.reshape(lanes, per_lane * t_steps, graph.input.flat_size)
    binary_input = graph.input.binary
    x = np.ascontiguousarray(x.transpose(1, 0, 2), dtype=bool if binary_input else np.int64)
    n_input_steps = per_lane * t_steps
    steps = n_input_steps + depth

    syns = build_synapses(graph, lanes, DENSE_ROWS_MIN_DENSITY, compiled)
    incoming = {name: [y for y in syns if y.target == name]
                for name in (*graph.populations, *graph.readouts)}
    pops = list(graph.populations.values())
    bias = {p.name: fx.effective_bias(p.bias_mant.astype(np.int64), p.bias_exp) for p in pops}
    u = {p.name: np.zeros((lanes, p.size), dtype=np.int64) for p in pops}
    v = {p.name: np.zeros((lanes, p.size), dtype=np.int64) for p in pops}
    # spike counts (int64) for a graded reset mode (core.fixedpoint.graded_spikes)
    raw_s = {p.name: np.zeros((steps, lanes, p.size), dtype=np.int64 if p.graded else bool)
             for p in pops}
    raw_r = {r.name: np.zeros((steps, lanes, r.size), dtype=np.int64)
             for r in graph.readouts.values()}
    traced = pops if record_state else []
    raw_u = {p.name: np.zeros((steps, lanes, p.size), dtype=np.int64) for p in traced}
    raw_v = {p.name: np.zeros((steps, lanes, p.size), dtype=np.int64) for p in traced}
    block_lanes = {p.name: max(1, NEURON_BLOCK // max(p.size, 1)) for p in pops}
    max_u = max_v = 0
    overflow = OverflowCounter(list(graph.populations))  # inside real samples only (nv)
    no_input = np.zeros((lanes, graph.input.flat_size), dtype=bool if binary_input else np.int64)

    with progress_bar(steps, desc="event_sim", enabled=progress, unit="step") as bar:
        for k in range(steps):
            # 1. every neuron and readout consumes what the synapses delivered for this step
            for p in pops:
                name = p.name
                if (k - lat[name]) % t_steps == 0:  # the first input of its next sample arrives
                    u[name].fill(0)
                    v[name].fill(0)
                a_in: np.ndarray | int = 0
                for y in incoming[name]:
                    cur = y.arriving(k)
                    if cur is not None:
                        a_in = cur if isinstance(a_in, int) else a_in + cur
                nv = lanes_in_sample(k, lat[name], t_steps, per_lane, n, lanes)
                uk, vk, sk = u[name], v[name], raw_s[name][k]
                # the update, one block of lanes at a time: a block's temporaries stay in
                # the CPU cache (NEURON_BLOCK; about 2.5x less time than whole arrays)
                step = block_lanes[name]
                for b0 in range(0, lanes, step):
                    b1 = min(b0 + step, lanes)
                    a_b = a_in if isinstance(a_in, int) else a_in[b0:b1]
                    un, vn, s, ov = fx.lif_step_overflow(uk[b0:b1], vk[b0:b1], a_b, p.du, p.dv,
                                                         p.vth, bias[name], p.reset)
                    uk[b0:b1], vk[b0:b1], sk[b0:b1] = un, vn, s
                    m = min(nv, b1) - b0  # lanes of this block inside a sample
                    if m > 0:
                        overflow.add_counts(name, {kind: np.count_nonzero(f[:m]) for kind, f
                                                   in zip(fx.OVERFLOW_KINDS, ov, strict=True)})
                        ui, vi = un[:m], vn[:m]
                        max_u = max(max_u, int(ui.max(initial=0)), -int(ui.min(initial=0)))
                        max_v = max(max_v, int(vi.max(initial=0)), -int(vi.min(initial=0)))
                if record_state:
                    raw_u[name][k] = uk
                    raw_v[name][k] = vk
            for r in graph.readouts.values():
                for y in incoming[r.name]:
                    cur = y.arriving(k)
                    if cur is not None:
                        raw_r[r.name][k] += cur
            # 2. every synapse reads its sources at this step; the target sees it at
            # k + 1 + delay. A multi-source synapse's sources share one latency (the first's).
            x_k = x[k] if k < n_input_steps else no_input
            for y in syns:
                if y.recurrent and not recurrent_carries(k, lat[y.target], t_steps, y.delay):
                    y.drop(k)  # would arrive in the next sample (no recurrent input there)
                    continue
                if y.lag and not lag_carries(k, lat[y.sources[0]], t_steps, y.lag):
                    y.drop(k)  # a model delay past the sample's end (core.graph.lag_carries)
                    continue
                y.propagate([x_k if node == INPUT else raw_s[node][k] for node in y.sources],
                            lanes_in_sample(k, lat[y.sources[0]], t_steps, per_lane, n, lanes), k)
            bar.update(1)

    counters: dict[str, int] = {"synaptic_events": 0, "ac": 0, "mac": 0}
    for y in syns:
        counters["synaptic_events"] += y.events
        counters["mac" if y.graded else "ac"] += y.events
        counters.update(y.counters())
    counters["neuron_updates"] = sum(p.size for p in pops) * n * t_steps
    counters["steps"] = steps
    counters["lanes"] = lanes
    counters["pipeline_events"] = sum(y.extra_events for y in syns)
    counters["max_abs_u"] = max_u
    counters["max_abs_v"] = max_v
    counters.update(overflow.counters())
    return Timeline(raw_s, raw_r, raw_u, raw_v, lat, n, per_lane, t_steps, counters)


def _result(tl: Timeline) -> RunResult:
    """A timeline's records cut back to [sample, timestep, size], with the spike counters."""
    spikes = {p: tl.cut(raw, p) for p, raw in tl.spikes.items()}
    readouts = {r: tl.cut(raw, r) for r, raw in tl.readouts.items()}
    states = {p: (tl.cut(tl.u[p], p), tl.cut(tl.v[p], p)) for p in tl.u}
    counters = dict(tl.counters)
    for p, s in spikes.items():
        counters[f"spikes/{p}"] = int(s.sum())
    return RunResult(spikes, readouts, counters, states)


# Counters of a run in chunks that are not sums over the chunks (merge_counters)
_MAX_COUNTERS = ("lanes", "max_abs_u", "max_abs_v")


def merge_counters(parts: list[dict[str, int]]) -> dict[str, int]:
    """The counters of consecutive chunks of one run, as :func:`run` reports them.

    Every counter is a sum over the chunks (events, spikes, overflow, neuron updates, and
    ``steps``: the chunks' timelines run one after another), except ``lanes``, ``max_abs_u``
    and ``max_abs_v`` (the largest). The sample counters equal those of one unchunked run;
    ``steps`` and ``pipeline_events`` describe the timelines actually run, so they depend on
    the chunking as they depend on ``lanes``.
    """
    out: dict[str, int] = {}
    for c in parts:
        for k, v in c.items():
            out[k] = max(out.get(k, v), v) if k in _MAX_COUNTERS else out.get(k, 0) + v
    return out


def _chunks(graph: QGraph, inputs: np.ndarray, chunk: int | None):
    """Validate every chunk of ``inputs`` first (a bad value is refused before anything
    runs), then yield (start, checked chunk) one at a time."""
    inputs = np.asarray(inputs)  # a view of an array or a memory map: nothing is copied
    n = len(inputs) if inputs.ndim else 0
    size = max(1, int(chunk)) if chunk else max(n, 1)
    starts = range(0, n, size) if n else [0]
    for lo in starts:  # check_inputs raises UserError; the converted chunk is dropped
        check_inputs(graph, inputs[lo:lo + size])
    for lo in starts:
        yield lo, check_inputs(graph, inputs[lo:lo + size])


def iter_run(
    graph: QGraph,
    inputs: np.ndarray,
    *,
    chunk: int = 1000,
    record_state: bool = False,
    progress: bool = False,
    lanes: int = 1,
) -> Iterator[tuple[int, RunResult]]:
    """Run ``inputs`` in consecutive chunks of ``chunk`` samples; yield ``(first sample,
    RunResult of the chunk)`` one chunk at a time, so memory holds one chunk's records
    (e.g. for :class:`targets.records.RecordWriter`), never the whole run.

    Every population is reset between samples, so the records of the chunks are exactly the
    rows of :func:`run`'s (tested); their counters merge with :func:`merge_counters`. The
    tables are compiled once. ``lanes`` (at most ``chunk``) and the other arguments are
    :func:`run`'s; ``progress`` draws one bar per chunk.

    Raises:
        UserError: a chunk of ``inputs`` is malformed (:func:`targets.base.check_inputs`),
            raised before the first chunk runs.
        GraphError: a Conv whose shapes disagree.
    """
    compiled = compile_graph(graph, DENSE_ROWS_MIN_DENSITY)
    for lo, x in _chunks(graph, inputs, chunk):
        tl = simulate(graph, x, record_state=record_state, progress=progress, lanes=lanes,
                      compiled=compiled)
        yield lo, _result(tl)


def run(
    graph: QGraph,
    inputs: np.ndarray,
    *,
    record_state: bool = False,
    progress: bool = False,
    lanes: int = 1,
    chunk: int | None = None,
) -> RunResult:
    """Simulate the deployed timeline; records are aligned to the trained model's time axis.

    ``inputs``: [sample, timestep, *input_shape] integers. ``lanes``: independent copies of
    the timeline run side by side (identical records; see the module docstring). ``chunk``:
    simulate that many samples at a time (identical records; the timeline's own arrays then
    hold one chunk; None: all at once). Returns spikes (bool [N, T, size]), readouts (int64
    [N, T, size], bias excluded), the counters of docs/event_sim.md and, with
    ``record_state``, the (u, v) traces of every population.

    Raises:
        UserError: ``inputs`` has the wrong shape, non-integers, or values out of range
            (:func:`targets.base.check_inputs`).
        GraphError: a Conv whose shapes disagree.
    """
    if chunk is None:
        x = check_inputs(graph, inputs)
        return _result(simulate(graph, x, record_state=record_state, progress=progress,
                                lanes=lanes))
    parts = [r for _, r in iter_run(graph, inputs, chunk=chunk, record_state=record_state,
                                    progress=progress, lanes=lanes)]
    return RunResult(
        {p: np.concatenate([r.spikes[p] for r in parts]) for p in parts[0].spikes},
        {k: np.concatenate([r.readouts[k] for r in parts]) for k in parts[0].readouts},
        merge_counters([r.counters for r in parts]),
        {p: tuple(np.concatenate([r.states[p][i] for r in parts]) for i in (0, 1))
         for p in parts[0].states})
