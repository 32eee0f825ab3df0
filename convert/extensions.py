"""NIR extension nodes for what NIR 1.0 cannot express, and a reader that knows them.

An extension node is written with type ``neurodeploy.<Name>``: stock ``nir.read`` refuses such
a file (its type registry has no such name) instead of silently misreading it. Our
:func:`read_nir_any` reads standard and extension nodes alike.

- ``neurodeploy.MaxPool2d``: max pooling of *currents* (the output of the synaptic layer before
  it, i.e. ``Conv -> BN -> MaxPool -> LIF``, CML). A comparison per window, no multiplication;
  on Loihi it needs programmable neurons. Fields: ``input_shape`` (C, H, W), ``kernel_size``,
  ``stride`` (equal to the kernel: non-overlapping windows), no padding.
- ``neurodeploy.SpikeAttention``: Spikformer's ``scale * (Q Kᵀ) V`` of three spike maps (a
  product of spikes with spikes: ANDs and coincidence counts, dynamic weights; see
  ``targets.fixedpoint.spike_attention``). Three input edges, from the q, k and v neuron
  populations; ``inputs`` names those predecessors in the order q,k,v (comma-separated: NIR
  edges carry no port names). Fields: ``input_shape`` (dim, *tokens) of q, k, v and of the
  output (channel-major; head h owns features ``h*dh ... h*dh + dh - 1``), ``heads``,
  ``scale``. In an integer graph ``scale`` is ``2**shift`` (metadata ``loihi_shift``) and a
  scale below 1 floors (arithmetic right shift).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

PREFIX = "neurodeploy."


def _nir_node_base():
    import nir

    return nir.NIRNode


def _make_maxpool():
    base = _nir_node_base()

    class MaxPool2d(base):  # type: ignore[misc, valid-type]
        def __init__(self, input_shape, kernel_size, stride, metadata=None):
            self.input_shape = np.asarray(input_shape).astype(int).reshape(-1)
            self.kernel_size = np.broadcast_to(np.asarray(kernel_size).astype(int), (2,)).copy()
            self.stride = np.broadcast_to(np.asarray(stride).astype(int), (2,)).copy()
            self.metadata = dict(metadata or {})
            c, h, w = (int(x) for x in self.input_shape)
            kh, kw = (int(x) for x in self.kernel_size)
            sh, sw = (int(x) for x in self.stride)
            out = np.array([c, (h - kh) // sh + 1, (w - kw) // sw + 1])
            self.input_type = {"input": self.input_shape.copy()}
            self.output_type = {"output": out}

        def to_dict(self) -> dict[str, Any]:
            return {"type": PREFIX + "MaxPool2d", "input_shape": self.input_shape,
                    "kernel_size": np.array(self.kernel_size),
                    "stride": np.array(self.stride), "metadata": self.metadata}

        @classmethod
        def from_dict(cls, d: dict[str, Any]):
            kw = {k: v for k, v in d.items() if k != "type"}
            return cls(**kw)

    MaxPool2d.__name__ = MaxPool2d.__qualname__ = "MaxPool2d"
    return MaxPool2d


def _make_attention():
    base = _nir_node_base()

    class SpikeAttention(base):  # type: ignore[misc, valid-type]
        def __init__(self, input_shape, heads, scale, inputs, metadata=None):
            self.input_shape = np.asarray(input_shape).astype(int).reshape(-1)
            self.heads = int(np.asarray(heads))
            self.scale = float(np.asarray(scale))
            if isinstance(inputs, bytes):
                inputs = inputs.decode()
            self.inputs = inputs if isinstance(inputs, str) else ",".join(inputs)
            self.metadata = dict(metadata or {})
            if len(self.input_names) != 3:
                raise ValueError(f"SpikeAttention needs inputs q,k,v; got {self.inputs!r}")
            shp = self.input_shape.copy()
            self.input_type = {"q": shp.copy(), "k": shp.copy(), "v": shp.copy()}
            self.output_type = {"output": shp.copy()}

        @property
        def input_names(self) -> tuple[str, ...]:
            return tuple(self.inputs.split(","))

        def to_dict(self) -> dict[str, Any]:
            return {"type": PREFIX + "SpikeAttention", "input_shape": self.input_shape,
                    "heads": self.heads, "scale": self.scale, "inputs": self.inputs,
                    "metadata": self.metadata}

        @classmethod
        def from_dict(cls, d: dict[str, Any]):
            kw = {k: v for k, v in d.items() if k != "type"}
            return cls(**kw)

    SpikeAttention.__name__ = SpikeAttention.__qualname__ = "SpikeAttention"
    return SpikeAttention


_EXT: dict[str, Any] = {}


def ext_class(name: str):
    if not _EXT:
        _EXT["MaxPool2d"] = _make_maxpool()
        _EXT["SpikeAttention"] = _make_attention()
    return _EXT[name]


def SpikeAttention(input_shape, heads, scale, inputs, metadata=None):  # noqa: N802
    """A ``neurodeploy.SpikeAttention`` node (see the module docstring); ``inputs`` = the
    names of its q, k and v predecessors."""
    return ext_class("SpikeAttention")(np.asarray(input_shape), heads, scale, inputs,
                                        metadata or {})


def MaxPool2d(input_shape, kernel_size, stride=None, metadata=None):  # noqa: N802
    """A ``neurodeploy.MaxPool2d`` node (see the module docstring)."""
    cls = ext_class("MaxPool2d")
    return cls(np.asarray(input_shape), np.asarray(kernel_size),
               np.asarray(kernel_size if stride is None else stride), metadata or {})


def is_extension(node: Any) -> bool:
    return any(type(node) is c for c in _EXT.values())


def read_nir_any(path: str | Path):
    """Read a NIR file that may contain neurodeploy extension nodes."""
    import h5py
    import nir
    from nir.serialization import hdf2dict

    with h5py.File(path, "r") as f:
        d = hdf2dict(f["node"])
    nodes = {}
    for name, nd in d["nodes"].items():
        t = nd["type"]
        if isinstance(t, bytes):
            t = t.decode()
        if t.startswith(PREFIX):
            ext = t[len(PREFIX):]
            try:
                cls = ext_class(ext)
            except KeyError:
                raise ValueError(f"node {name!r}: unknown extension {t!r}") from None
            nodes[name] = cls.from_dict(nd)
        else:
            nodes[name] = nir.dict2NIRNode({**nd, "type": t})
    edges = [tuple(str(x) if not isinstance(x, bytes) else x.decode() for x in e)
             for e in np.asarray(d["edges"]).tolist()]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=d.get("metadata", {}),
                        type_check=False)
