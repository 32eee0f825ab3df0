"""SMA net: the block's attention, AZO (training only), the static attention the chip runs, its
export (every change named in metadata and on stderr, the float simulation of the export equal
to the model's static form), torch_ref == event_sim == onnx_rt on the quantized graph, and the
MFI certificate's deploy-change marks. Lava runs the golden sma_net (tests/targets/test_golden)
and, marked slow, the membrane-shortcut variant here."""

import json

import numpy as np
import pytest
import torch

from convert.export.sma_net import CHANGES_KEY, export
from convert.float_sim import simulate
from convert.nir_import import import_nir
from convert.quantize import quantize
from core.errors import ConfigError
from core.graph import INPUT
from models.registry import build_model, default_config
from models.sma_net import SMABlock, SMANet, tiny_config
from targets import event_sim, onnx_rt, torch_ref
from targets.mfi import CHANGED_MARK, certificate, certificate_summary, format_certificate

T = 4
SHAPE = (1, 8, 8)
META = {"dt": 1e-3, "timesteps": T, "encoding": "direct", "input_scale": 1 / 255,
        "input_max": 255, "reset": "zero", "spike_comparison": ">"}


def _inputs(n: int = 6, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, T, *SHAPE))


def _calibrated(arch: str, seed: int = 0) -> SMANet:
    """Tiny net (float64) with BN affines that make every branch fire, running statistics and
    running attention from a few random training batches, in eval mode."""
    torch.manual_seed(seed)
    m = SMANet(in_shape=SHAPE, **{**tiny_config(arch), "azo": 0.25}).double()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.weight.data.uniform_(1.5, 3.0)
            mod.bias.data.uniform_(0.2, 0.8)
            mod.momentum = None  # cumulative average over the calibration batches
            mod.reset_running_stats()
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randint(0, 256, (T, 16, *SHAPE)).double() / 255)
    return m.eval()


@pytest.fixture(scope="module", params=["vgg", "msresnet"])
def deployed(request):
    m = _calibrated(request.param)
    g = export(m, SHAPE).graph(META)
    fg = import_nir(g)
    qg, report = quantize(fg)
    return m, g, fg, qg


# --- the model -------------------------------------------------------------------------------
def test_registered_default_config_and_records():
    cfg = default_config("sma_net", (28, 28), 10)
    assert cfg["downsample"] == [True, True] and cfg["kernels"] == [1, 3, 5, 7]
    assert default_config("sma_net", (8, 8), 10)["downsample"] == [False, True]
    m = build_model("sma_net", cfg)
    logits, rec = m.forward_with_spikes(torch.rand(T, 2, 28, 28))
    assert logits.shape == (2, 10)
    assert tuple(rec) == m.lif_names == ("s0", "s1", "sma_k1", "sma_k3", "sma_k5", "sma_k7")
    assert all(rec[f"sma_k{k}"].shape == (T, 2, 32, 7, 7) for k in (1, 3, 5, 7))
    with pytest.raises(ConfigError, match="block must be one of"):
        SMANet(block="bogus")
    with pytest.raises(ConfigError, match="azo"):
        SMANet(azo=1.0)


def test_attention_weights_are_normalised_and_mix_all_timesteps():
    torch.manual_seed(0)
    blk = SMABlock(2, 3, (1, 3), "sma", 4, 0.0, 0.5, 1.0)
    spikes = (torch.rand(2, T, 5, 3, 4, 4) > 0.5).float()
    a, b = blk.attention(spikes)
    assert a.shape == (5, 2, 3) and b.shape == (5, T)
    assert torch.allclose(a.sum(1), torch.full((5, 3), 2.0))  # K * softmax over scales
    assert torch.allclose(b.sum(1), torch.full((5,), float(T)))  # T * softmax over time
    # non-causal: changing the last step changes the weight of the first
    later = spikes.clone()
    later[:, -1] = 1 - later[:, -1]
    assert not torch.allclose(blk.attention(later)[1][:, 0], b[:, 0])


def test_azo_zones_out_the_least_attended_positions_in_training_only():
    torch.manual_seed(0)
    blk = SMABlock(2, 6, (1, 3), "sma", 2, 0.25, 0.5, 1.0)
    out = torch.randn(T, 3, 6, 2, 2)
    a = 2 * torch.softmax(torch.randn(3, 2, 6), 1)
    b = T * torch.softmax(torch.randn(3, T), 1)
    z = blk._zone_out(out, a, b)
    score = b[:, 1:, None] * a.max(1).values[:, None, :]  # [B, T-1, c]
    n = int(0.25 * (T - 1) * 6)
    for i in range(3):
        replaced = torch.tensor([torch.equal(z[t + 1, i, c], out[t, i, c])
                                 for t in range(T - 1) for c in range(6)]).reshape(T - 1, 6)
        lowest = score[i].flatten().argsort()[:n]
        assert replaced.sum() == n
        assert set(replaced.flatten().nonzero().flatten().tolist()) == set(lowest.tolist())
    assert torch.equal(z[0], out[0])
    # eval: plain SMA, deterministic
    m = SMANet(in_shape=SHAPE, **tiny_config()).eval()
    x = torch.rand(T, 2, *SHAPE)
    assert torch.equal(m(x), m(x))


