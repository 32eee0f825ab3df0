"""NIR extension nodes for what NIR 1.0 cannot express, and the reader that knows them.

An extension node is a real NIR node (a ``nir.NIRNode`` dataclass, as NIR's own primitives in
``nir/ir/*.py``), written to a file with type ``neurodeploy.<Name>``: stock ``nir.read`` refuses
such a file (its type registry has no such name) instead of silently misreading it.
:func:`read_nir` reads standard and extension nodes alike, through one name -> class registry
(:data:`EXTENSIONS`).

- :class:`MaxPool2d` (``neurodeploy.MaxPool2d``): max pooling of *currents*.
- :class:`SpikeAttention` (``neurodeploy.SpikeAttention``): Spikformer's ``scale * (Q Kᵀ) V``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np
from nir.serialization import hdf2dict

from core.errors import GraphError

PREFIX = "neurodeploy."


def _as_str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@dataclass(eq=False)
class MaxPool2d(nir.NIRNode):
    r"""Max pooling of the synaptic *currents* of the node before it (CML's
    ``Conv -> BN -> MaxPool -> LIF``): ``y[c, i, j] = max_{a<kh, b<kw} x[c, i*sh + a, j*sw + b]``.

    A comparison per window, no multiplication; on Loihi it needs programmable neurons.

    Fields: ``input_shape`` (C, H, W) of the currents; ``kernel_size`` and ``stride``
    (kh, kw), each of two positive integers; no padding. The output is
    ``(C, (H - kh) // sh + 1, (W - kw) // sw + 1)``.

    Raises:
        GraphError: a shape that is not (C, H, W), or a kernel/stride that is not two
            positive integers no larger than the map.
    """

    input_shape: np.ndarray
    kernel_size: np.ndarray
    stride: np.ndarray

    def __post_init__(self) -> None:
        self.input_shape = np.asarray(self.input_shape).astype(int).reshape(-1)
        self.kernel_size = np.broadcast_to(np.asarray(self.kernel_size).astype(int), (2,)).copy()
        self.stride = np.broadcast_to(np.asarray(self.stride).astype(int), (2,)).copy()
        if self.input_shape.shape != (3,) or (self.input_shape <= 0).any():
            raise GraphError(f"MaxPool2d: input_shape {self.input_shape.tolist()} is not (C, H, W)")
        if (self.kernel_size <= 0).any() or (self.stride <= 0).any():
            raise GraphError(f"MaxPool2d: kernel {self.kernel_size.tolist()} and stride "
                             f"{self.stride.tolist()} must be positive")
        c, h, w = (int(x) for x in self.input_shape)
        kh, kw = (int(x) for x in self.kernel_size)
        sh, sw = (int(x) for x in self.stride)
        if kh > h or kw > w:
            raise GraphError(f"MaxPool2d: kernel ({kh}, {kw}) larger than the map ({h}, {w})")
        self.input_type = {"input": self.input_shape.copy()}
        self.output_type = {"output": np.array([c, (h - kh) // sh + 1, (w - kw) // sw + 1])}

    def to_dict(self) -> dict[str, Any]:
        return {"type": PREFIX + "MaxPool2d", "input_shape": self.input_shape,
                "kernel_size": self.kernel_size.copy(), "stride": self.stride.copy(),
                "metadata": self.metadata}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MaxPool2d:
        return cls(d["input_shape"], d["kernel_size"], d["stride"],
                   metadata=dict(d.get("metadata") or {}))


@dataclass(eq=False)
class SpikeAttention(nir.NIRNode):
    r"""Spikformer's attention product of three spike maps, a synapse with dynamic weights:

    per head h (features ``h*dh ... h*dh + dh - 1``, ``dh = dim // heads``),
    ``A[n, m] = sum_i q[h, i, n] k[h, i, m]`` and ``out[h, j, n] = scale * sum_m A[n, m]
    v[h, j, m]`` (binary ANDs and coincidence counts; see ``core.fixedpoint.spike_attention``).

    Fields: ``input_shape`` (dim, *tokens) of q, k, v and of the output (channel-major);
    ``heads``; ``scale`` (in an integer graph ``2**shift``, metadata ``loihi_shift``; a scale
    below 1 floors, an arithmetic right shift); ``inputs``, the names of the three predecessor
    nodes in the order q, k, v, comma-separated (NIR edges carry no port names). When latency
    balancing puts ``Delay`` nodes on the inputs, ``inputs`` names those Delay nodes.

    Raises:
        GraphError: not three inputs, heads < 1, or dim not divisible by heads.
    """

    input_shape: np.ndarray
    heads: int
    scale: float
    inputs: str

    def __post_init__(self) -> None:
        self.input_shape = np.asarray(self.input_shape).astype(int).reshape(-1)
        self.heads = int(np.asarray(self.heads))
        self.scale = float(np.asarray(self.scale))
        inputs = self.inputs
        if isinstance(inputs, bytes | np.bytes_):
            inputs = inputs.decode()
        self.inputs = inputs if isinstance(inputs, str) else ",".join(map(str, inputs))
        if len(self.input_names) != 3:
            raise GraphError(f"SpikeAttention needs inputs q,k,v; got {self.inputs!r}")
        if self.input_shape.size < 2 or self.heads < 1 or self.input_shape[0] % self.heads:
            raise GraphError(f"SpikeAttention: shape {self.input_shape.tolist()} is not "
                             f"(dim, *tokens) with dim divisible by {self.heads} heads")
        shp = self.input_shape
        self.input_type = {"q": shp.copy(), "k": shp.copy(), "v": shp.copy()}
        self.output_type = {"output": shp.copy()}

    @property
    def input_names(self) -> tuple[str, ...]:
        """The q, k and v predecessors' names."""
        return tuple(self.inputs.split(","))

    def to_dict(self) -> dict[str, Any]:
        return {"type": PREFIX + "SpikeAttention", "input_shape": self.input_shape,
                "heads": self.heads, "scale": self.scale, "inputs": self.inputs,
                "metadata": self.metadata}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpikeAttention:
        return cls(d["input_shape"], d["heads"], d["scale"], _as_str(d["inputs"]),
                   metadata=dict(d.get("metadata") or {}))


# The one name -> class registry for extension node types (the part after ``neurodeploy.``).
EXTENSIONS: dict[str, type[nir.NIRNode]] = {
    "MaxPool2d": MaxPool2d,
    "SpikeAttention": SpikeAttention,
}


def is_extension(node: Any) -> bool:
    """True for a neurodeploy extension node (which stock ``nir.read`` cannot read)."""
    return type(node) in EXTENSIONS.values()


def _node_from_dict(name: str, nd: dict[str, Any]) -> nir.NIRNode:
    t = _as_str(nd["type"])
    if t == "NIRGraph":  # a nested subgraph (snnTorch's RLeaky): read its nodes the same way
        try:
            inner = {n: _node_from_dict(f"{name}.{n}", d) for n, d in nd["nodes"].items()}
            edges = [tuple(_as_str(x) for x in e) for e in np.asarray(nd["edges"]).tolist()]
        except (KeyError, TypeError, ValueError) as e:
            raise GraphError(f"node {name!r} (NIRGraph): {type(e).__name__}: {e}") from None
        return nir.NIRGraph(nodes=inner, edges=edges, metadata=dict(nd.get("metadata") or {}),
                            type_check=False)
    if t.startswith(PREFIX):
        cls = EXTENSIONS.get(t[len(PREFIX):])
        if cls is None:
            raise GraphError(f"node {name!r}: unknown extension type {t!r} (known: "
                             f"{', '.join(PREFIX + k for k in EXTENSIONS)})")
        return cls.from_dict(nd)
    try:
        nir.str2NIRNode(t)
    except Exception:
        raise GraphError(f"node {name!r}: unknown NIR node type {t!r}") from None
    try:
        return nir.dict2NIRNode({**nd, "type": t})
    except Exception as e:
        raise GraphError(f"node {name!r} ({t}): {type(e).__name__}: {e}") from None


def flatten_subgraphs(g: Any) -> Any:
    """``g`` with every nested subgraph node (a ``nir.NIRGraph`` among its nodes, as snnTorch
    writes ``RLeaky``/``RSynaptic``) replaced by its inner nodes, named ``<subgraph>.<inner>``
    (recursively: ``a.b.c``); ``g`` itself when it has none.

    The subgraph's own ``Input`` and ``Output`` nodes are only its ports and disappear: an
    outer edge into ``sub`` or ``sub.<its Input>`` goes to every inner node that Input feeds,
    an outer edge from ``sub`` or ``sub.<its Output>`` comes from every inner node that feeds
    the Output (``sub`` alone only when the subgraph has one such port). Outer edges may also
    name any inner node directly (``sub.lif``).

    Raises:
        GraphError: a flattened name that another node already has, or a subgraph whose Input
            feeds its Output directly.
    """
    if not any(isinstance(n, nir.NIRGraph) for n in g.nodes.values()):
        return g
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    into: dict[str, list[str]] = {}  # an outer edge's target name -> the flat nodes it feeds
    out_of: dict[str, list[str]] = {}  # an outer edge's source name -> the flat nodes behind it
    for name, node in g.nodes.items():
        if not isinstance(node, nir.NIRGraph):
            nodes[name] = node
            continue
        inner = flatten_subgraphs(node)
        ports = {n for n, v in inner.nodes.items() if isinstance(v, nir.Input | nir.Output)}
        for n, v in inner.nodes.items():
            if n not in ports:
                if f"{name}.{n}" in g.nodes:
                    raise GraphError(f"subgraph {name!r}: its node {n!r} flattens to "
                                     f"{name}.{n!r}, the name of another node")
                nodes[f"{name}.{n}"] = v
        for n in ports:
            if isinstance(inner.nodes[n], nir.Input):
                into[f"{name}.{n}"] = [f"{name}.{b}" for a, b in inner.edges if a == n]
            else:
                out_of[f"{name}.{n}"] = [f"{name}.{a}" for a, b in inner.edges if b == n]
        for a, b in inner.edges:
            if a in ports and b in ports:
                raise GraphError(f"subgraph {name!r}: its input {a!r} feeds its output {b!r} "
                                 "directly")
            if a not in ports and b not in ports:
                edges.append((f"{name}.{a}", f"{name}.{b}"))
        ins = [n for n in ports if isinstance(inner.nodes[n], nir.Input)]
        outs = [n for n in ports if isinstance(inner.nodes[n], nir.Output)]
        if len(ins) == 1:
            into[name] = into[f"{name}.{ins[0]}"]
        if len(outs) == 1:
            out_of[name] = out_of[f"{name}.{outs[0]}"]
    for a, b in g.edges:
        edges += [(x, y) for x in out_of.get(a, [a]) for y in into.get(b, [b])]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(g.metadata or {}),
                        type_check=False)


def read_nir(path: str | Path) -> nir.NIRGraph:
    """Read a NIR file (standard or with neurodeploy extension nodes) into a ``nir.NIRGraph``;
    nested subgraphs are flattened (:func:`flatten_subgraphs`).

    Raises:
        GraphError: the file is missing, not HDF5/NIR, or has a node whose type or fields
            cannot be read (the message names the node and its type).
    """
    p = Path(path)
    if not p.is_file():
        raise GraphError(f"{p}: no such file")
    try:
        with h5py.File(p, "r") as f:
            d = hdf2dict(f["node"])
        raw_nodes = d["nodes"]
        raw_edges = np.asarray(d["edges"]).tolist()
    except Exception as e:  # h5py raises many types for a file that is not HDF5/NIR
        raise GraphError(f"{p}: not a readable NIR file ({type(e).__name__}: {e})") from None
    nodes = {name: _node_from_dict(name, nd) for name, nd in raw_nodes.items()}
    edges = [tuple(_as_str(x) for x in e) for e in raw_edges]
    return flatten_subgraphs(nir.NIRGraph(nodes=nodes, edges=edges,
                                          metadata=d.get("metadata", {}), type_check=False))
