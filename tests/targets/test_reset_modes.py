"""Reset modes (issue 9 item 4): one arithmetic (core.fixedpoint.lif_step_overflow) for every
mode, the same records on torch_ref, event_sim, onnx_rt and Lava (our ResetModeLIF process),
pinned against the stock Lava LIFReset where they must coincide, written and read by the
integer-NIR writer, imported with --reset, and against snnTorch's and Sinabs' own
simulations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core import fixedpoint as fx
from core.errors import GraphError, UserError
from core.graph import Dense, InputSpec, LIFPopulation, QGraph, Readout
from core.nir_io import from_nir, to_nir

DATA = Path(__file__).resolve().parents[1] / "data"


def _graph(reset: str, seed: int = 0, vth: int = 20) -> QGraph:
    """input(5) -> h(6) -> o(4) -> readout(3), mixed-sign even weights, a bias, T = 8."""
    rng = np.random.default_rng(seed)
    pops = {"h": LIFPopulation("h", (6,), 3000, 300, vth, rng.integers(-20, 40, 6), 1, reset),
            "o": LIFPopulation("o", (4,), 4095, 0, 15, np.zeros(4, np.int64), 0, reset)}
    syn = [Dense("w1", "input", "h", rng.integers(-60, 100, (6, 5)) * 2, 0),
           Dense("w2", "h", "o", rng.integers(-40, 80, (4, 6)) * 2, 0),
           Dense("w3", "o", "r", rng.integers(-10, 10, (3, 4)) * 2, 0)]
    return QGraph(InputSpec((5,)), pops, {"r": Readout("r", (3,))}, syn, timesteps=8)


def _inputs(seed: int = 1, n: int = 5) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, 8, 5)) < 0.4).astype(np.int64)


def _same(a, b) -> None:
    for k in a.spikes:
        np.testing.assert_array_equal(a.spikes[k], b.spikes[k], err_msg=k)
        assert a.spikes[k].dtype == b.spikes[k].dtype, k
    for k in a.readouts:
        np.testing.assert_array_equal(a.readouts[k], b.readouts[k], err_msg=k)


# ------------------------------------------------------------------ the arithmetic


def _step(reset, v, a, vth=5, dv=0):
    u, v, s = fx.lif_step(np.zeros_like(v), v, a, 4095, dv, vth, 0, reset)
    return v.tolist(), s.tolist()


def test_each_mode_by_hand():
    v0, a = np.array([0, 100, 700, -2000]), np.array([3, 5, 20, -1])  # vth6 = 320
    # v before the reset: [192, 420, 1980, -2064]
    assert _step("zero", v0, a) == ([192, 0, 0, -2064], [False, True, True, False])
    assert _step("subtract", v0, a) == ([192, 100, 1660, -2064], [False, True, True, False])
    # late: 700 > 320 was last step's spike, so 320 comes off this step's sum: 1980 - 320
    assert _step("subtract_late", v0, a) == ([192, 420, 1660, -2064],
                                             [False, True, True, False])
    assert _step("multi", v0, a) == ([192, 100, 60, -2064], [0, 1, 6, 0])
    assert _step("multi_floor", v0, a) == ([192, 100, 60, -320], [0, 1, 6, 0])


def test_zero_is_the_arithmetic_of_before():
    """The default mode is bit for bit the rule N6 of before: v <- 0 where v > vth << 6."""
    rng = np.random.default_rng(3)
    u, v = rng.integers(-2**22, 2**22, 500), rng.integers(-2**22, 2**22, 500)
    a = rng.integers(-2**14, 2**14, 500)
    u1, v1, s1, _ = fx.lif_step_overflow(u, v, a, 100, 300, 400, 7)
    u2, v2, s2, _ = fx.lif_step_overflow(u, v, a, 100, 300, 400, 7, "zero")
    vsum = np.clip(fx.decay_v(v, 300) + u1 + 7, -fx.V_LIMIT, fx.V_LIMIT)
    np.testing.assert_array_equal(s1, vsum > 400 << 6)
    np.testing.assert_array_equal(v1, np.where(vsum > 400 << 6, 0, vsum))
    for x, y in ((u1, u2), (v1, v2), (s1, s2)):
        np.testing.assert_array_equal(x, y)


def test_late_subtraction_is_snntorchs_leaky_in_integers():
    """snnTorch 1.0 Leaky, reset_delay=True: mem = beta*mem + x - H(mem_prev - thr) * thr,
    spk = mem > thr; with beta = 1 - dv/4096 and integers it is our subtract_late exactly."""
    rng = np.random.default_rng(4)
    vth, dv = 50, 0
    x = rng.integers(0, 6000, (200, 12))
    mem = np.zeros(200, np.int64)
    v = np.zeros(200, np.int64)
    for t in range(12):
        reset = mem > vth << 6
        mem = mem + (x[:, t] << 6) - reset * (vth << 6)
        spk = mem > vth << 6
        _, v, s = fx.lif_step(np.zeros(200, np.int64), v, x[:, t], 4095, dv, vth, 0,
                              "subtract_late")
        np.testing.assert_array_equal(s, spk)
        np.testing.assert_array_equal(v, mem)


def test_numpy_and_torch_agree_in_every_mode():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    u, v = rng.integers(-2**20, 2**20, 300), rng.integers(-2**20, 2**20, 300)
    a = rng.integers(-2**12, 2**12, 300)
    for mode in fx.RESET_MODES:
        n = fx.lif_step_overflow(u, v, a, 1000, 200, 300, 11, mode)
        t = fx.lif_step_overflow(*(torch.from_numpy(z) for z in (u, v, a)), 1000, 200, 300,
                                 11, mode)
        for x, y in zip(n[:3], t[:3], strict=True):
            np.testing.assert_array_equal(x, y.numpy())
        for x, y in zip(n[3], t[3], strict=True):
            np.testing.assert_array_equal(x, y.numpy())


def test_unknown_mode_and_graded_without_threshold_are_refused():
    with pytest.raises(ValueError, match="reset mode"):
        fx.lif_step(np.zeros(1, np.int64), np.zeros(1, np.int64), 0, 0, 0, 1, 0, "half")
    g = _graph("multi", vth=0)
    with pytest.raises(GraphError, match="population 'h': reset mode 'multi'.*vth > 0"):
        g.validate()
    g = _graph("sideways")
    with pytest.raises(GraphError, match="population 'h': reset mode 'sideways' is not one"):
        g.validate()


# ------------------------------------------------------------------ the integer graph


def test_integer_nir_records_the_mode_and_leaves_zero_unwritten(tmp_path):
    for mode in fx.RESET_MODES:
        g = _graph(mode)
        nir_g = to_nir(g)
        md = nir_g.nodes["h"].metadata
        assert ("loihi_reset" in md) == (mode != "zero")
        back = from_nir(nir_g)
        assert {p.reset for p in back.populations.values()} == {mode}


def test_our_exports_deploy_with_reset_to_zero_and_write_no_new_field():
    """Our float exports record reset = zero: imported without --reset, every population
    resets to zero and the integer file has no ``loihi_reset`` (golden files unchanged)."""
    from convert.loader import load_graph

    g, _ = load_graph(DATA / "fc_snn_digits.nir")
    assert {p.reset for p in g.populations.values()} == {"zero"}
    assert g.metadata["reset_source"] == "recorded"
    assert not any("loihi_reset" in n.metadata for n in to_nir(g).nodes.values()
                   if hasattr(n, "metadata") and n.metadata)


# ------------------------------------------------------------------ the targets


@pytest.mark.parametrize("mode", fx.RESET_MODES)
def test_torch_ref_event_sim_and_onnx_agree(mode):
    from targets import event_sim, onnx_rt, torch_ref

    g = _graph(mode)
    g.validate()
    x = _inputs()
    ref = torch_ref.run(g, x, record_state=True)
    assert ref.spikes["h"].dtype == (np.int64 if g.populations["h"].graded else bool)
    if g.populations["h"].graded:
        assert ref.spikes["o"].max() > 1  # the counts really are graded
    _same(ref, event_sim.run(g, x))
    _same(ref, onnx_rt.run(g, x))
    overflow = {k: v for k, v in ref.counters.items() if k.startswith("overflow/")}
    assert overflow == {k: v for k, v in event_sim.run(g, x).counters.items()
                        if k.startswith("overflow/")}


def _mixed_graph() -> QGraph:
    """A graded conv population feeding a conv and a dense synapse, a subtractive recurrent
    population and a late-subtracting one: every mode's spikes through every synapse kind."""
    from core.graph import Conv

    rng = np.random.default_rng(7)
    pops = {
        "c": LIFPopulation("c", (2, 4, 4), 2000, 500, 12, rng.integers(-5, 20, 32), 1,
                           "multi_floor"),
        "d": LIFPopulation("d", (2, 2, 2), 4095, 100, 30, np.zeros(8, np.int64), 0, "multi"),
        "h": LIFPopulation("h", (5,), 3000, 200, 25, rng.integers(-10, 30, 5), 1, "subtract"),
        "o": LIFPopulation("o", (3,), 4095, 0, 20, np.zeros(3, np.int64), 0, "subtract_late"),
    }
    syn = [
        Conv("k1", "input", "c", rng.integers(-20, 40, (2, 1, 3, 3)) * 2, (1, 1), (0, 0), 1,
             (1, 6, 6), (2, 4, 4)),
        Conv("k2", "c", "d", rng.integers(-10, 30, (2, 2, 2, 2)) * 2, (2, 2), (0, 0), 1,
             (2, 4, 4), (2, 2, 2)),
        Dense("w_ch", "c", "h", rng.integers(-10, 30, (5, 32)) * 2, 0, delay=1),
        Dense("w_dh", "d", "h", rng.integers(-10, 30, (5, 8)) * 2, 0),
        Dense("w_hh", "h", "h", rng.integers(-30, 30, (5, 5)) * 2, 0),  # recurrent
        Dense("w_ho", "h", "o", rng.integers(-20, 60, (3, 5)) * 2, 0),
        Dense("w_or", "o", "r", rng.integers(-9, 9, (2, 3)) * 2, 0),
    ]
    return QGraph(InputSpec((1, 6, 6)), pops, {"r": Readout("r", (2,))}, syn, timesteps=6)


