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
    """A Dense or Conv: fan-out through its compiled table, two exact kernels.

    Dense rows (dense tables) sum the weight rows of the active sources; the CSR scatter sums
    the fanned-out entries per target, in float64 where :func:`compile_synapse` found that
    exact, else in int64.
    """

    def __init__(self, compiled: CompiledSynapse, lanes: int):
        super().__init__(compiled.spec, lanes)
        s = compiled.spec
        self.table = compiled.table
        self.graded = compiled.graded
        self.weights_f = compiled.weights_f
        self.rows = compiled.rows
        self.weight_exp = s.weight_exp
        self.source_slice = s.source_slice
        self.conv = isinstance(s, Conv)
        self.max_pool = s.max_pool if self.conv else None
        self.pool_shape = (lanes, *s.conv_shape) if self.max_pool else None

    def _currents(self, values: Sequence[np.ndarray], n_valid: int) -> np.ndarray | None:
        (vals,) = values
        if self.source_slice is not None:
            vals = vals[:, self.source_slice[0] : self.source_slice[1]]
        t = self.table
        lane, src = np.nonzero(vals)
        if src.size == 0:
            return None
        starts = t.indptr[src]
        counts = t.indptr[src + 1] - starts
        total = int(counts.sum())
        in_sample = int(counts[lane < n_valid].sum()) if n_valid < self.lanes else total
        self.events += in_sample
        self.extra_events += total - in_sample
        if total == 0:
            return None
        if self.rows is not None:
            acc = self._sum_rows(lane, src, vals)
        else:
            acc = self._scatter(lane, src, vals, starts, counts, total)
        if not self.conv:
            return fx.dense_output(acc, self.weight_exp)
        out = fx.conv_output(acc, self.weight_exp)
        if self.pool_shape is not None:  # dense over the conv output: a comparison per position
            out = fx.max_pool2d(out.reshape(self.pool_shape), self.max_pool).reshape(
                self.lanes, -1)
        return out

    def _sum_rows(self, lane: np.ndarray, src: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Dense tables: acc[lane] = sum of the weight rows of the lane's active sources."""
        rows = self.rows[src]
        if self.graded:
            rows *= values[lane, src][:, None]
        if self.lanes == 1:
            return rows.sum(axis=0, keepdims=True)
        # lane is sorted (C-order nonzero): each lane's rows are one contiguous block. One
        # sum per lane (not per event) is much faster than np.add.reduceat over axis 0.
        bounds = np.searchsorted(lane, np.arange(self.lanes + 1))
        acc = np.zeros((self.lanes, self.table.n_out), dtype=np.int64)
        for b in range(self.lanes):
            if bounds[b + 1] > bounds[b]:
                acc[b] = rows[bounds[b] : bounds[b + 1]].sum(axis=0)
        return acc

    def _scatter(self, lane: np.ndarray, src: np.ndarray, values: np.ndarray,
                 starts: np.ndarray, counts: np.ndarray, total: int) -> np.ndarray:
        """CSR tables: acc[lane, targets] += weight * value over all fanned-out connections."""
        t = self.table
        # positions of all fanned-out connections, concatenated row after row
        ends = np.cumsum(counts)
        pos = np.arange(total, dtype=np.int64) + np.repeat(starts - (ends - counts), counts)
        tgt = t.indices[pos]
        w = t.weights[pos] if self.weights_f is None else self.weights_f[pos]
        if self.graded:
            w = w * np.repeat(values[lane, src], counts)
        if self.lanes > 1:
            tgt = tgt + np.repeat(lane * t.n_out, counts)
        size = self.lanes * t.n_out
        if self.weights_f is not None:
            acc = np.rint(np.bincount(tgt, weights=w, minlength=size)).astype(np.int64)
        else:
            acc = np.zeros(size, dtype=np.int64)
            np.add.at(acc, tgt, w)
        return acc.reshape(self.lanes, t.n_out)


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


def build_synapses(graph: QGraph, lanes: int, dense_rows_min_density: float) -> list[Synapse]:
    """One simulated synapse per synapse of ``graph``, in graph order, ``lanes`` wide.

    ``dense_rows_min_density``: see :func:`~targets.event_sim.fanout.compile_synapse`.

    Raises:
        GraphError: a Conv whose shapes disagree (see
            :func:`~targets.event_sim.fanout.conv_table`).
    """
    return [AttentionSynapse(s, graph, lanes) if isinstance(s, SpikeAttention)
            else TableSynapse(compile_synapse(s, graph, dense_rows_min_density), lanes)
            for s in graph.synapses]
