"""One Lava network for one chunk of samples: every node and synapse of a QGraph as Lava
processes, run for all the chunk's steps (docs/lava.md, "How the graph maps onto Lava").

- the input: a source ``RingBuffer`` holding the chunk's samples back to back
  (:func:`targets.loihi.layout.to_timeline`), plus one per input slice a synapse reads (a bit
  plane: Lava cannot connect part of a port);
- a population: a ``LIFReset`` whose reset fires at Lava's (1-based) step
  ``s*T + latency + 1``, when sample s's first input reaches it, so consecutive samples pipeline
  through the network without sharing state;
- a synapse: one constructor per kind (:meth:`Network._dense`, :meth:`Network._conv`,
  :meth:`Network._dense_mapped_conv`, :meth:`Network._attention`), with
  :meth:`Network._relay` for max pooling and delays after a conv; several synapses into one
  node share its InPort, which sums them; a recurrent synapse (a population onto itself) reads
  the population through a :class:`SpikeGate` that drops the spikes that would reach the next
  sample;
- records: a sink ``RingBuffer`` on every population's spikes and every readout's summed
  current (without the readout bias), written to files by targets.loihi.models.

Lava environment only (imports lava).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.conv.process import Conv as LavaConv
from lava.proc.dense.process import DelayDense
from lava.proc.dense.process import Dense as LavaDense
from lava.proc.io.sink import RingBuffer as Sink
from lava.proc.io.source import RingBuffer as Source
from lava.proc.lif.process import LIF, LIFReset

from core import fixedpoint as fx
from core.errors import GraphError
from core.graph import (
    INPUT,
    Conv,
    Dense,
    QGraph,
    SpikeAttention,
    Synapse,
    is_recurrent,
    lag_carries,
    runs_as_dense_on_lava,
    synapse_lag,
)
from targets.loihi.layout import (
    conv_matrix,
    lava_conv_groups,
    lava_conv_weight,
    lava_shape,
    lava_to_ours,
    message_bits,
    node_layouts,
    records_to_ours,
)
from targets.loihi.models import RUN_TAG, recording_models
from targets.loihi.process import CurrentRelay, ResetModeLIF, SpikeAttentionProcess, SpikeGate

# A piece of a run in pieces (Network.run with on_steps) shorter than this doubles the next
# one: Lava's pause and resume between two run calls costs a few ms, so pieces of at least
# 0.2 s keep that overhead around 1% while a progress bar still moves several times a second.
PIECE_MIN_S = 0.2


class Network:
    """The Lava processes for one chunk of samples (built fresh for every chunk).

    Args:
        graph: the integer graph, valid (``QGraph.validate``) and within Lava's limits
            (``core.graph.check_lava_limits``: delays, the 24-bit wrap of dense-mapped convs).
        timeline: int64 [steps, input.flat_size], the chunk's inputs back to back
            (:func:`targets.loihi.layout.to_timeline`), bit planes expanded.
        record_state: also record u and v of every population.
        workdir: an empty folder for the record files.

    Attributes:
        steps: Lava steps the network runs (``timeline.shape[0]``).
        altered_weights: Dense weights Lava will change (mixed-sign odd weights lose their
            lowest bit, ``fixedpoint.lava_dense_weights``); the caller warns.

    Raises:
        GraphError: a conv whose output shape Lava computes differently from the graph.
    """

    def __init__(self, graph: QGraph, timeline: np.ndarray, *, record_state: bool,
                 workdir: str) -> None:
        self.graph = graph
        self.timeline = timeline
        self.steps = int(timeline.shape[0])
        self.record_state = record_state
        self.workdir = workdir
        self.altered_weights = 0
        self.compile_s = self.run_s = 0.0
        self.layout = node_layouts(graph)
        self.size = {n: int(np.prod(graph.node_shape(n))) for n in self.layout}
        self.size[INPUT] = graph.input.flat_size  # bit planes expanded
        self.perm = {n: lava_to_ours(self.layout[n], self.size[n]) for n in self.layout}
        self.shape = {n: lava_shape(self.layout[n], self.size[n]) for n in self.layout}

        # input slice -> RingBuffer; ("lag", input slice, lag) -> the input a synapse with a
        # model delay reads (:meth:`_lagged_source_port`)
        self.sources: dict[Any, Source] = {}
        lat = self.latency = graph.latency()
        self.lifs = {name: self._population(i, name, lat[name])
                     for i, name in enumerate(graph.populations)}
        self.spike_sinks = {name: self._sink("spikes", i, name)
                            for i, name in enumerate(graph.populations)}
        for name, lif in self.lifs.items():
            lif.s_out.connect(self.spike_sinks[name].a_in)
        self.readout_sinks = {name: self._sink("readout", i, name)
                              for i, name in enumerate(graph.readouts)}
        for s in graph.synapses:
            self._constructor(s)(s)
        self._anchor_components()

    # ------------------------------------------------------------------------- nodes

    def _population(self, i: int, name: str, latency: int) -> LIFReset:
        """A ``LIFReset`` (Lava layout), reset at the step a sample's first input arrives:
        ``time_step % T == (latency + 1) % T`` (Lava counts steps from 1)."""
        p = self.graph.populations[name]
        shape = self.shape[name]
        T = self.graph.timesteps
        # Lava's stock LIFReset resets to zero; any other reset mode is our neuron program
        kind = LIFReset if p.reset == "zero" else partial(ResetModeLIF, reset=p.reset)
        lif = kind(shape=shape, du=int(p.du), dv=int(p.dv), vth=int(p.vth),
                   bias_mant=np.asarray(p.bias_mant, dtype=np.int64)[self.perm[name]]
                   .reshape(shape),
                   bias_exp=np.full(shape, int(p.bias_exp), dtype=np.int64),
                   reset_interval=T, reset_offset=(latency + 1) % T)
        lif.proc_params["record_path"] = self._path("state", i)
        lif.proc_params["record_steps"] = self.steps
        lif.proc_params["record_state"] = self.record_state
        lif.proc_params["overflow_path"] = self._path("overflow", i)
        return lif

    def _sink(self, kind: str, i: int, name: str) -> Sink:
        """A sink ``RingBuffer`` on a node's shape; its model saves the buffer to a file."""
        proc = Sink(shape=self.shape[name], buffer=self.steps)
        proc.proc_params["record_path"] = self._path(kind, i)
        return proc

    def _path(self, kind: str, i: int) -> str:
        return os.path.join(self.workdir, f"{kind}_{i}.npy")

    def _source_port(self, key: tuple[int, int] | None) -> Any:
        """The OutPort of the input source (``key`` None: the whole input in its layout) or
        of the source for input slice ``key`` = (start, stop), flat; data is
        [*shape, steps]."""
        if key not in self.sources:
            self.sources[key] = Source(data=np.ascontiguousarray(self._input_data(key),
                                                                 dtype=np.int64))
        return self.sources[key].s_out

    def _input_data(self, key: tuple[int, int] | None) -> np.ndarray:
        """The chunk's input for :meth:`_source_port` (``key``: None or a flat slice), as
        [*shape, steps]."""
        if key is None:
            return self.timeline[:, self.perm[INPUT]].T.reshape(*self.shape[INPUT], self.steps)
        return self.timeline[:, key[0] : key[1]].T

    def _out_port(self, s: Dense | Conv) -> Any:
        """Where a synapse reads: the input (or its slice) or a population's spikes (through
        a :class:`SpikeGate` for a recurrent synapse, which drops what would reach the next
        sample)."""
        if is_recurrent(s):
            gate = SpikeGate(shape=self.shape[s.source], latency=self.latency[s.source],
                             timesteps=self.graph.timesteps, delay=int(s.delay))
            self.lifs[s.source].s_out.connect(gate.s_in)
            return gate.s_out
        lag = synapse_lag(s)
        if s.source != INPUT and lag:
            # a model delay (NIR Delay): drop what would arrive after the sample's end
            # (core.graph.lag_carries; the gate's rule with delay = lag - 1)
            gate = SpikeGate(shape=self.shape[s.source], latency=self.latency[s.source],
                             timesteps=self.graph.timesteps, delay=lag - 1)
            self.lifs[s.source].s_out.connect(gate.s_in)
            return gate.s_out
        if s.source != INPUT:
            return self.lifs[s.source].s_out
        key = tuple(s.source_slice) if s.source_slice is not None else None
        return self._lagged_source_port(key, lag) if lag else self._source_port(key)

    def _lagged_source_port(self, key: tuple[int, int] | None, lag: int) -> Any:
        """The input as :meth:`_source_port` gives it, for a synapse with a model delay
        ``lag``: with the steps whose values would arrive after their sample's end zeroed
        (``core.graph.lag_carries``, the input's latency being 0)."""
        lagged = ("lag", key, lag)
        if lagged not in self.sources:
            keep = np.array([lag_carries(k, 0, self.graph.timesteps, lag)
                             for k in range(self.steps)])
            data = self._input_data(key) * keep  # the last axis is the step
            self.sources[lagged] = Source(data=np.ascontiguousarray(data, dtype=np.int64))
        return self.sources[lagged].s_out

    def _in_port(self, target: str) -> Any:
        """Where a synapse writes: a readout's sink or a population's current input."""
        if target in self.graph.readouts:
            return self.readout_sinks[target].a_in
        return self.lifs[target].a_in

    # ------------------------------------------------------------------------- synapses

    def _constructor(self, s: Synapse) -> Callable[[Any], None]:
        """The constructor for a synapse's kind (``validate`` admits no other types)."""
        if isinstance(s, Conv) and runs_as_dense_on_lava(s):
            return self._dense_mapped_conv
        kinds = {Dense: self._dense, Conv: self._conv, SpikeAttention: self._attention}
        return kinds[type(s)]

    def _dense(self, s: Dense) -> None:
        """A Dense synapse: ``Dense(weights, weight_exp)`` (``DelayDense`` with a balancing
        delay), its rows and columns permuted to the target's and source's Lava layouts."""
        w = self._columns(s, np.asarray(s.weight, dtype=np.int64), self.perm[s.target])
        target_port, reshape_to = self._in_port(s.target), self._target_shape(s.target)
        self._dense_processes(s, [w], int(s.delay), target_port, reshape_to)

    def _dense_mapped_conv(self, s: Conv) -> None:
        """A bit-plane input conv (weight exponent or source slice) as its dense matrix.

        A conv's weights are not prepared for Dense's mixed-sign truncation: when the matrix
        mixes signs and has odd weights it runs as two Dense (positive and negative weights,
        which Lava does not truncate; exact for exponents >= 0). With max pooling, the Dense
        writes the conv's (W, H, C) currents into a relay that pools (and delays) them.
        """
        w = conv_matrix(s)
        conv_out = lava_shape(tuple(s.conv_shape), w.shape[0])
        pooled = s.max_pool is not None
        rows = lava_to_ours(tuple(s.conv_shape), w.shape[0]) if pooled else self.perm[s.target]
        w = self._columns(s, w, rows)
        parts = [w]
        if s.weight_exp >= 0 and _mixed_odd(w):
            parts = [np.where(w > 0, w, 0), np.where(w < 0, w, 0)]
        if pooled:
            relay = self._relay(s, conv_out)
            self._dense_processes(s, parts, 0, relay.a_in, conv_out)
        else:
            self._dense_processes(s, parts, int(s.delay), self._in_port(s.target),
                                  self._target_shape(s.target))

    def _conv(self, s: Conv) -> None:
        """A Conv synapse as Lava's ``Conv``: weights flipped and transposed
        (:func:`~targets.loihi.layout.lava_conv_weight`), stride and padding in (x, y) order,
        more than 127 groups merged into block-diagonal ones (Lava keeps ``groups`` in 8 bits:
        :func:`~targets.loihi.layout.lava_conv_groups`); a relay after it for max pooling
        and/or a delay."""
        weight, groups = lava_conv_groups(s.weight, int(s.groups))
        proc = LavaConv(
            weight=lava_conv_weight(weight),
            input_shape=lava_shape(tuple(s.in_shape), int(np.prod(s.in_shape))),
            padding=(int(s.padding[1]), int(s.padding[0])),
            stride=(int(s.stride[1]), int(s.stride[0])),
            groups=groups, num_message_bits=message_bits(self.graph, s.source),
        )
        conv_out = lava_shape(tuple(s.conv_shape), int(np.prod(s.conv_shape)))
        if tuple(int(v) for v in proc.output_shape) != tuple(conv_out):
            raise GraphError(f"conv {s.name!r}: Lava computes output (W,H,C)="
                             f"{tuple(proc.output_shape)}, the graph says {conv_out}")
        self._out_port(s).connect(proc.s_in)
        if s.max_pool is None and not s.delay:
            proc.a_out.connect(self._in_port(s.target))
        else:
            proc.a_out.connect(self._relay(s, conv_out).a_in)

    def _relay(self, s: Conv, conv_out: tuple[int, ...]) -> CurrentRelay:
        """A :class:`CurrentRelay` from a conv's (W, H, C) currents to its target: max pooling
        (of the 24-bit wrapped currents) and/or the synapse's delay; no latency of its own."""
        relay = CurrentRelay(in_shape=conv_out, out_shape=self.shape[s.target],
                             pool=s.max_pool, delay=int(s.delay))
        relay.a_out.connect(self._in_port(s.target))
        return relay

    def _attention(self, s: SpikeAttention) -> None:
        """A spike attention as our fixed-point process: q, k, v spikes -> it -> target."""
        proc = SpikeAttentionProcess(
            q_shape=self.shape[s.sources[0]], k_shape=self.shape[s.sources[1]],
            v_shape=self.shape[s.sources[2]], out_shape=self.shape[s.target],
            dim=int(self.graph.node_shape(s.target)[0]), heads=int(s.heads),
            shift=int(s.shift), delay=int(s.delay),
            perms=[self.perm[n] for n in (*s.sources, s.target)])
        for port, src in zip((proc.q_in, proc.k_in, proc.v_in), s.sources, strict=True):
            self.lifs[src].s_out.connect(port)
        proc.a_out.connect(self._in_port(s.target))

    # ------------------------------------------------------------------------- helpers

    def _target_shape(self, target: str) -> tuple[int, ...] | None:
        """The shape a Dense's flat output is reshaped to: the target's (W, H, C), or None."""
        return self.shape[target] if self.layout[target] is not None else None

    def _columns(self, s: Dense | Conv, w: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """A dense matrix [rows, source size] in Lava's order: a slice of a population gets
        zero columns elsewhere; rows follow ``rows``, columns the source's layout (an input
        slice has its own flat source)."""
        in_slice = s.source == INPUT and s.source_slice is not None
        if s.source_slice is not None and not in_slice:
            full = np.zeros((w.shape[0], self.size[s.source]), dtype=np.int64)
            full[:, s.source_slice[0] : s.source_slice[1]] = w
            w = full
        cols = np.arange(w.shape[1]) if in_slice else self.perm[s.source]
        return w[np.ix_(rows, cols)]

    def _dense_processes(self, s: Dense | Conv, parts: list[np.ndarray], delay: int,
                         target_port: Any, reshape_to: tuple[int, ...] | None) -> None:
        """One ``Dense`` per weight matrix in ``parts`` (``DelayDense`` when ``delay`` > 0; at
        most ``core.graph.LAVA_MAX_DELAY``, which ``check_lava_limits`` ensures), from the
        synapse's source (flattened when it has a conv layout) to ``target_port`` (reshaped to
        ``reshape_to``); counts the weights Lava will alter."""
        self.altered_weights += sum(int((fx.lava_dense_weights(w) != w).sum()) for w in parts)
        out_port = self._out_port(s)
        in_slice = s.source == INPUT and s.source_slice is not None
        flat_src = in_slice or self.layout[s.source] is None
        bits = message_bits(self.graph, s.source)
        for w in parts:
            if delay:
                proc = DelayDense(weights=w, delays=np.full(w.shape, delay),
                                  weight_exp=int(s.weight_exp), num_message_bits=bits)
            else:
                proc = LavaDense(weights=w, weight_exp=int(s.weight_exp), num_message_bits=bits)
            (out_port if flat_src else out_port.flatten()).connect(proc.s_in)
            dst = proc.a_out if reshape_to is None else proc.a_out.reshape(reshape_to)
            dst.connect(target_port)

    def _anchor_components(self) -> None:
        """Lava compiles only the processes connected to the one it runs. With several input
        sources (bit planes) the graph may fall apart into pieces: join them through an
        inert LIF that receives nothing (zero weights) and sends nothing anywhere."""
        parent: dict[Any, Any] = {n: n for n in (*self.sources, *self.graph.populations,
                                                 *self.graph.readouts)}

        def find(n: Any) -> Any:
            while parent[n] != n:
                parent[n] = parent[parent[n]]
                n = parent[n]
            return n

        for s in self.graph.synapses:
            if s.source == INPUT:
                a = tuple(s.source_slice) if s.source_slice is not None else None
                if synapse_lag(s):
                    a = ("lag", a, synapse_lag(s))
            else:
                a = s.source
            parent[find(a)] = find(s.target)
        if len({find(k) for k in self.sources}) <= 1:
            return
        anchor = LIF(shape=(1,), du=0, dv=0, vth=1)
        seen = set()
        for key, src in self.sources.items():
            if find(key) in seen:
                continue
            seen.add(find(key))
            d = LavaDense(weights=np.zeros((1, int(np.prod(src.s_out.shape))), dtype=np.int64))
            (src.s_out if len(src.s_out.shape) == 1 else src.s_out.flatten()).connect(d.s_in)
            d.a_out.connect(anchor.a_in)

    # ------------------------------------------------------------------------- run

    def run(self, on_steps: Callable[[int], None] | None = None,
            first_piece: int = 1) -> dict[str, np.ndarray]:
        """Compile and run every step; return the raw timelines int64 [steps, size] in OUR
        flat order: ``spikes/<population>``, ``readouts/<readout>`` and (with record_state)
        ``states/<population>/u|v``; and ``overflow/<population>``, int64
        [len(fixedpoint.OVERFLOW_KINDS), steps]: each step's overflow events over all the
        population's neurons, per kind (``models.StateLIFResetModel``). Sets ``compile_s``
        (compilation and process start-up) and ``run_s`` (the steps themselves), in
        seconds.

        ``on_steps(done)``: called with the number of steps run so far, after each piece of
        the run. Lava then runs ``first_piece`` steps at a time (a sample's worth, for a
        progress bar that moves per sample), doubled while a piece takes under
        :data:`PIECE_MIN_S` (the pause between two ``run`` calls costs milliseconds). A run in
        pieces gives the same records as one run of every step (a paused network keeps its
        state; tested). Without ``on_steps``: one ``run`` call.
        """
        cfg = Loihi2SimCfg(select_tag=RUN_TAG,
                           exception_proc_model_map=recording_models(self.record_state))
        source = next(iter(self.sources.values()))
        t0 = time.perf_counter()
        source.create_runtime(run_cfg=cfg)
        try:
            t1 = time.perf_counter()
            if on_steps is None:
                source.run(condition=RunSteps(num_steps=self.steps))
            else:
                done, piece = 0, max(1, int(first_piece))
                while done < self.steps:
                    n = min(piece, self.steps - done)
                    tp = time.perf_counter()
                    source.run(condition=RunSteps(num_steps=n))
                    done += n
                    on_steps(done)
                    if time.perf_counter() - tp < PIECE_MIN_S:
                        piece *= 2
            t2 = time.perf_counter()
        finally:
            source.stop()
        self.compile_s, self.run_s = t1 - t0, t2 - t1
        out: dict[str, np.ndarray] = {}
        for kind, sinks in (("spikes", self.spike_sinks), ("readouts", self.readout_sinks)):
            for name, proc in sinks.items():
                out[f"{kind}/{name}"] = records_to_ours(
                    np.load(proc.proc_params["record_path"]), self.perm[name], self.steps)
        for name, lif in self.lifs.items():
            out[f"overflow/{name}"] = np.load(lif.proc_params["overflow_path"])
        if self.record_state:
            for name, lif in self.lifs.items():
                uv = np.load(lif.proc_params["record_path"])  # [2, steps, *shape]
                for k, key in enumerate("uv"):
                    out[f"states/{name}/{key}"] = records_to_ours(
                        np.moveaxis(uv[k], 0, -1), self.perm[name], self.steps)
        return out


def _mixed_odd(w: np.ndarray) -> bool:
    """True when Lava would truncate ``w`` as one Dense: mixed signs and an odd weight
    (``fixedpoint.lava_dense_weights`` drops the lowest bit of mixed-sign matrices)."""
    return bool(w.size and w.min() < 0 < w.max() and (w & 1).any())