def _mixed_inputs(n: int = 4) -> np.ndarray:
    return (np.random.default_rng(8).random((n, 6, 1, 6, 6)) < 0.5).astype(np.int64)


def test_mixed_modes_through_convs_and_recurrence_agree():
    from targets import event_sim, onnx_rt, torch_ref

    g = _mixed_graph()
    g.validate()
    x = _mixed_inputs()
    ref = torch_ref.run(g, x)
    assert ref.spikes["c"].max() > 1 and ref.spikes["d"].max() > 1
    assert all(ref.spikes[k].any() for k in ref.spikes)
    _same(ref, event_sim.run(g, x))
    _same(ref, onnx_rt.run(g, x))


@pytest.mark.slow
def test_lava_mixed_modes_through_convs_and_recurrence():
    from targets import loihi, torch_ref

    g = _mixed_graph()
    x = _mixed_inputs(3)
    _same(torch_ref.run(g, x), loihi.run(g, x))


def test_graded_spikes_reach_the_synapses_as_payloads():
    """A multi-spike source delivers weight * count: o's input is w2 @ counts of h."""
    from targets import torch_ref

    g = _graph("multi")
    x = _inputs()
    r = torch_ref.run(g, x)
    w3 = g.synapses[2].weight
    np.testing.assert_array_equal(r.readouts["r"], r.spikes["o"] @ w3.T)


