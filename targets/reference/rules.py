"""Our float model of a graph under alternative neuron rules: the checks behind a cause.

The deployed chip computes what ``convert.float_sim`` computes, rounded to integers: current
``u``, then voltage ``v``, then each population's own reset mode (``FPopulation.fire``: by
default a spike when ``v > threshold`` and ``v`` reset to zero at that spike).
Other frameworks' neurons differ in ways NIR does not record (snnTorch subtracts the threshold
and applies the reset one step late; Sinabs and rockpool fire ``floor(v / threshold)`` spikes
on ``v >= threshold`` and subtract; Sinabs' importer floors ``v`` at ``-threshold``). The
reference comparison re-simulates our float graph with such a rule (:class:`Rules`): where the
rule makes our float model agree with the reference, that rule is the attributed cause.

The rule set of :data:`OURS` reproduces ``convert.float_sim`` exactly (tested); readouts are
not simulated (they do not spike). numpy only, float64.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from convert.float_graph import FGraph, FSpikeAttention
from core.graph import INPUT, is_recurrent


@dataclass(frozen=True)
class Rules:
    """How a population's neurons fire and reset (one rule set for the whole graph).

    ``reset``: ``"zero"`` (v <- 0) or ``"subtract"`` (v <- v - spikes * threshold);
    ``late``: the reset is applied at the next step, from the previous step's spikes
    (snnTorch's ``reset_delay=True``; with a zero reset that clears v before the decay, which
    fires exactly as a reset at the spike does, so only the subtractive late reset is tried);
    ``compare``: ``">"`` or ``">="`` against the threshold; ``multi``: ``floor(v /
    threshold)`` spikes in one step once ``v >= threshold`` (Sinabs' ``MultiSpike``,
    rockpool); ``v_floor``: v is clipped below at ``-threshold`` after the reset
    (``sinabs.from_nir``'s ``min_v_mem``); ``bias_in_current``: a population with a current
    decay (``alpha > 0``) takes its constant input in the current, as NIR's CubaLIF (and
    snnTorch's ``Synaptic``) do, instead of the steady-state voltage bias ``bias / (1 -
    alpha)`` the importer deploys (``convert.neuron_params.normalise_threshold``): ``u`` gets
    ``bias * (1 - alpha)`` per step and ``v`` none (the NIR model exactly when the node's
    ``v_leak`` is 0: the importer folds a leak into the same bias).
    """

    label: str
    reset: str = "zero"
    late: bool = False
    compare: str = ">"
    multi: bool = False
    v_floor: bool = False
    bias_in_current: bool = False


OURS = Rules("ours: each population's own reset mode, as deployed")

# The alternatives a reference comparison tries, simplest first.
ALTERNATIVES: tuple[Rules, ...] = (
    Rules("reset by subtraction", reset="subtract"),
    Rules("reset by subtraction, one step late (snnTorch default)", reset="subtract", late=True),
    Rules("spike on v >= threshold", compare=">="),
    Rules("reset by subtraction, spike on v >= threshold", reset="subtract", compare=">="),
    Rules("multi-spike, reset by subtraction (Sinabs/rockpool default)", reset="subtract",
          compare=">=", multi=True),
    Rules("multi-spike, reset by subtraction, v floored at -threshold (sinabs.from_nir)",
          reset="subtract", compare=">=", multi=True, v_floor=True),
)


BIAS_IN_CURRENT = " + CubaLIF bias in the current"


OURS_BIAS = "as deployed" + BIAS_IN_CURRENT


def alternatives(fg: FGraph) -> list[Rules]:
    """The rule sets a comparison tries on ``fg``: :data:`ALTERNATIVES`, and when a population
    with a current decay has a bias (which the import moved into v), each of them and
    :data:`OURS` with the bias in the current instead."""
    out = list(ALTERNATIVES)
    if any(p.alpha > 0 and np.any(np.asarray(p.bias) != 0) for p in fg.populations.values()):
        out += [replace(r, label=(OURS_BIAS if r is OURS else r.label + BIAS_IN_CURRENT),
                        bias_in_current=True)
                for r in (OURS, *ALTERNATIVES)]
    return out


def simulate(fg: FGraph, inputs: np.ndarray, rules: Rules = OURS
             ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Run ``inputs`` [N, T, *input_shape] (integers as encoded) through the populations of
    ``fg`` under ``rules``.

    Returns ``(spikes, membranes)``, both by population name, ``[N, T, size]``: spike counts
    (int64; 0/1 unless ``rules.multi``) and the voltage after each step (float64, after the
    reset, in the float graph's units). Readouts are skipped.
    """
    x = np.asarray(inputs, dtype=np.float64)
    n, t_steps = x.shape[:2]
    acts: dict[str, np.ndarray] = {INPUT: x.reshape(n, t_steps, -1)}
    spikes: dict[str, np.ndarray] = {}
    volts: dict[str, np.ndarray] = {}
    for name in fg.order():
        if name not in fg.populations:
            continue
        p = fg.populations[name]
        cur = np.zeros((n, t_steps, p.size))
        recurrent = []
        for s in fg.incoming(name):
            if is_recurrent(s):
                recurrent.append(s)
            elif isinstance(s, FSpikeAttention):
                qkv = (acts[src].reshape(n * t_steps, -1) for src in s.sources)
                cur = cur + s.apply_qkv(*qkv).reshape(n, t_steps, -1)
            else:
                src = acts[s.source].reshape(n * t_steps, *_shape(fg, s.source))
                cur = cur + s.apply(src).reshape(n, t_steps, -1)
        out, vs = _run_population(p, cur, recurrent, rules)
        spikes[name], volts[name] = out.astype(np.int64), vs
        acts[name] = out
    return spikes, volts


