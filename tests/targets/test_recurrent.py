"""Recurrent networks (issue 8, item 6): a population's synapse onto itself.

Semantics (docs/integer-nir.md §3 G6, §6 T8; docs/contract.md "Time"): a recurrent synapse
brings its population's spikes of step t to step t + 1 + delay of the same sample, as
snnTorch's RLeaky/RSynaptic do (delay 0: the spikes of the previous step). On the pipelined
chip every synapse takes one step, so a population's own spikes of deployed step s arrive at
s + 1, exactly when it takes its next input step; what it emits in the last 1 + delay steps of
a sample is dropped on every target (the next sample starts with no recurrent input). A loop
through several populations takes one step per synapse on the chip but one in the trained
model: refused in one line naming the loop.

The reference case is the size people use for tactile/audio tasks: 12 inputs, 40 recurrent
CubaLIF neurons, 7 outputs, 60 steps, built with ``nir`` here, flat (a cycle) and nested (the
subgraph snnTorch writes for RSynaptic, whose ports the outer edges name ``rsyn.input`` and
``rsyn.output``).
"""

from __future__ import annotations

from dataclasses import replace

import nir
import numpy as np
import pytest

from convert.float_sim import simulate as float_simulate
from convert.nir_import import import_nir
from convert.quantize import quantize
from core.errors import GraphError
from core.graph import (
    INPUT,
    Conv,
    Dense,
    InputSpec,
    LIFPopulation,
    QGraph,
    Readout,
    SpikeAttention,
    balance_delays,
    node_latencies,
    topo_order,
)
from core.nir_ext import read_nir
from core.nir_io import from_nir, to_nir, write_qgraph
from targets import event_sim, loihi, torch_ref

DT = 1e-4  # snnTorch's export convention: tau = dt / (1 - beta), r = tau / dt, w_in = tau_syn / dt
N_IN, N_REC, N_OUT, T = 12, 40, 7, 60


# --- the reference network, built with nir ------------------------------------------------------

def cuba(n: int, alpha: float, beta: float) -> nir.CubaLIF:
    """An snnTorch ``Synaptic`` population as its exporter writes it (threshold 1)."""
    tau_syn, tau_mem = DT / (1 - alpha), DT / (1 - beta)
    ones = np.ones(n)
    return nir.CubaLIF(tau_syn=tau_syn * ones, tau_mem=tau_mem * ones, r=tau_mem / DT * ones,
                       v_leak=0 * ones, v_threshold=ones, w_in=tau_syn / DT * ones,
                       v_reset=0 * ones)


def reference_weights(seed: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"fc1": rng.normal(0.1, 0.5, (N_REC, N_IN)),
            "w_rec": rng.normal(-0.05, 0.3, (N_REC, N_REC)),
            "fc2": rng.normal(0.0, 0.3, (N_OUT, N_REC))}


def reference_net(nested: bool, w: dict[str, np.ndarray] | None = None) -> nir.NIRGraph:
    """12 -> Linear -> CubaLIF(40) with a recurrent Linear -> Linear -> CubaLIF(7) -> Output.

    ``nested``: the recurrent layer as snnTorch's RSynaptic export, a subgraph ``rsyn`` with
    nodes input, lif, w_rec, output; the outer edges name its ports ``rsyn.input`` and
    ``rsyn.output``. Flat: the same nodes named ``rsyn.lif`` and ``rsyn.w_rec``, a cycle."""
    w = reference_weights() if w is None else w
    lif = cuba(N_REC, 0.7, 0.9)
    outer = {"input": nir.Input(input_type=np.array([N_IN])),
             "fc1": nir.Linear(weight=w["fc1"]), "fc2": nir.Linear(weight=w["fc2"]),
             "out_lif": cuba(N_OUT, 0.6, 0.85),
             "output": nir.Output(output_type=np.array([N_OUT]))}
    tail = [("fc2", "out_lif"), ("out_lif", "output"), ("input", "fc1")]
    if nested:
        sub = nir.NIRGraph(
            nodes={"input": nir.Input(input_type=np.array([N_REC])), "lif": lif,
                   "w_rec": nir.Linear(weight=w["w_rec"]),
                   "output": nir.Output(output_type=np.array([N_REC]))},
            edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
            type_check=False)
        return nir.NIRGraph(nodes={**outer, "rsyn": sub},
                            edges=[("fc1", "rsyn.input"), ("rsyn.output", "fc2"), *tail],
                            type_check=False)
    return nir.NIRGraph(
        nodes={**outer, "rsyn.lif": lif, "rsyn.w_rec": nir.Linear(weight=w["w_rec"])},
        edges=[("fc1", "rsyn.lif"), ("rsyn.lif", "rsyn.w_rec"), ("rsyn.w_rec", "rsyn.lif"),
               ("rsyn.lif", "fc2"), *tail],
        type_check=False)


