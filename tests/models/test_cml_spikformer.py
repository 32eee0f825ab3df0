"""CMLSpikformer (CML tokenizer + spiking self-attention): the model, its NIR export with the
``neurodeploy.SpikeAttention`` extension node, the spike x spike product in fixed point, and
spike-exact integer execution on torch_ref, event_sim and Lava."""

from __future__ import annotations

import itertools

import h5py
import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import train.loop as loop
from convert import load_graph
from convert.export.cml_spikformer import export
from convert.float_sim import simulate
from convert.nir_builder import NIRBuilder
from convert.nir_import import import_nir
from convert.quantize import quantize
from convert.to_nir import checkpoint_to_nir, graph_metadata
from core import fixedpoint as fx
from core.encoding import input_scale
from core.graph import (
    Conv,
    Dense,
    GraphError,
    InputSpec,
    LIFPopulation,
    QGraph,
    Readout,
    SpikeAttention,
)
from core.nir_ext import read_nir
from core.nir_io import write_qgraph
from models.cml_spikformer import PUBLISHED_CONFIG, CMLSpikformer
from targets import event_sim, loihi, torch_ref
from targets.base import readout_scores
from targets.mfi import DYNAMIC_PRODUCT, certificate, format_certificate
from train.loop import model_input

T = 4
SHAPES = {"mnist": (28, 28), "digits": (8, 8)}


def default_config(dataset: str) -> dict:
    return CMLSpikformer.default_config(SHAPES[dataset], 10)

# 16x16 input -> 4x4 = 16 tokens of 16 features, 2 heads (seed 1: the attention LIF fires)
TINY = {"in_shape": [1, 16, 16], "tokenizer_channels": [4, 8], "dim": 16, "heads": 2,
        "depth": 1, "mlp_ratio": 2, "n_out": 10}


def _model(seed: int = 1, **kw) -> CMLSpikformer:
    """A model in eval mode with non-trivial BN (running stats and affine parameters)."""
    torch.manual_seed(seed)
    m = CMLSpikformer(**{**default_config("digits"), **TINY, **kw})
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                c = mod.num_features
                mod.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
                mod.running_var.copy_(torch.rand(c, generator=g) * 2.0 + 0.2)
                mod.weight.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                mod.bias.copy_(torch.rand(c, generator=g) - 0.3)
    return m.eval()


def _meta() -> dict:
    ck = {"model": "cml_spikformer", "timesteps": T, "dataset": "",
          "encoding": {"kind": "direct", "input_scale": input_scale("direct")}}
    return graph_metadata(ck)


def _inputs(n: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, T, 16, 16))


def _torch64(m: CMLSpikformer, x: np.ndarray):
    md = CMLSpikformer(**{**default_config("digits"), **TINY}).double().eval()
    md.load_state_dict(m.state_dict())
    with torch.no_grad():
        logits, sp = md(model_input(x, "direct").double(), return_spikes=True)
    return logits.numpy(), {k: v.numpy() for k, v in sp.items()}


@pytest.fixture(scope="module")
def tiny():
    """(model, float graph, integer graph, report, inputs) of the tiny config."""
    m = _model()
    fg = import_nir(export(m, tuple(TINY["in_shape"])).graph(_meta()))
    qg, report = quantize(fg)
    return m, fg, qg, report, _inputs()


# --- the arithmetic --------------------------------------------------------------------------

def _naive(q, k, v, heads, shift):
    dim, n = q.shape
    dh = dim // heads
    out = np.zeros((dim, n), dtype=np.int64)
    for h in range(heads):
        c = slice(h * dh, (h + 1) * dh)
        for i, j in itertools.product(range(n), range(dh)):
            total = 0
            for m in range(n):
                count = sum(int(q[c][a, i] and k[c][a, m]) for a in range(dh))  # AND, popcount
                if v[c][j, m]:
                    total += count
            out[h * dh + j, i] = total
    return out << shift if shift >= 0 else out >> -shift


