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

import nir
import numpy as np

from core.errors import ExportError
from core.nir_ext import MaxPool2d, SpikeAttention, is_extension
from core.nir_io import lif_node
from core.ops import conv2d, conv2d_out_hw, pair

# The export's time step (s): every float graph we write is discretised with it (LIF
# ``tau = DT / (1 - beta)``, ``r = tau / DT``) and records it as metadata ``dt``. Any value
# would do as long as the two agree; 1 ms is NIR's and Norse's customary step. (The integer
# graph's nominal step, ``core.nir_io.DT``, is a separate constant of that file format.)
DT = 1e-3


def to_numpy(t: Any) -> np.ndarray:
    """A torch tensor (detached, on CPU) or any array-like as a float64 numpy array."""
    if hasattr(t, "detach"):
        return t.detach().cpu().double().numpy()
    return np.asarray(t, dtype=np.float64)


def bn_affine(bn: Any) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) of an eval-mode BatchNorm: y = scale * x + shift per channel.

    ``bn`` is a torch BatchNorm (its running statistics, ``eps``, optional ``weight``/``bias``)
    or an already folded ``(scale, shift)`` pair.
    """
    if isinstance(bn, tuple):
        return to_numpy(bn[0]), to_numpy(bn[1])
    var = to_numpy(bn.running_var)
    mean = to_numpy(bn.running_mean)
    g = 1.0 / np.sqrt(var + float(bn.eps))
    gamma = (to_numpy(bn.weight) if getattr(bn, "weight", None) is not None
             else np.ones_like(var))
    beta = to_numpy(bn.bias) if getattr(bn, "bias", None) is not None else np.zeros_like(var)
    scale = gamma * g
    return scale, beta - mean * scale


def _label(kind: str, name: str | None) -> str:
    """``kind`` and the node's name, for an error message."""
    return kind if name is None else f"{kind} {name!r}"


def builder_for(name: str, model: Any, input_shape: tuple[int, ...]) -> NIRBuilder:
    """A builder for exporting ``model`` (eval mode) on inputs of ``input_shape`` (C, H, W).

    Raises:
        ExportError: the model was built for another input shape (``model.in_shape``), or is in
            training mode (its batch norms must fold their running statistics).
    """
    shape = tuple(int(d) for d in input_shape)
    if shape != tuple(model.in_shape):
        raise ExportError(f"{name} was built for input {tuple(model.in_shape)} (its in_shape), "
                          f"export asked for {shape}")
    if model.training:
        raise ExportError(f"{name}: export needs model.eval() (batch norm folds its running "
                          "statistics)")
    return NIRBuilder(shape)