def test_attention_refuses_a_graded_source():
    from core.graph import SpikeAttention

    pops = {n: LIFPopulation(n, (2, 2), 0, 0, 1, np.zeros(4, np.int64),
                             reset="multi" if n == "q" else "zero") for n in "qkvo"}
    syn = [Dense(f"i{n}", "input", n, np.eye(4, dtype=np.int64) * 2) for n in "qkv"]
    syn.append(SpikeAttention("att", ("q", "k", "v"), "o", heads=1))
    g = QGraph(InputSpec((4,)), pops, {}, syn, timesteps=4)
    with pytest.raises(GraphError, match="attention source 'q' emits spike counts"):
        g.validate()


@pytest.mark.slow
@pytest.mark.parametrize("mode", fx.RESET_MODES)
def test_lava_reset_mode_process_equals_torch_ref(mode):
    from targets import loihi, torch_ref

    g = _graph(mode)
    x = _inputs(n=4)
    ref = torch_ref.run(g, x, record_state=True)
    got = loihi.run(g, x, record_state=True)
    _same(ref, got)
    for k in ref.states:
        for i in (0, 1):
            np.testing.assert_array_equal(ref.states[k][i], got.states[k][i])
    assert ({k: v for k, v in ref.counters.items() if k.startswith("overflow/")}
            == {k: v for k, v in got.counters.items() if k.startswith("overflow/")})