def reference_inputs(n: int = 6, seed: int = 3) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, T, N_IN)) < 0.2).astype(np.int8)


@pytest.fixture(scope="module")
def deployed() -> QGraph:
    qg, _ = quantize(import_nir(reference_net(nested=False), dt=DT, timesteps=T))
    return qg


def assert_same(a, b, states: bool = True) -> None:
    """Identical spike, readout (and u, v) records."""
    assert set(a.spikes) == set(b.spikes) and set(a.readouts) == set(b.readouts)
    for k in a.spikes:
        assert np.array_equal(a.spikes[k], b.spikes[k]), k
    for k in a.readouts:
        assert np.array_equal(a.readouts[k], b.readouts[k]), k
    if states:
        for k in a.states:
            assert np.array_equal(a.states[k][0], b.states[k][0]), (k, "u")
            assert np.array_equal(a.states[k][1], b.states[k][1]), (k, "v")


# --- import ------------------------------------------------------------------------------------

def test_reference_network_imports_with_one_recurrent_synapse(deployed):
    rec = [s for s in deployed.synapses if s.source == s.target]
    assert [(s.name, s.source, s.delay) for s in rec] == [("rsyn.w_rec", "rsyn.lif", 0)]
    assert deployed.populations["rsyn.lif"].shape == (N_REC,)
    # the recurrent synapse adds no latency and needs no balancing
    assert deployed.latency() == {INPUT: 0, "rsyn.lif": 1, "out_lif": 2, "output": 3}
    assert all(s.delay == 0 for s in deployed.synapses)


def test_nested_subgraph_imports_as_the_flat_cycle(tmp_path):
    """snnTorch's nested form (outer edges naming ``rsyn.input``/``rsyn.output``), as an
    object and through a file, gives the same integer graph as the flat cycle."""
    flat, _ = quantize(import_nir(reference_net(nested=False), dt=DT, timesteps=T))
    nir.write(tmp_path / "nested.nir", reference_net(nested=True))
    g = read_nir(tmp_path / "nested.nir")  # flattened on reading
    assert sorted(g.nodes) == ["fc1", "fc2", "input", "out_lif", "output", "rsyn.lif",
                               "rsyn.w_rec"]
    assert ("rsyn.w_rec", "rsyn.lif") in g.edges and ("fc1", "rsyn.lif") in g.edges
    for source in (reference_net(nested=True), tmp_path / "nested.nir"):
        q, _ = quantize(import_nir(source, dt=DT, timesteps=T))
        got, want = ({s.name: s for s in g.synapses} for g in (q, flat))
        assert sorted(got) == sorted(want)
        for name, b in want.items():
            a = got[name]
            assert (a.source, a.target, a.weight_exp) == (b.source, b.target, b.weight_exp)
            assert np.array_equal(a.weight, b.weight), name
        for name, p in flat.populations.items():
            assert (q.populations[name].du, q.populations[name].dv, q.populations[name].vth) \
                == (p.du, p.dv, p.vth)


@pytest.mark.filterwarnings("ignore:nirtorch.extract_nir_graph is being deprecated")
def test_snntorch_rsynaptic_export_deploys_spike_exactly(monkeypatch):
    """snnTorch's own exporter on the reference size (RSynaptic 40, Synaptic 7): snnTorch 1.0
    with nirtorch 2.6 names the recurrent layer's nodes ``1.lif`` and ``1.w_rec`` (flat)."""
    snn = pytest.importorskip("snntorch")
    torch = pytest.importorskip("torch")
    from snntorch.export_nir import export_to_nir

    # snnTorch 1.0 writes scalar parameters that nir 1.0.8's type inference rejects
    monkeypatch.setattr(nir.NIRGraph, "infer_types", lambda self: None)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(N_IN, N_REC),
        snn.RSynaptic(alpha=0.7, beta=0.9, linear_features=N_REC, init_hidden=True),
        torch.nn.Linear(N_REC, N_OUT),
        snn.Synaptic(alpha=0.6, beta=0.85, init_hidden=True, output=True))
    with torch.no_grad():
        net[0].weight.mul_(4.0)
        net[2].weight.mul_(4.0)
    qg, _ = quantize(import_nir(export_to_nir(net, torch.zeros(1, N_IN)), dt=DT, timesteps=T))
    assert [s.name for s in qg.synapses if s.source == s.target] == ["1.w_rec"]
    x = reference_inputs(4)
    want = torch_ref.run(qg, x, record_state=True)
    assert want.spikes["1.lif"].any(axis=(1, 2)).all() and want.spikes["3"].any()
    assert_same(want, event_sim.run(qg, x, record_state=True))


