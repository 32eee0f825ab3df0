"""The compile step of the event simulator: every Dense and Conv becomes a fan-out table.

A fan-out table is CSR over the synapse's source neurons: row ``j`` lists the targets and
integer weights of source neuron ``j``, zero weights dropped, so a row's length is the number
of synaptic events one spike of ``j`` causes (docs/event_sim.md, "Fan-out tables").
:func:`compile_synapse` builds the table once, before the run, together with what the step
kernels of :mod:`targets.event_sim.kernels` read from it (targets and weights in int32 where
they fit, the table as dense rows where it is dense enough).

numpy only (no torch): the simulator also runs in the Lava environment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import GraphError
from core.graph import INPUT, Conv, Dense, QGraph
from core.ops import conv2d_out_hw

# int32's range: |x| < 2**31 fits (a target index always does; a weight nearly always)
INT32_LIMIT = 2**31


@dataclass
class FanOut:
    """Fan-out table of one synapse: CSR over source neurons.

    The targets of source neuron j are ``indices[indptr[j]:indptr[j+1]]`` and the integer
    weights of those connections are the same slice of ``weights``; zero weights are dropped,
    so the length of a row is the number of synaptic events one spike of j causes.
    """

    indptr: np.ndarray  # int64 [n_in + 1]
    indices: np.ndarray  # int64 [nnz], target neuron (flat, C-order)
    weights: np.ndarray  # int64 [nnz]
    n_out: int

    @property
    def n_in(self) -> int:
        """Number of source neurons (rows)."""
        return len(self.indptr) - 1

    @property
    def fanout(self) -> np.ndarray:
        """Number of nonzero outgoing weights of every source neuron: int64 [n_in]."""
        return np.diff(self.indptr)

    def to_dense(self) -> np.ndarray:
        """The equivalent int64 matrix [n_out, n_in] (for tests and small graphs)."""
        m = np.zeros((self.n_out, self.n_in), dtype=np.int64)
        src = np.repeat(np.arange(self.n_in), self.fanout)
        m[self.indices, src] = self.weights
        return m


def _csr(src: np.ndarray, tgt: np.ndarray, w: np.ndarray, n_in: int, n_out: int) -> FanOut:
    """Table from connection lists (source, target, weight), zeros dropped, rows sorted."""
    keep = w != 0
    src, tgt, w = src[keep], tgt[keep], w[keep]
    # one int64 key per connection (source-major, then target; n_in * n_out < 2**63 for any
    # table that fits in memory): one argsort, about 4x faster than np.lexsort((tgt, src))
    order = np.argsort(src.astype(np.int64) * max(n_out, 1) + tgt)
    src, tgt, w = src[order], tgt[order], w[order]
    indptr = np.zeros(n_in + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n_in), out=indptr[1:])
    return FanOut(indptr, tgt.astype(np.int64), w.astype(np.int64), n_out)


def dense_table(weight: np.ndarray) -> FanOut:
    """Fan-out table of a Dense integer weight matrix [n_out, n_in]."""
    w = np.asarray(weight, dtype=np.int64)
    n_out, n_in = w.shape
    src, tgt = np.nonzero(w.T)
    return _csr(src, tgt, w.T[src, tgt], n_in, n_out)


def conv_table(
    weight: np.ndarray,
    in_shape: tuple[int, int, int],
    out_shape: tuple[int, int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    groups: int,
) -> FanOut:
    """Fan-out table of a PyTorch Conv2d (cross-correlation) over C-order (C, H, W) indices.

    ``weight``: integers [C_out, C_in / groups, kh, kw]. Output (o, y, x) receives
    ``weight[o, c - g*C_in_g, i, j] * in[c, y*sy-py+i, x*sx-px+j]`` for the channels c of o's
    group g; positions in the zero padding have no neuron.

    Raises:
        GraphError: the weight, groups, stride and padding do not map ``in_shape`` to
            ``out_shape``.
    """
    w = np.asarray(weight, dtype=np.int64)
    c_in, h, wd = in_shape
    c_out, ho, wo = out_shape
    k_out, c_per_group, kh, kw = w.shape
    if k_out != c_out or c_per_group * groups != c_in or c_out % groups:
        raise GraphError(f"conv weight {w.shape} (groups={groups}) does not map "
                         f"{in_shape}->{out_shape}")
    if conv2d_out_hw((h, wd), (kh, kw), stride, padding) != (ho, wo):
        raise GraphError(f"conv {in_shape}->{out_shape}: output size disagrees with kernel "
                         f"{(kh, kw)}, stride {stride}, padding {padding}")
    o, cl, i, j = np.nonzero(w)  # one entry per nonzero kernel weight
    val = w[o, cl, i, j]
    ci = (o // (c_out // groups)) * c_per_group + cl
    yo = np.arange(ho)[None, :, None]
    xo = np.arange(wo)[None, None, :]
    y = yo * stride[0] - padding[0] + i[:, None, None]  # [K, Ho, 1]
    x = xo * stride[1] - padding[1] + j[:, None, None]  # [K, 1, Wo]
    shape = (len(o), ho, wo)
    valid = np.broadcast_to((y >= 0) & (y < h), shape) & np.broadcast_to((x >= 0) & (x < wd), shape)
    src = np.broadcast_to(ci[:, None, None] * (h * wd) + y * wd + x, shape)[valid]
    tgt = np.broadcast_to(o[:, None, None] * (ho * wo) + yo * wo + xo, shape)[valid]
    wts = np.broadcast_to(val[:, None, None], shape)[valid]
    return _csr(src, tgt, wts, c_in * h * wd, c_out * ho * wo)


def fanout_table(s: Dense | Conv) -> FanOut:
    """Fan-out table of a synapse over the source entries it reads (its ``source_slice``).

    A Conv's table maps to the convolution's own output (``conv_shape``); its max pooling,
    if any, acts on the accumulated currents afterwards.

    Raises:
        GraphError: a Conv whose shapes disagree (see :func:`conv_table`).
    """
    if isinstance(s, Conv):
        return conv_table(s.weight, s.in_shape, s.conv_shape, s.stride, s.padding, s.groups)
    return dense_table(s.weight)


@dataclass(frozen=True, eq=False)
class CompiledSynapse:
    """A Dense or Conv ready for the event loop: its table and its kernels' inputs."""

    spec: Dense | Conv
    table: FanOut
    # the source carries integers, not spikes: every event is a MAC (bit planes are binary)
    graded: bool
    # what the kernel reads (targets.event_sim.kernels): the table's targets and weights in
    # int32 where they fit (half the memory traffic per event), else int64
    indices: np.ndarray
    weights: np.ndarray
    # the table as rows [n_in, n_out] (int32 where the weights fit) when it is dense enough,
    # else None
    rows: np.ndarray | None


