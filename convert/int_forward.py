"""The integer forward of a deployed graph on torch: the one graph walk that the ``torch_ref``
target runs and that chip-exact training differentiates.

Values are computed exactly, in int64, by ``core/fixedpoint.py`` (the contract's arithmetic,
written once): synaptic sums run as float64 matrix products and convolutions, exact for these
integer magnitudes (< 2**53, checked) and rounded back to int64. No synaptic latency: layer l at
step t sees layer l-1 at step t, exactly as the model was trained; a recurrent synapse (a
population onto itself) brings its spikes of step t - 1 - delay, and one with a model delay
(``lag``, a NIR Delay) its source's values of step t - lag.

Chip-exact training (``grad=True`` with :class:`ChipParams`) runs the very same exact path with
the integer parameters rounded from trainable float shadows, and beside it a float surrogate of
every step whose VALUES are replaced by the exact ones (:func:`attach`): the gradient is the
surrogate's, the forward values are the chip's. Nothing the surrogate computes reaches a spike,
a readout or a score.

Runs on the CPU and on CUDA alike: every op is supported for int64 there except integer matrix
products, so the attention's counts (exact small integers) are taken in float64, and convolutions
run without cuDNN (whose float64 algorithms may use transforms that round).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core import fixedpoint as fx
from core.cli import progress as progress_iter
from core.errors import GraphError
from core.graph import INPUT, Conv, Dense, QGraph, SpikeAttention, is_recurrent, synapse_lag
from models.neuron import ATanSpike

_EXACT = 2**53  # float64 holds every integer below this exactly

#: Sharpness of the arctan surrogate of the spike (the models' default, models.neuron.LIF).
SURROGATE_ALPHA = 2.0

__all__ = ["ChipParams", "ForwardResult", "attach", "attention_float64", "attention_output",
           "forward", "input_planes", "pick_device", "round_weights", "synapse_output"]


# --------------------------------------------------------------------------- small pieces
class _Attach(torch.autograd.Function):
    """Forward: the exact value; backward: the surrogate's gradient (straight through)."""

    @staticmethod
    def forward(ctx, exact: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
        return exact.to(surrogate.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, grad


def attach(exact: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """A tensor whose values are ``exact`` (cast to the surrogate's float dtype) and whose
    gradient flows into ``surrogate`` unchanged. Shapes must match."""
    return _Attach.apply(exact, surrogate)


def pick_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None: CUDA when present, else the CPU; otherwise the named device.

    Raises:
        GraphError: never; a bad name raises torch's RuntimeError (callers check first).
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def input_planes(graph: QGraph, x: torch.Tensor) -> torch.Tensor:
    """Integer inputs [N, T, *input_shape] -> what the synapses read, int64 [N, T, flat_size]:
    a graded input split into its bit planes when the graph deploys them (plane-major, entry
    ``b * size + j`` is bit b of value j; as ``targets.base.check_inputs``, which validates)."""
    x = x.to(torch.int64).reshape(x.shape[0], x.shape[1], graph.input.size)
    if graph.input.bitplanes:
        x = torch.cat([(x >> b) & 1 for b in range(graph.input.bitplanes)], dim=2)
    return x


def round_weights(wc: torch.Tensor) -> torch.Tensor:
    """Continuous integer-unit weights -> the integers ``convert.quantize`` makes of them:
    nearest integer in [-255, 255], or, for a mixed-sign matrix, nearest even integer in
    [-254, 254] (Lava drops the lowest bit of mixed-sign weights; ``convert.quantize``'s
    ``_int_weights`` and ``WEIGHT_LIMIT``). Ties round to even, as ``np.round``. int64."""
    q = torch.round(wc)
    if q.numel() and bool(q.min() < 0) and bool(q.max() > 0):
        return (2 * torch.round(wc / 2)).clamp(-254, 254).to(torch.int64)
    return q.clamp(-255, 255).to(torch.int64)


def _no_cudnn(device: torch.device):
    """cuDNN off on CUDA: its float64 convolution algorithms are not guaranteed exact."""
    if device.type == "cuda":
        return torch.backends.cudnn.flags(enabled=False)
    return contextlib.nullcontext()


# ------------------------------------------------------------------------ the synapses
def _conv_acc(s: Conv, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Exact integer conv sums: x int64 [B, n_in], w float64 -> int64 [B, C, H, W]."""
    y = F.conv2d(x.to(torch.float64).reshape(-1, *s.in_shape), w, stride=s.stride,
                 padding=s.padding, groups=s.groups)
    return _rounded(s, y)


def _rounded(s: Any, y: torch.Tensor) -> torch.Tensor:
    if y.numel() and float(y.abs().max()) >= _EXACT:
        raise OverflowError(f"synapse {s.name}: accumulation beyond float64's exact range")
    return torch.round(y).to(torch.int64)


def synapse_output(s: Dense | Conv, x: torch.Tensor, w: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """One synapse over all steps at once: x int64 [B, n_in] -> int64 [B, n_out].

    ``w``: the integer weights as a float64 tensor on x's device (default: ``s.weight``).
    Dense: ``fx.dense_output`` of the exact sum; Conv: ``fx.conv_output`` (24-bit wrap, then
    the exponent) and the max pooling if any.

    Raises:
        OverflowError: a sum beyond float64's exact integer range (2**53).
    """
    if w is None:
        w = torch.from_numpy(np.ascontiguousarray(s.weight)).to(x.device, torch.float64)
    if isinstance(s, Conv):
        out = _conv_pre_pool(s, x, w)
        if s.max_pool is not None:
            out = fx.max_pool2d(out, s.max_pool)
        return out.reshape(x.shape[0], -1)
    return fx.dense_output(_rounded(s, x.to(torch.float64) @ w.T), s.weight_exp)


def _conv_pre_pool(s: Conv, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """A Conv's output currents before any max pooling, int64 [B, C, H, W]."""
    return fx.conv_output(_conv_acc(s, x, w), s.weight_exp)


def attention_output(graph: QGraph, s: SpikeAttention, acts: dict[str, torch.Tensor]
                     ) -> tuple[torch.Tensor, tuple[int, int]]:
    """The attention synapse at every step at once: [B, T, size] int64, and its (ANDs, adds).

    The counts are exact small integers; on CUDA (no int64 matrix product) they are taken
    in float64 and rounded back, with the same ``fx.spike_attention`` and its shift."""
    q, k, v = (acts[n] for n in s.sources)
    b, t = q.shape[:2]
    dim = graph.node_shape(s.target)[0]
    q, k, v = (x.reshape(b * t, dim, -1) for x in (q, k, v))
    if q.device.type == "cpu":
        out = fx.spike_attention(q, k, v, s.heads, s.shift)
        ops = fx.spike_attention_ops(q, k, v, s.heads)
    else:
        out, ops = attention_float64(q, k, v, s.heads, s.shift)
    return out.reshape(b, t, -1), ops


def attention_float64(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
                      shift: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """``fx.spike_attention`` (and its op counts) of int64 spike maps [..., dim, tokens] with
    the counts taken in float64 (exact: they are below tokens x dim << 2**53), for devices
    without int64 matrix products (CUDA). Equal to the int64 result (tested on the CPU)."""
    qf, kf, vf = (x.to(torch.float64) for x in (q, k, v))
    out = torch.round(fx.spike_attention(qf, kf, vf, heads, 0)).to(torch.int64)
    return fx.floor_shift(out, int(shift)), fx.spike_attention_ops(qf, kf, vf, heads)


def _events(s: Dense | Conv, src: torch.Tensor) -> int:
    """Synaptic events: for each nonzero input entry, its number of nonzero outgoing weights."""
    fanout = torch.from_numpy((s.weight != 0).reshape(s.weight.shape[0], -1)).to(src.device)
    active = (src != 0).reshape(-1, src.shape[-1]).sum(0).to(torch.float64)
    if isinstance(s, Conv):
        # fan-out of every input position: transposed conv of ones through the nonzero kernel
        ones = torch.ones(1, *s.conv_shape, dtype=torch.float64, device=src.device)
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


# ------------------------------------------------------------------- trainable parameters
_PLANE = re.compile(r"^(.*)_b(\d+)$")


class ChipParams(nn.Module):
    """Trainable float shadows of a deployed graph's integer weights and biases.

    Each Dense/Conv synapse's weights are ``round_weights(shadow * unit)`` (the bit planes of
    one input synapse share one shadow: they are one weight matrix); each population bias that
    is not all zero is ``clip(round(shadow * unit / 2**bias_exp)) << bias_exp``; each readout
    bias ``round(shadow * unit)``. ``unit`` is fixed per tensor: the quantizer's scale of the
    target (``report.populations[target].scale``: integer units per float unit, times
    ``2**-weight_exp`` for weights and ``2**6`` for population biases; times the input's
    ``input_scale``, 1/255 for pixels, for the weights that read a graded input), so the
    shadows are in the float model's units and a float learning rate means what it meant in
    float training.
    Without a report the scale is taken as the threshold (``vth``; a float threshold of 1)
    for a population and the largest |weight| into a readout. Thresholds, decays and exponents
    are fixed (they are the graph's structure).
    """

    def __init__(self, graph: QGraph, report: Any = None) -> None:
        super().__init__()
        self.graph = graph
        scales = {n: float(p.scale) for n, p in getattr(report, "populations", {}).items()
                  if getattr(p, "scale", None)}
        self.w = nn.ParameterList()
        self._w_index: dict[str, int] = {}
        units: list[float] = []
        groups: dict[str, Any] = {}
        in_scale = 1.0
        if graph.input.kind == "graded":
            in_scale = float(graph.metadata.get("input_scale") or 1.0 / graph.input.max_value)
        # by name, so that the shadows' order does not depend on the order a file lists them
        for s in sorted(graph.synapses, key=lambda s: s.name):
            if isinstance(s, SpikeAttention):
                continue
            key = s.name
            m = _PLANE.match(s.name)
            if graph.input.bitplanes and s.source == INPUT and m:
                key = m.group(1)
                first = groups.get(key)
                if first is not None and np.array_equal(first.weight, s.weight):
                    self._w_index[s.name] = self._w_index[first.name]
                    continue
            k = scales.get(s.target) or self._fallback_scale(s.target)
            unit = k * 2.0 ** (-s.weight_exp)
            if s.source == INPUT:  # the model saw graded values times input_scale (1/255)
                unit *= in_scale
            self._w_index[s.name] = len(self.w)
            groups.setdefault(key, s)
            units.append(unit)
            self.w.append(nn.Parameter(torch.from_numpy(s.weight.astype(np.float64) / unit)))
        self.register_buffer("w_unit", torch.tensor(units, dtype=torch.float64))
        self.b = nn.ParameterList()
        self._b_index: dict[str, int] = {}
        b_units: list[float] = []
        for name, p in sorted(graph.populations.items()):
            if not np.any(p.bias_mant):
                continue
            unit = (scales.get(name) or self._fallback_scale(name)) * (1 << fx.ACT_SHIFT)
            eff = fx.effective_bias(p.bias_mant.astype(np.int64), p.bias_exp)
            self._b_index[name] = len(self.b)
            b_units.append(unit)
            self.b.append(nn.Parameter(torch.from_numpy(eff.astype(np.float64) / unit)))
        for name, r in sorted(graph.readouts.items()):
            if r.bias is None:
                continue
            unit = scales.get(name) or self._fallback_scale(name)
            self._b_index[name] = len(self.b)
            b_units.append(unit)
            self.b.append(nn.Parameter(torch.from_numpy(r.bias.astype(np.float64) / unit)))
        self.register_buffer("b_unit", torch.tensor(b_units, dtype=torch.float64))
        self.readout_scale = {n: scales.get(n) or self._fallback_scale(n)
                              for n in graph.readouts}

    def _fallback_scale(self, target: str) -> float:
        if target in self.graph.populations:
            return float(self.graph.populations[target].vth)
        peak = max((int(np.abs(s.weight).max(initial=0)) for s in self.graph.incoming(target)
                    if not isinstance(s, SpikeAttention)), default=1)
        return float(max(peak, 1))

    # -- the integers, and the continuous values the surrogate differentiates
    def weight_cont(self, name: str) -> torch.Tensor:
        """Continuous weights of synapse ``name`` in integer units (float64, with gradient)."""
        i = self._w_index[name]
        return self.w[i] * self.w_unit[i]

    def weight_int(self, name: str) -> torch.Tensor:
        """The integer weights of synapse ``name`` (int64), as the quantizer rounds."""
        return round_weights(self.weight_cont(name).detach())

    def has_bias(self, name: str) -> bool:
        return name in self._b_index

    def bias_cont(self, name: str) -> torch.Tensor:
        """Continuous bias of a population (effective, v units) or readout (current units)."""
        i = self._b_index[name]
        return self.b[i] * self.b_unit[i]

    def bias_int(self, name: str) -> torch.Tensor:
        """A population's mantissa (int64, 13 bits, its ``bias_exp`` fixed) or a readout's
        integer per-step bias."""
        c = self.bias_cont(name).detach()
        if name in self.graph.populations:
            e = self.graph.populations[name].bias_exp
            return torch.round(c / 2**e).clamp(fx.BIAS_MANT_MIN, fx.BIAS_MANT_MAX).to(
                torch.int64)
        return torch.round(c).to(torch.int64)

    def integer_graph(self) -> QGraph:
        """The deployed graph with the current integer parameters (what is exported).

        Raises:
            GraphError: a weight matrix that Lava's truncation would alter (a bug).
        """
        g = self.graph
        syns = []
        for s in g.synapses:
            if s.name in self._w_index:
                w = self.weight_int(s.name).cpu().numpy().reshape(s.weight.shape)
                if not np.array_equal(fx.lava_dense_weights(w), w):
                    raise GraphError(f"synapse {s.name}: trained weights would be altered by "
                                     "Lava's truncation")
                s = replace(s, weight=w)
            syns.append(s)
        pops = {n: replace(p, bias_mant=self.bias_int(n).cpu().numpy()) if self.has_bias(n)
                else p for n, p in g.populations.items()}
        outs = {n: replace(r, bias=self.bias_int(n).cpu().numpy()) if self.has_bias(n) else r
                for n, r in g.readouts.items()}
        return replace(g, populations=pops, readouts=outs, synapses=syns)


# --------------------------------------------------------------------------------- the walk
@dataclass
class ForwardResult:
    """What one forward gives, on the device it ran on.

    ``spikes``: population -> bool [N, T, size]; ``readouts``: readout -> int64 [N, T, size]
    (bias not included); ``overflow``: population -> int64 [4] counts of the neuron updates
    that overflowed, in ``fx.OVERFLOW_KINDS`` order; ``counters``: synaptic events (when
    counted); ``states``: population -> (u, v) int64 [N, T, size] (when recorded);
    ``logits``: with ``grad=True``, the class scores in float units ([N, classes], values the
    exact scores divided by the readout's scale, and by T for a plain sum, as the models'
    ``mean_t`` logits; gradient of the surrogate).
    """

    spikes: dict[str, torch.Tensor]
    readouts: dict[str, torch.Tensor]
    overflow: dict[str, torch.Tensor]
    counters: dict[str, int] = field(default_factory=dict)
    states: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    logits: torch.Tensor | None = None


def _lagged(out: torch.Tensor, lag: int) -> torch.Tensor:
    """Step t's output arriving at t + lag of the same sample: [B, T, n] shifted in time."""
    t_steps = out.shape[1]
    kept = max(t_steps - lag, 0)
    return torch.cat([torch.zeros_like(out[:, :lag]), out[:, :kept]], 1)[:, :t_steps]


def forward(graph: QGraph, x: torch.Tensor, *, params: ChipParams | None = None,
            grad: bool = False, count_events: bool = False, record_state: bool = False,
            progress: bool = False) -> ForwardResult:
    """Run int64 inputs ``x`` [N, T, flat_size] (:func:`input_planes`) through ``graph``.

    ``params``: take the integer weights and biases from these shadows instead of the graph's
    arrays (chip-exact training); ``grad=True`` (needs ``params``) also builds the surrogate
    and returns ``logits`` to differentiate. ``count_events``: synaptic event counters (as
    ``targets.torch_ref`` reports them); ``progress``: a bar over the nodes on a terminal.

    Raises:
        OverflowError: an accumulation beyond float64's exact integer range.
        ValueError: ``grad`` without ``params``.
    """
    if grad and params is None:
        raise ValueError("grad=True needs params (the trainable shadows)")
    with _no_cudnn(x.device):
        return _Walk(graph, x, params, grad, count_events, record_state).run(progress)


class _Walk:
    """One forward: nodes in order, every step of a node at once except the neuron update."""

    def __init__(self, graph: QGraph, x: torch.Tensor, params: ChipParams | None, grad: bool,
                 count_events: bool, record_state: bool) -> None:
        self.g, self.p, self.grad = graph, params, grad
        self.count, self.record_state = count_events, record_state
        self.dev = x.device
        self.n, self.t_steps = x.shape[:2]
        self.acts: dict[str, torch.Tensor] = {INPUT: x}  # exact int64 [N, T, size]
        # surrogate activity (values exact, float32, with gradient); the input has none
        self.sur: dict[str, torch.Tensor] = {INPUT: x.to(torch.float32)} if grad else {}
        self.res = ForwardResult({}, {}, {})
        self.counters = {"synaptic_events": 0, "ac": 0, "mac": 0}

    # the weights, exact (float64 holding integers) and continuous (float32, gradient)
    def _w_exact(self, s: Dense | Conv) -> torch.Tensor:
        if self.p is not None and s.name in self.p._w_index:
            return self.p.weight_int(s.name).reshape(s.weight.shape).to(torch.float64)
        return torch.from_numpy(np.ascontiguousarray(s.weight)).to(self.dev, torch.float64)

    def _w_sur(self, s: Dense | Conv) -> torch.Tensor:
        if s.name not in self.p._w_index:  # not trained: a constant map, no gradient to it
            return self._w_exact(s).to(torch.float32)
        return self.p.weight_cont(s.name).reshape(s.weight.shape).to(torch.float32)

    def run(self, progress: bool) -> ForwardResult:
        order = self.g.order()
        for name in progress_iter(order, total=len(order), desc="torch_ref", enabled=progress,
                                  unit="node"):
            a_in, a_sur = self._inputs(name)
            if name in self.g.readouts:
                self.res.readouts[name] = a_in
                if self.grad:
                    self.res.logits = self._logits(name, a_in, a_sur)
                continue
            self._population(name, a_in, a_sur)
        if self.count:
            self.res.counters = self.counters
        return self.res

    def _inputs(self, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The summed synaptic input of every step of ``name`` from its non-recurrent
        synapses: exact int64 [N, T, size], and its surrogate (grad only)."""
        n, t_steps = self.n, self.t_steps
        a_in = a_sur = None
        for s in self.g.incoming(name):
            if is_recurrent(s):
                continue  # needs this population's own spikes: inside the step loop
            if isinstance(s, SpikeAttention):
                out, (ands, adds) = attention_output(self.g, s, self.acts)
                sur = self._attention_sur(s, out) if self.grad else None
                if self.count:
                    self._count(f"events/{s.name}", ands + adds, "ac")
                    self.counters[f"ands/{s.name}"] = (self.counters.get(f"ands/{s.name}", 0)
                                                       + ands)
            else:
                src = self.acts[s.source]
                src_sur = self.sur.get(s.source)
                if s.source_slice is not None:
                    lo, hi = s.source_slice
                    src = src[..., lo:hi]
                    src_sur = None if src_sur is None else src_sur[..., lo:hi]
                out, sur = self._synapse(s, src.reshape(n * t_steps, -1),
                                         None if src_sur is None else
                                         src_sur.reshape(n * t_steps, -1))
                out = out.reshape(n, t_steps, -1)
                sur = None if sur is None else sur.reshape(n, t_steps, -1)
                lag = synapse_lag(s)
                if lag:  # a model delay: step t's output arrives at t + lag of the same sample
                    out = _lagged(out, lag)
                    sur = None if sur is None else _lagged(sur, lag)
                    src = src[:, : max(t_steps - lag, 0)]  # events: the steps that arrive
                if self.count:  # MACs: graded values (pixels, or spike counts) as input
                    graded = (s.source == INPUT and not self.g.input.binary) or (
                        s.source in self.g.populations and self.g.populations[s.source].graded)
                    self._count(f"events/{s.name}", _events(s, src), "mac" if graded else "ac")
            a_in = out if a_in is None else a_in + out
            if self.grad:
                a_sur = sur if a_sur is None else a_sur + sur
        if self.grad:
            a_sur = attach(a_in, a_sur)
        return a_in, a_sur

    def _count(self, key: str, events: int, kind: str) -> None:
        self.counters["synaptic_events"] += events
        self.counters[kind] += events
        self.counters[key] = self.counters.get(key, 0) + events

    def _synapse(self, s: Dense | Conv, x: torch.Tensor, x_sur: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Exact output [B, n_out] (:func:`synapse_output`) and, in grad mode, its surrogate
        (the same linear map through the continuous weights, pooled where the exact values
        are largest)."""
        w = self._w_exact(s)
        if not self.grad:
            return synapse_output(s, x, w), None
        ws = self._w_sur(s)
        gain = 2.0 ** s.weight_exp
        if isinstance(s, Conv):
            pre = _conv_pre_pool(s, x, w)
            sur = F.conv2d(x_sur.reshape(-1, *s.in_shape), ws, stride=s.stride,
                           padding=s.padding, groups=s.groups) * gain
            sur = attach(pre, sur)
            if s.max_pool is not None:
                pre = fx.max_pool2d(pre, s.max_pool)
                sur = fx.max_pool2d(sur, s.max_pool)  # gradient to the exact maxima
            return pre.reshape(x.shape[0], -1), sur.reshape(x.shape[0], -1)
        out = fx.dense_output(_rounded(s, x.to(torch.float64) @ w.T), s.weight_exp)
        return out, (x_sur @ ws.T) * gain

    def _attention_sur(self, s: SpikeAttention, out: torch.Tensor) -> torch.Tensor:
        q, k, v = (self.sur[n] for n in s.sources)
        b, t = q.shape[:2]
        dim = self.g.node_shape(s.target)[0]
        q, k, v = (y.reshape(b * t, dim, -1) for y in (q, k, v))
        sur = fx.spike_attention(q, k, v, s.heads, 0) * 2.0 ** s.shift
        return attach(out, sur.reshape(b, t, -1))

    def _population(self, name: str, a_in: torch.Tensor, a_sur: torch.Tensor | None) -> None:
        """The neuron update, step by step (the only sequential part), with recurrence."""
        g, n, t_steps, grad = self.g, self.n, self.t_steps, self.grad
        p = g.populations[name]
        recurrent = [s for s in g.incoming(name) if is_recurrent(s)]
        trained = self.p is not None and self.p.has_bias(name)
        mant = (self.p.bias_int(name) if trained
                else torch.from_numpy(p.bias_mant).to(self.dev, torch.int64))
        bias = fx.effective_bias(mant, p.bias_exp)
        u = torch.zeros(n, p.size, dtype=torch.int64, device=self.dev)
        v = torch.zeros_like(u)
        # spike counts (int64) for a graded reset mode (core.fixedpoint.graded_spikes)
        out_s = torch.zeros(n, t_steps, p.size, dtype=torch.int64 if p.graded else torch.bool,
                            device=self.dev)
        ov_total = torch.zeros(len(fx.OVERFLOW_KINDS), dtype=torch.int64, device=self.dev)
        us, vs = [], []
        if grad:
            alpha, beta = fx.factor_from_du(p.du), fx.factor_from_dv(p.dv)
            thr = float(p.vth << fx.VTH_SHIFT)
            b_sur = (self.p.bias_cont(name).to(torch.float32) if trained
                     else bias.to(torch.float32))
            u_g = torch.zeros(n, p.size, device=self.dev)
            v_g = torch.zeros_like(u_g)
            s_hist: list[torch.Tensor] = []
            rec_w = {s.name: self._w_sur(s) for s in recurrent}
        for t in range(t_steps):
            a_t = a_in[:, t]
            a_g = a_sur[:, t] if grad else None
            for s in recurrent:  # the spikes of step t - 1 - delay; none before
                if t - 1 - s.delay >= 0:
                    a_t = a_t + self._recurrent_input(s, out_s[:, t - 1 - s.delay])
                    if grad:
                        a_g = a_g + self._recurrent_sur(s, s_hist[t - 1 - s.delay], rec_w)
            u, v, s_t, ov = fx.lif_step_overflow(u, v, a_t, p.du, p.dv, p.vth, bias, p.reset)
            ov_total += torch.stack([f.sum() for f in ov])
            out_s[:, t] = s_t
            if self.record_state:
                us.append(u)
                vs.append(v)
            if grad:
                # the surrogate step: Loihi's update without rounding or wrapping, each state
                # carrying the exact value; the spike's gradient is the arctan surrogate of v
                # relative to the threshold (the float model's (v - threshold) / threshold)
                u_g = attach(u, alpha * u_g + (1 << fx.ACT_SHIFT) * attach(a_t, a_g))
                v_pre = beta * v_g + u_g + b_sur
                sf = s_t.to(torch.float32)
                s_g = attach(s_t, ATanSpike.apply(v_pre / thr - 1.0, 0.0, SURROGATE_ALPHA))
                # the reset, its gradient detached as the spike's own
                kept = v_pre * (1.0 - sf) if p.reset == "zero" else v_pre - thr * sf
                v_g = attach(v, kept)
                s_hist.append(s_g)
        self.res.spikes[name] = out_s
        self.res.overflow[name] = ov_total
        self.acts[name] = out_s.to(torch.int64)
        if grad:
            self.sur[name] = torch.stack(s_hist, 1)
        if self.count:
            for s in recurrent:  # events of the steps whose spikes arrive within the sample
                src = self.acts[name][:, : max(t_steps - 1 - s.delay, 0)]
                if s.source_slice is not None:
                    src = src[..., s.source_slice[0] : s.source_slice[1]]
                self._count(f"events/{s.name}", _events(s, src), "ac")
        if self.record_state:
            self.res.states[name] = (torch.stack(us, 1), torch.stack(vs, 1))

    def _recurrent_input(self, s: Dense | Conv, spikes: torch.Tensor) -> torch.Tensor:
        """A recurrent Dense or Conv on one step of its population's spikes: bool [B, size]
        -> int64 [B, n_out] (the part ``source_slice`` selects, as every synapse reads)."""
        x = spikes.to(torch.int64)
        if s.source_slice is not None:
            x = x[:, s.source_slice[0] : s.source_slice[1]]
        return synapse_output(s, x, self._w_exact(s))

    def _recurrent_sur(self, s: Dense | Conv, spikes: torch.Tensor,
                       rec_w: dict[str, torch.Tensor]) -> torch.Tensor:
        if s.source_slice is not None:
            spikes = spikes[:, s.source_slice[0] : s.source_slice[1]]
        w = rec_w[s.name]
        gain = 2.0 ** s.weight_exp
        if isinstance(s, Conv):
            y = F.conv2d(spikes.reshape(-1, *s.in_shape), w, stride=s.stride,
                         padding=s.padding, groups=s.groups) * gain
            if s.max_pool is not None:
                y = fx.max_pool2d(y, s.max_pool)
            return y.reshape(spikes.shape[0], -1)
        return (spikes @ w.T) * gain

    def _logits(self, name: str, a_in: torch.Tensor, a_sur: torch.Tensor) -> torch.Tensor:
        """Class scores of readout ``name`` in float units: values exact (the sum over time
        plus the per-step bias, or a leaky readout's last membrane ``>> 6``, as
        ``core.readout.readout_scores``), gradient of the float sum / leaky integration."""
        r = self.g.readouts[name]
        trained = self.p is not None and self.p.has_bias(name)
        if r.bias is None:
            bias = b_sur = None
        else:
            bias = (self.p.bias_int(name) if trained
                    else torch.from_numpy(r.bias).to(self.dev, torch.int64))
            b_sur = self.p.bias_cont(name).to(torch.float32) if trained else bias.float()
        if r.dv:
            exact = fx.readout_membrane(a_in, bias, r.dv)[:, -1] >> fx.ACT_SHIFT
            beta = fx.factor_from_dv(r.dv)
            cur = a_sur if b_sur is None else a_sur + b_sur
            v = cur[:, 0] * 0
            for t in range(cur.shape[1]):
                v = beta * v + cur[:, t]
            sur = v
        else:
            exact = a_in.sum(1)
            sur = a_sur.sum(1)
            if bias is not None:
                exact = exact + bias * self.t_steps
                sur = sur + b_sur * self.t_steps
        # float units, and for the plain sum the mean over the steps: the models' logits
        # (``mean_t`` of the readout layer), so the loss is on the scale float training had
        k = float(self.p.readout_scale[name]) * (1 if r.dv else self.t_steps)
        return attach(exact, sur) / k
