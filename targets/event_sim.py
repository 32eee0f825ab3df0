"""Our event-driven simulator of the deployed chip (numpy/scipy only: no torch).

It executes a :class:`~core.graph.QGraph` the way the chip does, not the way the model was
trained (see docs/event_sim.md):

- one global timeline: samples run back to back, input step t of sample s is emitted at global
  step ``s*T + t``;
- every synapse delivers ``1 + delay`` steps later: what its source emits at step k is
  accumulated, turned into output currents (exponent shift, Conv wrap and max pooling) and kept
  in a ring buffer of depth ``1 + delay``; it reaches the target's ``u`` at step k+1+delay;
- every population resets ``u`` and ``v`` to 0 at the global steps where
  ``(step - latency) % T == 0``, i.e. exactly when the first input of its next sample arrives;
- every neuron is updated with :func:`core.fixedpoint.lif_step` at every step (the bias
  integrates even when nothing arrives, as on the chip);
- the run lasts ``n*T + depth`` steps, then each record is cut back to [sample, timestep] with
  :func:`targets.base.unpipeline` and the node's latency.

Work is proportional to events: each synapse is a fan-out table (CSR over source neurons, zero
weights dropped; a Conv becomes such a table too), and each step only the nonzero source entries
are propagated, vectorized over the active set.

``lanes=k`` runs k independent copies of that timeline side by side (k chips), each on a
contiguous block of samples; because every population is reset between samples the records are
identical for every k (tested), it only amortizes the per-step Python overhead.

    python -m targets.event_sim model.nir --samples 10000
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np

from core import fixedpoint as fx
from core.graph import INPUT, Conv, Dense, GraphError, QGraph, SpikeAttention
from core.ops import conv2d_out_hw
from targets.base import RunResult, check_inputs, unpipeline

# float64 accumulates integers exactly below this magnitude (np.bincount sums in float64).
_EXACT = 2**53
# A table at least this dense is also kept as rows [n_in, n_out]: summing the gathered rows of
# the active sources is several times faster than scattering their CSR entries one by one.
DENSE_ROWS_MIN_DENSITY = 0.25


@dataclass
class FanOut:
    """Fan-out table of one synapse: CSR over source neurons.

    The targets of source neuron j are ``indices[indptr[j]:indptr[j+1]]`` and the integer
    weights of those connections are the same slice of ``weights``; zero weights are dropped,
    so the length of a row is the number of synaptic events one spike of j causes.
    """

    indptr: np.ndarray  # int64 [n_in + 1]
    indices: np.ndarray  # int64 [nnz], target neuron (flat, C-order)
    weights: np.ndarray  # int64 [nnz]
    n_out: int

    @property
    def n_in(self) -> int:
        return len(self.indptr) - 1

    @property
    def fanout(self) -> np.ndarray:
        """Number of nonzero outgoing weights of every source neuron."""
        return np.diff(self.indptr)

    def to_dense(self) -> np.ndarray:
        """The equivalent [n_out, n_in] matrix (for tests and small graphs)."""
        m = np.zeros((self.n_out, self.n_in), dtype=np.int64)
        src = np.repeat(np.arange(self.n_in), self.fanout)
        m[self.indices, src] = self.weights
        return m


def _csr(src: np.ndarray, tgt: np.ndarray, w: np.ndarray, n_in: int, n_out: int) -> FanOut:
    keep = w != 0
    src, tgt, w = src[keep], tgt[keep], w[keep]
    order = np.lexsort((tgt, src))
    src, tgt, w = src[order], tgt[order], w[order]
    indptr = np.zeros(n_in + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n_in), out=indptr[1:])
    return FanOut(indptr, tgt.astype(np.int64), w.astype(np.int64), n_out)


def dense_table(weight: np.ndarray) -> FanOut:
    """Fan-out table of a Dense weight matrix [n_out, n_in]."""
    w = np.asarray(weight, dtype=np.int64)
    n_out, n_in = w.shape
    src, tgt = np.nonzero(w.T)
    return _csr(src, tgt, w.T[src, tgt], n_in, n_out)


def conv_table(
    weight: np.ndarray,
    in_shape: tuple[int, int, int],
    out_shape: tuple[int, int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    groups: int,
) -> FanOut:
    """Fan-out table of a PyTorch Conv2d (cross-correlation) over C-order (C, H, W) indices.

    Output (o, y, x) receives ``weight[o, c - g*C_in_g, i, j] * in[c, y*sy-py+i, x*sx-px+j]``
    for the channels c of o's group g; positions in the zero padding have no neuron.
    """
    w = np.asarray(weight, dtype=np.int64)
    c_in, h, wd = in_shape
    c_out, ho, wo = out_shape
    k_out, c_per_group, kh, kw = w.shape
    if k_out != c_out or c_per_group * groups != c_in or c_out % groups:
        raise GraphError(f"conv weight {w.shape} (groups={groups}) does not map "
                         f"{in_shape}->{out_shape}")
    if conv2d_out_hw((h, wd), (kh, kw), stride, padding) != (ho, wo):
        raise GraphError(f"conv {in_shape}->{out_shape}: output size disagrees with kernel "
                         f"{(kh, kw)}, stride {stride}, padding {padding}")
    o, cl, i, j = np.nonzero(w)  # one entry per nonzero kernel weight
    val = w[o, cl, i, j]
    ci = (o // (c_out // groups)) * c_per_group + cl
    yo = np.arange(ho)[None, :, None]
    xo = np.arange(wo)[None, None, :]
    y = yo * stride[0] - padding[0] + i[:, None, None]  # [K, Ho, 1]
    x = xo * stride[1] - padding[1] + j[:, None, None]  # [K, 1, Wo]
    shape = (len(o), ho, wo)
    valid = np.broadcast_to((y >= 0) & (y < h), shape) & np.broadcast_to((x >= 0) & (x < wd), shape)
    src = np.broadcast_to(ci[:, None, None] * (h * wd) + y * wd + x, shape)[valid]
    tgt = np.broadcast_to(o[:, None, None] * (ho * wo) + yo * wo + xo, shape)[valid]
    wts = np.broadcast_to(val[:, None, None], shape)[valid]
    return _csr(src, tgt, wts, c_in * h * wd, c_out * ho * wo)


def fanout_table(s: Dense | Conv) -> FanOut:
    """Fan-out table of a synapse over the source entries it reads (its ``source_slice``).

    A Conv's table maps to the convolution's own output (``conv_shape``); its max pooling,
    if any, acts on the accumulated currents afterwards.
    """
    if isinstance(s, Conv):
        return conv_table(s.weight, s.in_shape, s.conv_shape, s.stride, s.padding, s.groups)
    return dense_table(s.weight)


class _Synapse:
    """A synapse being simulated: its table, its delivery ring buffer, its event count."""

    def __init__(self, s: Dense | Conv, graph: QGraph, lanes: int):
        self.s = s
        self.name = s.name
        self.table = fanout_table(s)
        self.lanes = lanes
        self.source_slice = s.source_slice
        self.conv = isinstance(s, Conv)
        self.pool_shape = (lanes, *s.conv_shape) if self.conv and s.max_pool else None
        # the source carries integers, not spikes: every event is a MAC (bit planes are binary)
        graded = s.source == INPUT and not graph.input.binary
        self.graded = graded
        vmax = graph.input.max_value if graded else 1
        in_degree = np.bincount(self.table.indices, minlength=self.table.n_out)
        wmax = int(np.abs(self.table.weights).max(initial=0))
        # exact float64 accumulation unless a target could ever sum past 2**53
        self.exact_float = wmax * vmax * int(in_degree.max(initial=0)) < _EXACT
        t = self.table
        self.weights_f = t.weights.astype(np.float64) if self.exact_float else None
        dense = len(t.weights) >= DENSE_ROWS_MIN_DENSITY * t.n_in * t.n_out
        self.rows = t.to_dense().T.copy() if dense and len(t.weights) else None
        # ring[k % depth]: output currents emitted at step k - depth, delivered at step k (None:
        # nothing). Read at step k, then overwritten with what the source emits at step k.
        self.depth = 1 + int(s.delay)
        self.ring: list[np.ndarray | None] = [None] * self.depth
        self.events = 0  # events of source steps that belong to a sample
        self.extra_events = 0  # pipeline fill/drain and padding (not part of any sample)

    def arriving(self, step: int) -> np.ndarray | None:
        """Output currents [lanes, n_out] that reach the target at ``step`` (None: nothing)."""
        return self.ring[step % self.depth]

    def propagate(self, values: np.ndarray, n_valid: int, step: int) -> None:
        """Accumulate what the source emits at ``step`` ([lanes, full source]; bool or int64);
        it reaches the target at ``step + 1 + delay``.

        ``n_valid``: how many leading lanes are inside one of their samples at this step (the
        rest are pipeline fill/drain or padding; their events are counted apart).
        """
        slot = step % self.depth
        self.ring[slot] = None
        if self.source_slice is not None:
            values = values[:, self.source_slice[0] : self.source_slice[1]]
        t = self.table
        lane, src = np.nonzero(values)
        if src.size == 0:
            return
        starts = t.indptr[src]
        counts = t.indptr[src + 1] - starts
        total = int(counts.sum())
        in_sample = int(counts[lane < n_valid].sum()) if n_valid < self.lanes else total
        self.events += in_sample
        self.extra_events += total - in_sample
        if total == 0:
            return
        if self.rows is not None:
            acc = self._sum_rows(lane, src, values)
        else:
            acc = self._scatter(lane, src, values, starts, counts, total)
        if not self.conv:
            self.ring[slot] = fx.dense_output(acc, self.s.weight_exp)
            return
        out = fx.conv_output(acc, self.s.weight_exp)
        if self.pool_shape is not None:  # dense over the conv output: a comparison per position
            out = fx.max_pool2d(out.reshape(self.pool_shape), self.s.max_pool).reshape(
                self.lanes, -1)
        self.ring[slot] = out

    def _sum_rows(self, lane, src, values) -> np.ndarray:
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

    def _scatter(self, lane, src, values, starts, counts, total) -> np.ndarray:
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


class _AttentionSynapse:
    """A :class:`~core.graph.SpikeAttention` being simulated: the same delivery ring buffer
    as :class:`_Synapse`, fed with the spikes its three sources (q, k, v; same latency) emit
    at one step.

    Event-driven: a lane where q, k or v is silent costs nothing and delivers nothing; in a
    live lane only the tokens where q fires (rows) and where both k and v fire (columns) take
    part (every other term of the product is zero), then ``fixedpoint.spike_attention`` does
    the ANDs, counts and sums. Events = ANDs (coincidences) + additions of nonzero counts.
    """

    graded = False

    def __init__(self, s: SpikeAttention, graph: QGraph, lanes: int):
        self.s = s
        self.name = s.name
        self.lanes = lanes
        shape = graph.node_shape(s.target)
        self.dim = int(shape[0])
        self.n_out = int(np.prod(shape))
        self.depth = 1 + int(s.delay)
        self.ring: list[np.ndarray | None] = [None] * self.depth
        self.events = 0
        self.extra_events = 0
        self.ands = 0

    def arriving(self, step: int) -> np.ndarray | None:
        return self.ring[step % self.depth]

    def propagate_sources(self, values: list[np.ndarray], n_valid: int, step: int) -> None:
        """``values``: the spikes [lanes, size] of q, k and v at ``step``; the product reaches
        the target at ``step + 1 + delay``."""
        slot = step % self.depth
        self.ring[slot] = None
        q, k, v = (np.asarray(x).reshape(self.lanes, self.dim, -1) for x in values)
        out = None
        for b in range(self.lanes):
            rows = np.flatnonzero(q[b].any(axis=0))
            cols = np.flatnonzero(k[b].any(axis=0) & v[b].any(axis=0))
            if rows.size == 0 or cols.size == 0:
                continue
            qb = q[b][:, rows].astype(np.int64)
            kb, vb = (x[b][:, cols].astype(np.int64) for x in (k, v))
            res = fx.spike_attention(qb, kb, vb, self.s.heads, self.s.shift)
            ands, adds = fx.spike_attention_ops(qb, kb, vb, self.s.heads)
            if b < n_valid:
                self.events += ands + adds
                self.ands += ands
            else:
                self.extra_events += ands + adds
            if out is None:
                out = np.zeros((self.lanes, self.dim, q.shape[2]), dtype=np.int64)
            out[b][:, rows] = res
        if out is not None:
            self.ring[slot] = out.reshape(self.lanes, self.n_out)


def _n_valid(step: int, latency: int, timesteps: int, per_lane: int, n: int, lanes: int) -> int:
    """Leading lanes whose node of this latency is inside a real sample at this step."""
    k = step - latency
    if k < 0 or k >= per_lane * timesteps:
        return 0
    j = k // timesteps  # sample index within the lane
    return min(lanes, -(-(n - j) // per_lane))


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
) -> Timeline:
    """Run the deployed timeline for ``x`` (int [N, T, input size], from check_inputs)."""
    n, t_steps = x.shape[:2]
    lat = graph.latency()
    depth = graph.depth
    lanes = max(1, min(int(lanes), n)) if n else 1
    per_lane = -(-n // lanes) if n else 0
    lanes = -(-n // per_lane) if n else 1  # no lane of pure padding
    pad = lanes * per_lane - n
    if pad:
        x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), dtype=x.dtype)])
    # lane b runs samples b*per_lane ... b*per_lane + per_lane - 1 back to back
    x = x.reshape(lanes, per_lane * t_steps, graph.input.flat_size)
    binary_input = graph.input.binary
    if binary_input:
        x = x.astype(bool)
    n_input_steps = per_lane * t_steps
    steps = n_input_steps + depth

    syns = [(_AttentionSynapse if isinstance(s, SpikeAttention) else _Synapse)(s, graph, lanes)
            for s in graph.synapses]
    incoming = {name: [y for y in syns if y.s.target == name]
                for name in (*graph.populations, *graph.readouts)}
    pops = list(graph.populations.values())
    bias = {p.name: fx.effective_bias(p.bias_mant.astype(np.int64), p.bias_exp) for p in pops}
    u = {p.name: np.zeros((lanes, p.size), dtype=np.int64) for p in pops}
    v = {p.name: np.zeros((lanes, p.size), dtype=np.int64) for p in pops}
    raw_s = {p.name: np.zeros((steps, lanes, p.size), dtype=bool) for p in pops}
    raw_r = {r.name: np.zeros((steps, lanes, r.size), dtype=np.int64)
             for r in graph.readouts.values()}
    traced = pops if record_state else []
    raw_u = {p.name: np.zeros((steps, lanes, p.size), dtype=np.int64) for p in traced}
    raw_v = {p.name: np.zeros((steps, lanes, p.size), dtype=np.int64) for p in traced}
    max_u = max_v = 0
    no_input = np.zeros((lanes, graph.input.flat_size), dtype=bool if binary_input else np.int64)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, unit="step", desc="event_sim", leave=False)
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
            un, vn, s = fx.lif_step(u[name], v[name], a_in, p.du, p.dv, p.vth, bias[name])
            u[name], v[name] = un, vn
            raw_s[name][k] = s
            if record_state:
                raw_u[name][k] = un
                raw_v[name][k] = vn
            nv = _n_valid(k, lat[name], t_steps, per_lane, n, lanes)
            if nv:
                max_u = max(max_u, int(np.abs(un[:nv]).max(initial=0)))
                max_v = max(max_v, int(np.abs(vn[:nv]).max(initial=0)))
        for r in graph.readouts.values():
            for y in incoming[r.name]:
                cur = y.arriving(k)
                if cur is not None:
                    raw_r[r.name][k] += cur
        # 2. every synapse reads its source at this step; the target sees it at k + 1 + delay
        for y in syns:
            src = y.s.source
            if isinstance(y, _AttentionSynapse):  # q, k, v share one latency (src = q)
                y.propagate_sources([raw_s[node][k] for node in y.s.sources],
                                    _n_valid(k, lat[src], t_steps, per_lane, n, lanes), k)
                continue
            if src == INPUT:
                vals = x[:, k] if k < n_input_steps else no_input
            else:
                vals = raw_s[src][k]
            y.propagate(vals, _n_valid(k, lat[src], t_steps, per_lane, n, lanes), k)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    counters: dict[str, int] = {"synaptic_events": 0, "ac": 0, "mac": 0}
    for y in syns:
        counters["synaptic_events"] += y.events
        counters["mac" if y.graded else "ac"] += y.events
        counters[f"events/{y.name}"] = y.events
        if isinstance(y, _AttentionSynapse):
            counters[f"ands/{y.name}"] = y.ands
    counters["neuron_updates"] = sum(p.size for p in pops) * n * t_steps
    counters["steps"] = steps
    counters["lanes"] = lanes
    counters["pipeline_events"] = sum(y.extra_events for y in syns)
    counters["max_abs_u"] = max_u
    counters["max_abs_v"] = max_v
    return Timeline(raw_s, raw_r, raw_u, raw_v, lat, n, per_lane, t_steps, counters)


def run(
    graph: QGraph,
    inputs: np.ndarray,
    *,
    record_state: bool = False,
    progress: bool = False,
    lanes: int = 1,
) -> RunResult:
    """Simulate the deployed timeline; records are aligned to the trained model's time axis.

    ``inputs``: [sample, timestep, *input_shape] integers. ``lanes``: independent copies of
    the timeline run side by side (identical records; see the module docstring).
    """
    x = check_inputs(graph, inputs)
    tl = simulate(graph, x, record_state=record_state, progress=progress, lanes=lanes)
    spikes = {p: tl.cut(raw, p) for p, raw in tl.spikes.items()}
    readouts = {r: tl.cut(raw, r) for r, raw in tl.readouts.items()}
    states = {p: (tl.cut(tl.u[p], p), tl.cut(tl.v[p], p)) for p in tl.u}
    counters = dict(tl.counters)
    for p, s in spikes.items():
        counters[f"spikes/{p}"] = int(s.sum())
    return RunResult(spikes, readouts, counters, states)


def main(argv: list[str] | None = None) -> int:
    from targets.cli import add_common_args, prepare, report_run

    ap = argparse.ArgumentParser(
        prog="python -m targets.event_sim",
        description="Run a NIR model on neurodeploy's event-driven simulator of the deployed "
        "Loihi chip (1 + delay steps per synapse, per-sample resets, fixed-point LIF; work "
        "proportional to synaptic events). Prints accuracy, spike counts and synaptic "
        "events (ACs on spikes, MACs on graded inputs).",
    )
    add_common_args(ap)
    ap.add_argument("--lanes", type=int, default=1,
                    help="independent copies of the chip timeline run side by side, each on a "
                    "contiguous block of samples (same records; faster for many samples; "
                    "default 1: the single deployed timeline)")
    ap.add_argument("--record-state", action="store_true",
                    help="also save u and v of every population in --record")
    args = ap.parse_args(argv)
    if args.lanes < 1:
        ap.error("--lanes must be at least 1")
    prep = prepare(args)
    t0 = time.perf_counter()
    result = run(prep.graph, prep.inputs, record_state=args.record_state,
                 progress=not args.no_progress, lanes=args.lanes)
    wall = time.perf_counter() - t0
    rc = report_run("event_sim", prep, result, wall)
    c = result.counters
    print(f"{'events/s':<16}{c['synaptic_events'] / max(wall, 1e-9):>21.3e}  "
          f"({c['steps']} steps x {c['lanes']} lane(s))")
    peak = max(1, c["max_abs_u"], c["max_abs_v"])
    print(f"{'max |u|, |v|':<16}{c['max_abs_u']:>10} {c['max_abs_v']:>10}  "
          f"(24-bit limit {fx.V_LIMIT}: headroom x{fx.V_LIMIT / peak:.0f})")
    return rc


if __name__ == "__main__":
    from core.cli import run_cli

    sys.exit(run_cli("event_sim", main))