def _run_population(p, cur: np.ndarray, recurrent: list, rules: Rules
                    ) -> tuple[np.ndarray, np.ndarray]:
    """One population over time: (spike counts float [N, T, size], v after each step).
    Under :data:`OURS` the population's own reset mode (``FPopulation.fire``, as
    ``convert.float_sim``); under any other rule set that rule for every population."""
    n, t_steps, size = cur.shape
    thr = p.threshold
    bias_u, bias_v = 0.0, p.bias
    if rules.bias_in_current and p.alpha > 0:
        bias_u, bias_v = np.asarray(p.bias) * (1.0 - p.alpha), 0.0
    u = np.zeros((n, size))
    v = np.zeros((n, size))
    prev = np.zeros((n, size))  # last step's spikes (for a late reset)
    out = np.zeros((n, t_steps, size))
    vs = np.zeros((n, t_steps, size))
    for t in range(t_steps):
        cur_t = cur[:, t]
        for s in recurrent:  # the population's own spikes of step t - 1 - delay
            if t - 1 - s.delay >= 0:
                cur_t = cur_t + s.apply(out[:, t - 1 - s.delay].reshape(n, *p.shape))
        u = p.alpha * u + cur_t + bias_u
        if rules.label == OURS.label or (rules.bias_in_current and rules.label == OURS_BIAS):
            v = p.beta * v + u + bias_v - p.late_reset(v)
            s_t, v = p.fire(v)
            out[:, t] = s_t
            vs[:, t] = v
            continue
        if rules.late:
            if rules.reset == "zero":
                v = np.where(prev > 0, 0.0, v)
                v = p.beta * v + u + bias_v
            else:
                v = p.beta * v + u + bias_v - prev * thr
        else:
            v = p.beta * v + u + bias_v
        if rules.multi:
            s_t = np.where(v >= thr, np.floor(v / thr), 0.0)
        else:
            s_t = (v >= thr if rules.compare == ">=" else v > thr).astype(np.float64)
        if not rules.late:
            v = np.where(s_t > 0, 0.0, v) if rules.reset == "zero" else v - s_t * thr
        if rules.v_floor:
            v = np.maximum(v, -thr)
        prev = s_t
        out[:, t] = s_t
        vs[:, t] = v
    return out, vs