@pytest.mark.slow
@pytest.mark.parametrize("mode", [m for m in fx.RESET_MODES if m != "zero"])
def test_lava_process_without_spikes_follows_the_stock_lif(mode):
    """Below threshold no mode resets anything: our ResetModeLIF and Lava's own LIFReset
    must give identical u and v trajectories (a high threshold, inhibition and drive)."""
    from dataclasses import replace

    from targets import loihi

    g = _graph("zero", vth=5000)
    g.populations["o"] = replace(g.populations["o"], vth=100000)
    x = _inputs(n=3)
    stock = loihi.run(g, x, record_state=True)
    assert sum(int(s.sum()) for s in stock.spikes.values()) == 0
    ours = replace(g, populations={k: replace(p, reset=mode) for k, p in g.populations.items()})
    got = loihi.run(ours, x, record_state=True)
    for k in stock.states:
        for i in (0, 1):
            np.testing.assert_array_equal(stock.states[k][i], got.states[k][i])


# ------------------------------------------------------------------ import and references


def test_reset_is_given_recorded_or_zero_and_refused_when_unknown():
    from convert.nir_import import resolve_reset

    assert resolve_reset({}, None) == ("zero", "default")
    assert resolve_reset({"reset": "zero"}, None) == ("zero", "recorded")
    assert resolve_reset({"reset": "subtract"}, "multi") == ("multi", "given")
    with pytest.raises(UserError, match="--reset 'sub' is not one of"):
        resolve_reset({}, "sub")
    with pytest.raises(GraphError, match="reset='half'"):
        resolve_reset({"reset": "half"}, None)


def test_reset_on_an_integer_graph_must_match(tmp_path):
    from convert.loader import load_graph
    from core.nir_io import write_qgraph

    path = tmp_path / "g.nir"
    write_qgraph(path, _graph("subtract"))
    assert load_graph(path, reset="subtract")[0].populations["h"].reset == "subtract"
    with pytest.raises(UserError, match="population 'h' resets 'subtract'"):
        load_graph(path, reset="zero")


def _verify(stem: str, reset: str, options: list[str]) -> dict:
    import contextlib
    import io

    from targets import verify

    meta = json.loads(str(np.load(DATA / f"{stem}_reference.npz")["meta"]))
    argv = [str(DATA / f"{stem}.nir"), "--input", str(DATA / f"{stem}_inputs.npy"),
            "--dt", str(meta["dt"]), "--targets", "torch_ref", "--reference",
            stem.split("_")[0], "--reset", reset, "--json", "--no-progress"]
    for o in options:
        argv += ["--reference-option", o]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        verify.main(argv)
    return json.loads(out.getvalue())["reference"]


@pytest.mark.parametrize("stem, reset, options", [
    ("snntorch_leaky", "subtract_late", ["reset_mechanism=subtract", "reset_delay=true"]),
    ("sinabs_iaf_mlp", "multi", ["min_v_mem=none"]),
    ("sinabs_iaf_mlp", "multi_floor", []),
])
def test_matching_reset_leaves_only_quantization(stem, reset, options):
    """With the framework's own reset deployed, our float model reproduces the framework
    entry for entry, and every remaining difference is quantization (rounded weights,
    decays, threshold): none is left unattributed."""
    pytest.importorskip(stem.split("_")[0])
    rep = _verify(stem, reset, options)
    causes = {c["cause"].split(" (")[0]: c["entries"] for c in rep["causes"]["causes"]}
    assert set(causes) <= {"quantization"}, causes
    assert rep["causes"]["rules"][0]["equal_share"] == 1.0  # ours, as deployed
    assert rep["equal_share"] > 0.98


