"""Foreign NIR graphs, one kind of fault each (issue 8): every graph is built here with the
``nir`` package as an exporter would write it, and either runs with the NIR semantics on every
target or is refused in one line.

The expected spikes come from small numpy simulations of the NIR semantics written in each
test (forward Euler at the graph's ``dt``, reset to zero, spike on ``v > threshold``), not from
our importer: weights and decays are chosen so that quantization is exact, and the deployed
spikes must then equal them. torch_ref and event_sim must agree exactly everywhere; Lava is run
on the same graphs through ``targets.verify`` at the end of the file (with the ONNX step
graph, ``onnx_rt``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nir
import numpy as np
import pytest

from convert import load_graph
from convert.nir_import import import_nir
from convert.quantize import quantize
from core import fixedpoint as fx
from core.errors import GraphError, UserError
from core.nir_io import to_nir, write_qgraph
from targets import event_sim, torch_ref

ROOT = Path(__file__).resolve().parents[2]
RNG = np.random.default_rng(8)


def graph(nodes: dict, edges: list[tuple[str, str]], **metadata) -> nir.NIRGraph:
    """A NIR graph as an exporter hands it over (no type check: exporters skip it too)."""
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)


def chain(*named: tuple[str, object], **metadata) -> nir.NIRGraph:
    """Nodes in a row, each feeding the next."""
    names = [n for n, _ in named]
    return graph(dict(named), list(zip(names, names[1:], strict=False)), **metadata)


def save(tmp_path: Path, g: nir.NIRGraph, x: np.ndarray | None = None,
         name: str = "g") -> tuple[Path, Path | None]:
    """Write the graph (and inputs) as a user would get them."""
    path = tmp_path / f"{name}.nir"
    nir.write(str(path), g, compression=None)
    if x is None:
        return path, None
    np.save(tmp_path / f"{name}_x.npy", x)
    return path, tmp_path / f"{name}_x.npy"


def run_both(qg, x):
    """torch_ref's run, after checking that event_sim gives the same records."""
    a, b = torch_ref.run(qg, x), event_sim.run(qg, x)
    assert set(a.spikes) == set(b.spikes) and set(a.readouts) == set(b.readouts)
    for n in a.spikes:
        assert np.array_equal(a.spikes[n], b.spikes[n]), n
    for n in a.readouts:
        assert np.array_equal(a.readouts[n], b.readouts[n]), n
    return a


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args, "--no-progress"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def if_reference(current: np.ndarray, threshold: float = 1.0) -> np.ndarray:
    """IF neurons, one unit of input per step: current [N, T, n] -> spikes bool [N, T, n]."""
    v = np.zeros((current.shape[0], current.shape[2]))
    out = np.zeros(current.shape, dtype=bool)
    for t in range(current.shape[1]):
        v = v + current[:, t]
        out[:, t] = v > threshold
        v[out[:, t]] = 0.0
    return out


def spikes(n: int, t: int, *shape: int, p: float = 0.4) -> np.ndarray:
    return (RNG.random((n, t, *shape)) < p).astype(np.int8)


def snn_lif(n: int, beta: float | np.ndarray, dt: float, threshold: float = 1.0) -> nir.LIF:
    """A LIF as snnTorch writes it: ``tau = dt / (1 - beta)``, ``r = tau / dt``."""
    tau = dt / (1 - np.broadcast_to(np.asarray(beta, dtype=float), (n,)))
    return nir.LIF(tau=tau, r=tau / dt, v_leak=np.zeros(n), v_threshold=np.full(n, threshold))


# --- 1. timesteps come from the input ---------------------------------------------------------

def _no_t_graph():
    return chain(("input", nir.Input({"input": np.array([6])})),
                 ("fc", nir.Linear(RNG.choice([-1.0, 1.0], (4, 6)))),
                 ("lif", snn_lif(4, 0.5, 1e-4)), ("output", nir.Output({"output": np.array([4])})))


def test_timesteps_come_from_the_input_when_the_graph_records_none(tmp_path):
    x = spikes(5, 16, 6)
    qg, _ = load_graph(save(tmp_path, _no_t_graph())[0], input_timesteps=16)
    assert qg.timesteps == 16
    path, xp = save(tmp_path, _no_t_graph(), x)
    for prog in ("targets.verify", "targets.event_sim", "targets.torch_ref", "targets.mfi"):
        extra = ["--targets", "torch_ref,event_sim"] if prog == "targets.verify" else []
        r = cli(prog, str(path), "--input", str(xp), *extra)
        assert r.returncode == 0, (prog, r.stderr)
        assert "T=16" in r.stdout, r.stdout
    out = tmp_path / "q.loihi.nir"
    r = cli("convert.quantize", str(path), "--input", str(xp), "-o", str(out))
    assert r.returncode == 0 and "T=16" in r.stdout, r.stderr
    assert load_graph(out)[0].timesteps == 16


