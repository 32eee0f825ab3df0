"""Float simulation of an imported graph: checks that export + import kept the trained model.

Same order of operations as the trained model and the chip (u, then v, then a strict ``>``
spike, then the population's reset: ``FPopulation.fire``, to zero by default), zero latency
(a recurrent synapse brings its population's spikes of step t - 1 - delay), float64. numpy
only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from convert.float_graph import FGraph, FSpikeAttention
from core.fixedpoint import graded_spikes
from core.graph import INPUT, is_recurrent

# observe(population, t, u, v): each step's current and membrane [N, size] (v before the reset)
Observer = Callable[[str, int, np.ndarray, np.ndarray], None]


def simulate(fg: FGraph, inputs: np.ndarray, observe: Observer | None = None
             ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """inputs [N, T, *input_shape] (integers as encoded) -> (scores [N, n_out]: a readout's
    membrane at the last step, i.e. its input summed over time for an ``Output``; spikes:
    population -> bool [N, T, size]). ``observe``, when given, is called for every population
    and step with its u and v (v before the reset; float voltage units): the ranges
    calibration reads (:mod:`convert.calibrate`)."""
    x = np.asarray(inputs, dtype=np.float64)
    n, t_steps = x.shape[:2]
    acts: dict[str, np.ndarray] = {INPUT: x.reshape(n, t_steps, -1)}
    spikes: dict[str, np.ndarray] = {}
    scores = None
    for name in fg.order():
        cur = 0.0
        recurrent = [s for s in fg.incoming(name) if is_recurrent(s)]
        for s in fg.incoming(name):
            if is_recurrent(s):
                continue  # this population's own spikes: inside the step loop below
            if isinstance(s, FSpikeAttention):
                qkv = (acts[n_].reshape(n * t_steps, -1) for n_ in s.sources)
                cur = cur + s.apply_qkv(*qkv).reshape(n, t_steps, -1)
                continue
            src = acts[s.source]
            out_s = s.apply(src.reshape(n * t_steps, *_shape(fg, s.source))).reshape(
                n, t_steps, -1
            )
            if s.lag:  # a model delay: step t's input arrives at step t + lag of the sample
                out_s = np.concatenate([np.zeros_like(out_s[:, :s.lag]),
                                        out_s[:, :max(t_steps - s.lag, 0)]], axis=1)[:, :t_steps]
            cur = cur + out_s
        if name in fg.readouts:
            r = fg.readouts[name]
            v = np.zeros((n, r.size))
            for t in range(t_steps):  # the membrane; beta = 1: the sum over time
                v = r.beta * v + cur[:, t] + r.bias
            scores = v
            continue
        p = fg.populations[name]
        u = np.zeros((n, p.size))
        v = np.zeros((n, p.size))
        out = np.zeros((n, t_steps, p.size))
        for t in range(t_steps):
            cur_t = cur[:, t]
            for s in recurrent:  # its spikes of step t - 1 - delay (none before)
                if t - 1 - s.delay >= 0:
                    cur_t = cur_t + s.apply(out[:, t - 1 - s.delay].reshape(n, *p.shape))
            u = p.alpha * u + cur_t
            v = p.beta * v + u + p.bias - p.late_reset(v)  # 0 unless reset "subtract_late"
            if observe is not None:
                observe(name, t, u, v)
            s_t, v = p.fire(v)  # the population's reset mode (FPopulation.fire)
            out[:, t] = s_t
        # spike counts for a graded reset mode, else 0/1
        spikes[name] = out.astype(np.int64) if graded_spikes(p.reset) else out.astype(bool)
        acts[name] = out
    if scores is None:
        scores = np.zeros((n, 0))
    return scores, spikes


def _shape(fg: FGraph, name: str) -> tuple[int, ...]:
    if name == INPUT:
        return fg.input.shape
    return fg.populations[name].shape
