"""A plain-numpy, zero-latency integer forward (synapse delays only shift deployed timelines,
so they do not appear here) of a QGraph, built only from core.fixedpoint
and core.ops: the reference the Lava contract scripts compare against (the Lava env has
no torch, so targets.torch_ref is not available there)."""

from __future__ import annotations

import numpy as np

from core import fixedpoint as fx
from core.graph import INPUT, Dense
from core.ops import conv2d
from targets.base import check_inputs


def synapse_output(s, x: np.ndarray) -> np.ndarray:
    """One synapse's integer output for source activity x [B, n_in]."""
    if isinstance(s, Dense):
        return fx.dense_output(x @ np.asarray(s.weight, dtype=np.int64).T, s.weight_exp)
    xb = x.reshape(x.shape[0], *s.in_shape)
    out = conv2d(xb, np.asarray(s.weight, dtype=np.int64), s.stride, s.padding, s.groups)
    out = fx.conv_output(np.rint(out).astype(np.int64), s.weight_exp)
    if s.max_pool is not None:
        out = fx.max_pool2d(out, s.max_pool)
    return out.reshape(x.shape[0], -1)


def run_ref(graph, inputs):
    x = check_inputs(graph, inputs)
    n, T, _ = x.shape
    order = graph.order()
    spikes = {p: np.zeros((n, T, graph.populations[p].size), bool) for p in graph.populations}
    readouts = {r: np.zeros((n, T, graph.readouts[r].size), np.int64) for r in graph.readouts}
    states = {p: (np.zeros((n, T, pp.size), np.int64), np.zeros((n, T, pp.size), np.int64))
              for p, pp in graph.populations.items()}
    u = {p: np.zeros((n, pp.size), np.int64) for p, pp in graph.populations.items()}
    v = {p: np.zeros((n, pp.size), np.int64) for p, pp in graph.populations.items()}
    for t in range(T):
        act = {INPUT: x[:, t]}
        for node in order:
            size = int(np.prod(graph.node_shape(node)))
            a = np.zeros((n, size), np.int64)
            for s in graph.incoming(node):
                src = act[s.source]
                if s.source_slice is not None:
                    src = src[:, s.source_slice[0] : s.source_slice[1]]
                a = a + synapse_output(s, src)
            if node in graph.readouts:
                readouts[node][:, t] = a
                continue
            p = graph.populations[node]
            bias = fx.effective_bias(np.asarray(p.bias_mant, np.int64), p.bias_exp)
            u[node], v[node], sp = fx.lif_step(u[node], v[node], a, p.du, p.dv, p.vth, bias)
            spikes[node][:, t] = sp
            states[node][0][:, t] = u[node]
            states[node][1][:, t] = v[node]
            act[node] = sp.astype(np.int64)
    return spikes, readouts, states
