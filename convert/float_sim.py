"""Float simulation of an imported graph: checks that export + import kept the trained model.

Same order of operations as the trained model and the chip (u, then v, then a strict ``>``
spike, then hard reset), zero latency, float64. numpy only.
"""

from __future__ import annotations

import numpy as np

from convert.float_graph import FGraph, FSpikeAttention
from core.graph import INPUT


def simulate(fg: FGraph, inputs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """inputs [N, T, *input_shape] (integers as encoded) -> (scores [N, n_out] summed over
    time, spikes: population -> bool [N, T, size])."""
    x = np.asarray(inputs, dtype=np.float64)
    n, t_steps = x.shape[:2]
    acts: dict[str, np.ndarray] = {INPUT: x.reshape(n, t_steps, -1)}
    spikes: dict[str, np.ndarray] = {}
    scores = None
    for name in fg.order():
        cur = 0.0
        for s in fg.incoming(name):
            if isinstance(s, FSpikeAttention):
                qkv = (acts[n_].reshape(n * t_steps, -1) for n_ in s.sources)
                cur = cur + s.apply_qkv(*qkv).reshape(n, t_steps, -1)
                continue
            src = acts[s.source]
            cur = cur + s.apply(src.reshape(n * t_steps, *_shape(fg, s.source))).reshape(
                n, t_steps, -1
            )
        if name in fg.readouts:
            r = fg.readouts[name]
            scores = (cur + r.bias).sum(axis=1)
            continue
        p = fg.populations[name]
        u = np.zeros((n, p.size))
        v = np.zeros((n, p.size))
        out = np.zeros((n, t_steps, p.size))
        for t in range(t_steps):
            u = p.alpha * u + cur[:, t]
            v = p.beta * v + u + p.bias
            s_t = v > p.threshold
            v = np.where(s_t, 0.0, v)
            out[:, t] = s_t
        spikes[name] = out.astype(bool)
        acts[name] = out
    if scores is None:
        scores = np.zeros((n, 0))
    return scores, spikes


def _shape(fg: FGraph, name: str) -> tuple[int, ...]:
    if name == INPUT:
        return fg.input.shape
    return fg.populations[name].shape
