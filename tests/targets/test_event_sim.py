"""The event-driven simulator: hand-computed timelines, fan-out tables, counters, and equality
with the zero-latency integer reference (targets.torch_ref)."""

from __future__ import annotations

import numpy as np
import pytest

from core import fixedpoint as fx
from core.graph import Conv, Dense, InputSpec, LIFPopulation, QGraph, Readout
from core.ops import conv2d
from targets import event_sim
from targets.base import check_inputs
from targets.event_sim import __main__ as event_sim_cli


def _tiny_graph() -> QGraph:
    """input(2 spikes) -Dense[[2, 4]]-> pop "p" (1 neuron) -Dense[[6]]-> readout "r".

    du=4095 clears u each step (u = 64 * this step's input), dv=0 (no leak), threshold
    5 << 6 = 320, bias 3 per step.
    """
    return QGraph(
        InputSpec((2,)),
        {"p": LIFPopulation("p", (1,), du=4095, dv=0, vth=5, bias_mant=np.array([3]))},
        {"r": Readout("r", (1,))},
        [Dense("w1", "input", "p", np.array([[2, 4]])), Dense("w2", "p", "r", np.array([[6]]))],
        timesteps=3,
    )


TINY_X = np.array([[[1, 0], [0, 1], [0, 0]], [[0, 0], [1, 1], [1, 0]]])


