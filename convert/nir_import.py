"""Read any NIR graph (ours, snnTorch's, Norse's, rockpool's) into a :class:`FGraph`.

The rewrites done here are exact in float:
- every chain of linear nodes (Affine, Linear, Conv2d, Conv1d, pooling, Flatten, Scale) between
  two neuron nodes becomes one synapse; pooling followed by a convolution becomes one strided
  convolution with an expanded kernel, a chain into a (C, H, W) map one convolution (checked
  exact), any other chain one dense matrix (:class:`NIRView`); a Conv1d is a Conv2d with H = 1;
- biases along a chain become the target population's per-step bias;
- NIR's continuous-time parameters become per-step factors with the graph's ``dt`` (given,
  recorded, pinned by an exporter's convention, or guessed with a warning:
  :func:`convert.neuron_params.resolve_dt`), forward Euler, and the input gain ``dt * r / tau``
  is folded into the incoming weights; per-neuron thresholds are normalised to one value per
  population (Loihi has one ``vth`` per process) by scaling each neuron's incoming weights and
  bias, and a node whose neurons have different time constants is split into one population
  per decay (:mod:`convert.neuron_params`);
- ``LIF``/``CubaLIF``/``IF``/``Threshold`` nodes become populations; the non-spiking ``LI`` and
  ``I`` become readouts (their membrane: ``FReadout.beta``), only directly into an ``Output``;
- a leading batch axis of size 1 on the Input is dropped (nirtorch's ``(1, C, H, W)``);
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
    DEFAULT_DT,
    INTEGRATORS,
    NEURONS,
    decay_groups,
    kind,
    normalise_threshold,
    parameter_arrays,
    resolve_dt,
    step_params,
)
from core.errors import UserError
from core.fixedpoint import max_pool2d
from core.graph import INPUT, GraphError, InputSpec, balance_delays
from core.nir_ext import flatten_subgraphs, read_nir
from core.nir_io import meta_value
from core.ops import conv2d, conv2d_out_hw, pair, pool2d

LINEAR = ("Affine", "Linear", "Conv2d", "Conv1d", "SumPool2d", "AvgPool2d", "Flatten", "Scale",
          "MaxPool2d", "Delay")  # a Delay is the identity map plus a model delay of its synapse
CONVS = ("Conv2d", "Conv1d")  # a Conv1d is a Conv2d with H = 1: (C, L) maps are (C, 1, L)
# MaxPool2d is our extension node (max of currents): allowed only as Conv2d -> MaxPool2d -> neuron.
# SpikeAttention (extension): the product of three populations' spikes, straight into a neuron.
PRODUCTS = ("SpikeAttention",)
SUPPORTED = (*NEURONS, *INTEGRATORS, *LINEAR, *PRODUCTS, "Input", "Output")
__all__ = ["DEFAULT_DT", "NIRView", "import_nir", "timesteps_for"]
DENSE_LIMIT = 20000  # largest source a non-conv chain is composed from (an n x n identity)


def _finite(name: str, k: str, field: str, a: np.ndarray) -> None:
    """Refuse a NaN or infinite entry of the parameter ``field`` of node ``name`` (type ``k``).

    Raises:
        GraphError: naming the node, the field and the first bad value.
    """
    bad = ~np.isfinite(a)
    if bad.any():
        raise GraphError(f"node {name!r} ({k}): {field} = {a[bad].reshape(-1)[0]} is not a "
                         "finite number")


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
        g = flatten_subgraphs(g)  # snnTorch's RLeaky/RSynaptic: nested subgraphs
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
            if k not in SUPPORTED:
                raise GraphError(
                    f"node {name!r} is a NIR {k}, which neurodeploy cannot map to Loihi "
                    f"(supported: {', '.join(SUPPORTED)})"
                )

    # --- shapes -------------------------------------------------------------------------
    def shape(self, name: str) -> tuple[int, ...]:
        """The output shape of node ``name`` (inferred from the Input node forward; on a loop,
        from its edges that come from outside the loop).

        Raises:
            GraphError: the node is on a loop that no input reaches, has no input edge,
                receives inputs of different sizes, or its parameters do not fit its input.
        """
        shp = self._infer(name, ())
        if shp is None:
            raise GraphError(f"node {name!r} is on a loop that no input reaches")
        return shp

    def _infer(self, name: str, _stack: tuple[str, ...]) -> tuple[int, ...] | None:
        """:meth:`shape`, or None when every input edge of ``name`` comes back from a node
        whose shape is being inferred (``_stack``: a loop's back edge, checked by
        :meth:`order` once the loop's shapes are known)."""
        if name in self._shapes:
            return self._shapes[name]
        if name in _stack:
            return None
        node = self.nodes[name]
        k = kind(node)
        if k == "Input":
            shp = self._input_shape(name, node)
        else:
            preds = self.preds[name]
            if not preds:
                raise GraphError(f"node {name!r} ({k}) has no input edge")
            in_shapes = {self._infer(p, (*_stack, name)) for p in preds} - {None}
            if not in_shapes:
                return None
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
            _finite(name, k, "weight", np.asarray(w, dtype=np.float64))
            if k == "Affine":
                _finite(name, k, "bias", np.asarray(node.bias, dtype=np.float64))
            if w.ndim != 2 or w.shape[1] != size:
                raise GraphError(
                    f"node {name!r} ({k}): weight {w.shape} cannot take an input of size {size} "
                    f"(shape {s}): shapes don't chain"
                )
            return (w.shape[0],)
        if k in CONVS:
            w, stride, padding, groups = self._conv(name)
            s = self._conv_input(name, s)
            if s[0] != w.shape[1] * groups:
                raise GraphError(f"node {name!r} ({k}): weight {np.asarray(node.weight).shape} "
                                 f"vs input {s if k == 'Conv2d' else (s[0], s[2])}")
            if any(h + 2 * p < kk for h, p, kk in zip(s[1:], padding, w.shape[2:], strict=True)):
                raise GraphError(f"node {name!r} ({k}): kernel {w.shape[2:]} is larger than its "
                                 f"padded input {s[1:]}")
            ho, wo = conv2d_out_hw(s[1:], w.shape[2:], stride, padding)
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
        if k in (*NEURONS, *INTEGRATORS):
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
        if k == "Scale":
            _finite(name, k, "scale", np.asarray(node.scale, dtype=np.float64))
            if np.asarray(node.scale).size not in (1, size):
                raise GraphError(f"node {name!r} (Scale): {np.asarray(node.scale).size} factors "
                                 f"for an input of size {size}")
            return s
        if k == "Output":
            return s
        if k == "Delay":
            d = np.asarray(node.delay, dtype=np.float64)
            _finite(name, k, "delay", d)
            if d.size not in (1, size) or np.any(d < 0):
                raise GraphError(f"node {name!r} (Delay): delay must be >= 0 s, one value or "
                                 f"one per element of its input ({size})")
            return s
        if k == "SpikeAttention":
            if tuple(int(x) for x in node.input_shape) != tuple(s):
                raise GraphError(f"node {name!r} (SpikeAttention): inputs {s} vs "
                                 f"{tuple(node.input_shape)}")
            return tuple(s)
        raise GraphError(f"node {name!r}: unexpected {k}")

    def _input_shape(self, name: str, node: Any) -> tuple[int, ...]:
        """The shape of one timestep at the Input node ``name``, without a leading batch axis
        of size 1 (nirtorch-based exporters write ``(1, C, H, W)`` or ``(1, C, L)``; the
        neuron parameters after it, ``(1, C, H, W)``, are read by size and need nothing).

        A leading 1 is kept where it is a channel axis: ``(1, H, W)`` into a Conv2d or a
        pooling, ``(1, L)`` into a Conv1d. A ``(C, L)`` map into Conv1d nodes is ``(C, 1, L)``
        (a Conv1d is a Conv2d with H = 1; NIR's integer file needs the shapes to chain)."""
        raw = tuple(int(x) for x in np.asarray(next(iter(node.input_type.values()))).ravel())
        succ = [b for b, ps in self.preds.items() if name in ps]
        into_1d = bool(succ) and all(kind(self.nodes[b]) == "Conv1d" for b in succ)
        if len(raw) == 4 and raw[0] == 1:  # no NIR node reads a 4-D map: batch + (C, H, W)
            return raw[1:]
        if into_1d and len(raw) == 3 and raw[0] == 1 and all(
                self._conv(b)[0].shape[1] * self._conv(b)[3] == raw[1] for b in succ):
            raw = raw[1:]  # (1, C, L) into a Conv1d: batch + (C, L)
        if into_1d and len(raw) == 2:
            return (raw[0], 1, raw[1])  # a Conv1d's (C, L) map is a (C, 1, L) one
        return raw

    def _conv(self, name: str) -> tuple[np.ndarray, tuple[int, int], tuple[int, int], int]:
        """A Conv2d or Conv1d node as a 2-D convolution: (weight [C_out, C_in // groups, kh,
        kw] float64, stride, padding, groups); a Conv1d is one with kh = 1.

        Raises:
            GraphError: a weight of the wrong rank, a dilation other than 1, or a non-finite
                weight or bias.
        """
        node = self.nodes[name]
        k = kind(node)
        w = np.asarray(node.weight, dtype=np.float64)
        rank = 4 if k == "Conv2d" else 3
        if w.ndim != rank:
            raise GraphError(f"node {name!r} ({k}): weight of shape {w.shape} is not "
                             f"{rank}-dimensional")
        _finite(name, k, "weight", w)
        _finite(name, k, "bias", np.asarray(getattr(node, "bias", 0.0), dtype=np.float64))
        groups = int(node.groups)
        if k == "Conv2d":
            if pair(node.dilation) != (1, 1):
                raise GraphError(f"node {name!r} (Conv2d): dilation is not supported")
            return w, pair(node.stride), self._padding(node), groups
        if int(np.asarray(node.dilation).reshape(-1)[0]) != 1:
            raise GraphError(f"node {name!r} (Conv1d): dilation is not supported")
        stride = int(np.asarray(node.stride).reshape(-1)[0])
        return w[:, :, None, :], (1, stride), (0, self._padding(node)[1]), groups

    def _conv_input(self, name: str, s: tuple[int, ...]) -> tuple[int, int, int]:
        """The (C, H, W) a Conv2d or Conv1d node reads its input ``s`` as (a Conv1d's (C, L)
        as (C, 1, L)); another rank is shaped by the node's ``input_shape``."""
        node = self.nodes[name]
        if kind(node) == "Conv1d":
            if len(s) == 2:
                return (s[0], 1, s[1])
            if len(s) == 3 and s[1] == 1:
                return (s[0], 1, s[2])
            length = getattr(node, "input_shape", None)
            if length is None:
                raise GraphError(f"node {name!r} (Conv1d): input shape {s} is not (C, L)")
            ell = int(np.asarray(length).reshape(-1)[-1])
            return (int(np.prod(s)) // ell, 1, ell)
        if len(s) == 3:
            return (s[0], s[1], s[2])
        return self._as_chw(name, s, np.asarray(node.weight))

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
        """A Conv2d's (ph, pw) or a Conv1d's (0, p); ``"same"`` and ``"valid"`` resolved."""
        p = node.padding
        if isinstance(p, bytes | np.bytes_):
            p = p.decode()
        k = np.asarray(node.weight).shape[2:]
        if isinstance(p, str):
            if p == "valid":
                return (0, 0)
            if p == "same" and all(kk % 2 == 1 for kk in k):
                return (k[0] // 2, k[-1] // 2) if len(k) == 2 else (0, k[0] // 2)
            raise GraphError(f"{kind(node)} padding {p!r} is not supported (with kernel {k})")
        return pair(p) if len(k) == 2 else (0, int(np.asarray(p).reshape(-1)[0]))

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
        if k in CONVS:
            w, stride, padding, groups = self._conv(name)
            in_shape = self._conv_input(name, self.shape(self.preds[name][0]))
            y = conv2d(x.reshape(b, *in_shape), w, stride, padding, groups)
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
        if k == "Delay":  # the time shift is its synapse's ``lag`` (:meth:`delay_steps`)
            return x
        if k == "Scale":
            scale = np.asarray(node.scale, dtype=np.float64).reshape(-1)
            return x * np.broadcast_to(scale, (int(np.prod(out_shape)),)).reshape(out_shape)
        raise GraphError(f"node {name!r}: {k} is not a linear map")

    def delay_steps(self, name: str, dt: float) -> int:
        """The ``Delay`` node ``name``'s delay (s) in steps of ``dt``.

        Raises:
            GraphError: a delay that is not a whole number of steps, or that differs between
                the elements (one delay per synapse on Loihi).
        """
        d = np.asarray(self.nodes[name].delay, dtype=np.float64).reshape(-1) / dt
        steps = np.rint(d)
        if not np.allclose(d, steps, rtol=0.0, atol=1e-6 * max(1.0, float(steps.max()))):
            raise GraphError(f"node {name!r} (Delay): delay {d[0] * dt:g} s is not a whole "
                             f"number of steps of dt = {dt:g} s")
        if np.any(steps != steps[0]):
            raise GraphError(f"node {name!r} (Delay): the delay differs between elements; "
                             "Loihi has one delay per synapse")
        return int(steps[0])

    def paths_into(self, name: str) -> list[tuple[str, list[str]]]:
        """Every (source, [linear nodes from source to ``name``]) feeding ``name``: a source
        is the Input, a neuron or a product (spike attention). A loop back into ``name``
        (neuron -> linear nodes -> the same neuron) is a path from ``name`` itself: a
        recurrent synapse.

        Raises:
            GraphError: a loop of linear nodes without a neuron (named), an Output feeding a
                node, or a node without input edge.
        """
        out: list[tuple[str, list[str]]] = []

        def walk(node: str, chain: list[str], seen: tuple[str, ...]) -> None:
            k = kind(self.nodes[node])
            if k in (*NEURONS, "Input", *PRODUCTS):  # a product is a synapse of its own
                out.append((node, chain))  # (``name`` itself: a recurrent synapse)
                return
            if node in seen:  # ``seen`` runs against the edges: reverse it
                loop = [*seen[seen.index(node):], node][::-1]
                raise GraphError(f"linear nodes {' -> '.join(map(repr, loop))} form a loop "
                                 "without a neuron: nothing breaks it into steps")
            if k == "Output":
                raise GraphError(f"Output node {node!r} feeds another node")
            if k in INTEGRATORS:
                raise GraphError(
                    f"node {node!r} ({k}) feeds {name!r}: a non-spiking {k} sends its membrane, "
                    "not spikes; it is supported only as a readout (directly into an Output)")
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
        if len(self.shape(chain[-1])) == 3:
            # into a (C, H, W) map: one convolution, which NIR can write (a dense map into a
            # shaped population it cannot): pooling with padding, on odd sizes, ...
            conv = self._compose_as_conv(src, chain)
            if conv is None:
                raise GraphError(
                    f"chain {chain} from {src!r} into a (C, H, W) map is not one convolution "
                    "(an integer graph can hold it only as one): not supported")
            return conv
        n_in = int(np.prod(src_shape))
        if n_in > DENSE_LIMIT:
            raise GraphError(f"chain {chain} from {src!r} is too large to compose densely")
        eye = np.eye(n_in).reshape(n_in, *src_shape)
        w = self.run_chain(chain, eye, with_bias=False).T  # [n_out, n_in]
        return FDense(weight=w)

    def _as_full_conv(self, name: str) -> tuple[np.ndarray, tuple[int, int],
                                                tuple[int, int]] | None:
        """A Conv2d, Conv1d, SumPool2d or AvgPool2d node as one convolution with groups = 1:
        (weight [C_out, C_in, kh, kw], stride, padding); a pooling is its diagonal kernel
        (ones, or 1 / (kh kw) for an average: zero padding counts, as in PyTorch). None for
        any other node."""
        k = kind(self.nodes[name])
        if k in CONVS:
            w, stride, padding, groups = self._conv(name)
            if groups == 1:
                return w, stride, padding
            c_out, c_per, kh, kw = w.shape
            full = np.zeros((c_out, c_per * groups, kh, kw))
            o_per = c_out // groups
            for g in range(groups):
                full[g * o_per:(g + 1) * o_per, g * c_per:(g + 1) * c_per] = \
                    w[g * o_per:(g + 1) * o_per]
            return full, stride, padding
        if k in ("SumPool2d", "AvgPool2d"):
            node = self.nodes[name]
            c = self.shape(name)[0]
            kh, kw = pair(node.kernel_size)
            w = np.zeros((c, c, kh, kw))
            w[np.arange(c), np.arange(c)] = 1.0 if k == "SumPool2d" else 1.0 / (kh * kw)
            return w, pair(node.stride), pair(node.padding)
        return None

    def _compose_as_conv(self, src: str, chain: list[str]) -> FConv | None:
        """The chain of convolutions and poolings from ``src`` (a trailing Flatten aside) as
        ONE convolution, when that is exact: each step's kernel composed into the next
        (kernel ``(k2 - 1) s1 + k1``, stride ``s1 s2``, padding ``p1 + p2 s1``), and the result
        checked against the chain itself (:meth:`run_chain`) on random inputs: zero padding or
        trailing rows a pooling drops can make the composition differ, and then it is None.
        None also for a chain with any other node."""
        nodes = chain[:-1] if kind(self.nodes[chain[-1]]) == "Flatten" else chain
        in_shape = self.shape(src)
        if len(in_shape) != 3 or not nodes:
            return None
        w = stride = padding = None
        for n in nodes:
            step = self._as_full_conv(n)
            if step is None:
                return None
            w2, s2, p2 = step
            if w is None:
                w, stride, padding = w2, s2, p2
                continue
            kh = (w2.shape[2] - 1) * stride[0] + w.shape[2]
            kw = (w2.shape[3] - 1) * stride[1] + w.shape[3]
            comp = np.zeros((w2.shape[0], w.shape[1], kh, kw))
            for u in range(w2.shape[2]):
                for v in range(w2.shape[3]):
                    r0, c0 = u * stride[0], v * stride[1]
                    comp[:, :, r0:r0 + w.shape[2], c0:c0 + w.shape[3]] += np.einsum(
                        "om,mihw->oihw", w2[:, :, u, v], w)
            padding = (padding[0] + p2[0] * stride[0], padding[1] + p2[1] * stride[1])
            stride = (stride[0] * s2[0], stride[1] * s2[1])
            w = comp
        out_shape = self.shape(nodes[-1])
        if w.shape[1] != in_shape[0] or (w.shape[0], *conv2d_out_hw(
                in_shape[1:], w.shape[2:], stride, padding)) != tuple(out_shape):
            return None
        probe = np.random.default_rng(0).normal(size=(3, *in_shape))
        want = self.run_chain(nodes, probe, with_bias=False)
        got = conv2d(probe, w, stride, padding, 1).reshape(3, -1)
        if not np.allclose(got, want, rtol=1e-9, atol=1e-9 * max(1.0, float(np.abs(want).max(
                initial=0.0)))):
            return None
        return FConv(w, stride, padding, 1, tuple(in_shape), tuple(out_shape))

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
        """[pool (kernel == stride, no padding) ...] + Conv2d  ->  one strided convolution
        (a Conv1d: one convolution with kh = 1, pooling before it is composed densely)."""
        if not chain or kind(self.nodes[chain[-1]]) not in CONVS:
            return None
        if kind(self.nodes[chain[-1]]) == "Conv1d" and len(chain) > 1:
            return None
        w, stride, padding, groups = self._conv(chain[-1])
        in_shape = self._conv_input(chain[-1], self.shape(self.preds[chain[-1]][0]))
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
        return FConv(w, stride, padding, groups, tuple(in_shape), tuple(out_shape))

    def order(self) -> list[str]:
        """Every node, each after its predecessors (shapes checked on the way).

        Raises:
            GraphError: whatever :meth:`shape` raises for some node.
        """
        for n in self.nodes:
            self.shape(n)
        for n in self.nodes:  # loops: the back edges' shapes, now known, must fit too
            sizes = {int(np.prod(self.shape(p))) for p in self.preds[n]}
            if kind(self.nodes[n]) != "Input" and len(sizes) > 1:
                raise GraphError(f"node {n!r} ({kind(self.nodes[n])}) receives inputs of "
                                 f"sizes {sorted(sizes)}")
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


def _incoming(view: NIRView, name: str, taken: set[str], in_name: str, scale: float,
              dt: float = 1.0, notes: list[str] | None = None
              ) -> list[FSynapse | FSpikeAttention]:
    """The synapses into the neuron or Output ``name``: one per path from a source, its
    chain of linear nodes composed; the Input's ``scale`` folded into its weights; the
    ``Delay`` nodes on a path (in steps of ``dt``) its model delay (``lag``; the ``delay`` of
    a recurrent synapse). ``taken``: synapse names already used (a linear node on several
    paths gets one each); ``notes``: where an approximation is reported."""
    rename = {in_name: INPUT}
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
        delays = [i for i, n in enumerate(chain) if kind(view.nodes[n]) == "Delay"]
        ops = [n for n in chain if kind(view.nodes[n]) != "Delay"]
        lag = sum(view.delay_steps(chain[i], dt) for i in delays)
        # neuron straight into neuron: an identity synapse (a 1x1 convolution between (C, H, W)
        # maps: NIR cannot write a dense map into a shaped node)
        op = view.compose(src, ops) if ops else _identity(view.shape(name))
        if src == in_name:
            op = _scaled(op, scale)
        maps = [n for n in chain if kind(view.nodes[n]) in ("Affine", "Linear", *CONVS)]
        label = (maps or chain)[-1] if chain else f"{src}_to_{name}"
        if label in taken | {s.name for s in incoming}:  # one linear node on several paths
            label = f"{label}_{src}_to_{name}"
        syn = FSynapse(label, rename.get(src, src), name, op)
        if lag and src == name:  # recurrent: its delay is the model's (core.graph.is_recurrent)
            syn = replace(syn, delay=lag)
        elif lag:  # deployed, the synapse takes at least its model delay
            syn = replace(syn, lag=lag, delay=lag)
            biased = [n for n in chain[:delays[-1]] if kind(view.nodes[n]) in ("Affine", *CONVS)
                      and np.any(np.asarray(getattr(view.nodes[n], "bias", 0.0)) != 0)]
            if biased and notes is not None:
                notes.append(f"{label}: the bias of {biased[0]} enters {name} from the first "
                             f"step of a sample (NIR's Delay would hold it back {lag} steps)")
        incoming.append(syn)
    return incoming


def _identity(shape: tuple[int, ...]) -> FDense | FConv:
    """The identity map of a node of ``shape``: a 1x1 convolution for a (C, H, W) map, else a
    dense identity matrix."""
    size = int(np.prod(shape))
    if len(shape) == 3:
        c = shape[0]
        return FConv(np.eye(c)[:, :, None, None], (1, 1), (0, 0), 1, tuple(shape), tuple(shape))
    return FDense(np.eye(size))


def _population(view: NIRView, name: str, incoming: list[FSynapse | FSpikeAttention],
                bias: np.ndarray, dt: float, index: np.ndarray | None = None,
                part: str | None = None
                ) -> tuple[FPopulation, list[FSynapse | FSpikeAttention], str | None]:
    """The neuron node ``name`` (or the neurons ``index`` of it, named ``part``) as a
    population with one threshold, its incoming synapses rescaled (input gain and threshold
    normalisation), and a note on any approximation."""
    params = step_params(name, view.nodes[name], int(np.prod(view.shape(name))), dt, index)
    norm = normalise_threshold(part or name, params, bias)
    incoming = [_scale_rows(s, norm.input_scale) for s in incoming]
    shape = view.shape(name) if index is None else (len(index),)
    pop = FPopulation(part or name, shape, params.beta, params.alpha, norm.threshold,
                      norm.bias)
    return pop, incoming, norm.note


def _integrator(view: NIRView, name: str, incoming: list[FSynapse | FSpikeAttention],
                bias: np.ndarray, dt: float, index: np.ndarray | None = None,
                part: str | None = None) -> tuple[FReadout, list[FSynapse | FSpikeAttention]]:
    """The non-spiking ``LI``/``I`` node ``name`` (or the neurons ``index`` of it, named
    ``part``) as a readout whose value is its membrane: ``v <- beta v + gain I + leak``, the
    gain folded into the incoming weights."""
    size = int(np.prod(view.shape(name)))
    p = step_params(name, view.nodes[name], size, dt, index)
    if any(isinstance(s, FSpikeAttention) for s in incoming):
        raise GraphError(f"node {name!r} ({p.kind}): a spike attention into a readout is not "
                         "supported (feed a population)")
    incoming = [_scale_rows(s, p.gain) for s in incoming]
    shape = view.shape(name) if index is None else (len(index),)
    return FReadout(part or name, shape, bias * p.gain + p.leak, beta=p.beta), incoming


def _into_integrator(view: NIRView, name: str) -> bool:
    """Whether the Output ``name`` shows an ``LI``/``I`` node (directly or through Flatten):
    that node is then the readout, and the Output only its name in the graph."""
    node = name
    while len(view.preds[node]) == 1:
        node = view.preds[node][0]
        k = kind(view.nodes[node])
        if k in INTEGRATORS:
            return True
        if k != "Flatten":
            return False
    return False


def _split(view: NIRView, name: str, groups: list[np.ndarray],
           incoming: list[FSynapse | FSpikeAttention]
           ) -> list[tuple[str, np.ndarray, list[FSynapse | FSpikeAttention]]]:
    """The node ``name`` cut into one part per decay group (Loihi has one ``du``/``dv`` per
    population): ``(part name, neuron indices, its incoming synapses)``, each synapse's rows
    of the target's neurons (dense; a conv becomes its dense map)."""
    parts = []
    for i, idx in enumerate(groups):
        part = f"{name}.d{i}"
        rows = [replace(s, name=f"{s.name}.d{i}", target=part,
                        op=FDense(_dense_weight(s, name)[idx])) for s in incoming]
        parts.append((part, idx, rows))
    return parts


def _dense_weight(s: FSynapse | FSpikeAttention, split: str) -> np.ndarray:
    """The [n_out, n_in] matrix of synapse ``s`` (a conv's dense map), to cut for the split
    population ``split``.

    Raises:
        GraphError: a spike attention or a max pooling (not a linear map of one source), or a
            conv too large to write densely.
    """
    if isinstance(s, FSpikeAttention) or (isinstance(s.op, FConv) and s.op.max_pool):
        raise GraphError(f"node {split!r}: its neurons have different time constants and "
                         f"must be split (one decay per population on Loihi), but synapse "
                         f"{s.name!r} cannot be cut per neuron (spike attention or max pooling)")
    if isinstance(s.op, FDense):
        return s.op.weight
    n_in = int(np.prod(s.op.in_shape))
    if n_in > DENSE_LIMIT:
        raise GraphError(f"node {split!r}: its neurons have different time constants and must "
                         f"be split, but conv {s.name!r} reads {n_in} inputs, too many to cut "
                         "densely")
    return s.apply(np.eye(n_in).reshape(n_in, *s.op.in_shape)).T


def _split_sources(syns: list[FSynapse | FSpikeAttention],
                   splits: dict[str, list[tuple[str, np.ndarray]]]
                   ) -> list[FSynapse | FSpikeAttention]:
    """Synapses that read a split population, cut by its parts' columns (an all-zero block
    dropped, one kept per synapse)."""
    out: list[FSynapse | FSpikeAttention] = []
    for s in syns:
        srcs = s.sources if isinstance(s, FSpikeAttention) else (s.source,)
        if not set(srcs) & set(splits):
            out.append(s)
            continue
        src = next(x for x in srcs if x in splits)
        if s.target.startswith(f"{src}.d") or s.target == src:
            raise GraphError(f"node {src!r}: its neurons have different time constants, and "
                             "a recurrent population cannot be split into several")
        w = _dense_weight(s, src)
        cut = [replace(s, name=f"{s.name}.s{j}", source=part, op=FDense(w[:, idx]))
               for j, (part, idx) in enumerate(splits[src])]
        out.extend([c for c in cut if np.any(c.op.weight)] or cut[:1])
    return out


def _build(view: NIRView, meta: dict[str, Any], dt: float, input_kind: str | None,
           input_scale: float | None, timesteps: int | None) -> FGraph:
    """The float graph of ``view``: populations, readouts, composed and balanced synapses.

    A neuron node whose neurons have different time constants becomes one population (or
    readout) per decay, ``<name>.d<i>`` (:func:`_split`)."""
    in_name, in_spec = _input_spec(view, meta, input_kind)
    scale = float(meta.get("input_scale", 1.0)) if input_scale is None else input_scale
    pops: dict[str, FPopulation] = {}
    readouts: dict[str, FReadout] = {}
    syns: list[FSynapse | FSpikeAttention] = []
    notes: list[str] = []
    splits: dict[str, list[tuple[str, np.ndarray]]] = {}
    for name in view.order():
        k = kind(view.nodes[name])
        if k not in (*NEURONS, *INTEGRATORS, "Output"):
            continue
        if k == "Output" and _into_integrator(view, name):
            continue  # the LI/I before it is the readout
        incoming = _incoming(view, name, {s.name for s in syns}, in_name, scale, dt, notes)
        bias = view.bias_into(name)
        if k == "Output":
            readouts[name] = FReadout(name, view.shape(name), bias)
            syns.extend(incoming)
            continue
        size = int(np.prod(view.shape(name)))
        groups = decay_groups(name, view.nodes[name], size, dt)
        parts = ([(name, None, incoming)] if len(groups) == 1
                 else _split(view, name, groups, incoming))
        if len(groups) > 1:
            splits[name] = [(part, idx) for part, idx, _ in parts]
        for part, idx, rows in parts:
            b = bias if idx is None else bias[idx]
            if k in INTEGRATORS:
                readouts[part], rows = _integrator(view, name, rows, b, dt, idx, part)
            else:
                pops[part], rows, note = _population(view, name, rows, b, dt, idx, part)
                notes.extend([note] if note else [])
            syns.extend(rows)
    for s in syns:
        if s.source in readouts:
            raise GraphError(f"Output node {s.source!r} feeds {s.target!r}")
    if splits:
        syns = _split_sources(syns, splits)
    if not readouts and not pops:
        raise GraphError("graph has no neurons and no Output node")
    syns = balance_delays([*pops, *readouts], syns)
    t = timesteps or 0
    if t <= 0:
        raise GraphError("the graph records no timesteps: pass --timesteps, or --input "
                         "inputs.npy ([sample, timestep, ...]: its T is used)")
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
    input_timesteps: int | None = None,
) -> FGraph:
    """A NIR graph (object or file path) as a float graph ready for quantization.

    ``dt`` (s): the time step of the discretization (default: the graph's ``dt`` metadata,
    else the step its neuron parameters pin by an exporter's convention, else snnTorch's 1e-4
    with a warning: :func:`convert.neuron_params.resolve_dt`); the float graph's metadata
    records it as ``dt``, with ``dt_source`` (given, recorded, inferred, guessed, default) and
    ``dt_detail`` (in words). ``timesteps``: steps per sample (default: the graph's);
    ``input_timesteps``: the T of the inputs it will run on (used when the graph records none;
    :func:`timesteps_for`); ``input_kind``: ``"spikes"`` (0/1) or ``"graded"`` (integers up to
    ``input_max``), default from the graph's ``encoding``; ``input_scale``: float value of one
    integer input unit (default: the graph's ``input_scale``, else 1).

    Raises:
        GraphError: metadata Loihi cannot honour (reset other than to zero, ``>=`` spikes), an
            unknown input kind, a node or structure that cannot be mapped (named), or no
            timesteps.
        UserError: ``timesteps`` or the graph's recorded T disagree with ``input_timesteps``.
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
    if input_kind not in (None, "spikes", "graded"):
        raise GraphError(f"input kind must be 'spikes' or 'graded', not {input_kind!r}")
    view = NIRView(g)
    step = resolve_dt(view.nodes, meta, dt)
    meta = {**meta, "dt": step.dt, "dt_source": step.source, "dt_detail": step.how}
    t = timesteps_for(meta.get("timesteps"), timesteps, input_timesteps)
    fg = _build(view, meta, step.dt, input_kind, input_scale, t)
    return replace(fg, notes=[step.warning, *fg.notes]) if step.warning else fg


def timesteps_for(recorded: Any, given: int | None, from_input: int | None) -> int | None:
    """The steps per sample to run: ``given`` (``--timesteps``), else the graph's ``recorded``
    T, else the input's (``from_input``, the T axis of an ``[N, T, ...]`` input file).

    Raises:
        UserError: ``given`` or ``recorded`` disagrees with ``from_input`` (one line that
            says what to pass), or a T that is not positive.
    """
    rec = int(recorded) if recorded not in (None, "", 0) else None
    for what, v in (("--timesteps", given), ("the input's timesteps", from_input)):
        if v is not None and int(v) <= 0:
            raise UserError(f"{what} must be positive, got {v}")
    if given:
        if from_input and int(from_input) != int(given):
            raise UserError(f"--timesteps {given} disagrees with the input, which has "
                            f"{from_input} timesteps ([sample, timestep, ...])")
        return int(given)
    if rec:
        if from_input and int(from_input) != rec:
            raise UserError(f"the input has {from_input} timesteps but the graph records "
                            f"timesteps={rec}; pass --timesteps {from_input} to run the graph "
                            f"for {from_input} steps, or give inputs of {rec} steps")
        return rec
    return int(from_input) if from_input else None
