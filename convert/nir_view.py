"""The NIR graph as the importer reads it (:class:`NIRView`): node shapes, and the chains of
linear nodes between neuron nodes composed into one synapse each (exact in float).

Split from :mod:`convert.nir_import`, which builds the float graph from this view. numpy only.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from convert.float_graph import (
    FConv,
    FDense,
)
from convert.neuron_params import (
    INTEGRATORS,
    NEURONS,
    kind,
    parameter_arrays,
)
from core.fixedpoint import max_pool2d
from core.graph import GraphError
from core.nir_ext import flatten_subgraphs
from core.ops import conv2d, conv2d_out_hw, pair, pool2d

LINEAR = ("Affine", "Linear", "Conv2d", "Conv1d", "SumPool2d", "AvgPool2d", "Flatten", "Scale",
          "MaxPool2d", "Delay")  # a Delay is the identity map plus a model delay of its synapse
CONVS = ("Conv2d", "Conv1d")  # a Conv1d is a Conv2d with H = 1: (C, L) maps are (C, 1, L)
# MaxPool2d is our extension node (max of currents): allowed only as Conv2d -> MaxPool2d -> neuron.
# SpikeAttention (extension): the product of three populations' spikes, straight into a neuron.
PRODUCTS = ("SpikeAttention",)
SUPPORTED = (*NEURONS, *INTEGRATORS, *LINEAR, *PRODUCTS, "Input", "Output")
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
