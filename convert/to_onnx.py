"""Export an integer graph as an ONNX *step graph*: one global timestep of the deployed chip.

    python -m convert.to_onnx model.loihi.nir -o model.onnx

The ONNX model computes one step ``k`` of the deployed timeline (docs/integer-nir.md §6, rules
T2-T7, the timeline that event_sim and Lava run) for a batch of independent lanes: the state
comes in, the next state goes out, so any ONNX runtime can drive the model step by step and
reproduce our spikes exactly. Every value is int64 and every rule of docs/integer-nir.md §5 is
spelled with integer ONNX operators (opset 18): ``trunc12`` as ``Sign(x) * (Abs(x) / 4096)``,
the floors of the weight exponents as ``(x - Mod(x, 2^n)) / 2^n``, the 32- and 24-bit wraps
with ``Mod`` (Python's sign convention, ``fmod=0``), the 24-bit correction of ``u`` with
``Where``, the saturation of ``v`` with ``Clip``; Dense, Conv (as gathered patches times the
kernel) and the spike attention are int64 ``MatMul``s; max pooling of currents is a
``ReduceMax`` over window axes. Nothing is computed in floating point.

Inputs (``lanes`` is a free batch dimension; docs/onnx.md has the full table):

- ``step``: int64 scalar, the global step k (resets happen where ``(k - L) % T == 0``);
- ``x``: int64 [lanes, input size], the input presented at step k (graded values or spikes, as
  given; bit planes are split inside the graph), zeros once the samples are over;
- ``u/<population>``, ``v/<population>``: int64 [lanes, size], the neurons' state;
- ``line/<synapse>``: int64 [lanes, 1 + delay, n_out], output currents in flight (slot 0
  arrives at step k).

Outputs: ``spikes/<population>`` (bool [lanes, size]), ``readout/<readout>`` (int64 [lanes,
size], without bias), ``events/<synapse>`` (int64 [lanes], the synaptic events its sources
caused at step k), ``overflow/<kind>/<population>`` (int64 [lanes], the neurons whose update at
step k overflowed so: ``core.fixedpoint.OVERFLOW_KINDS``), and ``next/<name>`` for every state
input and for ``step``. The metadata
property ``neurodeploy`` (JSON) holds what a driver needs: T, every node's latency, the state
shapes, the readout biases and the input's kind. ``targets.onnx_rt`` is the driver.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from core import fixedpoint as fx
from core.cli import add_output_flags, check_writable, print_json, run_cli
from core.errors import EnvironmentMissingError, GraphError, UserError
from core.files import write_atomic
from core.graph import INPUT, Conv, Dense, QGraph, SpikeAttention, synapse_lag, synapse_sources

try:  # the `onnx` extra (pyproject.toml); .ci/setup-env installs it into .venv
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # pragma: no cover - exercised only without the extra
    onnx = None

OPSET = 18
IR_VERSION = 8  # the lowest IR version that carries opset 18 (readable by older runtimes)
META_KEY = "neurodeploy"
FORMAT = "neurodeploy.step_graph/1"
LANES = "lanes"

__all__ = ["OPSET", "META_KEY", "FORMAT", "to_onnx", "step_metadata", "initial_state", "main"]


def _recurrent(s: Any) -> bool:
    """A synapse that reads its own target (a population onto itself; docs/integer-nir.md G6,
    ``core.graph.is_recurrent``)."""
    return s.target in synapse_sources(s)


def _require_onnx() -> None:
    if onnx is None:
        raise EnvironmentMissingError(
            "the onnx package is not installed: pip install 'neurodeploy[onnx]' (or run "
            ".ci/setup-env, which installs it into .venv)")


def step_metadata(graph: QGraph) -> dict[str, Any]:
    """What a driver needs besides the ONNX graph (stored as the model's ``neurodeploy``
    metadata property, JSON): T, latencies, state shapes (without the lanes axis), the input.

    Raises:
        GraphError: the graph does not validate (``QGraph.validate``).
    """
    graph.validate()
    lat = graph.latency()
    state: dict[str, list[int]] = {}
    for p in graph.populations.values():
        state[f"u/{p.name}"] = [p.size]
        state[f"v/{p.name}"] = [p.size]
    for s in graph.synapses:
        state[f"line/{s.name}"] = [1 + int(s.delay), int(np.prod(graph.node_shape(s.target)))]
    readouts = {r.name: {"size": r.size, "dv": int(getattr(r, "dv", 0) or 0),
                         "bias": None if r.bias is None else
                         [int(b) for b in np.asarray(r.bias).ravel()]}
                for r in graph.readouts.values()}
    return {
        "format": FORMAT,
        "timesteps": int(graph.timesteps),
        "depth": int(graph.depth),
        "input": {"shape": [int(d) for d in graph.input.shape], "kind": graph.input.kind,
                  "max_value": int(graph.input.max_value),
                  "bitplanes": int(graph.input.bitplanes), "size": graph.input.size},
        "latency": {n: int(lat[n]) for n in (*graph.populations, *graph.readouts)},
        "populations": {p.name: p.size for p in graph.populations.values()},
        **({"graded_populations": [p.name for p in graph.populations.values() if p.graded]}
           if any(p.graded for p in graph.populations.values()) else {}),
        "readouts": readouts,
        "synapses": {s.name: {"sources": list(synapse_sources(s)), "target": s.target,
                              "graded": bool(s.source == INPUT and not graph.input.binary
                                             or s.source in graph.populations
                                             and graph.populations[s.source].graded),
                              "recurrent": _recurrent(s)}
                     for s in graph.synapses},
        "state": state,
    }


def initial_state(meta: dict[str, Any], lanes: int) -> dict[str, np.ndarray]:
    """The state inputs at step 0: every ``u``, ``v`` and delay line zero, for ``lanes`` lanes
    (``meta``: :func:`step_metadata`, or the model's ``neurodeploy`` property parsed)."""
    return {name: np.zeros((lanes, *shape), dtype=np.int64)
            for name, shape in meta["state"].items()}


class _Builder:
    """Collects ONNX nodes and initializers; every intermediate gets a fresh name."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0
        self._scalars: dict[int, str] = {}

    def fresh(self, hint: str) -> str:
        self._n += 1
        return f"{hint}#{self._n}"

    def op(self, op_type: str, inputs: list[str], hint: str | None = None,
           out: str | None = None, **attrs: Any) -> str:
        name = out or self.fresh(hint or op_type)
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=self.fresh(op_type),
                                           **attrs))
        return name

    def const(self, value: Any, hint: str, dtype: Any = np.int64) -> str:
        name = self.fresh(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def i64(self, value: int) -> str:
        """An int64 scalar constant (shared)."""
        value = int(value)
        if value not in self._scalars:
            self._scalars[value] = self.const(value, f"k{value}")
        return self._scalars[value]

    def ints(self, values: list[int], hint: str = "shape") -> str:
        return self.const(np.asarray(values, dtype=np.int64), hint)

    # --- integer arithmetic of docs/integer-nir.md, int64 throughout ---------------------

    def floor_shift(self, x: str, exp: int) -> str:
        """``x << e`` (e >= 0) or ``x >> -e`` rounding toward -inf (fixedpoint.floor_shift)."""
        if exp == 0:
            return x
        if exp > 0:
            return self.op("Mul", [x, self.i64(1 << exp)], "shl")
        d = self.i64(1 << -exp)
        rem = self.op("Mod", [x, d], "rem", fmod=0)  # in [0, 2^n): the sign of the divisor
        return self.op("Div", [self.op("Sub", [x, rem], "floored"), d], "shr")  # exact

    def wrap(self, x: str, bits: int) -> str:
        """Two's-complement wrap to ``bits`` (fixedpoint.wrap_signed)."""
        half = self.i64(1 << (bits - 1))
        m = self.op("Mod", [self.op("Add", [x, half]), self.i64(1 << bits)], "mod", fmod=0)
        return self.op("Sub", [m, half], f"wrap{bits}")

    def trunc12(self, x: str) -> str:
        """``sign(x) * (|x| >> 12)`` (fixedpoint.trunc_shift): rounds toward zero."""
        mag = self.op("Div", [self.op("Abs", [x]), self.i64(fx.DECAY_UNITY)], "mag")
        return self.op("Mul", [self.op("Sign", [x]), mag], "trunc12")


def _source_values(b: _Builder, graph: QGraph, spikes: dict[str, str]) -> dict[str, str]:
    """int64 [lanes, n] of every node a synapse reads: the input vector (bit planes split,
    plane-major, docs/integer-nir.md I2) and each population's spikes of this step."""
    vals: dict[str, str] = {}
    if graph.input.bitplanes:
        planes = [b.op("Mod", [b.op("Div", ["x", b.i64(1 << k)]), b.i64(2)], f"plane{k}",
                       fmod=0) for k in range(graph.input.bitplanes)]
        vals[INPUT] = b.op("Concat", planes, "planes", axis=1)
    else:
        vals[INPUT] = "x"
    for p, s in spikes.items():
        vals[p] = b.op("Cast", [s], f"{p}.int", to=TensorProto.INT64)
    return vals


def _read(b: _Builder, vals: dict[str, str], s: Dense | Conv) -> str:
    src = vals[s.source]
    if s.source_slice is None:
        return src
    lo, hi = s.source_slice
    return b.op("Slice", [src, b.ints([lo], "lo"), b.ints([hi], "hi"), b.ints([1], "ax")],
                f"{s.name}.slice")


def _events(b: _Builder, src: str, fanout: np.ndarray, name: str) -> str:
    """Events of one step per lane: sum over nonzero source entries of their fan-out."""
    active = b.op("Cast", [b.op("Not", [b.op("Equal", [src, b.i64(0)])])], to=TensorProto.INT64)
    return b.op("MatMul", [active, b.const(fanout.astype(np.int64), f"{name}.fanout")],
                f"{name}.events")


def _dense(b: _Builder, s: Dense, src: str) -> tuple[str, str]:
    w = np.asarray(s.weight, dtype=np.int64)
    wt = b.op("Cast", [b.const(w.T, f"{s.name}.weight", np.int16)], to=TensorProto.INT64)
    acc = b.op("MatMul", [src, wt], f"{s.name}.acc")
    return b.floor_shift(acc, int(s.weight_exp)), _events(b, src, (w != 0).sum(0), s.name)


def _conv_patches(s: Conv) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gather indices [G, P, K] into the flat source with one zero appended (index n_in = a
    padding tap), the kernel as [G, K, C_out/G], and each source entry's fan-out [n_in]."""
    w = np.asarray(s.weight, dtype=np.int64)
    c_out, cg, kh, kw = w.shape
    c_in, h, wd = s.in_shape
    _, ho, wo = s.conv_shape
    g = int(s.groups)
    og = c_out // g
    n_in = c_in * h * wd
    yo, xo = np.meshgrid(np.arange(ho), np.arange(wo), indexing="ij")
    cl, i, j = np.meshgrid(np.arange(cg), np.arange(kh), np.arange(kw), indexing="ij")
    y = yo.reshape(-1, 1) * s.stride[0] - s.padding[0] + i.reshape(1, -1)  # [P, K]
    x = xo.reshape(-1, 1) * s.stride[1] - s.padding[1] + j.reshape(1, -1)
    inside = (y >= 0) & (y < h) & (x >= 0) & (x < wd)
    idx = np.empty((g, ho * wo, cg * kh * kw), dtype=np.int64)
    kern = np.empty((g, cg * kh * kw, og), dtype=np.int64)
    fanout = np.zeros(n_in + 1, dtype=np.int64)
    for grp in range(g):
        flat = (grp * cg + cl.reshape(1, -1)) * (h * wd) + y * wd + x
        idx[grp] = np.where(inside, flat, n_in)
        kern[grp] = w[grp * og : (grp + 1) * og].reshape(og, -1).T
        nz = (kern[grp] != 0).sum(1)  # [K]: outputs of this group each tap feeds
        np.add.at(fanout, idx[grp], np.broadcast_to(nz, idx[grp].shape))
    return idx, kern, fanout[:n_in]


def _conv(b: _Builder, s: Conv, src: str) -> tuple[str, str]:
    """im2col in int64: gather every output's patch (zero for padding taps), times the
    kernel, channel-major; then the 24-bit wrap, the exponent and the max pooling."""
    idx, kern, fanout = _conv_patches(s)
    padded = b.op("Pad", [src, b.ints([0, 0, 0, 1], "pads")], f"{s.name}.padded")
    small = np.int32 if idx.max(initial=0) < 2**31 else np.int64
    patches = b.op("Gather", [padded, b.const(idx, f"{s.name}.patch_index", small)],
                   f"{s.name}.patches", axis=1)  # [lanes, G, P, K]
    k64 = b.op("Cast", [b.const(kern, f"{s.name}.kernel", np.int16)], to=TensorProto.INT64)
    acc = b.op("MatMul", [patches, k64], f"{s.name}.acc")  # [lanes, G, P, C_out/G]
    acc = b.op("Transpose", [acc], perm=[0, 1, 3, 2])  # [lanes, G, C_out/G, P]
    acc = b.op("Reshape", [acc, b.ints([0, -1])], f"{s.name}.flat")
    out = b.floor_shift(b.wrap(acc, fx.UV_BITS), int(s.weight_exp))  # fixedpoint.conv_output
    if s.max_pool is not None:
        c, ho, wo = s.conv_shape
        ph, pw = s.max_pool
        h2, w2 = ho // ph, wo // pw
        m = b.op("Reshape", [out, b.ints([0, c, ho, wo])])
        if (h2 * ph, w2 * pw) != (ho, wo):  # trailing rows/columns without a full window
            m = b.op("Slice", [m, b.ints([0, 0]), b.ints([h2 * ph, w2 * pw]), b.ints([2, 3])])
        m = b.op("Reshape", [m, b.ints([0, c, h2, ph, w2, pw])])
        m = b.op("ReduceMax", [m, b.ints([3, 5], "axes")], f"{s.name}.pooled", keepdims=0)
        out = b.op("Reshape", [m, b.ints([0, -1])])
    return out, _events(b, src, fanout, s.name)


def _attention(b: _Builder, graph: QGraph, s: SpikeAttention, vals: dict[str, str]
               ) -> tuple[str, str]:
    """Per head: ``A = qᵀ k`` (ANDs and counts), ``out = v Aᵀ``, floored by the shift
    (fixedpoint.spike_attention); events = ANDs + additions (fixedpoint.spike_attention_ops)."""
    dim, *tokens = graph.node_shape(s.target)
    n = int(np.prod(tokens))
    h = int(s.heads)
    q, k, v = (b.op("Reshape", [vals[p], b.ints([0, h, dim // h, n])], f"{s.name}.{r}")
               for p, r in zip(s.sources, "qkv", strict=True))
    qt = b.op("Transpose", [q], perm=[0, 1, 3, 2])
    a = b.op("MatMul", [qt, k], f"{s.name}.counts")  # [lanes, H, N, N]
    out = b.op("MatMul", [v, b.op("Transpose", [a], perm=[0, 1, 3, 2])], f"{s.name}.acc")
    out = b.floor_shift(b.op("Reshape", [out, b.ints([0, -1])]), int(s.shift))
    # events: ANDs = sum_h,i (sum_n q) (sum_m k * [v fires at m]); additions = sum_h,m
    # (nonzero counts in column m) * (v spikes at m)
    ax2, ax3 = b.ints([2], "ax"), b.ints([3], "ax")
    v_at = b.op("ReduceSum", [v, ax2], keepdims=1)  # [lanes, H, 1, N]
    used = b.op("Cast", [b.op("Greater", [v_at, b.i64(0)])], to=TensorProto.INT64)
    k_used = b.op("ReduceSum", [b.op("Mul", [k, used]), ax3], keepdims=0)  # [lanes, H, dh]
    q_sum = b.op("ReduceSum", [q, ax3], keepdims=0)
    ands = b.op("ReduceSum", [b.op("Mul", [q_sum, k_used]), b.ints([1, 2], "ax")], keepdims=0)
    nz = b.op("Cast", [b.op("Not", [b.op("Equal", [a, b.i64(0)])])], to=TensorProto.INT64)
    nz_col = b.op("ReduceSum", [nz, ax2], keepdims=1)  # [lanes, H, 1, N]
    adds = b.op("ReduceSum", [b.op("Mul", [nz_col, v_at]), b.ints([1, 2, 3], "ax")],
                keepdims=0)
    return out, b.op("Add", [ands, adds], f"{s.name}.events")


def _lif(b: _Builder, graph: QGraph, name: str, a_in: str, lat: int
         ) -> tuple[str, str, str, dict[str, str]]:
    """Reset, then N1-N6 of docs/integer-nir.md §5 (fixedpoint.lif_step_overflow); returns the
    names of (u, v, spikes) and, per kind of ``fixedpoint.OVERFLOW_KINDS``, of the number of
    the lane's neurons that overflowed so at this step (int64 [lanes])."""
    p = graph.populations[name]
    zero = b.i64(0)
    reset = b.op("Equal", [b.op("Mod", [b.op("Sub", ["step", b.i64(lat)]),
                                        b.i64(graph.timesteps)], fmod=0), zero],
                 f"{name}.reset")  # T5: (k - L) % T == 0
    u0 = b.op("Where", [reset, zero, f"u/{name}"], f"{name}.u0")
    v0 = b.op("Where", [reset, zero, f"v/{name}"], f"{name}.v0")
    u1 = b.trunc12(b.op("Mul", [u0, b.i64(fx.DECAY_UNITY - (p.du + 1))]))  # N1
    shifted = b.op("Mul", [a_in, b.i64(1 << fx.ACT_SHIFT)])
    a64 = b.wrap(shifted, 32)  # N2
    total = b.op("Add", [u1, a64])
    u2 = b.wrap(total, 32)
    top, span = b.i64(fx.UV_MAX), b.i64(2 * fx.UV_MAX)  # N3: one correction, not a modulo
    u3 = b.op("Where", [b.op("Greater", [u2, top]), b.op("Sub", [u2, span]), u2])
    u = b.op("Where", [b.op("LessOrEqual", [u3, b.i64(-fx.UV_MAX)]), b.op("Add", [u3, span]),
                       u3], f"{name}.u")
    v1 = b.trunc12(b.op("Mul", [v0, b.i64(fx.DECAY_UNITY - p.dv)]))  # N4
    bias = fx.effective_bias(np.asarray(p.bias_mant, dtype=np.int64), p.bias_exp)
    vsum = b.op("Add", [b.op("Add", [v1, u]), b.const(bias, f"{name}.bias")])
    if p.reset == "subtract_late":  # last step's spike (v was not reset): subtract vth now
        vth6_ = b.i64(p.vth << fx.VTH_SHIFT)
        vsum = b.op("Sub", [vsum, b.op("Where", [b.op("Greater", [v0, vth6_]), vth6_, zero])])
    v32 = b.wrap(vsum, 32)
    v2 = b.op("Clip", [v32, b.i64(-fx.V_LIMIT), b.i64(fx.V_LIMIT)])  # N5
    vth6 = b.i64(p.vth << fx.VTH_SHIFT)
    if p.graded:  # fixedpoint.lif_step_overflow's multi modes: count = v // vth6 where v > 0
        pos = b.op("Where", [b.op("Greater", [v2, zero]), v2, zero])
        spikes = b.op("Div", [pos, vth6], f"{name}.spiking")  # >= 0: Div's truncation floors
        v = b.op("Sub", [v2, b.op("Mul", [spikes, vth6])])
        if p.reset == "multi_floor":
            v = b.op("Max", [v, b.i64(-(p.vth << fx.VTH_SHIFT))])
        v = b.op("Identity", [v], f"{name}.v")
    else:
        spikes = b.op("Greater", [v2, vth6], f"{name}.spiking")  # N6
        kept = b.op("Sub", [v2, vth6]) if p.reset == "subtract" else v2
        v = b.op("Where", [spikes, zero if p.reset == "zero" else kept, v2], f"{name}.v")

    def differs(x: str, y: str) -> str:
        return b.op("Not", [b.op("Equal", [x, y])])

    flags = {  # fixedpoint.Overflow, flag by flag
        "a_in_wrap": b.op("Or", [differs(a64, shifted), differs(u2, total)]),
        "u_wrap": differs(u, u2),
        "v_wrap": differs(v32, vsum),
        "v_saturate": b.op("Less", [v32, b.i64(-fx.V_LIMIT)]),
    }
    counts = {k: b.op("ReduceSum", [b.op("Cast", [f], to=TensorProto.INT64), b.ints([1], "ax")],
                      f"{name}.{k}", keepdims=0) for k, f in flags.items()}
    return u, v, spikes, counts


def to_onnx(graph: QGraph) -> Any:
    """The step graph of ``graph`` as an ``onnx.ModelProto`` (see the module docstring).

    Raises:
        GraphError: the graph does not validate, or has a synapse kind this exporter does not
            know (named, before anything is built).
        EnvironmentMissingError: the ``onnx`` package is not installed.
    """
    _require_onnx()
    meta = step_metadata(graph)  # validates
    for s in graph.synapses:
        if not isinstance(s, (Dense, Conv, SpikeAttention)):
            raise GraphError(f"synapse {s.name!r}: {type(s).__name__} has no ONNX export")
    b = _Builder()
    i64 = TensorProto.INT64
    inputs = [helper.make_tensor_value_info("step", i64, []),
              helper.make_tensor_value_info("x", i64, [LANES, graph.input.size])]
    inputs += [helper.make_tensor_value_info(n, i64, [LANES, *shape])
               for n, shape in meta["state"].items()]
    outputs: list[Any] = []

    def emit(tensor: str, name: str, elem: int, shape: list[Any]) -> None:
        b.op("Identity", [tensor], out=name)
        outputs.append(helper.make_tensor_value_info(name, elem, shape))

    # 1. every population and readout consumes what arrives at this step (T4)
    zero_index = b.i64(0)
    arriving = {s.name: b.op("Gather", [f"line/{s.name}", zero_index], f"{s.name}.arriving",
                             axis=1) for s in graph.synapses}
    spikes: dict[str, str] = {}
    for node in graph.order():
        into = [arriving[s.name] for s in graph.incoming(node)]
        a_in = into[0]
        for cur in into[1:]:
            a_in = b.op("Add", [a_in, cur], f"{node}.a_in")
        if node in graph.readouts:
            emit(a_in, f"readout/{node}", i64, [LANES, graph.readouts[node].size])
            continue
        size = graph.populations[node].size
        u, v, s_, overflow = _lif(b, graph, node, a_in, meta["latency"][node])
        spikes[node] = s_
        graded = graph.populations[node].graded  # spike counts, int64
        emit(s_, f"spikes/{node}", i64 if graded else TensorProto.BOOL, [LANES, size])
        for kind in fx.OVERFLOW_KINDS:
            emit(overflow[kind], f"overflow/{kind}/{node}", i64, [LANES])
        emit(u, f"next/u/{node}", i64, [LANES, size])
        emit(v, f"next/v/{node}", i64, [LANES, size])
    # 2. every synapse reads this step's values; its output enters the delay line (T3)
    vals = _source_values(b, graph, spikes)
    for s in graph.synapses:
        if isinstance(s, SpikeAttention):
            out, ev = _attention(b, graph, s, vals)
        elif isinstance(s, Conv):
            out, ev = _conv(b, s, _read(b, vals, s))
        else:
            out, ev = _dense(b, s, _read(b, vals, s))
        depth, n_out = meta["state"][f"line/{s.name}"]
        if _recurrent(s):  # T8: carries nothing that would arrive in the next sample
            phase = b.op("Mod", [b.op("Sub", ["step", b.i64(meta["latency"][s.target])]),
                                 b.i64(graph.timesteps)], fmod=0)
            carries = b.op("Less", [b.op("Add", [phase, b.i64(depth)]),
                                    b.i64(graph.timesteps)], f"{s.name}.carries")
            out = b.op("Where", [carries, out, b.i64(0)], f"{s.name}.carried")
            ev = b.op("Where", [carries, ev, b.i64(0)], f"{s.name}.carried_events")
        elif synapse_lag(s):  # T9: a model delay carries nothing past its sample's end
            src_lat = 0 if s.source == INPUT else meta["latency"][s.source]
            phase = b.op("Mod", [b.op("Sub", ["step", b.i64(src_lat)]),
                                 b.i64(graph.timesteps)], fmod=0)
            carries = b.op("Less", [b.op("Add", [phase, b.i64(synapse_lag(s))]),
                                    b.i64(graph.timesteps)], f"{s.name}.lag_carries")
            out = b.op("Where", [carries, out, b.i64(0)], f"{s.name}.lag_carried")
            ev = b.op("Where", [carries, ev, b.i64(0)], f"{s.name}.lag_carried_events")
        new = b.op("Unsqueeze", [out, b.ints([1], "ax")], f"{s.name}.sent")
        if depth > 1:
            rest = b.op("Slice", [f"line/{s.name}", b.ints([1], "lo"), b.ints([depth], "hi"),
                                  b.ints([1], "ax")], f"{s.name}.in_flight")
            new = b.op("Concat", [rest, new], f"{s.name}.line", axis=1)
        emit(new, f"next/line/{s.name}", i64, [LANES, depth, n_out])
        emit(ev, f"events/{s.name}", i64, [LANES])
    emit(b.op("Add", ["step", b.i64(1)]), "next/step", i64, [])
    g = helper.make_graph(b.nodes, "neurodeploy_step", inputs, outputs, b.inits,
                          doc_string="One global step of the deployed integer graph: state in, "
                          "state out (neurodeploy docs/onnx.md)")
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION, producer_name="neurodeploy",
                              doc_string="neurodeploy integer step graph (docs/onnx.md)")
    helper.set_model_props(model, {META_KEY: json.dumps(meta)})
    return model


def default_output(model: str | Path) -> Path:
    """``model.loihi.nir`` -> ``model.loihi.onnx`` beside it."""
    p = Path(model)
    return p.with_suffix(".onnx")


def main(argv: list[str] | None = None) -> int:
    """``python -m convert.to_onnx``: write the step graph of a NIR model; exit 2 on bad
    input (one line)."""
    ap = argparse.ArgumentParser(
        prog="python -m convert.to_onnx",
        description="Export the integer graph as an ONNX step graph (one global timestep of "
        "the deployed chip: state in, state out, int64 arithmetic exactly as "
        "docs/integer-nir.md defines it) that onnxruntime runs; see docs/onnx.md. A float NIR "
        "file is quantized first, as every target does.",
        epilog="example: python -m convert.to_onnx model.loihi.nir -o model.onnx",
    )
    ap.add_argument("model", help="integer NIR file (from python -m convert.quantize) or a "
                    "float NIR file (quantized on load)")
    ap.add_argument("-o", "--output", default=None,
                    help="ONNX file to write (default: the model's name with .onnx, beside it)")
    ap.add_argument("--timesteps", type=int, default=None, help="timesteps, if not recorded")
    ap.add_argument("--dt", type=float, default=None, help="time step of a foreign NIR graph")
    ap.add_argument("--input-bitplanes", action="store_true",
                    help="(float files) deploy a graded input as binary bit planes")
    add_output_flags(ap)
    args = ap.parse_args(argv)
    _require_onnx()
    out = Path(args.output) if args.output else default_output(args.model)
    if out.resolve() == Path(args.model).resolve():
        raise UserError(f"output {out} is the input file; give another name with -o")
    check_writable(out)
    from convert.loader import load_graph  # the conversion stage's one entry point

    graph, _ = load_graph(args.model, dt=args.dt, timesteps=args.timesteps,
                          input_bitplanes=args.input_bitplanes)
    model = to_onnx(graph)
    onnx.checker.check_model(model, full_check=True)
    write_atomic(out, lambda tmp: onnx.save_model(model, tmp))
    summary = {"output": str(out), "opset": OPSET, "nodes": len(model.graph.node),
               "inputs": len(model.graph.input), "outputs": len(model.graph.output),
               "timesteps": graph.timesteps, "depth": graph.depth,
               "bytes": out.stat().st_size}
    if args.json:
        print_json(summary)
    else:
        print(f"wrote {out}: ONNX step graph (opset {OPSET}, {summary['nodes']} nodes, "
              f"{summary['inputs']} inputs, {summary['outputs']} outputs, "
              f"{summary['bytes']} bytes); T={graph.timesteps}, run "
              f"N*T + {graph.depth} steps for N samples (docs/onnx.md)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli("convert.to_onnx", main))