def test_running_attention_and_static_form():
    torch.manual_seed(0)
    m = SMANet(in_shape=SHAPE, **tiny_config())
    assert torch.equal(m.sma.attn_running_mean, torch.ones(4, 8))
    m.train()
    m(torch.rand(T, 8, *SHAPE))
    assert not torch.equal(m.sma.attn_running_mean, torch.ones(4, 8))
    assert torch.allclose(m.sma.attn_running_mean.sum(0), torch.full((8,), 4.0))
    m.eval().use_static_attention()
    x = torch.rand(T, 3, *SHAPE)
    _, rec = m.forward_with_spikes(x)
    spikes = torch.stack([rec[f"sma_k{k}"] for k in (1, 3, 5, 7)])
    o = torch.einsum("kc,ktbchw->tbchw", m.sma.attn_running_mean, spikes)
    assert torch.allclose(m(x), m.fc(o.flatten(2)).mean(0))


def test_gradient_reaches_the_attention():
    m = SMANet(in_shape=SHAPE, **tiny_config())
    m(torch.rand(T, 4, *SHAPE)).sum().backward()
    for name in ("fc1", "fc2", "fc_t"):
        assert getattr(m.sma, name).weight.grad.abs().sum() > 0, name


# --- export, import, quantization ------------------------------------------------------------
def test_export_names_every_change_in_metadata_and_on_stderr(capsys):
    m = _calibrated("vgg")
    g = export(m, SHAPE).graph(META)
    changes = json.loads(g.metadata[CHANGES_KEY])
    assert [c["sources"] for c in changes] == [[f"sma_k{k}" for k in (1, 3, 5, 7)]] * 2
    assert [c["readers"] for c in changes][0] == [f"fc_k{k}" for k in (1, 3, 5, 7)]
    assert "channel/scale attention" in changes[0]["float"] and changes[0]["reason"]
    assert "time attention" in changes[1]["float"] and "1 at every step" in changes[1]["deployed"]
    err = capsys.readouterr().err.splitlines()
    assert len([e for e in err if e.startswith("convert: sma_net: sma:")]) == 2
    # without attention nothing changes: no metadata, nothing printed
    m2 = SMANet(in_shape=SHAPE, **{**tiny_config(), "block": "multiscale"}).eval()
    assert CHANGES_KEY not in export(m2, SHAPE).graph(META).metadata
    assert capsys.readouterr().err == ""


def test_float_simulation_of_the_export_is_the_static_model(deployed):
    m, _, fg, _ = deployed
    x = _inputs()
    scores, spikes = simulate(fg, x)
    m.use_static_attention(True)
    try:
        with torch.no_grad():
            logits, rec = m(torch.from_numpy(x).double().transpose(0, 1) / 255,
                            return_spikes=True)
    finally:
        m.use_static_attention(False)
    assert np.abs(scores / T - logits.numpy()).max() < 1e-5
    assert set(spikes) == set(rec)
    for name, s in rec.items():
        assert np.array_equal(spikes[name], s.transpose(0, 1).reshape(len(x), T, -1).numpy() > 0)
        assert spikes[name].any(), f"{name} never fires"


def test_every_branch_reaches_its_reader_with_its_own_weights(deployed):
    m, g, _, _ = deployed
    blk = m.attention_blocks[-1]
    prefix = "sma" if m.arch == "vgg" else f"r{len(m.attention_blocks) - 1}"
    a = blk.attn_running_mean.numpy()
    readers = json.loads(g.metadata[CHANGES_KEY])[0]["readers"]
    for j, k in enumerate(blk.kernels):
        pop = f"{prefix}_k{k}"
        src = f"flat_k{k}" if m.arch == "vgg" else pop
        assert (src, readers[j]) in g.edges
        w = np.asarray(g.nodes[readers[j]].weight)
        if m.arch == "vgg":
            base = m.fc.weight.detach().numpy() * np.repeat(a[j], w.shape[1] // a.shape[1])
        else:
            conv, bn = m.res_convs[-1], m.res_bns[-1]
            sc = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
            base = (conv.weight.detach().numpy() * sc[:, None, None, None]
                    * a[j][None, :, None, None])
        assert np.allclose(w, base)


def test_torch_ref_event_sim_and_onnx_agree_exactly(deployed):
    _, _, _, qg = deployed
    x = _inputs(4, seed=2)
    ref = torch_ref.run(qg, x)
    assert sum(int(s.sum()) for s in ref.spikes.values()) > 0
    for other in (event_sim.run(qg, x), onnx_rt.run(qg, x)):
        for name, s in ref.spikes.items():
            assert np.array_equal(s, other.spikes[name]), name
        for name, r in ref.readouts.items():
            assert np.array_equal(r, other.readouts[name]), name


def test_mfi_certificate_marks_and_explains_the_changed_edges(deployed):
    m, _, _, qg = deployed
    edges = certificate(qg)
    marked = {e.synapse for e in edges if CHANGED_MARK in e.input_kind}
    pops = set(json.loads(qg.metadata[CHANGES_KEY])[0]["sources"])
    assert marked == {e.synapse for e in edges if e.source in pops} and marked
    assert {e.source for e in edges if e.is_mac} == {INPUT}  # only the pixel input is graded
    s = certificate_summary(qg, edges, None)
    assert set(s["deploy_changed_edges"]) == marked and len(s["deploy_changes"]) == 2
    text = format_certificate(qg, edges, None)
    assert text.count("deploy change (") == 2 and "time attention" in text


@pytest.mark.slow
def test_msresnet_on_lava_is_spike_exact():
    from targets import loihi

    m = _calibrated("msresnet")
    qg, _ = quantize(import_nir(export(m, SHAPE).graph(META)))
    x = _inputs(3, seed=3)
    ref, lv = torch_ref.run(qg, x), loihi.run(qg, x)
    for name, s in ref.spikes.items():
        assert np.array_equal(s, lv.spikes[name]), name
    for name, r in ref.readouts.items():
        assert np.array_equal(r, lv.readouts[name]), name
