"""event_sim's compiled event loop (issue 12): the numba kernels against a plain numpy
reference and against their own interpreted Python (the path taken where numba is missing),
and chunked runs (bounded memory) against one whole run."""

from __future__ import annotations

import numpy as np
import pytest

from targets import event_sim
from targets.event_sim import kernels
from targets.event_sim.fanout import compile_synapse
from tests.targets.test_event_sim import _assert_same, _random_graph


def _reference(values, lo, table, n_valid):
    """acc = values[:, lo:lo+n_in] @ dense table; events counted per nonzero source."""
    v = values[:, lo:lo + table.n_in].astype(np.int64)
    acc = v @ table.to_dense().T
    ev = (v != 0) @ table.fanout
    return acc, int(ev[:n_valid].sum()), int(ev[n_valid:].sum())


@pytest.mark.parametrize("graded", [False, True], ids=["spikes", "graded"])
@pytest.mark.parametrize("density", [0.0, 2.0], ids=["dense-rows", "csr-scatter"])
@pytest.mark.parametrize("compiled", [True, False], ids=["numba", "python"])
def test_kernels_equal_a_matrix_product(graded, density, compiled):
    rng = np.random.default_rng(0)
    g = _random_graph(rng, conv_hw=6)
    for spec in g.synapses:
        c = compile_synapse(spec, g, density)
        lanes, n_full = 3, c.table.n_in + 5
        lo = 2
        if graded:
            values = rng.integers(0, 8, (lanes, n_full)) * (rng.random((lanes, n_full)) < 0.5)
        else:
            values = rng.random((lanes, n_full)) < 0.3
        want, inside, outside = _reference(values, lo, c.table, 2)
        acc = np.zeros((lanes, c.table.n_out), dtype=np.int64)
        if c.rows is not None:
            f = kernels.fan_out_rows if compiled else kernels.fan_out_rows.py_func
            got = f(values, lo, c.rows, c.table.fanout, acc, 2)
        else:
            f = kernels.fan_out_csr if compiled else kernels.fan_out_csr.py_func
            got = f(values, lo, c.table.indptr, c.indices, c.weights, acc, 2)
        assert (density == 0.0) == (c.rows is not None)
        np.testing.assert_array_equal(acc, want, err_msg=spec.name)
        assert tuple(got) == (inside, outside), spec.name
        assert inside > 0 and outside > 0


def test_kernels_are_compiled_here():
    """numba is a declared dependency (train extra): the main environment compiles."""
    assert kernels.COMPILED
    assert hasattr(kernels.fan_out_csr, "py_func")


def test_int64_weights_beyond_int32():
    """A weight that does not fit int32 keeps the table in int64; sums stay exact in int64."""
    from core.graph import Dense, InputSpec, QGraph, Readout

    w = np.array([[3 * 2**40, -2], [5, 2**33]], dtype=np.int64)
    g = QGraph(InputSpec((2,), "graded", 255), {}, {"r": Readout("r", (2,))},
               [Dense("d", "input", "r", w)], timesteps=2)
    for density in (0.0, 2.0):
        c = compile_synapse(g.synapses[0], g, density)
        assert c.weights.dtype == np.int64
        x = np.array([[[255, 7], [0, 1]]])
        res = event_sim.run(g, x)
        np.testing.assert_array_equal(res.readouts["r"][0], x[0] @ w.T)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7])
def test_chunked_run_equals_one_run(chunk):
    rng = np.random.default_rng(4)
    g = _random_graph(rng, conv_hw=7)
    x = rng.integers(0, 8, (7, 5, *g.input.shape))
    x[rng.random(x.shape) < 0.5] = 0
    one = event_sim.run(g, x, record_state=True)
    for lanes in (1, 2):
        parts = event_sim.run(g, x, record_state=True, chunk=chunk, lanes=lanes)
        _assert_same(one, parts)
        for key, val in one.counters.items():
            if key not in ("steps", "lanes", "pipeline_events"):
                assert parts.counters[key] == val, (chunk, lanes, key)
    # the iterator gives the rows of the whole run in order, one chunk at a time
    starts = []
    for lo, r in event_sim.iter_run(g, x, chunk=chunk):
        starts.append(lo)
        for p, s in r.spikes.items():
            np.testing.assert_array_equal(s, one.spikes[p][lo:lo + chunk])
        assert len(r.readouts["out"]) == min(chunk, len(x) - lo)
    assert starts == list(range(0, len(x), chunk))


def test_bad_chunk_refused_before_anything_runs():
    """A bad value in the last chunk is refused before the first chunk is simulated."""
    from core.errors import UserError

    rng = np.random.default_rng(5)
    g = _random_graph(rng, conv_hw=6)
    x = rng.integers(0, 8, (5, 5, *g.input.shape))
    x[4, 0, 0, 0, 0] = 99  # out of the graded range [0, 7]
    it = event_sim.iter_run(g, x, chunk=2)
    with pytest.raises(UserError, match="must lie in"):
        next(it)
