"""How our graph's arrays map onto Lava's: layouts, conv flips, timelines (plain numpy).

Nothing here imports Lava, so it is tested in the main environment
(tests/targets/test_loihi.py, "layout" tests). Two layouts meet:

- ours: every node is a flat vector in C order over its (C, H, W) shape, and a ``Conv`` is
  PyTorch's cross-correlation with weights ``[C_out, C_in/groups, kh, kw]``;
- Lava's ``lava.proc.conv`` works on (x, y, channel) = (W, H, C) and is a true convolution
  with weights ``(C_out, kx, ky, C_in/groups)`` (see lava/proc/conv/utils.py, ``conv_scipy``).

Every node a Lava ``Conv`` touches therefore lives in Lava's (W, H, C) layout; all others stay
flat. :func:`lava_to_ours` is the permutation between the two; records are converted back to
our order with :func:`records_to_ours` before a target returns them.
"""

from __future__ import annotations

import numpy as np

from core import fixedpoint as fx
from core.errors import GraphError
from core.graph import INPUT, LAVA_CONV_FIELD_MAX, Conv, QGraph, runs_as_dense_on_lava
from core.ops import conv2d

Layout = tuple[int, int, int] | None  # a node's (C, H, W) when it uses Lava's conv layout


def lava_to_ours(chw: Layout, size: int) -> np.ndarray:
    """Index map [size]: element i of a node's flat Lava vector is element ``map[i]`` of ours.

    ``chw`` is the node's (C, H, W) (our flat C order over it; Lava's is C order over
    (W, H, C)); ``None`` (a flat node) gives the identity.
    """
    if chw is None:
        return np.arange(size)
    return np.arange(size).reshape(chw).transpose(2, 1, 0).reshape(-1)


def lava_shape(chw: Layout, size: int) -> tuple[int, ...]:
    """A node's Lava port shape: ``(W, H, C)`` in the conv layout, else ``(size,)``."""
    return (size,) if chw is None else (chw[2], chw[1], chw[0])


def node_layouts(graph: QGraph) -> dict[str, Layout]:
    """Every node's layout: its (C, H, W) when a Lava ``Conv`` reads or writes it (taken from
    the conv's ``in_shape`` / ``out_shape``, even for a population declared flat), else None.

    Raises:
        GraphError: two convolutions see one node with different (C, H, W) shapes.
    """
    layout: dict[str, Layout] = {n: None for n in (INPUT, *graph.populations, *graph.readouts)}
    for s in graph.synapses:
        if not isinstance(s, Conv):
            continue
        ends = [(s.target, tuple(s.out_shape))]
        if not runs_as_dense_on_lava(s):  # a dense map reads its source flat
            ends.append((s.source, tuple(s.in_shape)))
        for node, chw in ends:
            if layout[node] is not None and layout[node] != chw:
                raise GraphError(
                    f"node {node!r} is seen as {layout[node]} and as {chw} by different "
                    "convolutions: the Lava target needs one spatial layout per node"
                )
            layout[node] = chw  # type: ignore[assignment]
    return layout


def lava_conv_weight(weight: np.ndarray) -> np.ndarray:
    """Our cross-correlation weights [C_out, C_in/g, kh, kw] -> Lava's true-convolution weights
    (C_out, kx, ky, C_in/g), int64: transpose to (x=W, y=H) order, then flip both spatial axes
    (a true convolution walks the kernel backwards)."""
    w = np.asarray(weight, dtype=np.int64).transpose(0, 3, 2, 1)
    return np.ascontiguousarray(w[:, ::-1, ::-1, :])