def test_nested_subgraph_with_an_unknown_inner_name_is_refused():
    g = reference_net(nested=True)
    bad = nir.NIRGraph(nodes=g.nodes, edges=[("fc1", "rsyn.in"), *g.edges[1:]],
                       type_check=False)
    with pytest.raises(GraphError, match=r"^edge fc1->rsyn.in refers to unknown node 'rsyn.in'$"):
        import_nir(bad, dt=DT, timesteps=T)


def test_float_simulation_follows_the_rsynaptic_equations():
    """The imported float graph is snnTorch's RSynaptic (with Loihi's reset to zero at the
    spike): ``syn = alpha syn + W_in x[t] + W_rec s[t-1]``, ``mem = beta mem + syn``,
    ``s = mem > 1``; written out here independently of the importer."""
    w = reference_weights()
    x = reference_inputs(3)
    _, spikes = float_simulate(import_nir(reference_net(nested=True), dt=DT, timesteps=T), x)
    n = x.shape[0]
    syn, mem, s = np.zeros((n, N_REC)), np.zeros((n, N_REC)), np.zeros((n, N_REC))
    want = np.zeros((n, T, N_REC), dtype=bool)
    for t in range(T):
        syn = 0.7 * syn + x[:, t] @ w["fc1"].T + s @ w["w_rec"].T
        mem = 0.9 * mem + syn
        s = (mem > 1).astype(float)
        mem = np.where(s > 0, 0.0, mem)
        want[:, t] = s > 0
    assert want.any(axis=(1, 2)).all()  # every sample fires
    assert np.array_equal(spikes["rsyn.lif"], want)


# --- spike-exact on every target ---------------------------------------------------------------

def test_reference_network_torch_ref_equals_event_sim(deployed):
    """Six samples back to back (lanes 1 and 3): every record and counter agrees, the first
    step of every sample included; the recurrent synapse matters (without it the spikes
    differ) and the recurrent layer fires in every sample."""
    x = reference_inputs()
    want = torch_ref.run(deployed, x, record_state=True)
    assert want.spikes["rsyn.lif"].any(axis=(1, 2)).all()
    assert want.spikes["out_lif"].any()
    for lanes in (1, 3):
        got = event_sim.run(deployed, x, record_state=True, lanes=lanes)
        assert_same(want, got)
        for k in ("synaptic_events", "ac", "events/rsyn.w_rec"):
            assert got.counters[k] == want.counters[k], k
    no_rec = replace(deployed, synapses=[
        replace(s, weight=0 * s.weight) if s.source == s.target else s
        for s in deployed.synapses])
    assert not np.array_equal(torch_ref.run(no_rec, x).spikes["rsyn.lif"],
                              want.spikes["rsyn.lif"])


def test_spikes_at_the_end_of_a_sample_do_not_reach_the_next():
    """The recurrent spikes of a sample's last step are dropped on the deployed timeline:
    kept, they would reach the next sample's first step (and change it)."""
    P = LIFPopulation("P", (1,), du=4095, dv=4095, vth=0, bias_mant=np.zeros(1, np.int64))
    g = QGraph(InputSpec((1,)), {"P": P}, {},
               [Dense("in", INPUT, "P", np.array([[1]])), Dense("rec", "P", "P", np.array([[1]]))],
               timesteps=3)
    x = np.array([[[1], [0], [0]], [[0], [0], [0]]])
    # one input spike starts P; it keeps itself firing to the end of the sample, not beyond
    want = [[[1], [1], [1]], [[0], [0], [0]]]
    for run in (torch_ref.run, event_sim.run):
        assert run(g, x).spikes["P"].astype(int).tolist() == want


@pytest.mark.parametrize("delay", [0, 2])
def test_recurrent_dense_and_conv_with_delays_torch_ref_equals_event_sim(delay):
    g, x = delayed_graph(delay)
    want = torch_ref.run(g, x, record_state=True)
    assert want.spikes["C"].any() and want.spikes["P"].any()
    for lanes in (1, 2):
        assert_same(want, event_sim.run(g, x, record_state=True, lanes=lanes))


