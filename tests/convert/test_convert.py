"""Export, import rewrites, quantization and their refusals."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from convert import load_graph
from convert.export import EXPORTERS
from convert.float_graph import FConv
from convert.float_sim import simulate
from convert.neuron_params import normalise_threshold, step_params
from convert.nir_import import NIRView, import_nir
from convert.quantize import QuantReport, format_report, quantize
from convert.to_nir import checkpoint_to_nir
from core import fixedpoint as fx
from core.datasets import input_shape, load_dataset, num_classes
from core.encoding import encode, input_scale
from core.graph import GraphError, balance_delays
from core.nir_ext import read_nir
from core.nir_io import from_nir, to_nir
from models.registry import MODELS, build_model, default_config
from train.loop import model_input

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parents[1] / "data"


def _ckpt(name: str, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    cfg = default_config(name, input_shape("digits"), num_classes("digits"))
    m = build_model(name, cfg)
    return {"model": name, "config": cfg, "state_dict": m.state_dict(), "dataset": "digits",
            "encoding": {"kind": "direct", "timesteps": 4, "seed": 0,
                         "input_scale": input_scale("direct")},
            "timesteps": 4, "metrics": {"test_accuracy": 0.5}}


@pytest.mark.parametrize("name", ["fc_snn", "conv_snn"])
def test_export_round_trip_matches_torch_model(name, tmp_path):
    ck = _ckpt(name)
    path = tmp_path / "m.nir"
    nir.write(str(path), checkpoint_to_nir(ck))
    g = nir.read(str(path))  # stock reader
    for key in ("dt", "discretization", "reset", "spike_comparison", "timesteps", "encoding"):
        assert key in g.metadata
    images, _ = load_dataset("digits", "test")
    x = encode(images[:40], "direct", 4)
    scores, spikes = simulate(import_nir(g), x)
    model = build_model(name, ck["config"])
    model.load_state_dict(ck["state_dict"])
    with torch.no_grad():
        logits = model(model_input(x, "direct")).double().numpy()
    assert np.allclose(scores / 4, logits, atol=1e-5)
    assert np.array_equal(scores.argmax(1), logits.argmax(1))
    assert sum(int(s.sum()) for s in spikes.values()) > 0


def test_every_registered_model_has_an_exporter():
    assert list(EXPORTERS) == list(MODELS)


def test_quantization_is_deterministic_and_lava_safe():
    a, rep_a = load_graph(DATA / "fc_snn_digits.nir")
    b, rep_b = load_graph(DATA / "fc_snn_digits.nir")
    assert rep_a == rep_b
    for sa, sb in zip(a.synapses, b.synapses, strict=True):
        assert np.array_equal(sa.weight, sb.weight) and sa.weight_exp == sb.weight_exp
        assert np.array_equal(fx.lava_dense_weights(sa.weight), sa.weight)
        assert np.abs(sa.weight).max() == 254  # the biggest weight uses the 8-bit range
    for p in a.populations.values():
        assert (p.du, p.dv) == (4095, 2048)  # current-based, beta = 0.5 exactly


def test_integer_nir_round_trip(tmp_path):
    qg, rep = load_graph(DATA / "conv_snn_digits.nir")
    path = tmp_path / "m.loihi.nir"
    r = subprocess.run([sys.executable, "-m", "convert.quantize", str(DATA / "conv_snn_digits.nir"),
                        "-o", str(path)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"wrote {path}" in r.stdout and "headroom" in r.stdout
    g = nir.read(str(path))  # stock reader loads the integer graph
    back = from_nir(g)
    assert [s.name for s in back.synapses] == [s.name for s in qg.synapses]
    for s, t in zip(qg.synapses, back.synapses, strict=True):
        assert np.array_equal(s.weight, t.weight)
    again, _ = load_graph(path)
    assert again.latency() == qg.latency()
    # the report rides along as JSON with the documented field names, and reads back whole
    embedded = json.loads(str(g.metadata["quantization_report"]))
    assert embedded["populations"]["lif1"]["a_in_headroom"] > 1
    assert embedded["synapses"]["conv1"]["kind"] == "conv"
    assert QuantReport.from_dict(embedded) == rep


def test_quantize_cli_writes_beside_the_input_and_prints_json(tmp_path):
    src = tmp_path / "model.nir"
    src.write_bytes((DATA / "fc_snn_digits.nir").read_bytes())
    r = subprocess.run([sys.executable, "-m", "convert.quantize", str(src), "--json"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["output"] == str(tmp_path / "model.loihi.nir")
    assert (tmp_path / "model.loihi.nir").exists()
    _, rep = load_graph(DATA / "fc_snn_digits.nir")
    assert out["report"] == json.loads(json.dumps(rep.to_dict()))
    assert set(out["report"]["synapses"]["fc1"]) == {
        "source", "target", "kind", "delay", "max_pool", "weight_exp", "max_abs_weight",
        "weights_clipped", "all_zero", "floors_to_zero", "rel_rms_error"}
    assert out["report"]["dt"] == 1e-3 and out["report"]["dt_source"] == "recorded in the graph"
    r = subprocess.run([sys.executable, "-m", "convert.quantize", str(src), "-o", str(src)],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "is the input file" in r.stderr
    assert src.read_bytes() == (DATA / "fc_snn_digits.nir").read_bytes()


def test_report_formats_as_tables():
    _, rep = load_graph(DATA / "conv_snn_digits.nir")
    lines = format_report(rep).splitlines()
    assert lines[0].split() == ["population", "vth", "du", "dv", "bias_exp", "worst", "a_in",
                                "u", "steps", "headroom", "v", "headroom"]
    p = rep.populations["lif1"]
    assert lines[1].split() == ["lif1", str(p.vth), str(p.du), str(p.dv), str(p.bias_exp),
                                str(p.worst_a_in), f"{p.u_steps:.2f}", f"{p.a_in_headroom:.2f}",
                                f"{p.v_headroom:.2f}"]
    assert any(line.startswith("output") and "(readout, scale" in line for line in lines)
    assert sum(line.split()[0] in rep.synapses for line in lines[1:]) == len(rep.synapses)


def _chain_graph():
    rng = np.random.default_rng(1)
    nodes = {
        "in": nir.Input({"input": np.array([2, 8, 8])}),
        "c1": nir.Conv2d((8, 8), rng.normal(size=(3, 2, 3, 3)), 1, 1, 1, 1, rng.normal(size=3)),
        "l1": nir.LIF(np.full((3, 8, 8), 2e-3), np.full((3, 8, 8), 2.0), np.zeros((3, 8, 8)),
                      np.ones((3, 8, 8))),
        "p1": nir.AvgPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0])),
        "c2": nir.Conv2d((4, 4), rng.normal(size=(4, 3, 3, 3)), 1, 1, 1, 1, np.zeros(4)),
        "l2": nir.LIF(np.full((4, 4, 4), 2e-3), np.full((4, 4, 4), 2.0), np.zeros((4, 4, 4)),
                      np.ones((4, 4, 4))),
        "p2": nir.SumPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0])),
        "f": nir.Flatten({"input": np.array([4, 2, 2])}, 0, -1),
        "fc": nir.Linear(rng.normal(size=(5, 16))),
        "out": nir.Output({"output": np.array([5])}),
    }
    order = list(nodes)
    edges = list(zip(order[:-1], order[1:], strict=True))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3, "timesteps": 3})


def test_pool_then_conv_composes_into_one_strided_conv():
    g = _chain_graph()
    view = NIRView(g)
    op = view.compose("l1", ["p1", "c2"])
    assert isinstance(op, FConv) and op.stride == (2, 2) and op.weight.shape[2:] == (6, 6)
    x = np.random.default_rng(2).integers(0, 2, (7, 3, 8, 8)).astype(float)
    direct = view.run_chain(["p1", "c2"], x, with_bias=False)
    fg = import_nir(g)
    syn = next(s for s in fg.synapses if s.target == "l2")
    assert np.allclose(syn.apply(x), direct)
    dense = next(s for s in fg.synapses if s.target == "out")
    assert dense.op.weight.shape == (5, 4 * 4 * 4)  # pool + flatten + linear -> one matrix


def test_per_neuron_thresholds_are_normalised_exactly():
    w = np.array([[1.0, 0.5], [0.3, 0.8]])
    g = nir.NIRGraph(
        nodes={"in": nir.Input({"input": np.array([2])}), "fc": nir.Linear(w),
               "lif": nir.LIF(np.full(2, 2e-3), np.full(2, 2.0), np.zeros(2),
                              np.array([1.0, 2.0])),
               "fc2": nir.Linear(np.eye(2)), "out": nir.Output({"output": np.array([2])})},
        edges=[("in", "fc"), ("fc", "lif"), ("lif", "fc2"), ("fc2", "out")],
        metadata={"dt": 1e-3, "timesteps": 6})
    x = np.random.default_rng(0).integers(0, 2, (20, 6, 2))
    fg = import_nir(g)
    assert fg.populations["lif"].threshold == 2.0
    _, spikes = simulate(fg, x)
    v = np.zeros((20, 2))
    ref = []
    for t in range(6):
        v = 0.5 * v + x[:, t] @ w.T
        s = v > np.array([1.0, 2.0])
        v[s] = 0
        ref.append(s)
    assert np.array_equal(spikes["lif"], np.stack(ref, 1))


def test_neuron_parameters_map_forward_euler_both_ways():
    """Our exporter's convention (tau = dt / (1 - beta), r = tau / dt) imports as beta with
    input gain 1; CubaLIF and IF follow the same forward-Euler rule."""
    dt, beta = 1e-3, 0.75
    tau = dt / (1 - beta)
    lif = nir.LIF(np.full(3, tau), np.full(3, tau / dt), np.full(3, 0.2), np.array([1., 2., 4.]))
    p = step_params("lif", lif, 3, dt)
    assert (p.kind, p.beta, p.alpha) == ("LIF", pytest.approx(beta), 0.0)
    assert np.allclose(p.gain, 1.0) and np.allclose(p.leak, 0.2 * dt / tau)
    norm = normalise_threshold("lif", p, np.array([1.0, 1.0, 1.0]))
    # one threshold (the largest); each neuron's inputs and bias scaled by 4 / vth_i
    assert norm.threshold == 4.0 and np.allclose(norm.input_scale, [4.0, 2.0, 1.0])
    assert np.allclose(norm.bias, (1.0 + 0.2 * dt / tau) * np.array([4.0, 2.0, 1.0]))
    assert norm.note is None
    cuba = nir.CubaLIF(tau_syn=np.full(2, 2 * dt), tau_mem=np.full(2, 4 * dt), r=np.full(2, 4.0),
                       v_leak=np.zeros(2), v_threshold=np.ones(2), w_in=np.full(2, 2.0))
    c = step_params("cuba", cuba, 2, dt)
    assert (c.alpha, c.beta) == (0.5, 0.75) and np.allclose(c.gain, 0.5 * 2.0 * dt * 4.0 / (4 * dt))
    steady = normalise_threshold("cuba", c, np.array([0.1, 0.1]))
    assert np.allclose(steady.bias, 0.1 * c.gain / 0.5) and "steady-state" in steady.note
    i_f = step_params("if", nir.IF(r=np.full(2, 3.0), v_threshold=np.ones(2)), 2, dt)
    assert (i_f.beta, i_f.alpha) == (1.0, 0.0) and np.allclose(i_f.gain, 3.0 * dt)
    with pytest.raises(GraphError, match="outside \\[0, 1\\] with dt=0.01"):
        step_params("lif", lif, 3, 1e-2)
    with pytest.raises(GraphError, match="'lif' \\(LIF\\): threshold must be positive"):
        normalise_threshold("lif", replace(p, threshold=np.array([1.0, 0.0, 1.0])), np.zeros(3))


def _simple(**over):
    nodes = {"in": nir.Input({"input": np.array([3])}),
             "fc": nir.Affine(np.ones((2, 3)), np.zeros(2)),
             "lif": nir.LIF(np.full(2, 2e-4), np.full(2, 2.0), np.zeros(2), np.ones(2)),
             "out": nir.Output({"output": np.array([2])})}
    nodes.update(over.pop("nodes", {}))
    edges = over.pop("edges", [("in", "fc"), ("fc", "lif"), ("lif", "out")])
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=over.pop("metadata", {}),
                        type_check=False)


@pytest.mark.parametrize("graph,message", [
    # an LI is a readout (tests/convert/test_foreign_kinds.py); its membrane is no spike train
    (lambda: _simple(nodes={"li": nir.LI(np.full(2, 1e-3), np.ones(2), np.zeros(2))},
                     edges=[("in", "fc"), ("fc", "li"), ("li", "lif"), ("lif", "out")]),
     "'li' \\(LI\\) feeds 'lif': a non-spiking LI sends its membrane"),
    (lambda: _simple(nodes={"fc": nir.Affine(np.ones((2, 4)), np.zeros(2))}), "shapes don't chain"),
    (lambda: _simple(nodes={"lif": nir.LIF(np.full(2, 2e-4), np.full(2, 2.0), np.zeros(2),
                                           np.ones(2), v_reset=np.full(2, 0.5))}), "v_reset"),
    # a recorded reset mode is honoured (tests/targets/test_reset_modes.py); an unknown one is
    # refused
    (lambda: _simple(metadata={"reset": "sideways"}), "reset='sideways', not one of"),
    # a loop (recurrence is supported, tests/targets/test_recurrent.py) whose shapes don't fit
    (lambda: _simple(edges=[("in", "fc"), ("fc", "lif"), ("lif", "fc"), ("lif", "out")]),
     r"'fc' \(Affine\) receives inputs of sizes \[2, 3\]"),
    (lambda: _simple(nodes={"lif": nir.LIF(np.array([2e-4, np.nan]), np.full(2, 2.0),
                                           np.zeros(2), np.ones(2))}),
     "'lif' \\(LIF\\): tau = nan is not a finite number"),
])
def test_unmappable_graphs_are_refused_by_name(graph, message):
    with pytest.raises(GraphError, match=message):
        import_nir(graph(), timesteps=4)


def test_paths_of_different_depth_get_balancing_delays():
    g = _simple(nodes={"fc2": nir.Linear(np.ones((2, 3))), "lif0": nir.LIF(
        np.full(3, 2e-4), np.full(3, 2.0), np.zeros(3), np.ones(3)), "fc0": nir.Linear(np.eye(3))},
        edges=[("in", "fc0"), ("fc0", "lif0"), ("lif0", "fc"), ("fc", "lif"), ("in", "fc2"),
               ("fc2", "lif"), ("lif", "out")])
    qg, _ = quantize(import_nir(g, timesteps=4))
    delays = {s.name: s.delay for s in qg.synapses}
    assert delays.pop("fc2") == 1 and set(delays.values()) == {0}
    assert qg.latency()["lif"] == 2
    unbalanced = replace(qg, synapses=[replace(s, delay=0) for s in qg.synapses])
    with pytest.raises(GraphError, match="latency balancing"):
        unbalanced.latency()
    assert balance_delays(list(unbalanced.populations) + list(unbalanced.readouts),
                          unbalanced.synapses) == qg.synapses  # the same walk balances it


def test_foreign_graph_runs_with_user_inputs(tmp_path):
    """A snnTorch-style export (dt=1e-4, no dataset metadata) with --input spikes."""
    beta = 0.75
    dt = 1e-4
    tau = dt / (1 - beta)
    g = nir.NIRGraph(
        nodes={"input": nir.Input({"input": np.array([6])}),
               "fc1": nir.Affine(np.random.default_rng(0).normal(size=(4, 6)), np.zeros(4)),
               "lif1": nir.LIF(np.full(4, tau), np.full(4, tau / dt), np.zeros(4), np.ones(4)),
               "fc2": nir.Linear(np.ones((2, 4))), "output": nir.Output({"output": np.array([2])})},
        edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "output")])
    path = tmp_path / "foreign.nir"
    nir.write(str(path), g)
    x = np.random.default_rng(1).integers(0, 2, (5, 7, 6)).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    cmd = [sys.executable, "-m", "targets.event_sim", str(path), "--input", str(tmp_path / "x.npy"),
           "--samples", "5", "--no-progress"]
    # the graph records no T: the input's (7) is used; a --timesteps that disagrees is refused
    r = subprocess.run([*cmd, "--timesteps", "5"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "--timesteps 5 disagrees with the input, which has 7" \
        in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([*cmd, "--record", str(tmp_path / "rec.npz")], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "T=7, dt=0.0001 s (inferred from the file: r = tau/dt" in r.stdout
    qg, _ = load_graph(path, timesteps=7)
    assert qg.populations["lif1"].dv == 1024  # beta 0.75 with snnTorch's dt convention
    with np.load(tmp_path / "rec.npz") as z:
        assert z["spikes/lif1"].shape == (5, 7, 4)


def _write_bytes(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("make", [
    lambda d: d / "missing.pt",
    lambda d: _write_bytes(d / "trunc.pt", b"PK\x03\x04garbage"),
    lambda d: _write_bytes(d / "text.pt", b"hello"),
])
def test_to_nir_refuses_bad_checkpoints_in_one_line(tmp_path, make):
    src = make(tmp_path)
    out = tmp_path / "out.nir"
    r = subprocess.run([sys.executable, "-m", "convert.to_nir", str(src), "-o", str(out)],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not out.exists()


def test_to_nir_refuses_a_foreign_pickle(tmp_path):
    src = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3), "obj": Path("x")}, src)
    r = subprocess.run([sys.executable, "-m", "convert.to_nir", str(src), "-o",
                        str(tmp_path / "o.nir")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    torch.save({"a": torch.zeros(2)}, src)  # a tensor dict, but not our format
    r = subprocess.run([sys.executable, "-m", "convert.to_nir", str(src)], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert not src.with_suffix(".nir").exists()


def test_unsupported_node_file_gives_one_line(tmp_path):
    g = _simple(nodes={"lif": nir.CubaLI(np.ones(2), np.ones(2), np.ones(2), np.zeros(2))})
    path = tmp_path / "bad.nir"
    nir.write(str(path), g)
    r = subprocess.run([sys.executable, "-m", "convert.quantize", str(path), "-o",
                        str(tmp_path / "o.nir"), "--timesteps", "4"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "'lif' is a NIR CubaLI" in r.stderr
    assert not (tmp_path / "o.nir").exists()


def test_integer_graph_writer_keeps_types_chaining():
    qg, _ = load_graph(DATA / "conv_snn_digits.nir")
    g = to_nir(qg)
    assert any(type(n).__name__ == "Flatten" for n in g.nodes.values())


@pytest.mark.parametrize("model", ["fc_snn_digits.nir", "conv_snn_digits.nir"])
def test_quantized_spikes_track_the_float_model(model):
    """Quantization may only move spikes of neurons that sit at their threshold: the integer
    model's spikes agree with the float graph's almost everywhere."""
    from targets import torch_ref

    fg = import_nir(read_nir(DATA / model))
    images, _ = load_dataset("digits", "test")
    x = encode(images[:100], "direct", fg.timesteps)
    _, float_spikes = simulate(fg, x)
    qg, _ = quantize(fg)
    r = torch_ref.run(qg, x)
    for name, s in float_spikes.items():
        assert s.any()
        assert np.mean(s == r.spikes[name]) > 0.99, name


def test_mfi_certificate_exit_codes():
    cmd = [sys.executable, "-m", "convert.mfi", str(DATA / "conv_snn_digits.nir"), "--static-only"]
    graded = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert graded.returncode == 1 and "NOT multiplication-free: conv1" in graded.stdout
    planes = subprocess.run([*cmd, "--input-bitplanes"], cwd=ROOT, capture_output=True, text=True)
    assert planes.returncode == 0 and "0 MACs" in planes.stdout
    assert "bit plane 7" in planes.stdout
