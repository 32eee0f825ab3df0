"""Synapse delivery in the event simulator: accumulate what a source emits, deliver it later.

Every synapse owns one :class:`DelayLine`: what its sources emit at step ``k`` is turned into
output currents at once and delivered to its target at step ``k + 1 + delay``
(docs/event_sim.md, "The deployed timeline"). Two kinds feed a delay line:

- :class:`TableSynapse` (Dense, Conv): the active source entries are fanned out through the
  synapse's compiled table (:mod:`targets.event_sim.fanout`), then shifted by the weight
  exponent (a Conv also wraps to 24 bits and max-pools);
- :class:`AttentionSynapse` (SpikeAttention): ``Q Kᵀ V`` of the spikes its three sources emit.

Events are counted as they happen; those of source steps outside every sample (pipeline fill
and drain, lane padding) are counted apart, so that the sample counters equal the zero-latency
reference's. numpy only (no torch).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core import fixedpoint as fx
from core.graph import (
    Conv,
    Dense,
    QGraph,
    SpikeAttention,
    is_recurrent,
    synapse_lag,
    synapse_sources,
)
from targets.event_sim import kernels
from targets.event_sim.fanout import CompiledSynapse, compile_synapse


class DelayLine:
    """Output currents in flight on one synapse: ``1 + delay`` slots.

    Slot ``k % depth`` holds what reaches the target at step ``k`` (None: nothing); at step k
    it is read first (:meth:`arriving`), then overwritten with what the sources emit at step k
    (:meth:`send`), which is delivered ``depth = 1 + delay`` steps later. A delay therefore
    costs no work per step, only memory for at most ``depth`` current vectors.
    """

    def __init__(self, delay: int):
        self.depth = 1 + int(delay)
        self._slots: list[np.ndarray | None] = [None] * self.depth

    def arriving(self, step: int) -> np.ndarray | None:
        """Output currents [lanes, n_out] that reach the target at ``step`` (None: nothing)."""
        return self._slots[step % self.depth]

    def send(self, step: int, currents: np.ndarray | None) -> None:
        """Put what the sources emitted at ``step`` on the line: delivered at
        ``step + depth``. Call after :meth:`arriving` for the same step."""
        self._slots[step % self.depth] = currents


class Synapse:
    """A synapse being simulated: its delay line and its event counters.

    Subclasses compute the output currents of one step (:meth:`_currents`); ``graded`` says
    whether their events are MACs (graded source) or ACs (spikes).
    """

    graded = False

    def __init__(self, spec: Dense | Conv | SpikeAttention, lanes: int):
        self.spec = spec
        self.name: str = spec.name
        self.target: str = spec.target
        self.sources: tuple[str, ...] = synapse_sources(spec)
        self.lanes = lanes
        self.line = DelayLine(spec.delay)
        self.delay = int(spec.delay)
        self.recurrent = is_recurrent(spec)  # reads its own target (core.graph.is_recurrent)
        self.lag = synapse_lag(spec)  # model delay (core.graph.synapse_lag)
        self.events = 0  # events of source steps that belong to a sample
        self.extra_events = 0  # pipeline fill/drain and padding (not part of any sample)

    def arriving(self, step: int) -> np.ndarray | None:
        """Output currents [lanes, n_out] that reach the target at ``step`` (None: nothing)."""
        return self.line.arriving(step)

    def propagate(self, values: Sequence[np.ndarray], n_valid: int, step: int) -> None:
        """Take what the sources emit at ``step`` (one array [lanes, full source size] per
        entry of ``sources``; bool spikes or int64 values); it reaches the target at
        ``step + 1 + delay``.

        ``n_valid``: how many leading lanes are inside one of their samples at this step (the
        rest are pipeline fill/drain or padding; their events are counted apart).
        """
        self.line.send(step, self._currents(values, n_valid))

    def drop(self, step: int) -> None:
        """Carry nothing from ``step`` (a recurrent synapse at the end of a sample, whose
        spikes would reach the next sample): no events, nothing arrives ``1 + delay`` steps
        later."""
        self.line.send(step, None)

    def _currents(self, values: Sequence[np.ndarray], n_valid: int) -> np.ndarray | None:
        raise NotImplementedError

    def counters(self) -> dict[str, int]:
        """This synapse's own counters (``events/<name>``; docs/event_sim.md, "Counters")."""
        return {f"events/{self.name}": self.events}