def delayed_graph(delay: int, seed: int = 4) -> tuple[QGraph, np.ndarray]:
    """input (1, 3, 3) -> P (flat, recurrent Dense with ``delay``) and -> C (2, 3, 3) by a
    conv, C with a recurrent 3x3 conv (delay 1); both -> readout. T = 7, five samples."""
    rng = np.random.default_rng(seed)

    def pop(name, shape, vth):
        return LIFPopulation(name, shape, du=int(rng.integers(0, 4096)),
                             dv=int(rng.integers(0, 4096)), vth=vth,
                             bias_mant=rng.integers(-4, 5, size=int(np.prod(shape))), bias_exp=2)

    def even(lo, hi, shape):
        return rng.integers(lo // 2, hi // 2 + 1, size=shape).astype(np.int64) * 2

    g = QGraph(InputSpec((1, 3, 3)), {"P": pop("P", (9,), 40), "C": pop("C", (2, 3, 3), 30)},
               {"R": Readout("R", (3,))},
               [Dense("in_P", INPUT, "P", even(-40, 90, (9, 9))),
                Dense("P_P", "P", "P", even(-60, 80, (9, 9)), delay=delay),
                Conv("in_C", INPUT, "C", even(-40, 90, (2, 1, 1, 1)), (1, 1), (0, 0), 1,
                     (1, 3, 3), (2, 3, 3)),
                Conv("C_C", "C", "C", even(-40, 60, (2, 2, 3, 3)), (1, 1), (1, 1), 1,
                     (2, 3, 3), (2, 3, 3), delay=1),
                Dense("C_R", "C", "R", even(-20, 20, (3, 18))),
                Dense("P_R", "P", "R", even(-20, 20, (3, 9)))],
               timesteps=7)
    g.validate()
    x = (rng.random((5, 7, 1, 3, 3)) < 0.4).astype(np.int64)
    return g, x


def test_reference_network_on_lava(deployed):
    """Lava (LIFReset + stock Dense, our SpikeGate dropping what would cross a sample
    boundary): the six samples, in chunks of 4 and 2, equal torch_ref, u and v included."""
    x = reference_inputs()
    assert_same(torch_ref.run(deployed, x, record_state=True),
                loihi.run(deployed, x, record_state=True, chunk=4))


def test_recurrent_delays_and_conv_on_lava():
    """A recurrent DelayDense (delay 2) and a recurrent Lava Conv with a delay relay."""
    g, x = delayed_graph(2)
    assert_same(torch_ref.run(g, x, record_state=True), loihi.run(g, x, record_state=True))


# --- refusals ----------------------------------------------------------------------------------

def lif(n: int) -> nir.LIF:
    return nir.LIF(tau=np.full(n, 1e-3), r=np.full(n, 10.0), v_leak=np.zeros(n),
                   v_threshold=np.ones(n), v_reset=np.zeros(n))


def test_loop_through_two_populations_is_refused_in_one_line():
    """A -> B -> A: on the chip the loop takes 2 steps, in the trained model 1."""
    g = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([3])), "w_in": nir.Linear(np.ones((4, 3))),
               "A": lif(4), "ab": nir.Linear(np.ones((5, 4))), "B": lif(5),
               "ba": nir.Linear(np.ones((4, 5))), "output": nir.Output(output_type=np.array([5]))},
        edges=[("input", "w_in"), ("w_in", "A"), ("A", "ab"), ("ab", "B"), ("B", "ba"),
               ("ba", "A"), ("B", "output")], type_check=False)
    with pytest.raises(GraphError) as e:
        quantize(import_nir(g, dt=1e-4, timesteps=5))
    assert str(e.value) == (
        "recurrent loop 'A' -> 'B' -> 'A' runs through 2 populations: it takes 2 steps on the "
        "chip (one per synapse) but 1 in the trained model; only a population's synapses onto "
        "itself can be recurrent")
    # the same refusal for an integer graph built directly
    pops = {n: LIFPopulation(n, (2,), 0, 0, 1, np.zeros(2, np.int64)) for n in "AB"}
    q = QGraph(InputSpec((2,)), pops, {}, [Dense("i", INPUT, "A", np.eye(2, dtype=np.int64)),
                                           Dense("ab", "A", "B", np.eye(2, dtype=np.int64)),
                                           Dense("ba", "B", "A", np.eye(2, dtype=np.int64))], 3)
    with pytest.raises(GraphError, match=r"^recurrent loop 'A' -> 'B' -> 'A' runs through 2 "):
        q.validate()