def test_a_recorded_timesteps_that_disagrees_with_the_input_is_one_error(tmp_path):
    g = _no_t_graph()
    g.metadata["timesteps"] = 10
    path, xp = save(tmp_path, g, spikes(3, 16, 6))
    with pytest.raises(UserError, match="the input has 16 timesteps but the graph records "
                       "timesteps=10; pass --timesteps 16"):
        load_graph(path, input_timesteps=16)
    r = cli("targets.event_sim", str(path), "--input", str(xp))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "pass --timesteps 16" in r.stderr
    r = cli("targets.event_sim", str(path), "--input", str(xp), "--timesteps", "16")
    assert r.returncode == 0, r.stderr  # --timesteps overrides what the graph records
    # an integer graph records T too: the same rule
    qg, rep = load_graph(path)
    write_qgraph(tmp_path / "i.nir", qg, rep)
    with pytest.raises(UserError, match="records timesteps=10"):
        load_graph(tmp_path / "i.nir", input_timesteps=16)


# --- 2. dt: where it comes from, and what goes silent -------------------------------------

def _if_graph(weight: float = 0.0625, **meta) -> nir.NIRGraph:
    return chain(("input", nir.Input({"input": np.array([1])})),
                 ("fc", nir.Linear(np.array([[weight]]))),
                 ("if", nir.IF(r=np.array([1.0]), v_threshold=np.array([1.0]))),
                 ("output", nir.Output({"output": np.array([1])})), **meta)


def test_if_without_dt_integrates_one_unit_of_input_per_step():
    """Sinabs writes IF with r = 1 and no dt (its step is v += I); SpikingJelly r = 1/dt: both
    pin dt = 1/r. 0.0625 per step crosses 1 at the 17th step, twice in 40."""
    fg = import_nir(_if_graph(), input_timesteps=40)
    assert (fg.metadata["dt"], fg.metadata["dt_source"]) == (1.0, "inferred")
    assert "r = 1/dt" in fg.metadata["dt_detail"]
    qg, rep = quantize(fg)
    assert rep.dt == 1.0 and "inferred from the file" in rep.dt_source and rep.warnings == []
    r = run_both(qg, np.ones((1, 40, 1), np.int8))
    assert np.flatnonzero(r.spikes["if"][0, :, 0]).tolist() == [16, 33]
    sj = chain(("input", nir.Input({"input": np.array([1])})),
               ("fc", nir.Linear(np.array([[0.0625]]))),
               ("if", nir.IF(r=np.array([1e4]), v_threshold=np.array([1.0]))),
               ("output", nir.Output({"output": np.array([1])})))  # SpikingJelly: r = 1/dt
    r = run_both(load_graph_from(sj, timesteps=40), np.ones((1, 40, 1), np.int8))
    assert np.flatnonzero(r.spikes["if"][0, :, 0]).tolist() == [16, 33]


def load_graph_from(g: nir.NIRGraph, **kw):
    return quantize(import_nir(g, **kw))[0]


