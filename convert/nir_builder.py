"""Build a float NIR graph from trained torch modules: BN folding, shapes, naming, metadata.

Every model's exporter is a few lines over this builder::

    b = NIRBuilder((1, 28, 28))
    x = b.conv("input", model.conv1, bn=model.bn1)        # BN folded into the conv
    x = b.maxpool(x, 2)                                   # of currents (CML): extension node
    s = b.lif(x, beta=0.5, threshold=1.0)
    levels = [b.lif(x, 0.25, th) for th in (0.6, 1.6, 2.6)]  # MLF: K populations, one input
    y = b.conv(levels, model.conv2)                       # a list of sources is their sum
    b.output(b.linear(b.flatten(y), model.fc))
    graph = b.graph(metadata)

Folding is exact in float: ``BN(W x + b) = (g W) x + g (b - mean) + beta`` with
``g = gamma / sqrt(var + eps)`` per output channel (or per output neuron, for a BN over
another axis: pass ``affine=(scale, shift)`` with the output's shape; a conv then becomes a
dense map, never a non-MFI multiply).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.errors import ExportError
from core.nir_ext import MaxPool2d, SpikeAttention
from core.ops import conv2d, conv2d_out_hw

DT = 1e-3


def _np(t: Any) -> np.ndarray:
    if hasattr(t, "detach"):
        return t.detach().cpu().double().numpy()
    return np.asarray(t, dtype=np.float64)


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, int | np.integer):
        return (int(v), int(v))
    return (int(v[0]), int(v[1]))


def bn_affine(bn: Any) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) of an eval-mode BatchNorm: y = scale * x + shift per channel."""
    if isinstance(bn, tuple):
        return _np(bn[0]), _np(bn[1])
    var = _np(bn.running_var)
    mean = _np(bn.running_mean)
    g = 1.0 / np.sqrt(var + float(bn.eps))
    gamma = _np(bn.weight) if getattr(bn, "weight", None) is not None else np.ones_like(var)
    beta = _np(bn.bias) if getattr(bn, "bias", None) is not None else np.zeros_like(var)
    scale = gamma * g
    return scale, beta - mean * scale