def _shape(fg: FGraph, name: str) -> tuple[int, ...]:
    return fg.input.shape if name == INPUT else fg.populations[name].shape


# The roundings quantization makes, each checked alone on our float model (rounded_graphs).
WEIGHT_ROUNDING = "weight rounding"
DECAY_ROUNDING = "decay rounding (du, dv)"
THRESHOLD_ROUNDING = "threshold and bias rounding"
ALL_ROUNDINGS = "several roundings together"
ROUNDINGS = (WEIGHT_ROUNDING, DECAY_ROUNDING, THRESHOLD_ROUNDING, ALL_ROUNDINGS)


def rounded_graphs(fg: FGraph, qg, scales: dict[str, float]) -> dict[str, FGraph]:
    """Our float model with one kind of quantization rounding put back at a time, in float
    units: label (:data:`ROUNDINGS`) -> FGraph.

    ``qg``: the deployed integer graph (``core.graph.QGraph``) quantized from ``fg``;
    ``scales``: each population's scale ``k`` (integer units per float volt, the
    quantization report's ``scale``). A Dense/Conv weight ``W`` deploys as ``W_int * 2**e``
    with ``W_int = round(W * k / 2**e)``, so its rounded float value is ``W_int * 2**e / k``;
    a threshold ``vth / k``; a bias ``(bias_mant << bias_exp) / (64 k)``; the decays
    ``1 - dv/4096`` and ``1 - (du + 1)/4096`` (0 for ``du = 4095``). Synapses whose deployed
    form differs in shape (bit planes, dense-mapped convs) and attentions keep their float
    weights. What no single rounding explains and all together do is
    :data:`ALL_ROUNDINGS`; what even they do not is the integer arithmetic itself
    (truncated decays and shifts of u and v).
    """
    from core import fixedpoint as fx
    from core.graph import Conv, Dense

    qsyn = {s.name: s for s in qg.synapses if isinstance(s, Dense | Conv)}

    def weights(g: FGraph) -> FGraph:
        syns = []
        for s in g.synapses:
            q = qsyn.get(s.name)
            k = scales.get(s.target)
            if (isinstance(s, FSpikeAttention) or q is None or not k
                    or np.shape(q.weight) != np.shape(s.op.weight) or s.target not in
                    g.populations):
                syns.append(s)
                continue
            w = np.asarray(q.weight, np.float64) * 2.0 ** int(q.weight_exp) / k
            syns.append(replace(s, op=replace(s.op, weight=w)))
        return replace(g, synapses=syns)

    def decays(g: FGraph) -> FGraph:
        pops = {}
        for n, p in g.populations.items():
            q = qg.populations.get(n)
            pops[n] = p if q is None else replace(
                p, beta=fx.factor_from_dv(q.dv),
                alpha=0.0 if q.du == fx.DU_MAX else fx.factor_from_du(q.du))
        return replace(g, populations=pops)

    def thresholds(g: FGraph) -> FGraph:
        pops = {}
        for n, p in g.populations.items():
            q, k = qg.populations.get(n), scales.get(n)
            if q is None or not k:
                pops[n] = p
                continue
            bias = fx.effective_bias(np.asarray(q.bias_mant, np.int64), q.bias_exp)
            pops[n] = replace(p, threshold=q.vth / k,
                              bias=bias.astype(np.float64) / ((1 << fx.ACT_SHIFT) * k))
        return replace(g, populations=pops)

    return {WEIGHT_ROUNDING: weights(fg), DECAY_ROUNDING: decays(fg),
            THRESHOLD_ROUNDING: thresholds(fg), ALL_ROUNDINGS: thresholds(decays(weights(fg)))}
