"""Read any NIR graph (ours, snnTorch's, Norse's, rockpool's) into a :class:`FGraph`.

The rewrites done here are exact in float:
- every chain of linear nodes (Affine, Linear, Conv2d, pooling, Flatten, Scale) between two
  neuron populations becomes one synapse; pooling followed by a convolution becomes one strided
  convolution with an expanded kernel, any other chain one dense matrix (:class:`NIRView`);
- biases along a chain become the target population's per-step bias;
- NIR's continuous-time parameters become per-step factors with the graph's ``dt``
  (forward Euler), and the input gain ``dt * r / tau`` is folded into the incoming weights;
  per-neuron thresholds are normalised to one value per population (Loihi has one ``vth`` per
  process) by scaling each neuron's incoming weights and bias (:mod:`convert.neuron_params`);
- where paths of different depth meet, the shorter ones get balancing delays
  (:func:`core.graph.balance_delays`).
What cannot be mapped is refused with the node's name and the reason. numpy only.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from convert.float_graph import (
    FConv,
    FDense,
    FGraph,
    FPopulation,
    FReadout,
    FSpikeAttention,
    FSynapse,
)
from convert.neuron_params import (
    NEURONS,
    kind,
    normalise_threshold,
    parameter_arrays,
    step_params,
)
from core.fixedpoint import max_pool2d
from core.graph import INPUT, GraphError, InputSpec, balance_delays
from core.nir_ext import read_nir
from core.nir_io import meta_value
from core.ops import conv2d, conv2d_out_hw, pair, pool2d

LINEAR = ("Affine", "Linear", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten", "Scale", "MaxPool2d")
# MaxPool2d is our extension node (max of currents): allowed only as Conv2d -> MaxPool2d -> neuron.
# SpikeAttention (extension): the product of three populations' spikes, straight into a neuron.
PRODUCTS = ("SpikeAttention",)
SUPPORTED = (*NEURONS, *LINEAR, *PRODUCTS, "Input", "Output")
DEFAULT_DT = 1e-4  # snnTorch's export convention; ours always records dt in the metadata
DENSE_LIMIT = 20000  # largest source a non-conv chain is composed from (an n x n identity)


class NIRView:
    """A NIR graph as the importer reads it: node shapes, and the chains of linear nodes
    between neurons composed into single linear maps.

    ``g`` is a ``nir.NIRGraph`` (or anything with ``nodes``, ``edges``). Shapes are inferred
    from the Input node forward (``shape``); ``apply``/``run_chain`` evaluate linear nodes on
    a batch; ``compose`` turns a chain into one :class:`FDense` or :class:`FConv`.

    Raises:
        GraphError: an edge to an unknown node, a NIR ``Delay``, or a node type neurodeploy
            cannot map (the message names the node and the supported types).
    """

    def __init__(self, g: Any):
        self.nodes = dict(g.nodes)
        self.preds: dict[str, list[str]] = {n: [] for n in self.nodes}
        for a, b in g.edges:
            for end in (a, b):
                if end not in self.nodes:
                    raise GraphError(f"edge {a}->{b} refers to unknown node {end!r}")
            self.preds[b].append(a)
        self._shapes: dict[str, tuple[int, ...]] = {}
        for name, node in self.nodes.items():
            k = kind(node)
            if k == "Delay":
                raise GraphError(f"node {name!r} is a NIR Delay: explicit delays are not "
                                 "supported yet (neurodeploy adds its own balancing delays)")
            if k not in SUPPORTED:
                raise GraphError(
                    f"node {name!r} is a NIR {k}, which neurodeploy cannot map to Loihi "
                    f"(supported: {', '.join(SUPPORTED)})"
                )

    # --- shapes -------------------------------------------------------------------------
    def shape(self, name: str, _stack: tuple[str, ...] = ()) -> tuple[int, ...]:
        """The output shape of node ``name`` (inferred from the Input node forward).

        Raises:
            GraphError: the node is on a cycle, has no input edge, receives inputs of
                different sizes, or its parameters do not fit its input.
        """
        if name in self._shapes:
            return self._shapes[name]
        if name in _stack:
            raise GraphError(f"node {name!r} is on a cycle: recurrent graphs are not supported")
        node = self.nodes[name]
        k = kind(node)
        if k == "Input":
            shp = tuple(int(s) for s in np.asarray(next(iter(node.input_type.values()))).ravel())
        else:
            preds = self.preds[name]
            if not preds:
                raise GraphError(f"node {name!r} ({k}) has no input edge")
            in_shapes = {self.shape(p, (*_stack, name)) for p in preds}
            sizes = {int(np.prod(s)) for s in in_shapes}
            if len(sizes) > 1:
                raise GraphError(f"node {name!r} ({k}) receives inputs of sizes {sorted(sizes)}")
            shp = self._out_shape(name, node, next(iter(in_shapes)))
        self._shapes[name] = shp
        return shp

    def _out_shape(self, name: str, node: Any, s: tuple[int, ...]) -> tuple[int, ...]:
        k = kind(node)
        size = int(np.prod(s))
        if k in ("Affine", "Linear"):
            w = np.asarray(node.weight)
            if w.ndim != 2 or w.shape[1] != size:
                raise GraphError(
                    f"node {name!r} ({k}): weight {w.shape} cannot take an input of size {size} "
                    f"(shape {s}): shapes don't chain"
                )
            return (w.shape[0],)
        if k == "Conv2d":
            w = np.asarray(node.weight)
            if len(s) != 3:
                s = self._as_chw(name, s, w)
            if w.ndim != 4 or s[0] != w.shape[1] * int(node.groups):
                raise GraphError(f"node {name!r} (Conv2d): weight {w.shape} vs input {s}")
            if pair(node.dilation) != (1, 1):
                raise GraphError(f"node {name!r} (Conv2d): dilation is not supported")
            ho, wo = conv2d_out_hw(s[1:], w.shape[2:], pair(node.stride), self._padding(node))
            return (w.shape[0], ho, wo)
        if k in ("SumPool2d", "AvgPool2d"):
            if len(s) != 3:
                raise GraphError(f"node {name!r} ({k}): needs a (C, H, W) input, got {s}")
            ho, wo = conv2d_out_hw(
                s[1:], pair(node.kernel_size), pair(node.stride), pair(node.padding)
            )
            return (s[0], ho, wo)
        if k == "Flatten":
            nd = len(s)
            start = int(node.start_dim) % nd if nd else 0
            end = int(node.end_dim) % nd if nd else 0
            return (*s[:start], int(np.prod(s[start : end + 1])), *s[end + 1 :])
        if k in NEURONS:
            params = [np.asarray(v) for v in parameter_arrays(node)]
            for p in params:
                if p.size not in (1, size):
                    raise GraphError(
                        f"node {name!r} ({k}): parameter of shape {p.shape} for {size} neurons"
                    )
            return s
        if k == "MaxPool2d":
            if tuple(int(x) for x in node.input_shape) != tuple(s):
                raise GraphError(f"node {name!r} (MaxPool2d): input {s} vs {node.input_shape}")
            return tuple(int(x) for x in node.output_type["output"])
        if k in ("Scale", "Output"):
            return s
        if k == "SpikeAttention":
            if tuple(int(x) for x in node.input_shape) != tuple(s):
                raise GraphError(f"node {name!r} (SpikeAttention): inputs {s} vs "
                                 f"{tuple(node.input_shape)}")
            return tuple(s)
        raise GraphError(f"node {name!r}: unexpected {k}")

    def _as_chw(self, name: str, s: tuple[int, ...], w: np.ndarray) -> tuple[int, int, int]:
        node = self.nodes[name]
        hw = getattr(node, "input_shape", None)
        if hw is None:
            raise GraphError(f"node {name!r} (Conv2d): input shape {s} is not (C, H, W)")
        h, wd = pair(hw)
        c = int(np.prod(s)) // (h * wd)
        return (c, h, wd)

    @staticmethod
    def _padding(node: Any) -> tuple[int, int]:
        p = node.padding
        if isinstance(p, str):
            if p == "valid":
                return (0, 0)
            if p == "same":
                kh, kw = np.asarray(node.weight).shape[2:]
                return (kh // 2, kw // 2)
            raise GraphError(f"Conv2d padding {p!r} is not supported")
        return pair(p)

    # --- linear chains ------------------------------------------------------------------
    def apply(self, name: str, x: np.ndarray, with_bias: bool) -> np.ndarray:
        """One linear node on a batch: x [B, *in_shape] -> [B, *out_shape] (float64).

        ``with_bias``: add the node's bias (Affine, Conv2d); ``False`` gives the linear part.

        Raises:
            GraphError: ``name`` is not a linear node.
        """
        node = self.nodes[name]
        k = kind(node)
        b = x.shape[0]
        out_shape = self.shape(name)
        if k in ("Affine", "Linear"):
            y = x.reshape(b, -1) @ np.asarray(node.weight, dtype=np.float64).T
            if with_bias and k == "Affine":
                y = y + np.asarray(node.bias, dtype=np.float64).reshape(-1)
            return y
        if k == "Conv2d":
            w = np.asarray(node.weight, dtype=np.float64)
            in_shape = self.shape(self.preds[name][0])
            if len(in_shape) != 3:
                in_shape = self._as_chw(name, in_shape, w)
            y = conv2d(x.reshape(b, *in_shape), w, pair(node.stride), self._padding(node),
                       int(node.groups))
            bias = np.asarray(node.bias, dtype=np.float64)
            if with_bias and bias.size:
                y = y + np.broadcast_to(bias.reshape(-1), (w.shape[0],))[None, :, None, None]
            return y
        if k in ("SumPool2d", "AvgPool2d"):
            mode = "sum" if k == "SumPool2d" else "avg"
            return pool2d(x, pair(node.kernel_size), pair(node.stride), pair(node.padding), mode)
        if k == "Flatten":
            return x.reshape(b, *out_shape)
        if k == "MaxPool2d":
            return max_pool2d(x, tuple(int(v) for v in node.kernel_size))
        if k == "Scale":
            return x * np.asarray(node.scale, dtype=np.float64).reshape(self.shape(name))
        raise GraphError(f"node {name!r}: {k} is not a linear map")

    def paths_into(self, name: str) -> list[tuple[str, list[str]]]:
        """Every (source, [linear nodes from source to ``name``]) feeding ``name``: a source
        is the Input, a neuron or a product (spike attention).

        Raises:
            GraphError: a cycle, an Output feeding a node, or a node without input edge.
        """
        out: list[tuple[str, list[str]]] = []

        def walk(node: str, chain: list[str], seen: tuple[str, ...]) -> None:
            if node in seen:
                raise GraphError(f"node {node!r} is on a cycle: recurrent graphs are not supported")
            k = kind(self.nodes[node])
            if k in (*NEURONS, "Input", *PRODUCTS):  # a product is a synapse of its own
                out.append((node, chain))
                return
            if k == "Output":
                raise GraphError(f"Output node {node!r} feeds another node")
            if not self.preds[node]:
                raise GraphError(f"node {node!r} ({k}) has no input edge")
            for p in self.preds[node]:
                walk(p, [node, *chain], (*seen, node))

        for p in self.preds[name]:
            walk(p, [], (name,))
        if not out:
            raise GraphError(f"node {name!r} has no input edge")
        return out

    def run_chain(self, chain: list[str], x: np.ndarray, with_bias: bool) -> np.ndarray:
        """The linear nodes ``chain`` one after another on x [B, *source_shape] -> [B, n_out]
        (flat), the reference for :meth:`compose`."""
        for n in chain:
            x = self.apply(n, x, with_bias)
        return x.reshape(x.shape[0], -1)

    def compose(self, src: str, chain: list[str]) -> FDense | FConv:
        """One linear map (weights without bias) for the chain of linear nodes from ``src``.

        Pooling (kernel == stride, no padding) followed by a Conv2d becomes one strided
        convolution, Conv2d -> MaxPool2d a convolution with max pooling of its currents,
        anything else one dense matrix [n_out, n_in] (sources up to ``DENSE_LIMIT``).

        Raises:
            GraphError: a max pooling that does not directly follow one Conv2d, overlapping
                max pooling, or a dense chain from a source larger than ``DENSE_LIMIT``.
        """
        src_shape = self.shape(src)
        pools = [i for i, n in enumerate(chain) if kind(self.nodes[n]) == "MaxPool2d"]
        if pools:
            if pools != [len(chain) - 1] or len(chain) < 2 or \
                    kind(self.nodes[chain[-2]]) != "Conv2d":
                raise GraphError(f"max pooling of currents {chain[pools[0]]!r} must directly "
                                 "follow a Conv2d and feed a neuron population")
            conv = self._compose_conv(chain[:-1])
            if conv is None:
                raise GraphError(f"chain {chain} before {chain[-1]!r} is not one convolution")
            node = self.nodes[chain[-1]]
            if list(node.kernel_size) != list(node.stride):
                raise GraphError(f"node {chain[-1]!r}: only non-overlapping max pooling")
            return replace(conv, max_pool=tuple(int(v) for v in node.kernel_size),
                           out_shape=self.shape(chain[-1]))
        conv = self._compose_conv(chain)
        if conv is None and len(chain) > 1 and kind(self.nodes[chain[-1]]) == "Flatten":
            conv = self._compose_conv(chain[:-1])  # a trailing reshape keeps the convolution
        if conv is not None:
            return conv
        n_in = int(np.prod(src_shape))
        if n_in > DENSE_LIMIT:
            raise GraphError(f"chain {chain} from {src!r} is too large to compose densely")
        eye = np.eye(n_in).reshape(n_in, *src_shape)
        w = self.run_chain(chain, eye, with_bias=False).T  # [n_out, n_in]
        return FDense(weight=w)

    def bias_into(self, name: str) -> np.ndarray:
        """The constant input of ``name``: every linear node's bias counted once, carried
        through the linear nodes after it (all neuron and input values zero)."""
        memo: dict[str, np.ndarray] = {}

        def value(n: str) -> np.ndarray:
            if n in memo:
                return memo[n]
            k = kind(self.nodes[n])
            if k in (*NEURONS, "Input", *PRODUCTS):  # a product of spikes has no constant
                out = np.zeros((1, *self.shape(n)))
            else:
                x = sum(value(p) for p in self.preds[n])
                out = self.apply(n, np.asarray(x).reshape(1, *self.shape(self.preds[n][0])),
                                 with_bias=True)
            memo[n] = out
            return out

        total = sum(value(p).reshape(-1) for p in self.preds[name])
        return np.asarray(total, dtype=np.float64).reshape(-1)

    def _compose_conv(self, chain: list[str]) -> FConv | None:
        """[pool (kernel == stride, no padding) ...] + Conv2d  ->  one strided convolution."""
        if not chain or kind(self.nodes[chain[-1]]) != "Conv2d":
            return None
        conv = self.nodes[chain[-1]]
        w = np.asarray(conv.weight, dtype=np.float64)
        stride, padding = pair(conv.stride), self._padding(conv)
        in_shape = self.shape(self.preds[chain[-1]][0])
        if len(in_shape) != 3:
            in_shape = self._as_chw(chain[-1], in_shape, w)
        for name in reversed(chain[:-1]):
            node = self.nodes[name]
            k = kind(node)
            if k == "Flatten":
                continue
            if k not in ("SumPool2d", "AvgPool2d"):
                return None
            kp, sp, pp = pair(node.kernel_size), pair(node.stride), pair(node.padding)
            src = self.shape(self.preds[name][0])
            if kp != sp or pp != (0, 0) or len(src) != 3 or src[1] % kp[0] or src[2] % kp[1]:
                return None
            factor = 1.0 if k == "SumPool2d" else 1.0 / (kp[0] * kp[1])
            w = np.repeat(np.repeat(w, kp[0], axis=2), kp[1], axis=3) * factor
            stride = (stride[0] * kp[0], stride[1] * kp[1])
            padding = (padding[0] * kp[0], padding[1] * kp[1])
            in_shape = src
        out_shape = self.shape(chain[-1])
        return FConv(w, stride, padding, int(conv.groups), tuple(in_shape), tuple(out_shape))

    def order(self) -> list[str]:
        """Every node, each after its predecessors (shapes checked on the way).

        Raises:
            GraphError: whatever :meth:`shape` raises for some node.
        """
        for n in self.nodes:
            self.shape(n)
        order: list[str] = []
        seen: set[str] = set()

        def visit(n: str) -> None:
            if n in seen:
                return
            seen.add(n)
            for p in self.preds[n]:
                visit(p)
            order.append(n)

        for n in self.nodes:
            visit(n)
        return order


def _attention(view: NIRView, node: str, chain: list[str], target: str,
               rename: dict[str, str]) -> FSpikeAttention:
    """The SpikeAttention node ``node`` as a synapse into ``target``: it must read three
    neuron populations directly and feed the neuron with no linear map in between."""
    att = view.nodes[node]
    if chain:
        raise GraphError(f"SpikeAttention {node!r} must feed a neuron population directly, "
                         f"not through {chain}")
    roles = att.input_names
    if sorted(roles) != sorted(view.preds[node]):
        raise GraphError(f"SpikeAttention {node!r}: inputs {roles} (q, k, v) are not its "
                         f"predecessors {view.preds[node]}")
    for r in roles:
        if kind(view.nodes[r]) not in NEURONS:
            raise GraphError(f"SpikeAttention {node!r}: input {r!r} is a "
                             f"{kind(view.nodes[r])}, not a neuron population (spikes)")
    return FSpikeAttention(node, tuple(rename.get(r, r) for r in roles), target,
                           view.shape(node), int(att.heads), float(att.scale))


def _input_spec(view: NIRView, meta: dict[str, Any], input_kind: str | None
                ) -> tuple[str, InputSpec]:
    """The one Input node's name and what the user feeds it: the kind (``input_kind``, else
    graded for a ``direct`` encoding, else spikes) and the largest value (``input_max``)."""
    inputs = [n for n, v in view.nodes.items() if kind(v) == "Input"]
    if len(inputs) != 1:
        raise GraphError(f"graph needs exactly one Input node, found {len(inputs)}")
    in_kind = input_kind or ("graded" if meta.get("encoding") == "direct" else "spikes")
    max_value = int(meta.get("input_max", 255 if in_kind == "graded" else 1))
    return inputs[0], InputSpec(shape=view.shape(inputs[0]), kind=in_kind, max_value=max_value)


def _incoming(view: NIRView, name: str, taken: set[str], in_name: str, scale: float
              ) -> list[FSynapse | FSpikeAttention]:
    """The synapses into the neuron or Output ``name``: one per path from a source, its
    chain of linear nodes composed; the Input's ``scale`` folded into its weights.
    ``taken``: synapse names already used (a linear node on several paths gets one each)."""
    rename = {in_name: INPUT}
    size = int(np.prod(view.shape(name)))
    incoming: list[FSynapse | FSpikeAttention] = []
    paths = view.paths_into(name)
    for src, chain in paths:
        if kind(view.nodes[src]) in PRODUCTS:
            incoming.append(_attention(view, src, chain, name, rename))
            continue
        pooled = [n for n in chain if kind(view.nodes[n]) == "MaxPool2d"]
        if pooled and sum(pooled[0] in c for _, c in paths) > 1:
            raise GraphError(f"max pooling {pooled[0]!r} takes the max of a sum of "
                             "several inputs: not expressible as synapses")
        # neuron straight into neuron: an identity synapse
        op = view.compose(src, chain) if chain else FDense(np.eye(size))
        if src == in_name:
            op = _scaled(op, scale)
        maps = [n for n in chain if kind(view.nodes[n]) in ("Affine", "Linear", "Conv2d")]
        label = (maps or chain)[-1] if chain else f"{src}_to_{name}"
        if label in taken | {s.name for s in incoming}:  # one linear node on several paths
            label = f"{label}_{src}_to_{name}"
        incoming.append(FSynapse(label, rename.get(src, src), name, op))
    return incoming


def _population(view: NIRView, name: str, incoming: list[FSynapse | FSpikeAttention],
                bias: np.ndarray, dt: float
                ) -> tuple[FPopulation, list[FSynapse | FSpikeAttention], str | None]:
    """The neuron node ``name`` as a population with one threshold, its incoming synapses
    rescaled (input gain and threshold normalisation), and a note on any approximation."""
    params = step_params(name, view.nodes[name], int(np.prod(view.shape(name))), dt)
    norm = normalise_threshold(name, params, bias)
    incoming = [_scale_rows(s, norm.input_scale) for s in incoming]
    pop = FPopulation(name, view.shape(name), params.beta, params.alpha, norm.threshold,
                      norm.bias)
    return pop, incoming, norm.note


def _build(view: NIRView, meta: dict[str, Any], dt: float, input_kind: str | None,
           input_scale: float | None, timesteps: int | None) -> FGraph:
    """The float graph of ``view``: populations, readouts, composed and balanced synapses."""
    in_name, in_spec = _input_spec(view, meta, input_kind)
    scale = float(meta.get("input_scale", 1.0)) if input_scale is None else input_scale
    pops: dict[str, FPopulation] = {}
    readouts: dict[str, FReadout] = {}
    syns: list[FSynapse | FSpikeAttention] = []
    notes: list[str] = []
    for name in view.order():
        k = kind(view.nodes[name])
        if k not in (*NEURONS, "Output"):
            continue
        incoming = _incoming(view, name, {s.name for s in syns}, in_name, scale)
        bias = view.bias_into(name)
        if k == "Output":
            readouts[name] = FReadout(name, view.shape(name), bias)
        else:
            pops[name], incoming, note = _population(view, name, incoming, bias, dt)
            notes.extend([note] if note else [])
        syns.extend(incoming)
    for s in syns:
        if s.source in readouts:
            raise GraphError(f"Output node {s.source!r} feeds {s.target!r}")
    if not readouts and not pops:
        raise GraphError("graph has no neurons and no Output node")
    syns = balance_delays([*pops, *readouts], syns)
    t = timesteps or int(meta.get("timesteps", 0) or 0)
    if t <= 0:
        raise GraphError("the graph records no timesteps: pass --timesteps")
    return FGraph(in_spec, pops, readouts, syns, t, dict(meta), notes)


def _scaled(op: FDense | FConv, scale: float, weight: np.ndarray | None = None) -> FDense | FConv:
    """``op`` with its weights (or ``weight``) times ``scale``."""
    return replace(op, weight=(op.weight if weight is None else weight) * scale)


def _scale_rows(s: FSynapse, per: np.ndarray) -> FSynapse:
    """Scale each target neuron's incoming weights by per[i] (exact for Dense; Conv needs the
    factor to be uniform per output channel)."""
    if np.allclose(per, 1.0):
        return s
    if isinstance(s, FSpikeAttention):  # one scale for the whole product
        if not np.allclose(per, per[0]):
            raise GraphError(f"synapse {s.name!r}: per-neuron gains/thresholds vary behind "
                             "a spike attention")
        return replace(s, scale=s.scale * float(per[0]))
    if isinstance(s.op, FDense):
        return replace(s, op=FDense(s.op.weight * per[:, None]))
    co = s.op.out_shape[0]
    per_c = per.reshape(co, -1)
    if not np.allclose(per_c, per_c[:, :1]):
        raise GraphError(
            f"synapse {s.name!r}: per-neuron gains/thresholds vary within a conv channel"
        )
    w = s.op.weight * per_c[:, 0][:, None, None, None]
    return replace(s, op=_scaled(s.op, 1.0, weight=w))


def import_nir(
    source: Any,
    *,
    dt: float | None = None,
    timesteps: int | None = None,
    input_kind: str | None = None,
    input_scale: float | None = None,
) -> FGraph:
    """A NIR graph (object or file path) as a float graph ready for quantization.

    ``dt`` (s): the time step of the discretization (default: the graph's ``dt`` metadata,
    else snnTorch's 1e-4); ``timesteps``: steps per sample if the graph records none;
    ``input_kind``: ``"spikes"`` (0/1) or ``"graded"`` (integers up to ``input_max``), default
    from the graph's ``encoding``; ``input_scale``: float value of one integer input unit
    (default: the graph's ``input_scale``, else 1).

    Raises:
        GraphError: metadata Loihi cannot honour (reset other than to zero, ``>=`` spikes), an
            unknown input kind, a node or structure that cannot be mapped (named), or no
            timesteps.
    """
    g = read_nir(source) if isinstance(source, str | Path) else source
    meta = {k: meta_value(v) for k, v in dict(getattr(g, "metadata", {}) or {}).items()}
    reset = meta.get("reset")
    if reset not in (None, "zero"):
        raise GraphError(
            f"graph metadata says reset={reset!r}; Loihi's LIF only resets v to zero"
        )
    if meta.get("spike_comparison") not in (None, ">"):
        raise GraphError("graph fires on '>=' but Loihi fires on '>' (strictly greater)")
    if dt is None:
        dt = float(meta.get("dt", DEFAULT_DT))
    if input_kind not in (None, "spikes", "graded"):
        raise GraphError(f"input kind must be 'spikes' or 'graded', not {input_kind!r}")
    return _build(NIRView(g), meta, dt, input_kind, input_scale, timesteps)