def test_snntorch_before_and_after():
    """Reset to zero (before) against snnTorch's default Leaky, and subtract_late (after)."""
    pytest.importorskip("snntorch")
    opts = ["reset_mechanism=subtract", "reset_delay=true"]
    before = _verify("snntorch_leaky", "zero", opts)
    after = _verify("snntorch_leaky", "subtract_late", opts)
    assert before["populations"]["1"]["equal_share"] == pytest.approx(0.9549, abs=1e-4)
    assert after["populations"]["1"]["equal_share"] == pytest.approx(0.9972, abs=1e-4)
    assert after["populations"]["3"]["equal_share"] == pytest.approx(0.9772, abs=1e-4)
    assert after["samples_differing"] < before["samples_differing"]


def test_quantization_entries_are_split_by_the_rounding_that_reproduces_them():
    from targets.reference import compare as cmp

    ref = np.array([[[1], [0], [1], [0], [1]]])
    chip = np.array([[[0], [1], [0], [1], [1]]])  # differs at steps 0-3, float equals ref
    flt = ref.copy()
    w = np.array([[[0], [0], [1], [0], [1]]])  # weight rounding alone gives the chip's 0 at 0
    d = np.array([[[1], [1], [1], [0], [1]]])  # decay rounding: the chip's 1 at step 1
    both = np.array([[[0], [1], [0], [0], [1]]])  # together: also step 2
    out = cmp.attribute({"p": ref}, {"p": chip}, {"p": flt}, {}, None,
                        roundings={"w": {"p": w}, "d": {"p": d}, "all": {"p": both}})
    (row,) = out["causes"]
    assert row["cause"] == cmp.QUANTIZATION and row["entries"] == 4
    assert row["detail"] == {"w": 1, "d": 1, "all": 1, cmp.INTEGER_ARITHMETIC: 1}
    assert row["detail_populations"] == {"p": row["detail"]}


def test_rounded_graphs_put_back_the_deployed_parameters():
    """Each rounded float graph carries the deployed integers in float units: W_int*2^e/k,
    vth/k, the 12-bit decays."""
    from convert.nir_import import import_nir
    from convert.quantize import quantize
    from targets.reference import rules

    fg = import_nir(str(DATA / "snntorch_leaky.nir"), dt=1e-4, timesteps=16,
                    reset="subtract_late")
    qg, rep = quantize(fg)
    scales = {n: r.scale for n, r in rep.populations.items() if getattr(r, "scale", None)}
    g = rules.rounded_graphs(fg, qg, scales)
    q = {s.name: s for s in qg.synapses}
    for s in g[rules.WEIGHT_ROUNDING].synapses:
        if s.target in qg.populations:
            np.testing.assert_allclose(s.op.weight * scales[s.target],
                                       q[s.name].weight * 2.0 ** q[s.name].weight_exp)
    for n, p in g[rules.ALL_ROUNDINGS].populations.items():
        assert p.threshold == pytest.approx(qg.populations[n].vth / scales[n])
        assert p.beta == fx.factor_from_dv(qg.populations[n].dv)
        assert p.reset == "subtract_late"


def test_cli_reset_flag_quantizes_and_runs(tmp_path, capsys):
    from convert import quantize as q
    from core.nir_ext import read_nir
    from targets import torch_ref

    out = tmp_path / "leaky.loihi.nir"
    src = str(DATA / "snntorch_leaky.nir")
    assert q.main([src, "--dt", "1e-4", "--timesteps", "16", "--reset", "subtract_late",
                   "-o", str(out), "--quiet"]) == 0
    nodes = read_nir(out).nodes
    assert nodes["1"].metadata["loihi_reset"] == "subtract_late"
    capsys.readouterr()
    torch_ref.main([str(out), "--input", str(DATA / "snntorch_leaky_inputs.npy"),
                    "--samples", "2", "--json"])
    s = json.loads(capsys.readouterr().out)
    assert s["reset"]["modes"] == {"subtract_late": ["1", "3"]}
    with pytest.raises(SystemExit) as e:  # argparse: a mode that does not exist
        q.main([src, "--reset", "halfway"])
    assert e.value.code == 2