class NIRBuilder:
    """A float NIR graph built node by node from an ``"input"`` node of ``input_shape``.

    Every method adds one node (or a few) after its source(s) and returns the new node's name;
    a *list* of sources means their sum. Node names are the ``name=`` given, else
    ``<kind><i>``. Shapes are tracked (``shape(name)``) and checked; mismatches raise
    ``ExportError``. :meth:`graph` returns the ``nir.NIRGraph``.
    """

    def __init__(self, input_shape: tuple[int, ...]):
        self.nodes: dict[str, Any] = {"input": nir.Input({"input": np.array(input_shape)})}
        self.edges: list[tuple[str, str]] = []
        self.shapes: dict[str, tuple[int, ...]] = {"input": tuple(int(s) for s in input_shape)}
        self._count: dict[str, int] = {}
        #: Graph metadata an exporter adds (e.g. what it changed for deployment); merged
        #: into :meth:`graph`'s ``metadata``.
        self.metadata: dict[str, Any] = {}

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
        in_shapes = {self.shape(s) for s in srcs}
        if len(in_shapes) != 1:
            raise ExportError(f"{_label(kind, name)}: summed sources have different shapes "
                              f"{in_shapes}")
        n = self._name(kind, name)
        self.nodes[n] = node
        self.edges += [(s, n) for s in srcs]
        self.shapes[n] = tuple(int(x) for x in shape)
        return n

    def shape(self, src: str | list[str]) -> tuple[int, ...]:
        """The output shape of node ``src`` (of the first, for a list: they all agree).

        Raises:
            ExportError: no node has that name.
        """
        first = src if isinstance(src, str) else src[0]
        if first not in self.shapes:
            raise ExportError(f"no node named {first!r} (so far: {', '.join(self.shapes)})")
        return self.shapes[first]

    # --- synaptic maps ------------------------------------------------------------------
    def linear(self, src: str | list[str], module: Any = None, *, weight: Any = None,
               bias: Any = None, bn: Any = None, affine: Any = None, name: str | None = None
               ) -> str:
        """``nir.Affine`` (``nir.Linear`` without a bias) on the flattened ``src``.

        From a torch ``nn.Linear`` ``module`` or explicit ``weight`` [n_out, n_in] / ``bias``
        [n_out]; ``bn`` (a BatchNorm or ``(scale, shift)``) or ``affine=(scale, shift)`` (per
        output neuron, or broadcast) is folded in exactly: ``W' = scale W``,
        ``b' = scale b + shift``.

        Raises:
            ExportError: ``n_in`` is not the size of ``src``.
        """
        w = to_numpy(module.weight if module is not None else weight)
        b = None
        if module is not None and module.bias is not None:
            b = to_numpy(module.bias)
        elif bias is not None:
            b = to_numpy(bias)
        if bn is not None or affine is not None:
            sc, sh = bn_affine(bn) if bn is not None else (to_numpy(affine[0]), to_numpy(affine[1]))
            sc = np.broadcast_to(sc.reshape(-1), (w.shape[0],))
            sh = np.broadcast_to(sh.reshape(-1), (w.shape[0],))
            w = w * sc[:, None]
            b = (b if b is not None else 0.0) * sc + sh
        in_size = int(np.prod(self.shape(src)))
        if w.shape[1] != in_size:
            raise ExportError(f"{_label('linear', name)}: weight {w.shape} vs input size {in_size}")
        node = nir.Affine(w, b) if b is not None else nir.Linear(w)
        return self._add("fc", name, node, src, (w.shape[0],))

    def conv(self, src: str | list[str], module: Any = None, *, weight: Any = None,
             bias: Any = None, stride: Any = 1, padding: Any = 0, groups: int = 1,
             bn: Any = None, affine: Any = None, name: str | None = None) -> str:
        """``nir.Conv2d`` on ``src`` (C, H, W), from a torch ``nn.Conv2d`` ``module`` or explicit
        ``weight`` [C_out, C_in/groups, kh, kw], ``bias``, ``stride``, ``padding``, ``groups``;
        ``bn``/``affine`` folded per output channel as in :meth:`linear`. A per-position
        ``affine`` (one value per output neuron) makes it the exact dense map (a Flatten and
        an Affine) instead.

        Raises:
            ExportError: the module has a dilation other than 1.
        """
        if module is not None:
            weight, stride, padding, groups = (module.weight, module.stride, module.padding,
                                               module.groups)
            bias = module.bias
            if tuple(pair(module.dilation)) != (1, 1):
                raise ExportError(f"{_label('conv', name)}: dilation is not supported")
        w = to_numpy(weight)
        b = to_numpy(bias) if bias is not None else np.zeros(w.shape[0])
        stride, padding = pair(stride), pair(padding)
        c, h, wd = self.shape(src)
        ho, wo = conv2d_out_hw((h, wd), w.shape[2:], stride, padding)
        out_shape = (w.shape[0], ho, wo)
        if affine is not None and np.asarray(to_numpy(affine[0])).size not in (1, w.shape[0]):
            # per-position scale: no longer a convolution; expand it into the exact dense map
            eye = np.eye(c * h * wd).reshape(-1, c, h, wd)
            dense = conv2d(eye, w, stride, padding, groups).reshape(c * h * wd, -1).T
            bias_full = np.broadcast_to(b[:, None, None], out_shape).reshape(-1)
            flat = self._add("flat", None, nir.Flatten({"input": np.array((c, h, wd))}, 0, -1),
                             src, (c * h * wd,))
            return self.linear(flat, weight=dense, bias=bias_full, affine=affine, name=name)
        if bn is not None or affine is not None:
            sc, sh = bn_affine(bn) if bn is not None else (to_numpy(affine[0]), to_numpy(affine[1]))
            sc = np.broadcast_to(sc.reshape(-1), (w.shape[0],))
            sh = np.broadcast_to(sh.reshape(-1), (w.shape[0],))
            w = w * sc[:, None, None, None]
            b = b * sc + sh
        node = nir.Conv2d(input_shape=(h, wd), weight=w, stride=stride, padding=padding,
                          dilation=(1, 1), groups=int(groups), bias=b)
        return self._add("conv", name, node, src, out_shape)

    def avgpool(self, src: str | list[str], kernel: Any, stride: Any = None,
                padding: Any = 0, name: str | None = None) -> str:
        """``nir.AvgPool2d`` on ``src`` (C, H, W); ``stride`` defaults to ``kernel``, as in
        torch's ``nn.AvgPool2d``."""
        return self._pool("avgpool", src, kernel, stride, padding, name)

    def sumpool(self, src: str | list[str], kernel: Any, stride: Any = None,
                padding: Any = 0, name: str | None = None) -> str:
        """``nir.SumPool2d`` on ``src`` (C, H, W); ``stride`` defaults to ``kernel``."""
        return self._pool("sumpool", src, kernel, stride, padding, name)

    def _pool(self, kind: str, src: str | list[str], kernel: Any, stride: Any, padding: Any,
              name: str | None) -> str:
        k = pair(kernel)
        s = pair(stride if stride is not None else kernel)
        p = pair(padding)
        c, h, w = self.shape(src)
        ho, wo = conv2d_out_hw((h, w), k, s, p)
        cls = nir.AvgPool2d if kind == "avgpool" else nir.SumPool2d
        node = cls(np.array(k), np.array(s), np.array(p))
        return self._add(kind, name, node, src, (c, ho, wo))

    def maxpool(self, src: str | list[str], kernel: Any, name: str | None = None) -> str:
        """Max pooling of currents (extension node ``neurodeploy.MaxPool2d``); stride = kernel."""
        k = pair(kernel)
        shape = self.shape(src)
        node = MaxPool2d(shape, k, k)
        return self._add("maxpool", name, node, src, tuple(node.output_type["output"]))

    def spike_attention(self, q: str, k: str, v: str, heads: int, scale: float,
                        name: str | None = None) -> str:
        """Spikformer's ``scale * (Q Kᵀ) V`` per head of three spike populations of shape
        (dim, *tokens) (extension node ``neurodeploy.SpikeAttention``); feeds a neuron."""
        shape = self.shape(q)
        if len(shape) < 2 or shape[0] % int(heads):
            raise ExportError(f"{_label('spike_attention', name)}: shape {shape} is not "
                              f"(dim, *tokens) with dim divisible by {heads} heads")
        node = SpikeAttention(shape, int(heads), float(scale), [q, k, v])
        return self._add("attention", name, node, [q, k, v], shape)

    def flatten(self, src: str | list[str], name: str | None = None) -> str:
        """``nir.Flatten`` of ``src`` to one axis (C-order, as torch's ``flatten``)."""
        shape = self.shape(src)
        node = nir.Flatten({"input": np.array(shape)}, start_dim=0, end_dim=-1)
        return self._add("flatten", name, node, src, (int(np.prod(shape)),))

    # --- neurons and output -------------------------------------------------------------
    def lif(self, src: str | list[str], beta: float | None = None,
            threshold: float | None = None, *, module: Any = None, name: str | None = None
            ) -> str:
        """LIF population on the (summed) current of ``src``: ``v = beta v + I``, spike on
        ``v > threshold``, reset to 0; ``beta``/``threshold`` default to a torch LIF
        ``module``'s (``models.neuron.LIF``). Written by ``core.nir_io.lif_node`` with step
        :data:`DT`.

        Raises:
            ExportError: no beta or threshold, or ``beta`` outside (0, 1) (no finite tau).
        """
        if module is not None:
            beta = float(module.beta) if beta is None else beta
            threshold = float(module.threshold) if threshold is None else threshold
        if beta is None or threshold is None:
            raise ExportError(f"{_label('lif', name)}: beta and threshold are needed")
        if not 0 < beta < 1:
            raise ExportError(f"{_label('lif', name)}: beta={beta} has no finite time constant")
        shape = self.shape(src)
        return self._add("lif", name, lif_node(shape, beta, threshold, DT), src, shape)

    def integrate_fire(self, src: str | list[str], threshold: float, *,
                       name: str | None = None) -> str:
        """``nir.IF`` population on the (summed) current of ``src``: ``v = v + I`` (no leak,
        Loihi's ``dv = 0``), spike on ``v > threshold``, reset to 0. ``r = 1 / DT`` makes the
        input gain ``dt r`` exactly 1 (the convention the importer pins dt by)."""
        shape = self.shape(src)
        node = nir.IF(r=np.full(shape, 1.0 / DT), v_threshold=np.full(shape, float(threshold)),
                      v_reset=np.zeros(shape))
        return self._add("if", name, node, src, shape)

    def delay(self, src: str | list[str], steps: int, *, name: str | None = None) -> str:
        """``nir.Delay`` of ``steps`` steps of :data:`DT` on ``src``: its values of step t
        arrive at step t + steps of the same sample (the importer makes it the model delay
        ``lag`` of the synapse on its path).

        Raises:
            ExportError: ``steps`` is negative.
        """
        if int(steps) < 0:
            raise ExportError(f"{_label('delay', name)}: steps must be >= 0, got {steps}")
        shape = self.shape(src)
        node = nir.Delay(np.full(shape, int(steps) * DT))
        return self._add("delay", name, node, src, shape)

    def output(self, src: str | list[str], name: str = "output") -> str:
        """``nir.Output`` reading ``src``: the graph's readout (summed over time by targets)."""
        shape = self.shape(src)
        return self._add("output", name, nir.Output({"output": np.array(shape)}), src, shape)

    def graph(self, metadata: dict[str, Any] | None = None) -> nir.NIRGraph:
        """The graph, with ``metadata`` (plus ``neurodeploy_extensions``: the extension node
        types it holds, comma-separated; such a graph skips NIR's type check, which does not
        know them)."""
        meta = {**dict(metadata or {}), **self.metadata}
        ext = sorted({type(n).__name__ for n in self.nodes.values() if is_extension(n)})
        if ext:
            meta["neurodeploy_extensions"] = ",".join(ext)
        return nir.NIRGraph(nodes=dict(self.nodes), edges=list(self.edges), metadata=meta,
                            type_check=not ext)