def test_a_synapse_that_floors_to_zero_and_a_silent_population_are_reported(tmp_path):
    """The same IF at dt = 1e-4 (what was silently assumed before): its input gain 6.25e-6
    makes the weight 210 * 2**-8, which floors to 0 every step. Reported in the quantization
    report (``floors_to_zero``), as a warning, and after the run as a silent population;
    --strict makes that exit 1."""
    qg, rep = quantize(import_nir(_if_graph(), dt=1e-4, timesteps=40))
    assert rep.synapses["fc"].floors_to_zero and rep.silent_synapses() == ["fc"]
    assert any("fc: the most it delivers in one step floors to 0" in w for w in rep.warnings)
    path, xp = save(tmp_path, _if_graph(), np.ones((1, 40, 1), np.int8))
    r = cli("targets.event_sim", str(path), "--input", str(xp), "--dt", "1e-4", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["silent_populations"] == ["if"] and s["silent_synapses"] == ["fc"]
    assert s["dt"] == {"value": 1e-4, "source": "given", "detail": "given with --dt"}
    assert "event_sim: warning: population if never spiked on these 1 samples" in r.stderr
    r = cli("targets.event_sim", str(path), "--input", str(xp), "--dt", "1e-4", "--strict")
    assert r.returncode == 1 and "floors to 0" in r.stderr
    r = cli("targets.event_sim", str(path), "--input", str(xp), "--strict")
    assert r.returncode == 0, r.stderr  # dt = 1 inferred: it spikes, no warning
    assert "dt=1 s (inferred from the file: r = 1/dt" in r.stdout


def test_all_zero_weights_are_a_warning():
    """Two synapses into one population at scales 1000 apart: the small one rounds to 0."""
    g = graph({"input": nir.Input({"input": np.array([2])}),
               "big": nir.Linear(np.array([[1.0, 0.0]])), "small": nir.Linear(np.array(
                   [[0.0, 1e-6]])), "if": nir.IF(r=np.ones(1), v_threshold=np.ones(1)),
               "output": nir.Output({"output": np.array([1])})},
              [("input", "big"), ("input", "small"), ("big", "if"), ("small", "if"),
               ("if", "output")])
    _, rep = quantize(import_nir(g, timesteps=4))
    assert rep.synapses["small"].all_zero and "small" in rep.silent_synapses()
    assert any(w.startswith("synapse small: every quantized weight is zero") for w in rep.warnings)


def test_dt_recorded_inferred_or_guessed():
    """A LIF written at dt = 1e-3 with snnTorch's convention pins its own dt (before: 1e-4 was
    silently assumed, beta 0.975 instead of 0.75); one with r = 1 pins nothing: the default is
    a guess, with a warning; pins that disagree are a guess too."""
    def lif_graph(lif, **meta):
        return chain(("input", nir.Input({"input": np.array([3])})),
                     ("fc", nir.Linear(np.ones((2, 3)))), ("lif", lif),
                     ("output", nir.Output({"output": np.array([2])})), **meta)

    qg, rep = quantize(import_nir(lif_graph(snn_lif(2, 0.75, 1e-3)), timesteps=4))
    assert qg.populations["lif"].dv == 1024 and rep.dt == pytest.approx(1e-3)
    assert "r = tau/dt (snnTorch's export) in 'lif'" in rep.dt_source and not rep.warnings
    rec = import_nir(lif_graph(snn_lif(2, 0.75, 1e-3), dt=1e-3), timesteps=4)
    assert (rec.metadata["dt_source"], rec.metadata["dt_detail"]) == (
        "recorded", "recorded in the graph")
    plain = nir.LIF(tau=np.full(2, 4e-4), r=np.ones(2), v_leak=np.zeros(2),
                    v_threshold=np.ones(2))
    fg = import_nir(lif_graph(plain), timesteps=4)
    assert fg.metadata["dt_source"] == "guessed" and fg.notes == [
        "dt is not recorded in the graph and its neuron parameters do not pin it: assuming "
        "0.0001 s (snnTorch's default); pass --dt with the step the exporter used"]
    mixed = graph({"input": nir.Input({"input": np.array([3])}),
                   "fc": nir.Linear(np.ones((2, 3))), "lif": snn_lif(2, 0.75, 1e-4),
                   "fc2": nir.Linear(np.ones((2, 2))),
                   "if": nir.IF(r=np.ones(2), v_threshold=np.ones(2)),
                   "output": nir.Output({"output": np.array([2])})},
                  [("input", "fc"), ("fc", "lif"), ("lif", "fc2"), ("fc2", "if"),
                   ("if", "output")])
    fg = import_nir(mixed, timesteps=4)
    assert fg.metadata["dt_source"] == "guessed"
    assert "pin different steps ('if': 1 s, 'lif': 0.0001 s)" in fg.notes[0]


# --- 4. a leading batch axis of size 1 -----------------------------------------------------

def _batch_graph() -> nir.NIRGraph:
    """nirtorch's layout: Input (1, C, H, W), neuron parameters (1, C, H, W), Flatten from
    dim 1, Output (1, n)."""
    return chain(
        ("input", nir.Input({"input": np.array([1, 2, 6, 6])})),
        ("conv", nir.Conv2d(input_shape=(6, 6), weight=RNG.choice([-1.0, 0.0, 1.0], (4, 2, 3, 3)),
                            stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(4))),
        ("if1", nir.IF(r=np.ones((1, 4, 6, 6)), v_threshold=np.ones((1, 4, 6, 6)))),
        ("flat", nir.Flatten({"input": np.array([1, 4, 6, 6])}, start_dim=1, end_dim=-1)),
        ("fc", nir.Linear(RNG.choice([-1.0, 1.0], (5, 144)))),
        ("if2", nir.IF(r=np.ones((1, 5)), v_threshold=np.ones((1, 5)))),
        ("output", nir.Output({"output": np.array([1, 5])})))


def test_a_leading_batch_axis_is_stripped_on_import(tmp_path):
    qg, _ = quantize(import_nir(_batch_graph(), timesteps=6))
    assert qg.input.shape == (2, 6, 6) and qg.populations["if1"].shape == (4, 6, 6)
    to_nir(qg)  # the integer graph can be written (before: a traceback from nir's types)
    x = spikes(3, 6, 1, 2, 6, 6)
    with_axis, without = run_both(qg, x), run_both(qg, x.reshape(3, 6, 2, 6, 6))
    assert all(np.array_equal(with_axis.spikes[n], without.spikes[n]) for n in without.spikes)
    assert with_axis.spikes["if1"].any() and with_axis.spikes["if1"].shape == (3, 6, 144)
    path, _ = save(tmp_path, _batch_graph())
    r = cli("convert.quantize", str(path), "--timesteps", "6", "-o", str(tmp_path / "q.nir"))
    assert r.returncode == 0, r.stderr
    # a leading 1 that is a channel axis stays: (1, H, W) into a Conv2d with one channel
    one_channel = chain(
        ("input", nir.Input({"input": np.array([1, 5, 5])})),
        ("conv", nir.Conv2d(input_shape=(5, 5), weight=np.ones((2, 1, 3, 3)), stride=1,
                            padding=0, dilation=1, groups=1, bias=np.zeros(2))),
        ("if", nir.IF(r=np.ones(18), v_threshold=np.ones(18))),
        ("output", nir.Output({"output": np.array([2, 3, 3])})))
    assert load_graph_from(one_channel, timesteps=2).input.shape == (1, 5, 5)


# --- 5. snnTorch's beta = 1 and non-finite parameters -------------------------------------

def test_snntorch_leaky_with_beta_one_is_an_integrator():
    """snnTorch writes Leaky(beta=1) as LIF with tau = r = inf: v += W x, no leak, at any dt
    (so no dt is needed and none is guessed)."""
    w = RNG.choice([-1.0, 0.0, 1.0], (4, 6))
    lif = nir.LIF(tau=np.array(np.inf), r=np.array(np.inf), v_leak=np.array(0.0),
                  v_threshold=np.array(1.5), v_reset=np.array(0.0))
    g = chain(("input", nir.Input({"input": np.array([1, 6])})), ("fc", nir.Linear(w)),
              ("lif", lif), ("output", nir.Output({"output": np.array([1, 4])})))
    fg = import_nir(g, timesteps=12)
    assert fg.populations["lif"].beta == 1.0 and not fg.notes
    qg, rep = quantize(fg)
    assert qg.populations["lif"].dv == 0 and not rep.warnings
    x = spikes(4, 12, 6)
    r = run_both(qg, x)
    assert np.array_equal(r.spikes["lif"], if_reference(x @ w.T, 1.5))


@pytest.mark.parametrize("node,field,message", [
    (lambda: nir.LIF(tau=np.array([1e-3, np.nan]), r=np.ones(2), v_leak=np.zeros(2),
                     v_threshold=np.ones(2)), "lif", "'lif' (LIF): tau = nan is not a finite"),
    (lambda: nir.LIF(tau=np.full(2, 1e-3), r=np.full(2, np.inf), v_leak=np.zeros(2),
                     v_threshold=np.ones(2)), "lif", "'lif' (LIF): r is infinite but tau is not"),
    (lambda: nir.LIF(tau=np.full(2, -1e-3), r=np.ones(2), v_leak=np.zeros(2),
                     v_threshold=np.ones(2)), "lif", "'lif' (LIF): tau = -0.001 s; a time "
                                                     "constant must be positive"),
    (lambda: nir.CubaLIF(tau_syn=np.full(2, np.inf), tau_mem=np.full(2, 1e-3), r=np.ones(2),
                         v_leak=np.zeros(2), v_threshold=np.ones(2), w_in=np.ones(2)), "lif",
     "'lif' (CubaLIF): tau_syn is infinite but w_in is not"),
    (lambda: nir.IF(r=np.ones(2), v_threshold=np.array([1.0, np.inf])), "lif",
     "'lif' (IF): v_threshold = inf is not a finite number"),
    (lambda: nir.Linear(np.array([[1.0, np.inf, 0.0]] * 2)), "fc",
     "'fc' (Linear): weight = inf is not a finite number"),
    (lambda: nir.Affine(np.ones((2, 3)), np.array([0.0, np.nan])), "fc",
     "'fc' (Affine): bias = nan is not a finite number"),
])
def test_a_non_finite_or_out_of_range_parameter_is_refused_naming_node_and_field(
        node, field, message, tmp_path):
    nodes = {"input": nir.Input({"input": np.array([3])}), "fc": nir.Linear(np.ones((2, 3))),
             "lif": nir.LIF(tau=np.full(2, 1e-3), r=np.full(2, 10.0), v_leak=np.zeros(2),
                            v_threshold=np.ones(2)),
             "output": nir.Output({"output": np.array([2])})}
    nodes[field] = node()
    g = graph(nodes, [("input", "fc"), ("fc", "lif"), ("lif", "output")], dt=1e-4)
    with pytest.raises(GraphError) as e:
        import_nir(g, timesteps=3)
    assert message in str(e.value) and "\n" not in str(e.value)
    path, _ = save(tmp_path, g)
    r = cli("convert.quantize", str(path), "--timesteps", "3", "-o", str(tmp_path / "o.nir"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr


# --- 7. node types people export ----------------------------------------------------------

def _li_graph() -> tuple[nir.NIRGraph, np.ndarray]:
    w = RNG.choice([-1.0, 0.0, 1.0], (3, 5))
    return chain(("input", nir.Input({"input": np.array([5])})), ("fc", nir.Linear(w)),
                 ("li", nir.LI(tau=np.full(3, 4e-4), r=np.full(3, 4.0), v_leak=np.zeros(3))),
                 ("output", nir.Output({"output": np.array([3])})), dt=1e-4), w


def test_li_readout_is_a_leaky_membrane(tmp_path):
    """Norse's readout: ``v <- 0.75 v + W x`` (tau = 4 dt, r = 4: gain 1). The readout is named
    after the LI node, records its currents like any readout, and its membrane is
    ``fixedpoint.readout_membrane`` of them (dv = 1024), within the 12-bit decay's truncation
    of the float membrane; the class score is the last step's membrane."""
    g, w = _li_graph()
    qg, rep = quantize(import_nir(g, timesteps=10))
    assert list(qg.readouts) == ["li"] and qg.readouts["li"].dv == 1024
    assert rep.populations["li"].dv == 1024
    write_qgraph(tmp_path / "li.loihi.nir", qg, rep)  # the integer file keeps the decay
    assert load_graph(tmp_path / "li.loihi.nir")[0].readouts["li"].dv == 1024
    x = spikes(4, 10, 5)
    r = run_both(qg, x)
    k = rep.populations["li"].scale
    assert np.array_equal(r.readouts["li"], np.rint(x @ w.T * k).astype(np.int64))
    v = fx.readout_membrane(r.readouts["li"], None, 1024) / (k * 64)
    ref = np.zeros((4, 3))
    refs = []
    for t in range(10):
        ref = 0.75 * ref + x[:, t] @ w.T
        refs.append(ref)
    assert np.allclose(v, np.stack(refs, 1), atol=0.05)
    from targets.base import readout_scores
    assert np.array_equal(readout_scores(qg, r.readouts), fx.readout_membrane(
        r.readouts["li"], None, 1024)[:, -1] >> 6)


def test_integrator_readout_sums_its_input():
    """NIR's ``I`` (dv/dt = r I) at r = 1/dt: the readout of an Output, the plain sum."""
    w = RNG.choice([-1.0, 1.0], (2, 4))
    g = chain(("input", nir.Input({"input": np.array([4])})), ("fc", nir.Linear(w)),
              ("i", nir.I(r=np.full(2, 1e4))), ("output", nir.Output({"output": np.array([2])})),
              dt=1e-4)
    qg, rep = quantize(import_nir(g, timesteps=6))
    assert qg.readouts["i"].dv == 0
    x = spikes(3, 6, 4)
    r = run_both(qg, x)
    from targets.base import readout_scores
    assert np.array_equal(readout_scores(qg, r.readouts),
                          np.rint((x @ w.T).sum(1) * rep.populations["i"].scale))


def test_conv1d_is_a_conv2d_with_one_row():
    w = RNG.choice([-1.0, 0.0, 1.0], (3, 2, 3))
    g = chain(("input", nir.Input({"input": np.array([1, 2, 12])})),  # with a batch axis
              ("conv", nir.Conv1d(input_shape=12, weight=w, stride=2, padding=1, dilation=1,
                                  groups=1, bias=np.zeros(3))),
              ("if", nir.IF(r=np.ones((3, 6)), v_threshold=np.ones((3, 6)))),
              ("output", nir.Output({"output": np.array([3, 6])})), dt=1.0)
    qg, _ = quantize(import_nir(g, timesteps=8))
    assert qg.input.shape == (2, 1, 12) and qg.synapses[0].weight.shape == (3, 2, 1, 3)
    to_nir(qg)
    x = spikes(3, 8, 2, 12)
    xp = np.pad(x, ((0, 0), (0, 0), (0, 0), (1, 1))).astype(float)
    cur = np.stack([np.einsum("ntck,ock->nto", xp[..., 2 * j:2 * j + 3], w)
                    for j in range(6)], -1).reshape(3, 8, 18)
    assert np.array_equal(run_both(qg, x).spikes["if"], if_reference(cur))


def _pool_ref(x: np.ndarray, k: int, s: int, p: int, avg: bool) -> np.ndarray:
    """PyTorch's pooling of x [..., H, W] (zero padding, counted in the average)."""
    xp = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(p, p), (p, p)])
    ho, wo = (xp.shape[-2] - k) // s + 1, (xp.shape[-1] - k) // s + 1
    out = np.stack([np.stack([xp[..., i * s:i * s + k, j * s:j * s + k].sum((-2, -1))
                              for j in range(wo)], -1) for i in range(ho)], -2)
    return out / (k * k) if avg else out


def test_pooling_with_padding_on_odd_maps():
    """SumPool2d (kernel 2, stride 2, padding 1) on a 7x5 map, then AvgPool2d (kernel 2,
    stride 1) on the 4x3 result: each becomes one convolution (NIR cannot write a dense map
    into a (C, H, W) population), exact."""
    g = chain(("input", nir.Input({"input": np.array([2, 7, 5])})),
              ("sum", nir.SumPool2d(np.array([2, 2]), np.array([2, 2]), np.array([1, 1]))),
              ("if1", nir.IF(r=np.ones(24), v_threshold=np.ones(24))),
              ("avg", nir.AvgPool2d(np.array([2, 2]), np.array([1, 1]), np.array([0, 0]))),
              ("if2", nir.IF(r=np.ones(12), v_threshold=np.full(12, 0.5))),
              ("output", nir.Output({"output": np.array([2, 3, 2])})), dt=1.0)
    qg, _ = quantize(import_nir(g, timesteps=8))
    assert [type(s).__name__ for s in qg.synapses][:2] == ["Conv", "Conv"]
    to_nir(qg)
    x = spikes(4, 8, 2, 7, 5)
    r = run_both(qg, x)
    s1 = if_reference(_pool_ref(x.astype(float), 2, 2, 1, False).reshape(4, 8, -1))
    assert np.array_equal(r.spikes["if1"], s1)
    s2 = if_reference(_pool_ref(s1.reshape(4, 8, 2, 4, 3).astype(float), 2, 1, 0,
                                True).reshape(4, 8, -1), 0.5)
    assert np.array_equal(r.spikes["if2"], s2)


def test_threshold_and_scale():
    """``Threshold`` fires where its input exceeds the threshold, with no state (a population
    with beta = 0); ``Scale`` multiplies per neuron."""
    w = RNG.choice([-1.0, 0.0, 1.0], (4, 6))
    scale = np.array([1.0, 2.0, 0.5, 1.0])
    g = chain(("input", nir.Input({"input": np.array([6])})), ("fc", nir.Linear(w)),
              ("scale", nir.Scale(scale)), ("th", nir.Threshold(np.full(4, 0.75))),
              ("output", nir.Output({"output": np.array([4])})))
    qg, _ = quantize(import_nir(g, timesteps=8))
    x = spikes(5, 8, 6)
    assert np.array_equal(run_both(qg, x).spikes["th"], (x @ w.T) * scale > 0.75)


def test_per_neuron_time_constants_split_into_populations():
    """A LIF whose neurons have two decays (0.5 and 0.75) becomes ``lif.d0`` and ``lif.d1``
    (Loihi has one dv per population); together they spike as the one NIR population."""
    beta = np.array([0.5, 0.75, 0.5, 0.75, 0.75])
    w1, w2 = RNG.choice([-1.0, 1.0], (5, 6)), RNG.choice([-1.0, 0.0, 1.0], (3, 5))
    g = chain(("input", nir.Input({"input": np.array([6])})), ("fc", nir.Linear(w1)),
              ("lif", snn_lif(5, beta, 1e-4)), ("fc2", nir.Linear(w2)),
              ("if", nir.IF(r=np.full(3, 1e4), v_threshold=np.ones(3))),
              ("output", nir.Output({"output": np.array([3])})), dt=1e-4)
    qg, _ = quantize(import_nir(g, timesteps=10))
    assert {n: p.dv for n, p in qg.populations.items()} == {"lif.d0": 2048, "lif.d1": 1024,
                                                             "if": 0}
    x = spikes(4, 10, 6, p=0.5)
    r = run_both(qg, x)
    v = np.zeros((4, 5))
    ref = np.zeros((4, 10, 5), dtype=bool)
    for t in range(10):
        v = beta * v + x[:, t] @ w1.T
        ref[:, t] = v > 1.0
        v[ref[:, t]] = 0.0
    got = np.zeros_like(ref)
    got[..., [0, 2]], got[..., [1, 3, 4]] = r.spikes["lif.d0"], r.spikes["lif.d1"]
    assert np.array_equal(got, ref)
    assert np.array_equal(r.spikes["if"], if_reference(ref @ w2.T))


def _delay_graph() -> tuple[nir.NIRGraph, np.ndarray, np.ndarray, np.ndarray]:
    """if1 -> Delay (3 steps) -> fc2 -> if2, beside a direct path input -> fc3 -> if2 (the
    deployed graph balances the two), at dt = 1."""
    w1, w2 = RNG.choice([-1.0, 1.0], (4, 5)), RNG.choice([-1.0, 0.0, 1.0], (3, 4))
    w3 = RNG.choice([-1.0, 1.0], (3, 5))
    g = graph({"input": nir.Input({"input": np.array([5])}), "fc1": nir.Linear(w1),
               "if1": nir.IF(r=np.ones(4), v_threshold=np.ones(4)),
               "delay": nir.Delay(np.full(4, 3.0)), "fc2": nir.Linear(w2), "fc3": nir.Linear(w3),
               "if2": nir.IF(r=np.ones(3), v_threshold=np.ones(3)),
               "output": nir.Output({"output": np.array([3])})},
              [("input", "fc1"), ("fc1", "if1"), ("if1", "delay"), ("delay", "fc2"),
               ("fc2", "if2"), ("input", "fc3"), ("fc3", "if2"), ("if2", "output")], dt=1.0)
    return g, w1, w2, w3


def _shift(x: np.ndarray, d: int) -> np.ndarray:
    """x [N, T, ...] delayed by d steps within each sample (zeros first)."""
    return np.concatenate([np.zeros_like(x[:, :d]), x[:, :x.shape[1] - d]], 1)


def test_delay_is_a_synaptic_delay(tmp_path):
    """A NIR Delay of 3 steps: if2 sees if1's spikes of step t - 3 of the same sample; the
    synapse carries the model delay (``lag``) inside its deployed delay, and the integer file
    keeps it."""
    g, w1, w2, w3 = _delay_graph()
    qg, rep = quantize(import_nir(g, timesteps=10))
    syn = {s.name: s for s in qg.synapses}
    assert (syn["fc2"].lag, syn["fc2"].delay, syn["fc3"].delay) == (3, 3, 1)
    x = spikes(4, 10, 5, p=0.5)
    r = run_both(qg, x)
    s1 = if_reference(x @ w1.T)
    assert np.array_equal(r.spikes["if1"], s1)
    assert np.array_equal(r.spikes["if2"], if_reference(_shift(s1, 3) @ w2.T + x @ w3.T))
    write_qgraph(tmp_path / "d.loihi.nir", qg, rep)
    back, _ = load_graph(tmp_path / "d.loihi.nir")
    assert [(s.name, s.delay, s.lag) for s in back.synapses] == \
        [(s.name, s.delay, s.lag) for s in qg.synapses]
    from convert.float_sim import simulate
    assert np.array_equal(simulate(import_nir(g, timesteps=10), x)[1]["if2"], r.spikes["if2"])


def test_delay_on_the_input_and_in_a_recurrent_loop():
    w1, wr = RNG.choice([-1.0, 1.0], (4, 5)), RNG.choice([-1.0, 0.0, 1.0], (4, 4))
    g = chain(("input", nir.Input({"input": np.array([5])})), ("delay", nir.Delay(np.array(2.0))),
              ("fc1", nir.Linear(w1)), ("if1", nir.IF(r=np.ones(4), v_threshold=np.ones(4))),
              ("output", nir.Output({"output": np.array([4])})), dt=1.0)
    x = spikes(4, 10, 5, p=0.5)
    r = run_both(load_graph_from(g, timesteps=10), x)
    assert np.array_equal(r.spikes["if1"], if_reference(_shift(x, 2) @ w1.T))
    loop = graph({"input": nir.Input({"input": np.array([5])}), "fc1": nir.Linear(w1),
                  "if1": nir.IF(r=np.ones(4), v_threshold=np.ones(4)),
                  "delay": nir.Delay(np.full(4, 2.0)), "wr": nir.Linear(wr),
                  "output": nir.Output({"output": np.array([4])})},
                 [("input", "fc1"), ("fc1", "if1"), ("if1", "delay"), ("delay", "wr"),
                  ("wr", "if1"), ("if1", "output")], dt=1.0)
    qg = load_graph_from(loop, timesteps=12)
    assert {s.name: s.delay for s in qg.synapses}["wr"] == 2  # the loop's step + 2
    x = spikes(4, 12, 5, p=0.5)
    v, ref = np.zeros((4, 4)), np.zeros((4, 12, 4), dtype=bool)
    for t in range(12):
        v = v + x[:, t] @ w1.T + (ref[:, t - 3] @ wr.T if t >= 3 else 0.0)
        ref[:, t] = v > 1.0
        v[ref[:, t]] = 0.0
    assert np.array_equal(run_both(qg, x).spikes["if1"], ref)
    with pytest.raises(GraphError, match="'delay' \\(Delay\\): delay 2.5 s is not a whole number"):
        import_nir(chain(("input", nir.Input({"input": np.array([5])})),
                         ("delay", nir.Delay(np.array(2.5))), ("fc1", nir.Linear(w1)),
                         ("if1", nir.IF(r=np.ones(4), v_threshold=np.ones(4))), dt=1.0),
                   timesteps=4)


# --- 10. options that cannot apply --------------------------------------------------------

def test_input_bitplanes_with_an_integer_graph_is_an_error(tmp_path):
    g = chain(("input", nir.Input({"input": np.array([4])})),
              ("fc", nir.Linear(np.ones((2, 4)) * 0.01)), ("if", nir.IF(r=np.ones(2),
                                                                         v_threshold=np.ones(2))),
              ("output", nir.Output({"output": np.array([2])})), dt=1.0, encoding="direct",
              input_max=15, timesteps=4)
    float_path, xp = save(tmp_path, g, RNG.integers(0, 16, (3, 4, 4)))
    int_path = tmp_path / "g.loihi.nir"
    qg, rep = load_graph(float_path)
    write_qgraph(int_path, qg, rep)
    with pytest.raises(UserError, match="already an integer graph quantized without bit planes"):
        load_graph(int_path, input_bitplanes=True)
    for prog in ("targets.event_sim", "convert.mfi", "targets.torch_ref"):
        r = cli(prog, str(int_path), "--input", str(xp), "--input-bitplanes")
        assert r.returncode == 2 and "convert.quantize FLOAT.nir --input-bitplanes" in r.stderr
        assert r.stderr.count("\n") == 1, r.stderr
    r = cli("convert.mfi", str(float_path), "--input", str(xp), "--input-bitplanes")
    assert r.returncode == 0 and "multiplication-free" in r.stdout, r.stderr
    planes, _ = load_graph(float_path, input_bitplanes=True)
    write_qgraph(tmp_path / "planes.nir", planes, None)
    assert load_graph(tmp_path / "planes.nir", input_bitplanes=True)[0].input.bitplanes == 4
    with pytest.raises(UserError, match="--dt applies when a float graph is imported"):
        load_graph(int_path, dt=1e-3)


# --- every kind on Lava too ---------------------------------------------------------------

def _lava_cases() -> dict[str, tuple[nir.NIRGraph, np.ndarray]]:
    li, _ = _li_graph()
    beta1 = chain(("input", nir.Input({"input": np.array([1, 6])})),
                  ("fc", nir.Linear(RNG.choice([-1.0, 1.0], (4, 6)))),
                  ("lif", nir.LIF(tau=np.array(np.inf), r=np.array(np.inf),
                                  v_leak=np.array(0.0), v_threshold=np.array(1.5))),
                  ("output", nir.Output({"output": np.array([1, 4])})))
    conv1d = chain(("input", nir.Input({"input": np.array([2, 12])})),
                   ("conv", nir.Conv1d(input_shape=12, weight=RNG.choice([-1.0, 1.0], (3, 2, 3)),
                                       stride=2, padding=1, dilation=1, groups=1,
                                       bias=np.zeros(3))),
                   ("if", nir.IF(r=np.ones(18), v_threshold=np.ones(18))),
                   ("output", nir.Output({"output": np.array([3, 6])})), dt=1.0)
    pools = chain(("input", nir.Input({"input": np.array([2, 7, 5])})),
                  ("sum", nir.SumPool2d(np.array([2, 2]), np.array([2, 2]), np.array([1, 1]))),
                  ("if1", nir.IF(r=np.ones(24), v_threshold=np.ones(24))),
                  ("avg", nir.AvgPool2d(np.array([2, 2]), np.array([1, 1]), np.array([0, 0]))),
                  ("if2", nir.IF(r=np.ones(12), v_threshold=np.full(12, 0.5))),
                  ("output", nir.Output({"output": np.array([2, 3, 2])})), dt=1.0)
    mixed = chain(("input", nir.Input({"input": np.array([6])})),
                  ("fc", nir.Affine(RNG.normal(0.3, 1, (5, 6)), RNG.normal(0, 0.1, 5))),
                  ("th", nir.Threshold(np.full(5, 0.5))),
                  ("scale", nir.Scale(np.linspace(1, 2, 5))),
                  ("fc2", nir.Linear(RNG.normal(0.2, 1, (5, 5)))),
                  ("lif", snn_lif(5, np.array([0.5, 0.75, 0.5, 0.9, 0.75]), 1e-4)),
                  ("fc3", nir.Linear(RNG.normal(0, 1, (3, 5)))),
                  ("li", nir.LI(tau=np.full(3, 5e-4), r=np.full(3, 5.0), v_leak=np.zeros(3))),
                  ("output", nir.Output({"output": np.array([3])})))
    return {
        "if_without_dt": (_if_graph(), np.ones((1, 40, 1), np.int8)),
        "batch_axis": (_batch_graph(), spikes(3, 6, 2, 6, 6)),
        "beta_one": (beta1, spikes(3, 8, 6)),
        "li_readout": (li, spikes(3, 8, 5)),
        "conv1d": (conv1d, spikes(3, 8, 2, 12)),
        "pools": (pools, spikes(3, 8, 2, 7, 5)),
        "threshold_scale_split_li": (mixed, spikes(4, 8, 6, p=0.5)),
        "delay": (_delay_graph()[0], spikes(4, 10, 5, p=0.5)),
    }


@pytest.mark.parametrize("case", sorted(_lava_cases()))
def test_every_kind_verifies_on_every_target(case, tmp_path):
    """The user's command, Lava (and the ONNX step graph) included, with T from the input and
    dt from the file."""
    g, x = _lava_cases()[case]
    path, xp = save(tmp_path, g, x)
    r = cli("targets.verify", str(path), "--input", str(xp),
            "--targets", "torch_ref,event_sim,lava,onnx_rt")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"0 mismatches across 4 targets, {len(x)} samples" in r.stdout, r.stdout