@pytest.mark.parametrize("shift", [0, 3, -2])
def test_fixedpoint_attention_numpy_torch_naive(shift):
    rng = np.random.default_rng(shift + 5)
    q, k, v = (rng.integers(0, 2, (3, 12, 7)) for _ in range(3))
    a = fx.spike_attention(q, k, v, 3, shift)
    b = fx.spike_attention(*(torch.from_numpy(x) for x in (q, k, v)), 3, shift)
    assert a.dtype == np.int64 and b.dtype == torch.int64
    assert np.array_equal(a, b.numpy())
    for s in range(3):
        assert np.array_equal(a[s], _naive(q[s], k[s], v[s], 3, shift))
    assert fx.spike_attention_ops(q, k, v, 3) == fx.spike_attention_ops(
        *(torch.from_numpy(x) for x in (q, k, v)), 3)
    with pytest.raises(ValueError, match="heads"):
        fx.spike_attention(q, k, v, 5)


# --- model -----------------------------------------------------------------------------------

def test_forward_shapes_and_config():
    m = CMLSpikformer(**default_config("mnist"))
    x = torch.rand(T, 2, 1, 28, 28)
    with torch.no_grad():
        logits, sp = m(x, return_spikes=True)
    assert logits.shape == (2, 10) and tuple(sp) == m.lif_names
    assert sp["tok0"].shape == (T, 2, 8, 28, 28)
    assert sp["tok1"].shape == (T, 2, 16, 14, 14)  # CML: the LIF sits after the max pool
    assert sp["tok2"].shape == (T, 2, 64, 7, 7)  # 49 tokens of dim 64
    assert sp["b0_fc1"].shape == (T, 2, 256, 7, 7)
    for name in ("b0_q", "b0_k", "b0_v", "b0_attn", "b0_proj", "b0_fc2"):
        assert sp[name].shape == (T, 2, 64, 7, 7)
    for s in sp.values():
        assert set(s.unique().tolist()) <= {0.0, 1.0}
    assert m.blocks[0].attn_lif.threshold == 0.5 and m.blocks[0].attn_scale == 0.125
    with torch.no_grad():
        assert torch.equal(m(x[:, :, 0]), m(x))
    for ds in ("mnist", "digits"):
        cfg = default_config(ds)
        assert all(type(v) in (int, float, list) for v in cfg.values())
        assert cfg["beta"] * 4096 == round(cfg["beta"] * 4096)
    with pytest.raises(ValueError, match="divisible by 4"):
        CMLSpikformer(in_shape=(1, 10, 10))
    with pytest.raises(ValueError, match="heads"):
        CMLSpikformer(dim=30, heads=4)
    assert CMLSpikformer(**PUBLISHED_CONFIG).tokens_hw == (8, 8)


def test_gradient_flow():
    torch.manual_seed(0)
    m = CMLSpikformer(**{**default_config("digits"), **TINY})
    x = torch.rand(T, 8, 1, 16, 16) * 1.5
    y = torch.randint(0, 10, (8,))
    loss = F.cross_entropy(m(x), y)
    loss.backward()
    for name, p in m.named_parameters():  # through the attention product and every LIF
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_train_model_runs_cml_spikformer():
    small = {"tokenizer_channels": [4], "dim": 8, "heads": 2, "mlp_ratio": 1}
    ck = loop.train_model("cml_spikformer", "digits", epochs=1, limit=64, batch_size=32,
                          config=small, progress=False, log=lambda s: None)
    assert ck["model"] == "cml_spikformer" and ck["config"]["heads"] == 2
    assert 0.0 <= ck["metrics"]["test_accuracy"] <= 1.0


# --- export and float simulation --------------------------------------------------------------

def test_float_sim_of_imported_graph_reproduces_torch(tiny):
    m, fg, _, _, x = tiny
    att = [s for s in fg.synapses if hasattr(s, "sources")]
    assert [(s.sources, s.target, s.scale, s.heads) for s in att] == [
        (("b0_q", "b0_k", "b0_v"), "b0_attn", 0.125, 2)]
    delays = {s.name: s.delay for s in fg.synapses}
    assert delays["b0_fc1_conv"] == 3 and delays["head"] == 5  # residual spikes balanced
    scores, spikes = simulate(fg, x)
    logits, msp = _torch64(m, x)
    assert np.allclose(scores / T, logits, atol=1e-5, rtol=0)
    assert set(spikes) == set(m.lif_names)
    for name, s in spikes.items():
        ref = msp[name].transpose(1, 0, 2, 3, 4).reshape(s.shape).astype(bool)
        assert np.array_equal(s, ref), name
        assert 0 < s.mean() < 1, name


