"""Reference target: the trained model's integer forward, batched, layer by layer, in torch.

No synaptic latency here: layer l at step t sees layer l-1 at step t, exactly as the model was
trained; a recurrent synapse (a population onto itself) brings its spikes of step t - 1 - delay
(nothing before the sample's step 1 + delay), and one with a model delay (``lag``, a NIR Delay)
its source's values of step t - lag. The deployed targets must reproduce these records
after removing their latency. The arithmetic is core/fixedpoint.py applied to torch tensors
(int64); matrix products and convolutions run in float64, which is exact for these integer
magnitudes (< 2**53), and are rounded back to int64.

    python -m targets.torch_ref model.nir --samples 1000 [--record out.npz] [--json]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from core import fixedpoint as fx
from core.cli import progress as progress_iter
from core.cli import run_cli
from core.graph import INPUT, Conv, QGraph, SpikeAttention, is_recurrent, synapse_lag
from targets.base import OverflowCounter, RunResult, check_inputs
from targets.cli import add_common_args, prepare, report_run

_EXACT = 2**53


def synapse_output(s, x: torch.Tensor) -> torch.Tensor:
    """One synapse over all steps at once: x [B, n_in] int64 -> [B, n_out] int64."""
    w = torch.from_numpy(np.ascontiguousarray(s.weight)).to(torch.float64)
    xf = x.to(torch.float64)
    if isinstance(s, Conv):
        y = F.conv2d(xf.reshape(-1, *s.in_shape), w, stride=s.stride, padding=s.padding,
                     groups=s.groups)
    else:
        y = xf @ w.T
    if y.numel() and float(y.abs().max()) >= _EXACT:
        raise OverflowError(f"synapse {s.name}: accumulation beyond float64's exact range")
    acc = torch.round(y).to(torch.int64)
    if not isinstance(s, Conv):
        return fx.dense_output(acc, s.weight_exp)
    out = fx.conv_output(acc, s.weight_exp)
    if s.max_pool is not None:
        out = fx.max_pool2d(out, s.max_pool)
    return out.reshape(x.shape[0], -1)


def run(graph: QGraph, inputs: np.ndarray, *, record_state: bool = False,
        progress: bool = False) -> RunResult:
    """Run ``inputs`` [N, T, *input_shape] (integers) through ``graph``, all samples at once.

    ``progress``: a bar over the graph's nodes on a terminal. Counters: ``synaptic_events``,
    ``ac``, ``mac``, ``events/<synapse>`` and ``overflow/<kind>/<population>`` (every
    neuron update of every sample; ``targets.base.OverflowCounter``). Raises ``UserError`` for
    inputs of the wrong shape or range (``targets.base.check_inputs``) and ``OverflowError`` when an
    accumulation leaves float64's exact integer range.
    """
    x = torch.from_numpy(check_inputs(graph, inputs))
    n, t_steps = x.shape[:2]
    acts: dict[str, torch.Tensor] = {INPUT: x}
    spikes: dict[str, np.ndarray] = {}
    readouts: dict[str, np.ndarray] = {}
    states: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    counters = {"synaptic_events": 0, "ac": 0, "mac": 0}
    overflow = OverflowCounter(list(graph.populations))
    order = graph.order()
    for name in progress_iter(order, total=len(order), desc="torch_ref", enabled=progress,
                              unit="node"):
        a_in = None
        recurrent = [s for s in graph.incoming(name) if is_recurrent(s)]
        for s in graph.incoming(name):
            if is_recurrent(s):
                continue  # needs this population's own spikes: inside the step loop below
            if isinstance(s, SpikeAttention):
                out, (ands, adds) = attention_output(graph, s, acts)
                a_in = out if a_in is None else a_in + out
                counters["synaptic_events"] += ands + adds
                counters[f"events/{s.name}"] = ands + adds
                counters[f"ands/{s.name}"] = ands
                counters["ac"] += ands + adds
                continue
            src = acts[s.source]
            if s.source_slice is not None:
                src = src[..., s.source_slice[0] : s.source_slice[1]]
            out = synapse_output(s, src.reshape(n * t_steps, -1)).reshape(n, t_steps, -1)
            lag = synapse_lag(s)
            if lag:  # a model delay: step t's output arrives at t + lag of the same sample
                kept = max(t_steps - lag, 0)
                out = torch.cat([torch.zeros_like(out[:, :lag]), out[:, :kept]], 1)[:, :t_steps]
                src = src[:, :kept]  # events: only the steps whose output arrives
            a_in = out if a_in is None else a_in + out
            fanout = torch.from_numpy((s.weight != 0).reshape(s.weight.shape[0], -1))
            events = _events(s, src, fanout)
            counters["synaptic_events"] += events
            counters[f"events/{s.name}"] = events
            graded = s.source == INPUT and not graph.input.binary
            counters["mac" if graded else "ac"] += events
        if name in graph.readouts:
            readouts[name] = a_in.numpy()
            continue
        p = graph.populations[name]
        bias = fx.effective_bias(torch.from_numpy(p.bias_mant), p.bias_exp)
        u = torch.zeros(n, p.size, dtype=torch.int64)
        v = torch.zeros_like(u)
        out_s = torch.zeros(n, t_steps, p.size, dtype=torch.bool)
        us, vs = [], []
        for t in range(t_steps):
            a_t = a_in[:, t]
            for s in recurrent:  # the spikes of step t - 1 - delay; none before
                if t - 1 - s.delay >= 0:
                    a_t = a_t + _recurrent_input(s, out_s[:, t - 1 - s.delay])
            u, v, s_t, ov = fx.lif_step_overflow(u, v, a_t, p.du, p.dv, p.vth, bias)
            overflow.add(name, ov)
            out_s[:, t] = s_t
            if record_state:
                us.append(u)
                vs.append(v)
        spikes[name] = out_s.numpy()
        acts[name] = out_s.to(torch.int64)
        for s in recurrent:  # events of the steps whose spikes arrive within the sample
            src = acts[name][:, : max(t_steps - 1 - s.delay, 0)]
            if s.source_slice is not None:
                src = src[..., s.source_slice[0] : s.source_slice[1]]
            events = _events(s, src, torch.from_numpy(
                (s.weight != 0).reshape(s.weight.shape[0], -1)))
            counters["synaptic_events"] += events
            counters[f"events/{s.name}"] = events
            counters["ac"] += events
        if record_state:
            states[name] = (torch.stack(us, 1).numpy(), torch.stack(vs, 1).numpy())
    counters.update(overflow.counters())
    return RunResult(spikes, readouts, counters, states)


def _recurrent_input(s, spikes: torch.Tensor) -> torch.Tensor:
    """A recurrent Dense or Conv on one step of its population's spikes: bool [B, size] ->
    int64 [B, n_out] (the part ``source_slice`` selects, as every synapse reads)."""
    x = spikes.to(torch.int64)
    if s.source_slice is not None:
        x = x[:, s.source_slice[0] : s.source_slice[1]]
    return synapse_output(s, x)


def attention_output(graph: QGraph, s: SpikeAttention, acts: dict[str, torch.Tensor]
                     ) -> tuple[torch.Tensor, tuple[int, int]]:
    """The attention synapse at every step at once: [B, T, size] int64, and its (ANDs, adds)."""
    q, k, v = (acts[n] for n in s.sources)
    b, t = q.shape[:2]
    dim = graph.node_shape(s.target)[0]
    q, k, v = (x.reshape(b * t, dim, -1) for x in (q, k, v))
    out = fx.spike_attention(q, k, v, s.heads, s.shift)
    return out.reshape(b, t, -1), fx.spike_attention_ops(q, k, v, s.heads)


def _events(s, src: torch.Tensor, fanout: torch.Tensor) -> int:
    """Synaptic events: for each nonzero input entry, its number of nonzero outgoing weights."""
    active = (src != 0).reshape(-1, src.shape[-1]).sum(0).to(torch.float64)
    if isinstance(s, Conv):
        # fan-out of every input position: transposed conv of ones through the nonzero kernel
        ones = torch.ones(1, *s.conv_shape, dtype=torch.float64)
        k = fanout.reshape(s.weight.shape).to(torch.float64)
        _, h, w = s.in_shape
        kh, kw = s.weight.shape[2:]
        short = tuple((dim + 2 * p - kk) % st for dim, p, kk, st in
                      zip((h, w), s.padding, (kh, kw), s.stride, strict=True))
        # rows/columns the strided conv never reaches still count their fan-out: pad them back
        per_in = F.conv_transpose2d(ones, k, stride=s.stride, padding=s.padding, groups=s.groups,
                                    output_padding=short)[0].reshape(-1)
    else:
        per_in = fanout.sum(0).to(torch.float64)
    return int(round(float(active @ per_in)))



def main(argv: list[str] | None = None) -> int:
    """``python -m targets.torch_ref``: run a NIR model on the reference target, print the
    summary (accuracy, spikes per population, synaptic events; or ``--json``)."""
    ap = argparse.ArgumentParser(
        prog="python -m targets.torch_ref",
        description="Run a NIR model on the reference target: the trained model's integer "
        "forward in torch, all samples at once, no synaptic latency. Prints accuracy, spike "
        "counts and synaptic events (ACs on spikes, MACs on graded inputs).",
        epilog="example: python -m targets.torch_ref model.nir --samples 1000",
    )
    add_common_args(ap)
    ap.add_argument("--record-state", action="store_true",
                    help="also save u and v of every population in --record")
    args = ap.parse_args(argv)
    prep = prepare(args)
    t0 = time.perf_counter()
    result = run(prep.graph, prep.inputs, record_state=args.record_state,
                 progress=prep.progress)
    return report_run("torch_ref", prep, result, time.perf_counter() - t0)


if __name__ == "__main__":
    sys.exit(run_cli("torch_ref", main))