class TableSynapse(Synapse):
    """A Dense or Conv: fan-out through its compiled table by a compiled kernel.

    Dense tables add the weight rows of the active sources (:func:`kernels.fan_out_rows`),
    sparse ones scatter their CSR rows (:func:`kernels.fan_out_csr`); both sum in int64 and
    count the events as they go. The output currents are then computed by core.fixedpoint.
    """

    def __init__(self, compiled: CompiledSynapse, lanes: int):
        super().__init__(compiled.spec, lanes)
        s = compiled.spec
        self.table = compiled.table
        self.graded = compiled.graded
        self.indices = compiled.indices
        self.weights = compiled.weights
        self.rows = compiled.rows
        self.fanout = compiled.table.fanout
        self.weight_exp = s.weight_exp
        self.lo = 0 if s.source_slice is None else int(s.source_slice[0])
        self.conv = isinstance(s, Conv)
        self.max_pool = s.max_pool if self.conv else None
        self.pool_shape = (lanes, *s.conv_shape) if self.max_pool else None

    def _currents(self, values: Sequence[np.ndarray], n_valid: int) -> np.ndarray | None:
        (vals,) = values
        t = self.table
        acc = np.zeros((self.lanes, t.n_out), dtype=np.int64)
        if self.rows is not None:
            inside, outside = kernels.fan_out_rows(vals, self.lo, self.rows, self.fanout, acc,
                                                   n_valid)
        else:
            inside, outside = kernels.fan_out_csr(vals, self.lo, t.indptr, self.indices,
                                                  self.weights, acc, n_valid)
        self.events += inside
        self.extra_events += outside
        if inside + outside == 0:
            return None
        if not self.conv:
            return fx.dense_output(acc, self.weight_exp)
        out = fx.conv_output(acc, self.weight_exp)
        if self.pool_shape is not None:  # dense over the conv output: a comparison per position
            out = fx.max_pool2d(out.reshape(self.pool_shape), self.max_pool).reshape(
                self.lanes, -1)
        return out


class AttentionSynapse(Synapse):
    """A :class:`~core.graph.SpikeAttention`: fed with the spikes its three sources (q, k, v;
    same latency) emit at one step.

    Event-driven: a lane where q, k or v is silent costs nothing and delivers nothing; in a
    live lane only the tokens where q fires (rows) and where both k and v fire (columns) take
    part (every other term of the product is zero), then ``fixedpoint.spike_attention`` does
    the ANDs, counts and sums. Events = ANDs (coincidences) + additions of nonzero counts.
    """

    def __init__(self, spec: SpikeAttention, graph: QGraph, lanes: int):
        super().__init__(spec, lanes)
        shape = graph.node_shape(spec.target)
        self.heads = spec.heads
        self.shift = spec.shift
        self.dim = int(shape[0])
        self.n_out = int(np.prod(shape))
        self.ands = 0

    def _currents(self, values: Sequence[np.ndarray], n_valid: int) -> np.ndarray | None:
        q, k, v = (np.asarray(x).reshape(self.lanes, self.dim, -1) for x in values)
        out = None
        for b in range(self.lanes):
            rows = np.flatnonzero(q[b].any(axis=0))
            cols = np.flatnonzero(k[b].any(axis=0) & v[b].any(axis=0))
            if rows.size == 0 or cols.size == 0:
                continue
            qb = q[b][:, rows].astype(np.int64)
            kb, vb = (x[b][:, cols].astype(np.int64) for x in (k, v))
            res = fx.spike_attention(qb, kb, vb, self.heads, self.shift)
            ands, adds = fx.spike_attention_ops(qb, kb, vb, self.heads)
            if b < n_valid:
                self.events += ands + adds
                self.ands += ands
            else:
                self.extra_events += ands + adds
            if out is None:
                out = np.zeros((self.lanes, self.dim, q.shape[2]), dtype=np.int64)
            out[b][:, rows] = res
        return None if out is None else out.reshape(self.lanes, self.n_out)

    def counters(self) -> dict[str, int]:
        """``events/<name>`` and ``ands/<name>`` (the ANDs alone)."""
        return {**super().counters(), f"ands/{self.name}": self.ands}


def compile_graph(graph: QGraph, dense_rows_min_density: float
                  ) -> list[CompiledSynapse | SpikeAttention]:
    """Compile every synapse of ``graph`` once (in graph order): a Dense or Conv becomes its
    :class:`~targets.event_sim.fanout.CompiledSynapse`, a SpikeAttention stays as it is (it
    has no table). Reused across the chunks of :func:`targets.event_sim.iter_run`.

    ``dense_rows_min_density``: see :func:`~targets.event_sim.fanout.compile_synapse`.

    Raises:
        GraphError: a Conv whose shapes disagree (see
            :func:`~targets.event_sim.fanout.conv_table`).
    """
    return [s if isinstance(s, SpikeAttention) else compile_synapse(s, graph,
                                                                    dense_rows_min_density)
            for s in graph.synapses]


def build_synapses(graph: QGraph, lanes: int, dense_rows_min_density: float,
                   compiled: Sequence[CompiledSynapse | SpikeAttention] | None = None
                   ) -> list[Synapse]:
    """One simulated synapse per synapse of ``graph``, in graph order, ``lanes`` wide.

    ``compiled``: the output of :func:`compile_graph` for this graph (compiled here when
    None). ``dense_rows_min_density``: see :func:`~targets.event_sim.fanout.compile_synapse`.

    Raises:
        GraphError: a Conv whose shapes disagree (see
            :func:`~targets.event_sim.fanout.conv_table`).
    """
    if compiled is None:
        compiled = compile_graph(graph, dense_rows_min_density)
    return [AttentionSynapse(c, graph, lanes) if isinstance(c, SpikeAttention)
            else TableSynapse(c, lanes) for c in compiled]
