"""The integer graph as a NIR file (writer and reader), and NIR metadata helpers.

Layout (documented for other executors in docs/integer-nir.md): standard NIR primitives whose
arrays hold the integers, with Loihi's parameters in node metadata:
- population -> ``nir.LIF`` (float fields describe the same dynamics approximately) with
  metadata ``loihi_du, loihi_dv, loihi_vth, loihi_bias_exp`` and ``loihi_bias_mant`` (array);
- Dense -> ``nir.Linear`` (integer weights) with metadata ``loihi_weight_exp``;
- a recurrent synapse (a population onto itself) also has metadata ``loihi_recurrent = 1``;
- Conv -> ``nir.Conv2d`` (integer weights, PyTorch layout and sense);
- readout -> ``nir.Output`` with optional metadata ``loihi_readout_bias`` and
  ``loihi_readout_dv`` (a leaky readout's membrane decay; absent: 0, the plain sum);
graph metadata ``neurodeploy_integer = 1``, ``timesteps``, ``input_kind``, ``input_max``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nir
import numpy as np

from core import fixedpoint as fx
from core.errors import GraphError
from core.files import write_atomic
from core.graph import (
    INPUT,
    Conv,
    Dense,
    InputSpec,
    LIFPopulation,
    QGraph,
    Readout,
    SpikeAttention,
    is_recurrent,
    synapse_lag,
)
from core.nir_ext import MaxPool2d
from core.nir_ext import SpikeAttention as AttentionNode

# The nominal step (s) written into an integer graph's float fields (LIF tau, Delay delay): the
# integer metadata (loihi_*, steps) is authoritative; the float fields only describe it.
DT = 1e-3


def meta_value(v: Any) -> Any:
    """A metadata value as plain Python (HDF5 gives bytes and 0-d arrays back)."""
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return v.item()
    if isinstance(v, np.generic):
        return v.item()
    return v


def lif_node(shape: tuple[int, ...], beta: float, threshold: float, dt: float,
             metadata: dict[str, Any] | None = None) -> nir.LIF:
    """The ``nir.LIF`` of a population of ``shape`` with decay ``beta`` per step of ``dt`` (s).

    NIR's LIF is continuous, ``tau dv/dt = (v_leak - v) + r I``; under forward Euler with step
    ``dt`` it is ``v[t] = (1 - dt/tau) v[t-1] + (dt r / tau) I[t]``. So ``tau = dt / (1 - beta)``
    gives ``v[t] = beta v[t-1] + ...``, and ``r = tau / dt`` makes the input gain 1. ``v_leak``
    and ``v_reset`` are 0 (reset to zero); ``v_threshold`` is ``threshold`` everywhere.
    ``beta = 1`` (no leak, Loihi's ``dv = 0``) has no finite tau: it is written as
    ``tau = dt / 1e-9``, a finite stand-in that HDF5 and every reader accept. Used by the float
    export (``convert.export``, step ``convert.nir_builder.DT``) and the integer-graph writer
    (nominal step :data:`DT`); the arrays are float64.
    """
    tau = dt / (1.0 - beta) if beta < 1 else dt / 1e-9
    return nir.LIF(
        tau=np.full(shape, tau), r=np.full(shape, tau / dt), v_leak=np.zeros(shape),
        v_threshold=np.full(shape, float(threshold)), v_reset=np.zeros(shape),
        metadata=dict(metadata or {}),
    )


def to_nir(qg: QGraph, report: Any = None) -> nir.NIRGraph:
    """The integer graph as a ``nir.NIRGraph`` in the layout of docs/integer-nir.md.

    ``report``: the quantization report (an object with ``to_dict()``, or a plain dict), stored
    as JSON in the graph metadata ``quantization_report``; None stores none.
    """
    nodes: dict[str, Any] = {
        INPUT: nir.Input(
            {"input": np.array(qg.input.shape)},
            metadata={"kind": qg.input.kind, "max_value": qg.input.max_value,
                      "bitplanes": qg.input.bitplanes},
        )
    }
    edges: list[tuple[str, str]] = []
    pooled_to: dict[str, str] = {}
    for p in qg.populations.values():
        md = {"loihi_du": p.du, "loihi_dv": p.dv, "loihi_vth": p.vth,
              "loihi_bias_exp": p.bias_exp, "loihi_bias_mant": p.bias_mant.copy()}
        if p.reset != "zero":  # written only when not the default: older files stay as they were
            md["loihi_reset"] = p.reset
        nodes[p.name] = lif_node(p.shape, fx.factor_from_dv(p.dv),
                                 float(p.vth << fx.VTH_SHIFT), DT, metadata=md)
    for r in qg.readouts.values():
        md = {} if r.bias is None else {"loihi_readout_bias": r.bias.copy()}
        if r.dv:
            md["loihi_readout_dv"] = int(r.dv)
        nodes[r.name] = nir.Output({"output": np.array(r.shape)}, metadata=md)
    attention = False
    for s in qg.synapses:
        if s.name in nodes:
            raise GraphError(f"synapse {s.name!r} has the name of another node")
        if isinstance(s, SpikeAttention):
            attention = True
            _attention_to_nir(qg, s, nodes, edges)
            continue
        src = s.source
        if isinstance(s, Dense):
            md = {"loihi_weight_exp": s.weight_exp}
            if s.source_slice is not None:
                md["source_slice"] = np.array(s.source_slice)
            nodes[s.name] = nir.Linear(weight=s.weight.copy(), metadata=md)
            src_shape = qg.node_shape(s.source)
            if len(src_shape) > 1:  # NIR types must chain: flatten a (C, H, W) source first
                src = f"{s.name}_flatten"
                nodes[src] = nir.Flatten({"input": np.array(src_shape)}, start_dim=0, end_dim=-1)
                edges.append((s.source, src))
            if len(qg.node_shape(s.target)) > 1:
                raise GraphError(f"synapse {s.name!r}: NIR cannot express a Dense map into the "
                                 f"shaped population {s.target!r}")
        else:
            nodes[s.name] = _conv_node(s)
            if s.max_pool is not None:  # extension node between the conv and its target
                mp = f"{s.name}_maxpool"
                nodes[mp] = MaxPool2d(s.conv_shape, s.max_pool, s.max_pool)
                pooled_to[s.name] = mp
        if is_recurrent(s):  # a population onto itself (docs/integer-nir.md G6)
            nodes[s.name].metadata["loihi_recurrent"] = 1
        if synapse_lag(s):  # a model delay (a NIR Delay), part of its delay steps (S7)
            nodes[s.name].metadata["loihi_lag"] = synapse_lag(s)
        if s.delay:
            d = f"{s.name}_delay"
            role = ("recurrent delay" if is_recurrent(s) else
                    "model delay and latency balancing" if synapse_lag(s) else
                    "latency balancing")
            nodes[d] = nir.Delay(np.full(qg.node_shape(s.source) if src == s.source else
                                         (int(np.prod(qg.node_shape(s.source))),), s.delay * DT),
                                 metadata={"role": role, "steps": s.delay})
            edges.append((src, d))
            src = d
        chain = [s.name]
        if pooled_to.get(s.name):
            chain.append(pooled_to[s.name])
        if isinstance(s, Conv) and len(qg.node_shape(s.target)) != 3:
            flat = f"{s.name}_flatten_out"  # NIR types must chain into a flat population
            nodes[flat] = nir.Flatten({"input": np.array(s.out_shape)}, start_dim=0, end_dim=-1)
            chain.append(flat)
        edges.append((src, s.name))
        edges += list(zip(chain, [*chain[1:], s.target], strict=True))
    meta = {k: v for k, v in qg.metadata.items() if isinstance(v, str | int | float | bool)}
    meta.update(neurodeploy_integer=1, timesteps=qg.timesteps, input_kind=qg.input.kind,
                input_max=qg.input.max_value)
    if report is not None:
        # a report object (convert.quantize.QuantReport) or its plain-dict form
        plain = report.to_dict() if hasattr(report, "to_dict") else report
        meta["quantization_report"] = json.dumps(plain, default=float)
    if pooled_to:
        meta["neurodeploy_extensions"] = "MaxPool2d"
    if attention:
        meta["neurodeploy_extensions"] = ",".join(
            [*(["MaxPool2d"] if pooled_to else []), "SpikeAttention"])
    # NIR's own type inference is off: nir 1.0.8 infers a Conv2d's types as if groups were 1
    # and the kernel square. The node types are set right here and checked by our own rule
    # (shapes, as NIR's check did; only sizes with an extension node, which NIR never checked).
    check_node_types(nodes, edges, exact=not (pooled_to or attention))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)


def _conv_node(s: Conv) -> nir.Conv2d:
    """The ``nir.Conv2d`` of a conv synapse (docs/integer-nir.md §2), with its input and
    output types set from the synapse: ``in_shape`` (C_in, H, W) in, the convolution's own
    output (C_out, Ho, Wo) out. nir 1.0.8's ``Conv2d`` derives them from ``input_shape`` as if
    ``groups`` were 1 and the kernel square (C_in/groups channels, kw = kh); the file does not
    store types, so this changes nothing that is written."""
    node = nir.Conv2d(
        input_shape=tuple(s.in_shape[1:]), weight=s.weight.copy(), stride=s.stride,
        padding=s.padding, dilation=(1, 1), groups=s.groups,
        bias=np.zeros(s.weight.shape[0], dtype=np.int64),
        metadata={"in_shape": np.array(s.in_shape), "out_shape": np.array(s.conv_shape),
                  "loihi_weight_exp": s.weight_exp,
                  **({} if s.source_slice is None else
                     {"source_slice": np.array(s.source_slice)})},
    )
    node.input_type = {"input": np.array(s.in_shape)}
    node.output_type = {"output": np.array(s.conv_shape)}
    return node


def check_node_types(nodes: dict[str, Any], edges: list[tuple[str, str]], *,
                     exact: bool = True) -> None:
    """Every edge joins nodes of one type: the source's ``output`` shape equals the
    target's ``input`` shape (what NIR's type check compares), or with ``exact=False`` only
    their sizes (values are flat vectors: docs/integer-nir.md §3). Nodes with several named
    input ports (a spike attention) are checked by ``QGraph.validate`` instead.

    Raises:
        GraphError: an edge names an unknown node, or its two ends have different shapes
            (a bug in the writer: the message names the edge and both shapes).
    """
    for a, b in edges:
        if a not in nodes or b not in nodes:
            raise GraphError(f"integer graph: edge {a!r} -> {b!r} names an unknown node")
        out = dict(nodes[a].output_type or {}).get("output")
        inp = dict(nodes[b].input_type or {}).get("input")
        if out is None or inp is None:
            continue
        out, inp = np.asarray(out).reshape(-1), np.asarray(inp).reshape(-1)
        if not (np.array_equal(out, inp) if exact else np.prod(out) == np.prod(inp)):
            raise GraphError(f"integer graph: edge {a!r} -> {b!r} joins shape "
                             f"{np.asarray(out).tolist()} to {np.asarray(inp).tolist()}")


def _attention_to_nir(qg: QGraph, s: SpikeAttention, nodes: dict[str, Any],
                      edges: list[tuple[str, str]]) -> None:
    """q, k, v -> [Delay each] -> ``neurodeploy.SpikeAttention`` (scale 2**shift) -> target."""
    shape = qg.node_shape(s.target)
    preds = []
    for role, src in zip("qkv", s.sources, strict=True):
        if s.delay:
            d = f"{s.name}_delay_{role}"
            nodes[d] = nir.Delay(np.full(qg.node_shape(src), s.delay * DT),
                                 metadata={"role": "latency balancing", "steps": s.delay})
            edges.append((src, d))
            src = d
        preds.append(src)
        edges.append((src, s.name))
    nodes[s.name] = AttentionNode(shape, s.heads, 2.0**s.shift, preds,
                                  metadata={"loihi_shift": s.shift})
    edges.append((s.name, s.target))


def write_qgraph(path: str | Path, qg: QGraph, report: Any = None) -> None:
    """Write the integer graph (and its quantization report, as JSON metadata) atomically."""
    g = to_nir(qg, report)
    write_atomic(path, lambda tmp: nir.write(tmp, g))


def is_integer_graph(g: Any) -> bool:
    return int(meta_value(dict(g.metadata or {}).get("neurodeploy_integer", 0)) or 0) == 1


def _check_recurrent_marks(g: Any, synapses: list) -> None:
    """A synapse is marked ``loihi_recurrent = 1`` exactly when it feeds the population it
    reads (docs/integer-nir.md G6): a cycle without the mark, or a mark without the cycle,
    is a file we did not write.

    Raises:
        GraphError: the first synapse where mark and edges disagree.
    """
    for s in synapses:
        if isinstance(s, SpikeAttention):
            continue
        marked = bool(meta_value(dict(g.nodes[s.name].metadata or {}).get("loihi_recurrent", 0)))
        if marked and not is_recurrent(s):
            raise GraphError(f"integer graph: synapse {s.name!r} is marked loihi_recurrent but "
                             f"reads {s.source!r} and feeds {s.target!r}; only a population's "
                             "synapse onto itself is recurrent")
        if is_recurrent(s) and not marked:
            raise GraphError(f"integer graph: synapse {s.name!r} feeds the population "
                             f"{s.target!r} it reads but is not marked loihi_recurrent")


def from_nir(g: Any) -> QGraph:
    meta = {k: meta_value(v) for k, v in dict(g.metadata or {}).items()}
    pops: dict[str, LIFPopulation] = {}
    readouts: dict[str, Readout] = {}
    synapses: list[Dense | Conv] = []
    preds: dict[str, str] = {}
    succs: dict[str, str] = {}
    for a, b in g.edges:
        preds[b] = a
        succs[a] = b
    delays: dict[str, int] = {}
    attention_inputs: dict[str, list[tuple[str, int]]] = {}
    passthrough = {n for n, node in g.nodes.items() if type(node).__name__ in ("Flatten", "Delay")}
    def past_passthrough(src: str) -> tuple[str, int]:
        """The node a synapse really reads, and the delay steps on the way there."""
        steps = 0
        while src in passthrough:
            node = g.nodes[src]
            if type(node).__name__ == "Delay":
                steps += int(meta_value(dict(node.metadata or {}).get("steps", 0)) or
                             round(float(np.asarray(node.delay).reshape(-1)[0]) / DT))
            src = preds[src]
        return src, steps

    for name in g.nodes:  # Flatten reshapes, Delay holds back: the synapse reads past them
        if type(g.nodes[name]).__name__ in ("Linear", "Conv2d"):
            preds[name], delays[name] = past_passthrough(preds[name])
        elif type(g.nodes[name]).__name__ == "SpikeAttention":  # q, k, v, each past its Delay
            attention_inputs[name] = [past_passthrough(src) for src in g.nodes[name].input_names]
    in_spec = None
    for name, node in g.nodes.items():
        kind = type(node).__name__
        md = {k: meta_value(v) for k, v in dict(node.metadata or {}).items()}
        if kind == "Input":
            shape = tuple(int(x) for x in np.asarray(next(iter(node.input_type.values()))))
            in_spec = InputSpec(shape, str(md.get("kind", meta.get("input_kind", "spikes"))),
                                int(md.get("max_value", meta.get("input_max", 1))),
                                int(md.get("bitplanes", 0)))
        elif kind == "LIF":
            shape = tuple(np.asarray(node.v_threshold).shape)
            pops[name] = LIFPopulation(
                name, shape, int(md["loihi_du"]), int(md["loihi_dv"]), int(md["loihi_vth"]),
                np.asarray(md["loihi_bias_mant"], dtype=np.int64).reshape(-1),
                int(md["loihi_bias_exp"]), str(md.get("loihi_reset", "zero")),
            )
        elif kind == "Output":
            shape = tuple(int(x) for x in np.asarray(next(iter(node.output_type.values()))))
            b = md.get("loihi_readout_bias")
            readouts[name] = Readout(name, shape,
                                     None if b is None else np.asarray(b, dtype=np.int64),
                                     int(md.get("loihi_readout_dv", 0)))
        elif kind == "Linear":
            sl = md.get("source_slice")
            synapses.append(Dense(name, preds[name], succs[name],
                                  np.asarray(node.weight).astype(np.int64),
                                  int(md.get("loihi_weight_exp", 0)), delays.get(name, 0),
                                  None if sl is None else (int(sl[0]), int(sl[1])),
                                  lag=int(md.get("loihi_lag", 0))))
        elif kind == "Conv2d":
            target, out_shape, pool = succs[name], tuple(int(x) for x in md["out_shape"]), None
            if type(g.nodes[target]).__name__ == "MaxPool2d":
                mp = g.nodes[target]
                pool = (int(mp.kernel_size[0]), int(mp.kernel_size[1]))
                out_shape = tuple(int(x) for x in mp.output_type["output"])
                target = succs[target]
            if type(g.nodes[target]).__name__ == "Flatten":
                target = succs[target]
            synapses.append(Conv(
                name, preds[name], target, np.asarray(node.weight).astype(np.int64),
                tuple(int(x) for x in np.broadcast_to(node.stride, (2,))),
                tuple(int(x) for x in np.broadcast_to(node.padding, (2,))), int(node.groups),
                tuple(int(x) for x in md["in_shape"]), out_shape, delays.get(name, 0), pool,
                int(md.get("loihi_weight_exp", 0)),
                None if md.get("source_slice") is None else
                (int(md["source_slice"][0]), int(md["source_slice"][1])),
                lag=int(md.get("loihi_lag", 0)),
            ))
        elif kind == "SpikeAttention":
            srcs = attention_inputs[name]
            if len({d for _, d in srcs}) != 1:
                raise GraphError(f"attention {name!r}: its inputs are delayed differently "
                                 f"({srcs})")
            shift = md.get("loihi_shift")
            if shift is None:
                shift = round(np.log2(float(node.scale)))
                if 2.0**shift != float(node.scale):
                    raise GraphError(f"attention {name!r}: scale {node.scale} is not a power "
                                     "of two in an integer graph")
            synapses.append(SpikeAttention(name, tuple(n for n, _ in srcs), succs[name],
                                           int(node.heads), int(shift), srcs[0][1]))
        elif kind not in ("Flatten", "Delay", "MaxPool2d"):
            raise GraphError(f"integer graph: node {name!r} ({kind}) is not part of the format")
    if in_spec is None:
        raise GraphError("integer graph has no Input node")
    _check_recurrent_marks(g, synapses)
    qg = QGraph(in_spec, pops, readouts, synapses, int(meta.get("timesteps", 0)), meta)
    qg.validate()
    return qg