def lava_conv_groups(weight: np.ndarray, groups: int,
                     limit: int = LAVA_CONV_FIELD_MAX) -> tuple[np.ndarray, int]:
    """The same grouped convolution with at most ``limit`` groups, for Lava's ``Conv``, which
    keeps ``groups`` in an 8-bit signed Var (128 wraps to -128 and the process hangs).

    ``weight`` is ours, [C_out, C_in/groups, kh, kw]. Returns ``(weight', groups')`` with
    ``groups'`` the largest divisor of ``groups`` that is at most ``limit``: every
    ``m = groups / groups'`` consecutive groups become one, whose weight is block-diagonal
    over them (zeros between the channels of different original groups), so each output
    still reads exactly its own group's input channels; ``weight'`` is [C_out,
    m * C_in/groups, kh, kw], int64. ``groups <= limit`` returns the inputs unchanged.
    """
    w = np.asarray(weight, dtype=np.int64)
    if groups <= limit:
        return w, groups
    merged = max(d for d in range(1, limit + 1) if groups % d == 0)
    m = groups // merged
    c_out, cpg = w.shape[0], w.shape[1]
    opg = c_out // groups  # output channels per original group
    out = np.zeros((c_out, m * cpg, *w.shape[2:]), dtype=np.int64)
    for o in range(c_out):
        j = (o // opg) % m  # the original group's place within its merged group
        out[o, j * cpg : (j + 1) * cpg] = w[o]
    return out, merged


def conv_matrix(s: Conv) -> np.ndarray:
    """The int64 matrix [prod(conv_shape), prod(in_shape)] (our C order on both sides) of a
    Conv synapse's cross-correlation before any max pooling: column j is the conv of the
    j-th unit input."""
    n_in = int(np.prod(s.in_shape))
    basis = np.eye(n_in, dtype=np.int64).reshape(n_in, *s.in_shape)
    out = conv2d(basis, np.asarray(s.weight, dtype=np.int64), s.stride, s.padding, s.groups)
    return np.rint(out).astype(np.int64).reshape(n_in, -1).T


def lava_max_pool(x: np.ndarray, pool: tuple[int, int]) -> np.ndarray:
    """``fixedpoint.max_pool2d`` in Lava's layout: x is (W, H, C), ``pool`` is (kh, kw) as in
    the graph; columns/rows at the end that do not fill a window are dropped. Returns
    (W // kw, H // kh, C), same dtype."""
    kh, kw = int(pool[0]), int(pool[1])
    w, h, c = x.shape
    wo, ho = w // kw, h // kh
    return x[: wo * kw, : ho * kh].reshape(wo, kw, ho, kh, c).max(axis=(1, 3))


def spikes_to_ours(x: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """A node's spikes as they arrive at a port (its Lava layout, any shape) -> int64 0/1
    vector [perm.size] in our flat order (``perm`` from :func:`lava_to_ours`)."""
    ours = np.empty(perm.size, dtype=np.int64)
    ours[perm] = np.asarray(x).reshape(-1) != 0
    return ours


def records_to_ours(data: np.ndarray, perm: np.ndarray, steps: int) -> np.ndarray:
    """A recording in Lava's layout [*lava_shape, steps] -> int64 [steps, size] in our flat
    order (``perm`` from :func:`lava_to_ours`)."""
    flat = np.asarray(data).astype(np.int64).reshape(-1, steps).T
    res = np.empty_like(flat)
    res[:, perm] = flat
    return res


def message_bits(graph: QGraph, source: str) -> int:
    """Lava's ``num_message_bits`` for a synapse from ``source``: 0 sends binary spikes; a
    graded input (not bit planes) sends its integer value, with at least 8 bits (Loihi 2's
    graded spike payload) and enough bits for ``graph.input.max_value``; a population of a
    graded reset mode (its spikes are counts, ``LIFPopulation.graded``) sends 24 bits, the
    width of Lava's spike port."""
    if source in graph.populations and graph.populations[source].graded:
        return fx.UV_BITS
    if source != INPUT or graph.input.binary or graph.input.max_value <= 1:
        return 0
    return max(8, int(graph.input.max_value).bit_length())


def to_timeline(x: np.ndarray, depth: int) -> np.ndarray:
    """Samples back to back: int [N, T, size] -> int64 [N*T + depth, size], ``depth`` zero
    steps at the end so that the deepest node sees the last input step."""
    n, t, size = x.shape
    out = np.zeros((n * t + depth, size), dtype=np.int64)
    out[: n * t] = x.reshape(n * t, size)
    return out