def test_loop_of_linear_nodes_without_a_neuron_is_refused():
    g = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([3])), "a": nir.Linear(np.eye(3)),
               "b": nir.Linear(np.eye(3)), "A": lif(3),
               "output": nir.Output(output_type=np.array([3]))},
        edges=[("input", "a"), ("a", "b"), ("b", "a"), ("b", "A"), ("A", "output")],
        type_check=False)
    with pytest.raises(GraphError, match="^linear nodes 'b' -> 'a' -> 'b' form a loop without "
                                         "a neuron: nothing breaks it into steps$"):
        quantize(import_nir(g, dt=1e-4, timesteps=5))


def test_recurrent_attention_is_refused():
    pops = {n: LIFPopulation(n, (2, 2), 0, 0, 1, np.zeros(4, np.int64)) for n in "qk"}
    q = QGraph(InputSpec((4,)), pops, {},
               [Dense("i", INPUT, "q", np.eye(4, dtype=np.int64)),
                Dense("j", INPUT, "k", np.eye(4, dtype=np.int64)),
                SpikeAttention("att", ("q", "k", "q"), "q", heads=1)], 3)
    with pytest.raises(GraphError, match=r"^synapse 'att': a spike attention cannot read its "
                                         r"own target 'q'"):
        q.validate()


# --- the latency walks and the quantizer -------------------------------------------------------

def test_latency_walks_ignore_recurrent_synapses():
    syns = [Dense("i", INPUT, "A", np.eye(2)), Dense("aa", "A", "A", np.eye(2), delay=2),
            Dense("ab", "A", "B", np.eye(2)), Dense("bb", "B", "B", np.eye(2)),
            Dense("ib", INPUT, "B", np.eye(2))]
    assert topo_order(["B", "A"], syns) == ["A", "B"]
    assert node_latencies(["A", "B"], syns, balanced=False) == {INPUT: 0, "A": 1, "B": 2}
    balanced = balance_delays(["A", "B"], syns)
    # the skip input -> B waits one step; the recurrent synapses keep their own delays
    assert [s.delay for s in balanced] == [0, 2, 0, 0, 1]


def test_quantizer_scale_and_headroom_include_the_recurrent_weights():
    """The recurrent synapse is one of the population's inputs: its weights bound the scale
    (here they are the largest and get the full 8-bit range) and its worst case counts in the
    population's 24-bit headroom."""
    w = reference_weights()
    w["w_rec"] = 3 * w["w_rec"] / np.abs(w["w_rec"]).max()  # the largest weights
    w["fc1"] = w["fc1"] / np.abs(w["fc1"]).max()
    qg, report = quantize(import_nir(reference_net(nested=False, w=w), dt=DT, timesteps=T))
    rec = report.synapses["rsyn.w_rec"]
    assert rec.source == rec.target == "rsyn.lif"
    assert rec.max_abs_weight * 2**rec.weight_exp >= 250
    syn = {s.name: s for s in qg.synapses}
    worst = sum(max(np.clip(syn[n].weight, 0, None).sum(1).max(),
                    -np.clip(syn[n].weight, None, 0).sum(1).min()) * 2.0**syn[n].weight_exp
                for n in ("fc1", "rsyn.w_rec"))
    assert report.populations["rsyn.lif"].worst_a_in == int(worst)


# --- the integer-NIR file ----------------------------------------------------------------------

def test_integer_file_marks_the_recurrent_synapse(deployed, tmp_path):
    write_qgraph(tmp_path / "rec.nir", deployed)
    stock = nir.read(str(tmp_path / "rec.nir"))  # only standard primitives: stock NIR reads it
    assert int(stock.nodes["rsyn.w_rec"].metadata["loihi_recurrent"]) == 1
    assert "loihi_recurrent" not in stock.nodes["fc1"].metadata
    assert ("rsyn.lif", "rsyn.w_rec") in stock.edges and ("rsyn.w_rec", "rsyn.lif") in stock.edges
    back = from_nir(read_nir(tmp_path / "rec.nir"))
    x = reference_inputs(2)
    assert_same(torch_ref.run(deployed, x), torch_ref.run(back, x), states=False)


def test_integer_file_with_a_wrong_recurrent_mark_is_refused(deployed):
    g = to_nir(deployed)
    g.nodes["rsyn.w_rec"].metadata.pop("loihi_recurrent")
    with pytest.raises(GraphError, match="synapse 'rsyn.w_rec' feeds the population 'rsyn.lif' "
                                         "it reads but is not marked loihi_recurrent"):
        from_nir(g)
    g = to_nir(deployed)
    g.nodes["fc2"].metadata["loihi_recurrent"] = 1
    with pytest.raises(GraphError, match="synapse 'fc2' is marked loihi_recurrent but reads "
                                         "'rsyn.lif' and feeds 'out_lif'"):
        from_nir(g)