class NIRBuilder:
    def __init__(self, input_shape: tuple[int, ...]):
        import nir

        self.nodes: dict[str, Any] = {"input": nir.Input({"input": np.array(input_shape)})}
        self.edges: list[tuple[str, str]] = []
        self.shapes: dict[str, tuple[int, ...]] = {"input": tuple(int(s) for s in input_shape)}
        self._count: dict[str, int] = {}

    # --- plumbing -----------------------------------------------------------------------
    def _name(self, kind: str, name: str | None) -> str:
        if name is not None:
            if name in self.nodes:
                raise ExportError(f"node name {name!r} used twice")
            return name
        i = self._count.get(kind, 0)
        while f"{kind}{i}" in self.nodes:
            i += 1
        self._count[kind] = i + 1
        return f"{kind}{i}"

    def _add(self, kind: str, name: str | None, node: Any, srcs: str | list[str],
             shape: tuple[int, ...]) -> str:
        srcs = [srcs] if isinstance(srcs, str) else list(srcs)
        in_shapes = {self.shapes[s] for s in srcs}
        if len(in_shapes) != 1:
            raise ExportError(f"{kind}: summed sources have different shapes {in_shapes}")
        n = self._name(kind, name)
        self.nodes[n] = node
        self.edges += [(s, n) for s in srcs]
        self.shapes[n] = tuple(int(x) for x in shape)
        return n

    def shape(self, src: str | list[str]) -> tuple[int, ...]:
        return self.shapes[src if isinstance(src, str) else src[0]]

    # --- synaptic maps ------------------------------------------------------------------
    def linear(self, src: str | list[str], module: Any = None, *, weight: Any = None,
               bias: Any = None, bn: Any = None, affine: Any = None, name: str | None = None
               ) -> str:
        import nir

        w = _np(module.weight if module is not None else weight)
        b = None
        if module is not None and module.bias is not None:
            b = _np(module.bias)
        elif bias is not None:
            b = _np(bias)
        if bn is not None or affine is not None:
            sc, sh = bn_affine(bn) if bn is not None else (_np(affine[0]), _np(affine[1]))
            sc = np.broadcast_to(sc.reshape(-1), (w.shape[0],))
            sh = np.broadcast_to(sh.reshape(-1), (w.shape[0],))
            w = w * sc[:, None]
            b = (b if b is not None else 0.0) * sc + sh
        in_size = int(np.prod(self.shape(src)))
        if w.shape[1] != in_size:
            raise ExportError(f"linear: weight {w.shape} vs input size {in_size}")
        node = nir.Affine(w, b) if b is not None else nir.Linear(w)
        return self._add("fc", name, node, src, (w.shape[0],))

    def conv(self, src: str | list[str], module: Any = None, *, weight: Any = None,
             bias: Any = None, stride: Any = 1, padding: Any = 0, groups: int = 1,
             bn: Any = None, affine: Any = None, name: str | None = None) -> str:
        """Conv2d (+ folded BN). A per-position ``affine`` turns it into an exact dense map."""
        import nir

        if module is not None:
            weight, stride, padding, groups = (module.weight, module.stride, module.padding,
                                               module.groups)
            bias = module.bias
            if tuple(_pair(module.dilation)) != (1, 1):
                raise ExportError("conv: dilation is not supported")
        w = _np(weight)
        b = _np(bias) if bias is not None else np.zeros(w.shape[0])
        stride, padding = _pair(stride), _pair(padding)
        c, h, wd = self.shape(src)
        ho, wo = conv2d_out_hw((h, wd), w.shape[2:], stride, padding)
        out_shape = (w.shape[0], ho, wo)
        if affine is not None and np.asarray(_np(affine[0])).size not in (1, w.shape[0]):
            # per-position scale: no longer a convolution; expand it into the exact dense map
            eye = np.eye(c * h * wd).reshape(-1, c, h, wd)
            dense = conv2d(eye, w, stride, padding, groups).reshape(c * h * wd, -1).T
            bias_full = np.broadcast_to(b[:, None, None], out_shape).reshape(-1)
            flat = self._add("flat", None, nir.Flatten({"input": np.array((c, h, wd))}, 0, -1),
                             src, (c * h * wd,))
            return self.linear(flat, weight=dense, bias=bias_full, affine=affine, name=name)
        if bn is not None or affine is not None:
            sc, sh = bn_affine(bn) if bn is not None else (_np(affine[0]), _np(affine[1]))
            sc = np.broadcast_to(sc.reshape(-1), (w.shape[0],))
            sh = np.broadcast_to(sh.reshape(-1), (w.shape[0],))
            w = w * sc[:, None, None, None]
            b = b * sc + sh
        node = nir.Conv2d(input_shape=(h, wd), weight=w, stride=stride, padding=padding,
                          dilation=(1, 1), groups=int(groups), bias=b)
        return self._add("conv", name, node, src, out_shape)

    def avgpool(self, src: str | list[str], kernel: Any, stride: Any = None,
                name: str | None = None) -> str:
        return self._pool("avgpool", src, kernel, stride, name)

    def sumpool(self, src: str | list[str], kernel: Any, stride: Any = None,
                name: str | None = None) -> str:
        return self._pool("sumpool", src, kernel, stride, name)

    def _pool(self, kind: str, src: str | list[str], kernel: Any, stride: Any,
              name: str | None) -> str:
        import nir

        k = _pair(kernel)
        s = _pair(stride if stride is not None else kernel)
        c, h, w = self.shape(src)
        ho, wo = conv2d_out_hw((h, w), k, s, (0, 0))
        cls = nir.AvgPool2d if kind == "avgpool" else nir.SumPool2d
        node = cls(np.array(k), np.array(s), np.array([0, 0]))
        return self._add(kind, name, node, src, (c, ho, wo))

    def maxpool(self, src: str | list[str], kernel: Any, name: str | None = None) -> str:
        """Max pooling of currents (extension node ``neurodeploy.MaxPool2d``); stride = kernel."""
        k = _pair(kernel)
        shape = self.shape(src)
        node = MaxPool2d(shape, k, k)
        return self._add("maxpool", name, node, src, tuple(node.output_type["output"]))

    def spike_attention(self, q: str, k: str, v: str, heads: int, scale: float,
                        name: str | None = None) -> str:
        """Spikformer's ``scale * (Q Kᵀ) V`` per head of three spike populations of shape
        (dim, *tokens) (extension node ``neurodeploy.SpikeAttention``); feeds a neuron."""
        shape = self.shape(q)
        if len(shape) < 2 or shape[0] % int(heads):
            raise ExportError(f"spike_attention: shape {shape} is not (dim, *tokens) with dim "
                             f"divisible by {heads} heads")
        node = SpikeAttention(shape, int(heads), float(scale), [q, k, v])
        return self._add("attention", name, node, [q, k, v], shape)

    def flatten(self, src: str | list[str], name: str | None = None) -> str:
        import nir

        shape = self.shape(src)
        node = nir.Flatten({"input": np.array(shape)}, start_dim=0, end_dim=-1)
        return self._add("flatten", name, node, src, (int(np.prod(shape)),))

    # --- neurons and output -------------------------------------------------------------
    def lif(self, src: str | list[str], beta: float | None = None,
            threshold: float | None = None, *, module: Any = None, name: str | None = None
            ) -> str:
        """LIF population: ``v = beta v + I``, spike on ``v > threshold``, reset to 0."""
        import nir

        if module is not None:
            beta = float(module.beta) if beta is None else beta
            threshold = float(module.threshold) if threshold is None else threshold
        if beta is None or threshold is None:
            raise ExportError("lif: beta and threshold are needed")
        if not 0 < beta < 1:
            raise ExportError(f"lif: beta={beta} has no finite time constant")
        shape = self.shape(src)
        tau = DT / (1.0 - beta)
        node = nir.LIF(tau=np.full(shape, tau), r=np.full(shape, tau / DT),
                       v_leak=np.zeros(shape), v_threshold=np.full(shape, float(threshold)),
                       v_reset=np.zeros(shape))
        return self._add("lif", name, node, src, shape)

    def output(self, src: str | list[str], name: str = "output") -> str:
        import nir

        shape = self.shape(src)
        return self._add("output", name, nir.Output({"output": np.array(shape)}), src, shape)

    def graph(self, metadata: dict[str, Any] | None = None):
        import nir

        from core.nir_ext import is_extension

        meta = dict(metadata or {})
        ext = sorted({type(n).__name__ for n in self.nodes.values() if is_extension(n)})
        if ext:
            meta["neurodeploy_extensions"] = ",".join(ext)
        return nir.NIRGraph(nodes=dict(self.nodes), edges=list(self.edges), metadata=meta,
                            type_check=not ext)
