"""Differential fuzzing of foreign NIR graphs (issue 8; the generator and the property are in
tests/fuzz/graphs.py): every generated graph is refused in one line with a NeurodeployError, or
runs with torch_ref == event_sim exactly and, where the report bounds the quantization error,
within that bound of an independent float simulation of the NIR equations. Never a traceback,
never a hang. ``benchmarks/fuzz_nir.py`` runs the same property on >= 10,000 cases."""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings

from convert import load_graph
from core.errors import NeurodeployError
from targets import torch_ref
from tests.fuzz import graphs as fz

FAST = settings(max_examples=250, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@FAST
@given(fz.cases())
def test_generated_graph_runs_exactly_or_is_refused_in_one_line(tmp_path_factory, case):
    out = fz.check_case(case, tmp_path_factory.mktemp("fz") / "g.nir", timeout_s=20)
    assume(out.kind != "unwritable")  # the nir package itself cannot write it: not our input
    assert out.kind in ("run", "refused"), f"{out.kind}: {out.detail}"
    if out.kind == "refused":
        assert out.detail.strip() and "\n" not in out.detail.strip()


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(fz.dense_graphs(exact=True))
def test_exact_chains_are_compared_with_the_nir_float_simulation(tmp_path_factory, case):
    """Chains of the subset nir_float_sim covers, with exact (dyadic) parameters: none may be
    refused, and each whose report bounds the error is compared with the float simulation
    (that the comparison can fail: test_float_check_detects_a_shifted_simulation)."""
    out = fz.check_case(case, tmp_path_factory.mktemp("fz") / "g.nir", timeout_s=20)
    assert out.kind == "run", f"{out.kind}: {out.detail}"


def _chain(n_in: int, n: int, weight: float, thr: float) -> nir.NIRGraph:
    dt = fz.DT
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([n_in])),
               "w": nir.Linear(weight=np.full((n, n_in), weight)),
               "lif": nir.LIF(tau=np.full(n, 4 * dt), r=np.full(n, 2.0), v_leak=np.zeros(n),
                              v_threshold=np.full(n, thr), v_reset=np.zeros(n)),
               "output": nir.Output(output_type=np.array([n]))},
        edges=[("input", "w"), ("w", "lif"), ("lif", "output")],
        metadata={"dt": dt}, type_check=False)


def test_float_check_detects_a_shifted_simulation(tmp_path, monkeypatch):
    """A deliberately wrong reference (input one step late) must be caught: the bound is not
    so loose that it accepts anything."""
    x = np.zeros((1, 8, 4), dtype=np.int64)
    x[0, 0] = 1  # one volley at step 0: v = (dt/tau) r I = 0.25 * 2 * (4 * 0.5) = 1.0 > 0.5
    case = fz.Case(_chain(4, 2, 0.5, 0.5), x, simple=True)
    good = fz.check_case(case, tmp_path / "g.nir")
    assert good.kind == "run" and good.float_checked and good.extra["spikes"] == 2
    real = fz.nir_float_sim
    monkeypatch.setattr(fz, "nir_float_sim", lambda g, x: real(g, np.roll(x, 1, axis=1)))
    bad = fz.check_case(case, tmp_path / "g.nir")
    assert bad.kind == "disagreement" and "step 0" in bad.detail


@pytest.mark.parametrize("corrupt", fz.CORRUPTIONS)
def test_corrupted_file_is_refused_in_one_line(tmp_path, corrupt):
    x = np.ones((1, 3, 4), dtype=np.int64)
    case = fz.Case(_chain(4, 2, 0.25, 0.5), x, corrupt=corrupt)
    path = fz.write_case(case, tmp_path / "g.nir")
    with pytest.raises(NeurodeployError) as err:
        load_graph(path, input_timesteps=3)
    assert "\n" not in str(err.value).strip()


@pytest.mark.slow
@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(fz.cases())
def test_generated_graphs_on_lava_equal_torch_ref(tmp_path_factory, case):
    from targets import loihi

    path = tmp_path_factory.mktemp("fz") / "g.nir"
    try:
        fz.write_case(case, path)
        qg, _ = load_graph(path, input_timesteps=case.x.shape[1])
    except Exception:  # noqa: BLE001  refusals are the fast test's business
        assume(False)
    a, b = torch_ref.run(qg, case.x), loihi.run(qg, case.x)
    for k in a.spikes:
        np.testing.assert_array_equal(a.spikes[k], b.spikes[k], err_msg=k)
    for k in a.readouts:
        np.testing.assert_array_equal(a.readouts[k], b.readouts[k], err_msg=k)
    ov = {k: v for k, v in a.counters.items() if k.startswith("overflow/")}
    assert ov == {k: v for k, v in b.counters.items() if k.startswith("overflow/")}


def test_case_is_written_where_asked(tmp_path: Path):
    """write_case writes a readable file for an uncorrupted case (the fuzzer's precondition)."""
    case = fz.Case(_chain(3, 2, 0.5, 0.5), np.ones((1, 2, 3), dtype=np.int64))
    qg, report = load_graph(fz.write_case(case, tmp_path / "g.nir"), input_timesteps=2)
    assert list(qg.populations) == ["lif"] and report is not None
