"""The compiled event loop of the simulator: fan-out of one synapse's active sources, per step.

Each kernel reads what the sources emitted at one step (``values`` [lanes, full source size],
bool spikes or int64 graded values; only the columns ``lo .. lo + n_in`` belong to this
synapse), skips every zero entry, and adds the fan-out of every nonzero one into ``acc``
[lanes, n_out] (int64, zeroed by the caller). It returns the number of synaptic events in the
first ``n_valid`` lanes and in the others (pipeline fill/drain, padding), as
:class:`~targets.event_sim.synapses.TableSynapse` counts them. Integer sums in int64, exactly
what the table describes: the output currents (exponent shift, Conv wrap, pooling) are computed
afterwards by :mod:`core.fixedpoint`, as before.

The kernels are compiled by numba (``@njit(cache=True)``; the compiled code is cached in
``__pycache__`` next to this file, so only the first run on a machine pays the compile time,
about a second per kernel). numba is a declared dependency (the ``train`` extra). Where it is
not installed (e.g. the Lava environment) the same functions run as plain Python: identical
integers, much slower; :data:`COMPILED` says which, and ``python -m targets.event_sim`` says so
in a warning line.

Cost: one byte (or int64) read per source entry and lane, plus, per event, one index and one
weight read and one add (CSR), or one add per target of a dense row.
"""

from __future__ import annotations

import numpy as np

try:
    from numba import njit

    COMPILED = True
except ImportError:  # numba missing: the same code, interpreted (see the module docstring)
    COMPILED = False

    def njit(*args, **kwargs):  # type: ignore[no-redef]
        """Stand-in for numba.njit: returns the function unchanged."""
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]
        return lambda f: f


@njit(cache=True, nogil=True)
def fan_out_csr(values, lo, indptr, indices, weights, acc, n_valid):  # pragma: no cover - jit
    """Scatter the CSR rows of the nonzero ``values[:, lo:lo+n_in]`` into ``acc``.

    ``indptr`` int64 [n_in + 1], ``indices`` int32/int64 [nnz], ``weights`` int32/int64 [nnz]
    (a :class:`~targets.event_sim.fanout.FanOut`'s arrays), ``acc`` int64 [lanes, n_out].
    ``acc[b, indices[p]] += weights[p] * values[b, lo + j]`` for every p of row j.
    Returns (events in lanes < n_valid, events in the other lanes).
    """
    lanes = values.shape[0]
    n_in = indptr.shape[0] - 1
    inside = 0
    outside = 0
    for b in range(lanes):
        row = acc[b]
        ev = 0
        for j in range(n_in):
            x = np.int64(values[b, lo + j])
            if x == 0:
                continue
            s = indptr[j]
            e = indptr[j + 1]
            ev += e - s
            if x == 1:  # spikes and bit planes: an accumulate per event (no multiply)
                for p in range(s, e):
                    row[indices[p]] += weights[p]
            else:
                for p in range(s, e):
                    row[indices[p]] += np.int64(weights[p]) * x
        if b < n_valid:
            inside += ev
        else:
            outside += ev
    return inside, outside


@njit(cache=True, nogil=True)
def fan_out_rows(values, lo, rows, fanout, acc, n_valid):  # pragma: no cover - jit
    """Add the dense weight rows of the nonzero ``values[:, lo:lo+n_in]`` into ``acc``.

    ``rows`` int32/int64 [n_in, n_out] (the table as a dense matrix, source-major),
    ``fanout`` int64 [n_in] (nonzero weights per row: the events one nonzero source causes),
    ``acc`` int64 [lanes, n_out]. Returns (events in lanes < n_valid, in the other lanes).
    """
    lanes = values.shape[0]
    n_in = rows.shape[0]
    n_out = rows.shape[1]
    inside = 0
    outside = 0
    for b in range(lanes):
        out = acc[b]
        ev = 0
        for j in range(n_in):
            x = np.int64(values[b, lo + j])
            if x == 0:
                continue
            ev += fanout[j]
            r = rows[j]
            if x == 1:
                for i in range(n_out):
                    out[i] += r[i]
            else:
                for i in range(n_out):
                    out[i] += np.int64(r[i]) * x
        if b < n_valid:
            inside += ev
        else:
            outside += ev
    return inside, outside