def test_stock_nir_refuses_float_and_integer_files(tmp_path, tiny):
    _, fg, qg, report, x = tiny
    m = _model(seed=0, **default_config("digits"))
    ck = {"model": "cml_spikformer", "config": default_config("digits"),
          "state_dict": m.state_dict(), "dataset": "digits", "timesteps": T,
          "encoding": {"kind": "direct", "timesteps": T, "seed": 0,
                       "input_scale": input_scale("direct")}, "metrics": {}}
    fpath, ipath = tmp_path / "f.nir", tmp_path / "i.nir"
    nir.write(str(fpath), checkpoint_to_nir(ck))  # the CLI path (digits, default config)
    write_qgraph(ipath, qg, report)
    for p, node in ((fpath, "b0_attention"), (ipath, "b0_attention")):
        with h5py.File(p, "r") as f:
            t = f[f"node/nodes/{node}/type"][()]
        assert (t.decode() if isinstance(t, bytes) else str(t)) == "neurodeploy.SpikeAttention"
        with pytest.raises((AssertionError, KeyError, ValueError)):
            nir.read(str(p))
        g = read_nir(p)
        assert "SpikeAttention" in str(g.metadata["neurodeploy_extensions"])
    import_nir(fpath)  # the float file imports
    qg2, _ = load_graph(ipath)
    att = [s for s in qg2.synapses if isinstance(s, SpikeAttention)]
    assert len(att) == 1 and att[0].sources == ("b0_q", "b0_k", "b0_v")
    a, b = torch_ref.run(qg, x[:4]), torch_ref.run(qg2, x[:4])
    for k in a.spikes:
        assert np.array_equal(a.spikes[k], b.spikes[k]), k


def test_importer_refuses_what_it_cannot_map():
    b = NIRBuilder((4, 2, 2))
    srcs = [b.lif(b.conv("input", weight=np.ones((4, 4, 1, 1))), 0.5, 1.0) for _ in range(3)]
    a = b.spike_attention(*srcs, 2, 0.125)
    b.output(b.linear(b.flatten(a), weight=np.ones((2, 16))))  # a weight after the product
    with pytest.raises(GraphError, match="directly"):
        import_nir(b.graph({"timesteps": T, "dt": 1e-3}))
    b = NIRBuilder((4, 2, 2))
    q = b.lif(b.conv("input", weight=np.ones((4, 4, 1, 1))), 0.5, 1.0)
    k = b.lif(b.conv(q, weight=np.ones((4, 4, 1, 1))), 0.5, 1.0)  # one step deeper than q
    b.lif(b.spike_attention(q, k, q, 2, 0.125), 0.5, 0.5)
    with pytest.raises(GraphError, match="different latencies"):
        import_nir(b.graph({"timesteps": T, "dt": 1e-3}))


# --- integer execution -----------------------------------------------------------------------

def _same(a, b):
    assert set(a.spikes) == set(b.spikes) and set(a.readouts) == set(b.readouts)
    for k in a.spikes:
        diff = np.argwhere(a.spikes[k] != b.spikes[k])
        assert not len(diff), f"{k} differs first at [sample, t, neuron]={diff[0]}"
    for k in a.readouts:
        assert np.array_equal(a.readouts[k], b.readouts[k]), k


def test_quantized_attention_is_an_exact_shift(tiny):
    _, fg, qg, report, x = tiny
    (att,) = [s for s in qg.synapses if isinstance(s, SpikeAttention)]
    r = report.synapses["b0_attention"]
    assert r.kind == "attention" and r.rel_rms_error == 0.0
    k = report.populations["b0_attn"].scale
    assert 0.125 * k == 2.0**att.shift and att.shift == fx.WEIGHT_EXP_MAX
    assert qg.populations["b0_attn"].vth == round(0.5 * k)  # threshold 0.5 exact too
    scores, fspk = simulate(fg, x)
    res = torch_ref.run(qg, x)
    for name, s in fspk.items():
        assert (res.spikes[name] == s).mean() > 0.9, name
    assert (readout_scores(qg, res.readouts).argmax(1) == scores.argmax(1)).mean() >= 0.75