def test_tiny_dense_lif_by_hand():
    g = _tiny_graph()
    res = event_sim.run(g, TINY_X, record_state=True)
    u, v = res.states["p"]
    # sample 0: a_in 2, 4, 0 -> u 128, 256, 0; v 3+128=131; 131+256+3=390 > 320 spike -> 0; 3
    # sample 1: a_in 0, 6, 2 -> u 0, 384, 128; v 3 (not 6: reset, no bias leaks across samples);
    #           3+384+3=390 spike -> 0; 0+128+3=131
    np.testing.assert_array_equal(u[:, :, 0], [[128, 256, 0], [0, 384, 128]])
    np.testing.assert_array_equal(v[:, :, 0], [[131, 0, 3], [3, 0, 131]])
    np.testing.assert_array_equal(res.spikes["p"][:, :, 0], [[0, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(res.readouts["r"][:, :, 0], [[0, 6, 0], [0, 6, 0]])
    c = res.counters
    # input spikes: sample 0 has 2, sample 1 has 3, each with one nonzero weight
    assert c["events/w1"] == 5
    assert c["events/w2"] == 2  # two spikes of p, one weight each
    assert c["synaptic_events"] == c["ac"] == 7 and c["mac"] == 0
    assert c["spikes/p"] == 2
    assert c["neuron_updates"] == 1 * 2 * 3
    assert c["steps"] == 2 * 3 + 2  # n*T + depth
    assert c["max_abs_u"] == 384 and c["max_abs_v"] == 131


def test_tiny_timeline_delays_and_resets():
    """The raw deployed timeline: one step per synapse, reset exactly at sample boundaries."""
    g = _tiny_graph()
    tl = event_sim.simulate(g, check_inputs(g, TINY_X), record_state=True)
    assert tl.latency == {"input": 0, "p": 1, "r": 2}
    # input step t of sample s is emitted at global step 3s+t; p sees it one step later
    v = tl.v["p"][:, 0, 0]
    # global step 0: nothing has arrived yet, the bias integrates as on the chip (v = 3);
    # step 1: p is reset before sample 0's first input arrives, so v = 128 + 3, not 134
    assert v[0] == 3
    np.testing.assert_array_equal(v[1:7], [131, 0, 3, 3, 0, 131])
    # after the last sample: reset at step 7, bias only
    assert v[7] == 3
    # p spikes at global steps 2 and 5 (input steps 1 of each sample + latency 1); the readout
    # receives them one step later, at global steps 3 and 6
    np.testing.assert_array_equal(np.flatnonzero(tl.spikes["p"][:, 0, 0]), [2, 5])
    np.testing.assert_array_equal(np.flatnonzero(tl.readouts["r"][:, 0, 0]), [3, 6])


def test_bias_activity_outside_samples_is_not_counted():
    """A neuron driven by its bias alone spikes every step, also during pipeline fill and
    drain; those spikes reach nothing that is recorded and are counted apart."""
    g = QGraph(
        InputSpec((1,)),
        {"p": LIFPopulation("p", (1,), du=0, dv=0, vth=0, bias_mant=np.array([100]))},
        {"r": Readout("r", (1,))},
        [Dense("w1", "input", "p", np.array([[0]])), Dense("w2", "p", "r", np.array([[10]]))],
        timesteps=4,
    )
    n = 3
    res = event_sim.run(g, np.zeros((n, 4, 1), dtype=np.int64))
    assert res.spikes["p"].all()
    np.testing.assert_array_equal(res.readouts["r"], np.full((n, 4, 1), 10))
    assert res.counters["events/w2"] == n * 4
    assert res.counters["events/w1"] == 0
    # p (latency 1) also spikes at global step 0 and at step n*T + 1 (the timeline has
    # n*T + depth = n*T + 2 steps)
    assert res.counters["pipeline_events"] == 2


def _conv_case(rng, c_in, hw, c_out, k, stride, padding, groups):
    w = rng.integers(-5, 6, (c_out, c_in // groups, *k))
    w[rng.random(w.shape) < 0.2] = 0
    ho, wo = ((hw[i] + 2 * padding[i] - k[i]) // stride[i] + 1 for i in range(2))
    return w, (c_in, *hw), (c_out, ho, wo)


CONV_CASES = [
    # c_in, (H, W), c_out, kernel, stride, padding, groups
    (2, (8, 8), 4, (3, 3), (2, 2), (1, 1), 2),  # stride does not divide: last row reachable
    (3, (7, 9), 6, (3, 2), (2, 1), (1, 0), 3),  # depthwise-like, non-square kernel
    (4, (6, 6), 4, (3, 3), (1, 1), (1, 1), 1),
    (2, (5, 5), 2, (5, 5), (2, 2), (2, 2), 1),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_table_equals_conv2d(case):
    rng = np.random.default_rng(1)
    c_in, hw, c_out, k, stride, padding, groups = case
    w, in_shape, out_shape = _conv_case(rng, c_in, hw, c_out, k, stride, padding, groups)
    t = event_sim.conv_table(w, in_shape, out_shape, stride, padding, groups)
    assert t.n_in == int(np.prod(in_shape)) and t.n_out == int(np.prod(out_shape))
    assert np.all(t.weights != 0)
    x = rng.integers(-7, 8, (5, *in_shape))
    want = conv2d(x, w, stride, padding, groups).reshape(5, -1)
    got = x.reshape(5, -1) @ t.to_dense().T
    np.testing.assert_array_equal(got, want)
    # and the fan-out of every input neuron is its number of nonzero-weight connections
    fan = conv2d(np.ones((1, *in_shape), dtype=np.int64), (w != 0).astype(np.int64),
                 stride, padding, groups)
    assert t.fanout.sum() == fan.sum() == len(t.weights)


@pytest.mark.parametrize("density", [0.0, 2.0], ids=["dense-rows", "csr-scatter"])
@pytest.mark.parametrize("case", CONV_CASES[:2])
def test_conv_synapse_in_the_simulator(case, density, monkeypatch):
    """Graded input -> Conv -> readout: each step's readout is conv_output(conv2d(x_t))."""
    monkeypatch.setattr(event_sim, "DENSE_ROWS_MIN_DENSITY", density)
    rng = np.random.default_rng(2)
    c_in, hw, c_out, k, stride, padding, groups = case
    w, in_shape, out_shape = _conv_case(rng, c_in, hw, c_out, k, stride, padding, groups)
    w = w * 20  # |w| up to 100: large accumulations of graded values
    g = QGraph(
        InputSpec(in_shape, "graded", 255),
        {}, {"r": Readout("r", out_shape)},
        [Conv("c", "input", "r", w, stride, padding, groups, in_shape, out_shape)],
        timesteps=2,
    )
    x = rng.integers(0, 256, (3, 2, *in_shape))
    x[rng.random(x.shape) < 0.5] = 0
    res = event_sim.run(g, x, lanes=2)
    want = conv2d(x.reshape(6, *in_shape), w, stride, padding, groups).reshape(3, 2, -1)
    np.testing.assert_array_equal(res.readouts["r"], fx.conv_output(want))
    # events: for every nonzero input entry, its nonzero-weight fan-out; all MACs (graded)
    ev = conv2d((x != 0).reshape(6, *in_shape).astype(np.int64), (w != 0).astype(np.int64),
                stride, padding, groups).sum()
    assert res.counters["events/c"] == res.counters["mac"] == ev
    assert res.counters["ac"] == 0


def _random_graph(rng, conv_hw: int = 9) -> QGraph:
    """Graded input (2, H, H) -> [Conv -> pop "c"] and [Dense -> pop "h"]; both -> pop "o"
    (two synapses into one population); "o" -> readout with a weight exponent."""

    def even(shape, lim=60):
        return (rng.integers(-lim, lim + 1, shape) * 2).astype(np.int64)

    h = conv_hw
    ho = (h + 2 - 3) // 2 + 1
    n_in, n_c = 2 * h * h, 4 * ho * ho
    pops = {
        "c": LIFPopulation("c", (4, ho, ho), 100, 200, 40, rng.integers(-50, 50, n_c), 1),
        "h": LIFPopulation("h", (20,), 4095, 0, 60, rng.integers(-50, 50, 20), 0),
        "o": LIFPopulation("o", (12,), 300, 50, 30, rng.integers(-20, 80, 12), 2),
    }
    syn = [
        Conv("k", "input", "c", even((4, 1, 3, 3)), (2, 2), (1, 1), 2, (2, h, h), (4, ho, ho)),
        Dense("d1", "input", "h", even((20, n_in)), -2),
        Dense("d2", "c", "o", even((12, n_c)), 1),
        Dense("d3", "h", "o", even((12, 20)), 0),
        Dense("r", "o", "out", even((5, 12)), -1),
    ]
    g = QGraph(InputSpec((2, h, h), "graded", 7), pops,
               {"out": Readout("out", (5,), rng.integers(-5, 5, 5))}, syn, timesteps=5)
    g.validate()
    return g


def _assert_same(a, b):
    assert a.spikes.keys() == b.spikes.keys() and a.readouts.keys() == b.readouts.keys()
    for k in a.spikes:
        np.testing.assert_array_equal(a.spikes[k], b.spikes[k], err_msg=k)
    for k in a.readouts:
        np.testing.assert_array_equal(a.readouts[k], b.readouts[k], err_msg=k)
    for k in a.states:
        np.testing.assert_array_equal(a.states[k][0], b.states[k][0], err_msg=f"u {k}")
        np.testing.assert_array_equal(a.states[k][1], b.states[k][1], err_msg=f"v {k}")


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("density", [0.25, 2.0], ids=["auto", "csr-scatter"])
def test_equals_torch_ref_on_random_graphs(seed, density, monkeypatch):
    torch_ref = pytest.importorskip("targets.torch_ref")
    monkeypatch.setattr(event_sim, "DENSE_ROWS_MIN_DENSITY", density)
    rng = np.random.default_rng(seed)
    g = _random_graph(rng)
    x = rng.integers(0, 8, (7, 5, *g.input.shape))
    x[rng.random(x.shape) < 0.5] = 0
    ref = torch_ref.run(g, x, record_state=True)
    res = event_sim.run(g, x, record_state=True)
    assert res.states.keys() == ref.states.keys() == g.populations.keys()
    _assert_same(ref, res)
    for p in g.populations:  # the test exercises real activity, not silent neurons
        assert 0 < res.spikes[p].mean() < 1, p
    keys = [k for k in ref.counters if k in ("synaptic_events", "ac", "mac")
            or k.startswith("events/")]
    assert len(keys) >= 3
    for key in keys:
        assert res.counters[key] == ref.counters[key], key
    assert res.counters["ac"] > 0 and res.counters["mac"] > 0


def test_lanes_give_identical_records_and_counters():
    rng = np.random.default_rng(3)
    g = _random_graph(rng, conv_hw=8)
    x = rng.integers(0, 8, (5, 5, *g.input.shape))
    x[rng.random(x.shape) < 0.6] = 0
    one = event_sim.run(g, x, record_state=True)
    for lanes in (2, 3, 5, 9):
        many = event_sim.run(g, x, record_state=True, lanes=lanes)
        _assert_same(one, many)
        for key, val in one.counters.items():
            if key not in ("steps", "lanes", "pipeline_events"):
                assert many.counters[key] == val, (lanes, key)


def test_event_counts_by_hand_on_random_graph():
    """events/<syn> = sum over nonzero source entries of their nonzero fan-out."""
    rng = np.random.default_rng(4)
    g = _random_graph(rng, conv_hw=8)
    x = rng.integers(0, 8, (4, 5, *g.input.shape))
    x[rng.random(x.shape) < 0.5] = 0
    res = event_sim.run(g, x)
    acts = {"input": (x != 0).reshape(4, 5, -1)}
    acts.update(res.spikes)
    total = 0
    for s in g.synapses:
        a = acts[s.source].reshape(20, -1).astype(np.int64)
        if isinstance(s, Conv):
            ev = conv2d(a.reshape(20, *s.in_shape), (s.weight != 0).astype(np.int64),
                        s.stride, s.padding, s.groups).sum()
        else:
            ev = (a @ (s.weight != 0).T.astype(np.int64)).sum()
        assert res.counters[f"events/{s.name}"] == ev, s.name
        total += ev
    c = res.counters
    assert c["synaptic_events"] == total
    assert c["mac"] == c["events/k"] + c["events/d1"]  # graded input
    assert c["ac"] == c["events/d2"] + c["events/d3"] + c["events/r"]  # spikes
    for p in g.populations:
        assert c[f"spikes/{p}"] == int(res.spikes[p].sum())
    assert c["neuron_updates"] == sum(p.size for p in g.populations.values()) * 4 * 5
    assert c["steps"] == 4 * 5 + g.depth


def test_fanout_table_of_dense_drops_zeros():
    w = np.array([[0, 2, -4], [6, 0, 0]])
    t = event_sim.dense_table(w)
    np.testing.assert_array_equal(t.fanout, [1, 1, 1])
    np.testing.assert_array_equal(t.to_dense(), w)


def test_bad_inputs_are_refused():
    g = _tiny_graph()
    with pytest.raises(ValueError, match="timesteps"):
        event_sim.run(g, np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="must lie in"):
        event_sim.run(g, np.full((1, 3, 2), 2))


def test_cli_runs_an_integer_nir_file(tmp_path, capsys):
    from core.nir_io import write_qgraph

    g = _tiny_graph()
    model = tmp_path / "tiny.nir"
    write_qgraph(model, g)
    np.save(tmp_path / "x.npy", TINY_X)
    np.save(tmp_path / "y.npy", np.array([0, 0]))
    rec = tmp_path / "out.npz"
    rc = event_sim_cli.main([str(model), "--input", str(tmp_path / "x.npy"), "--labels",
                             str(tmp_path / "y.npy"), "--record", str(rec), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "events/s" in out and "accuracy: 100.00%" in out
    with np.load(rec) as z:
        np.testing.assert_array_equal(z["spikes/p"][:, :, 0], [[0, 1, 0], [0, 1, 0]])


# --- delays, max pooling of currents, source slices and bit-plane inputs ----------------------


def _assert_equals_torch_ref(g: QGraph, x: np.ndarray, lanes: int = 1):
    """Records, u/v traces and every synaptic counter equal the zero-latency reference."""
    torch_ref = pytest.importorskip("targets.torch_ref")
    ref = torch_ref.run(g, x, record_state=True)
    res = event_sim.run(g, x, record_state=True, lanes=lanes)
    assert res.states.keys() == ref.states.keys() == g.populations.keys()
    _assert_same(ref, res)
    keys = [k for k in ref.counters if k in ("synaptic_events", "ac", "mac")
            or k.startswith("events/")]
    assert {k for k in keys if k.startswith("events/")} == {f"events/{s.name}"
                                                            for s in g.synapses}
    for key in keys:
        assert res.counters[key] == ref.counters[key], key
    return res


def _delay_graph(bias: int = 0, vth: int = 4) -> QGraph:
    """input(1 spike) -Dense[[5]], delay 2-> pop "p" -Dense[[7]], delay 1-> readout "r".

    du=4095 clears u each step (u = 64 * this step's input), dv=0: v = u + bias, reset on a
    spike; threshold vth << 6. Latency of p: 1 + 2 = 3; of r: 3 + 1 + 1 = 5.
    """
    g = QGraph(
        InputSpec((1,)),
        {"p": LIFPopulation("p", (1,), du=4095, dv=0, vth=vth, bias_mant=np.array([bias]))},
        {"r": Readout("r", (1,))},
        [Dense("w1", "input", "p", np.array([[5]]), delay=2),
         Dense("w2", "p", "r", np.array([[7]]), delay=1)],
        timesteps=4,
    )
    g.validate()
    return g


def test_delay_on_the_raw_timeline_by_hand():
    g = _delay_graph()
    assert g.latency() == {"input": 0, "p": 3, "r": 5}
    x = np.zeros((2, 4, 1), dtype=np.int64)
    x[0, 1] = 1  # emitted at global step 1
    x[1, [0, 1, 3]] = 1  # emitted at global steps 4, 5, 7 (two in a row: the ring holds both)
    tl = event_sim.simulate(g, check_inputs(g, x), record_state=True)
    assert tl.counters["steps"] == 2 * 4 + 5
    # a spike emitted at step k changes p's u at step k + 1 + delay = k + 3
    u = tl.u["p"][:, 0, 0]
    want_u = np.zeros(13, dtype=np.int64)
    want_u[[4, 7, 8, 10]] = 5 << fx.ACT_SHIFT
    np.testing.assert_array_equal(u, want_u)
    # 320 > 4 << 6 = 256: p spikes whenever it receives; r sees it 1 + 1 steps later
    np.testing.assert_array_equal(np.flatnonzero(tl.spikes["p"][:, 0, 0]), [4, 7, 8, 10])
    np.testing.assert_array_equal(np.flatnonzero(tl.readouts["r"][:, 0, 0]), [6, 9, 10, 12])
    assert (tl.readouts["r"][[6, 9, 10, 12], 0, 0] == 7).all()
    # cut back by latency, the records are the trained model's time axis
    res = event_sim.run(g, x, record_state=True)
    np.testing.assert_array_equal(res.spikes["p"][:, :, 0], x[:, :, 0].astype(bool))
    np.testing.assert_array_equal(res.readouts["r"][:, :, 0], 7 * x[:, :, 0])
    assert res.counters["events/w1"] == 4 and res.counters["events/w2"] == 4
    _assert_equals_torch_ref(g, x)


def test_bias_does_not_leak_across_samples_with_delays():
    """With delays the populations reset later (at their own latency), and still exactly when
    their next sample's first input arrives: a bias-only neuron restarts every sample."""
    g = _delay_graph(bias=5, vth=10_000)
    n = 3
    x = np.zeros((n, 4, 1), dtype=np.int64)
    tl = event_sim.simulate(g, check_inputs(g, x), record_state=True)
    v = tl.v["p"][:, 0, 0]
    # fill (steps 0..2) integrates the bias, then the reset at steps 3, 7, 11, and 15 (drain)
    np.testing.assert_array_equal(v[:3], [5, 10, 15])
    np.testing.assert_array_equal(v[3:15], np.tile([5, 10, 15, 20], n))
    res = event_sim.run(g, x, record_state=True)
    np.testing.assert_array_equal(res.states["p"][1][:, :, 0], np.tile([5, 10, 15, 20], (n, 1)))
    _assert_equals_torch_ref(g, x)
    # with input: every sample gives what it gives alone
    x = np.random.default_rng(5).integers(0, 2, (5, 4, 1))
    g = _delay_graph(bias=40, vth=6)
    together = event_sim.run(g, x, record_state=True)
    for i in range(len(x)):
        alone = event_sim.run(g, x[i : i + 1], record_state=True)
        for p in g.populations:
            np.testing.assert_array_equal(together.states[p][1][i], alone.states[p][1][0])
            np.testing.assert_array_equal(together.spikes[p][i], alone.spikes[p][0])
        np.testing.assert_array_equal(together.readouts["r"][i], alone.readouts["r"][0])
    _assert_equals_torch_ref(g, x)


def _residual_graph() -> QGraph:
    """Quantized from float NIR: input -> conv-maxpool-lif a -> conv-lif b; the identity
    shortcut a + b -> conv -> lif c (a->c needs delay 1); a + c -> conv -> lif d (a->d needs
    delay 2); d -> linear readout. Biases everywhere."""
    torch = pytest.importorskip("torch")
    from convert.nir_builder import NIRBuilder
    from convert.nir_import import import_nir
    from convert.quantize import quantize

    gen = torch.Generator().manual_seed(0)

    def conv(b, src, c_in):
        return b.conv(src, weight=torch.randn(4, c_in, 3, 3, generator=gen),
                      bias=0.3 * torch.randn(4, generator=gen), padding=1)

    b = NIRBuilder((1, 9, 9))
    a = b.lif(b.maxpool(conv(b, "input", 1), 2), 0.5, 1.0, name="a")  # 9x9 -> pooled 4x4
    bb = b.lif(conv(b, a, 4), 0.5, 1.0, name="b")
    c = b.lif(conv(b, [a, bb], 4), 0.5, 1.0, name="c")
    d = b.lif(conv(b, [a, c], 4), 0.7, 1.5, name="d")
    b.output(b.linear(b.flatten(d), weight=torch.randn(3, 64, generator=gen)))
    fg = import_nir(b.graph({"dt": 1e-3, "timesteps": 5, "encoding": "direct",
                             "input_scale": 1 / 255, "input_max": 255}))
    qg, _ = quantize(fg)
    return qg


def test_residual_with_delays_and_max_pool_equals_torch_ref():
    g = _residual_graph()
    delays = {(s.source, s.target): s.delay for s in g.synapses}
    assert delays[("a", "c")] == 1 and delays[("b", "c")] == 0
    assert delays[("a", "d")] == 2 and delays[("c", "d")] == 0
    assert g.latency()["d"] == 4
    pooled = [s for s in g.synapses if isinstance(s, Conv) and s.max_pool]
    assert len(pooled) == 1 and pooled[0].conv_shape == (4, 9, 9)  # trailing row dropped
    x = np.random.default_rng(0).integers(0, 256, (6, 5, 1, 9, 9))
    res = _assert_equals_torch_ref(g, x)
    for p in g.populations:  # real activity on every path
        assert 0 < res.spikes[p].mean() < 1, p
    assert res.counters["mac"] > 0 and res.counters["ac"] > 0
    for lanes in (2, 4):
        _assert_equals_torch_ref(g, x, lanes=lanes)


@pytest.mark.parametrize("density", [0.0, 2.0], ids=["dense-rows", "csr-scatter"])
def test_conv_max_pool_of_currents(density, monkeypatch):
    """Readout of a pooled conv: max_pool2d(conv_output(conv2d(x))), events from the conv."""
    monkeypatch.setattr(event_sim, "DENSE_ROWS_MIN_DENSITY", density)
    rng = np.random.default_rng(6)
    w, in_shape, conv_shape = _conv_case(rng, 2, (7, 7), 4, (3, 3), (1, 1), (1, 1), 1)
    w = w * 20
    out_shape = (4, 3, 3)  # 7x7 pooled by 2: the last row and column are dropped
    c = Conv("c", "input", "r", w, (1, 1), (1, 1), 1, in_shape, out_shape, delay=1,
             max_pool=(2, 2))
    g = QGraph(InputSpec(in_shape, "graded", 255), {}, {"r": Readout("r", out_shape)}, [c],
               timesteps=3)
    g.validate()
    x = rng.integers(0, 256, (4, 3, *in_shape))
    x[rng.random(x.shape) < 0.5] = 0
    res = event_sim.run(g, x, lanes=2)
    conv = fx.conv_output(conv2d(x.reshape(12, *in_shape), w, (1, 1), (1, 1), 1))
    want = fx.max_pool2d(conv, (2, 2)).reshape(4, 3, -1)
    np.testing.assert_array_equal(res.readouts["r"], want)
    assert (want < 0).any()  # the max of negative currents is not clipped at 0
    ev = conv2d((x != 0).reshape(12, *in_shape).astype(np.int64), (w != 0).astype(np.int64),
                (1, 1), (1, 1), 1).sum()
    assert res.counters["events/c"] == res.counters["mac"] == ev
    _assert_equals_torch_ref(g, x)


def test_source_slices_and_conv_weight_exp():
    """Hand-built bit planes (3 planes, Conv with weight_exp = plane) and a Dense reading
    half of a population: the planes are binary (ACs), the readout sees the sliced source."""
    rng = np.random.default_rng(7)
    in_shape, size = (1, 6, 6), 36
    w = rng.integers(-30, 31, (3, 1, 3, 3)) * 2
    planes = [Conv(f"k_b{b}", "input", "p", w, (1, 1), (1, 1), 1, in_shape, (3, 6, 6),
                   weight_exp=b, source_slice=(b * size, (b + 1) * size)) for b in range(3)]
    g = QGraph(
        InputSpec(in_shape, "graded", 7, bitplanes=3),
        {"p": LIFPopulation("p", (3, 6, 6), 200, 300, 100, rng.integers(-30, 60, 108), 1)},
        {"r": Readout("r", (4,))},
        [*planes, Dense("half", "p", "r", rng.integers(-40, 41, (4, 54)) * 2, -1, 1, (54, 108))],
        timesteps=4,
    )
    g.validate()
    x = rng.integers(0, 8, (5, 4, *in_shape))
    res = _assert_equals_torch_ref(g, x)
    assert 0 < res.spikes["p"].mean() < 1
    assert res.counters["mac"] == 0 and res.counters["ac"] == res.counters["synaptic_events"]
    # plane b carries bit b of the input: its events are the fan-out of those bits
    for b in range(3):
        bits = ((x >> b) & 1).reshape(20, *in_shape)
        ev = conv2d(bits, (w != 0).astype(np.int64), (1, 1), (1, 1), 1).sum()
        assert res.counters[f"events/k_b{b}"] == ev
    ev = (res.spikes["p"].reshape(20, -1)[:, 54:].astype(np.int64)
          @ (g.synapses[-1].weight != 0).T.astype(np.int64)).sum()
    assert res.counters["events/half"] == ev


@pytest.mark.parametrize("model", ["fc_snn_digits.nir", "conv_snn_digits.nir"])
def test_golden_models_with_bitplane_input_equal_torch_ref(model):
    pytest.importorskip("targets.torch_ref")
    from pathlib import Path

    from convert import load_graph
    from tests.golden import golden_inputs

    data = Path(__file__).resolve().parents[1] / "data"
    g, _ = load_graph(data / model, input_bitplanes=True)
    assert g.input.bitplanes == 8
    assert any(s.source_slice is not None for s in g.synapses)
    x = golden_inputs(g)
    res = _assert_equals_torch_ref(g, x)
    assert res.counters["mac"] == 0 and res.counters["ac"] > 0
    assert all(s.any() for s in res.spikes.values())