def _compact(a: np.ndarray) -> np.ndarray:
    """``a`` as int32 when every entry fits (a kernel reads half the bytes), else int64."""
    if a.size == 0 or int(np.abs(a).max()) < INT32_LIMIT:
        return a.astype(np.int32)
    return a.astype(np.int64)


def compile_synapse(s: Dense | Conv, graph: QGraph,
                    dense_rows_min_density: float) -> CompiledSynapse:
    """Compile one Dense or Conv of ``graph`` for the event loop.

    ``dense_rows_min_density``: a table with at least this fraction of nonzero entries
    (``nnz >= density * n_in * n_out``) is also kept as dense rows; adding the rows of the
    active sources is then faster than scattering their CSR entries (measured; see
    ``targets.event_sim.DENSE_ROWS_MIN_DENSITY``). Both kernels give the same integers.

    Raises:
        GraphError: a Conv whose shapes disagree (see :func:`conv_table`).
    """
    t = fanout_table(s)
    graded = (s.source == INPUT and not graph.input.binary) or (
        s.source in graph.populations and graph.populations[s.source].graded)  # spike counts
    dense = len(t.weights) >= dense_rows_min_density * t.n_in * t.n_out
    rows = _compact(t.to_dense().T.copy()) if dense and len(t.weights) else None
    return CompiledSynapse(s, t, graded, _compact(t.indices), _compact(t.weights), rows)