def test_torch_ref_event_sim_and_lava_are_spike_exact(tiny):
    _, _, qg, _, x = tiny
    a = torch_ref.run(qg, x)
    assert 0 < a.spikes["b0_attn"].mean() < 1
    e = event_sim.run(qg, x)
    _same(a, e)
    _same(a, event_sim.run(qg, x, lanes=3))
    assert e.counters["events/b0_attention"] == a.counters["events/b0_attention"] > 0
    assert e.counters["ands/b0_attention"] == a.counters["ands/b0_attention"] > 0
    _lava_vs(qg, x[:4], a)


def _lava_vs(qg, x, ref):
    got = loihi.run(qg, x)
    n = len(x)
    for k in ref.spikes:
        assert np.array_equal(got.spikes[k], ref.spikes[k][:n]), k
    for k in ref.readouts:
        assert np.array_equal(got.readouts[k], ref.readouts[k][:n]), k
    return True


def test_mfi_certificate_names_the_dynamic_product(tiny):
    _, _, qg, _, x = tiny
    counters = event_sim.run(qg, x).counters
    edges = {e.synapse: e for e in certificate(qg, counters)}
    att = edges["b0_attention"]
    assert att.input_kind.startswith(DYNAMIC_PRODUCT) and att.is_dynamic and not att.is_mac
    assert att.measured_ops == counters["events/b0_attention"]
    assert att.static_ops_per_step == 2 * 16 * 16 * 16
    assert [e.synapse for e in edges.values() if e.is_mac] == ["tok0_conv"]  # pixels only
    text = format_certificate(qg, list(edges.values()), len(x))
    assert f"{DYNAMIC_PRODUCT} edges: b0_attention" in text


# --- a hand-built graph: attention with a delay, a right shift, a readout ---------------------

def _attention_graph(shift: int, delay: int) -> QGraph:
    rng = np.random.default_rng(3)
    shape, in_shape = (8, 2, 3), (4, 2, 3)
    size = int(np.prod(shape))

    def pop(name, vth):
        return LIFPopulation(name, shape, 4095, 2048, vth, np.zeros(size, dtype=np.int64))

    def conv(name, target, lo, hi, delay=0):
        return Conv(name, "input", target, 2 * rng.integers(lo, hi, (8, 4, 3, 3)), (1, 1),
                    (1, 1), 1, in_shape, shape, delay)

    pops = {n: pop(n, 150) for n in "qkv"}
    pops["att"] = pop("att", 3 << max(shift + 1, 0))
    syns = [conv(f"in_{n}", n, -40, 70) for n in "qkv"]
    syns.append(SpikeAttention("attention", ("q", "k", "v"), "att", 2, shift, delay))
    syns.append(conv("in_att", "att", -3, 3, delay=1 + delay))  # both reach att at 2 + delay
    syns.append(Dense("readout", "att", "out", rng.integers(0, 50, (3, size))))
    return QGraph(InputSpec(in_shape), pops, {"out": Readout("out", (3,))}, syns, T)


@pytest.mark.parametrize("shift,delay", [(-1, 2), (2, 0)])
def test_hand_built_attention_graph_on_every_target(tmp_path, shift, delay):
    g = _attention_graph(shift, delay)
    g.validate()
    assert g.latency()["att"] == 2 + delay
    x = (np.random.default_rng(4).random((5, T, 4, 2, 3)) < 0.3).astype(np.int64)
    a = torch_ref.run(g, x)
    assert 0 < a.spikes["att"].mean() < 1
    _same(a, event_sim.run(g, x))
    write_qgraph(tmp_path / "g.nir", g)
    g2, _ = load_graph(tmp_path / "g.nir")
    assert [s.delay for s in g2.synapses if isinstance(s, SpikeAttention)] == [delay]
    _same(a, torch_ref.run(g2, x))
    if delay:  # one Lava run covers the process's delay FIFO and the flooring shift
        _lava_vs(g, x, a)
