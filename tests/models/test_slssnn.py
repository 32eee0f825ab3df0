"""SLSSNN (spatio-temporal conversion blocks): shapes, the spike-train level gradient, the export
(Delay taps, IF neurons, BN folded) exact in float, and spike-exact integer execution."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import train.loop as loop
from convert.float_sim import simulate
from convert.nir_import import import_nir
from convert.quantize import quantize
from convert.to_nir import checkpoint_to_nir
from core.datasets import load_dataset
from core.encoding import encode, input_scale
from models.slssnn import PUBLISHED_CONFIG, SLSSNN, SpikeTrainConversion, tiny_config
from targets import event_sim, torch_ref
from train.loop import model_input

T = 4


def _model(block: str = "stcb", seed: int = 0, **kw) -> SLSSNN:
    """A tiny model in eval mode with non-trivial BN (running stats and affine parameters)."""
    torch.manual_seed(seed)
    m = SLSSNN(**{**tiny_config(), "block": block, **kw})
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for blk in m.blocks:
            c = blk.bn.num_features
            blk.bn.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
            blk.bn.running_var.copy_(torch.rand(c, generator=g) * 2.0 + 0.2)
            blk.bn.weight.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
            blk.bn.bias.copy_(torch.rand(c, generator=g) - 0.2)
    return m.eval()


def _ckpt(m: SLSSNN) -> dict:
    cfg = {**tiny_config(), "block": m.block, "taps": m.taps}
    return {"model": "slssnn", "config": cfg, "state_dict": m.state_dict(), "dataset": "digits",
            "encoding": {"kind": "direct", "timesteps": T, "seed": 0,
                         "input_scale": input_scale("direct")},
            "timesteps": T, "metrics": {"test_accuracy": 0.5}}


def _digits(n: int = 16) -> np.ndarray:
    images, _ = load_dataset("digits", "test")
    return encode(images[:n], "direct", T)


# --- model -----------------------------------------------------------------------------------

def test_forward_shapes_records_and_checks():
    m = SLSSNN()  # the small default: 28x28, blocks 16/32/32, strides 1/2/2
    x = torch.rand(T, 2, 1, 28, 28)
    logits, sp = m(x, return_spikes=True)
    assert logits.shape == (2, 10) and tuple(sp) == m.lif_names == ("stcb0", "stcb1", "stcb2")
    assert [tuple(s.shape[2:]) for s in sp.values()] == [(16, 28, 28), (32, 14, 14), (32, 7, 7)]
    for s in sp.values():
        assert set(s.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(m(x[:, :, 0]), m(x))  # [T, B, H, W] accepted for one channel
    cfg = SLSSNN.default_config((8, 8), 10)
    assert cfg["in_shape"] == [1, 8, 8] and all(type(v) in (int, float, str, list)
                                                for v in cfg.values())
    for bad, match in (({"block": "relu"}, "block"), ({"strides": [1, 3, 2]}, "strides"),
                       ({"taps": 0}, "taps"), ({"channels": [4]}, "one entry per block"),
                       ({"block": "conv", "beta": 0.3}, "1/4096")):
        with pytest.raises(ValueError, match=match):
            SLSSNN(**{**cfg, **bad})
    big = SLSSNN(**PUBLISHED_CONFIG)  # the paper-scale VGG builds and runs
    with torch.no_grad():
        assert big(torch.rand(2, 1, 3, 32, 32)).shape == (1, 10)


def test_conversion_forward_is_integrate_and_fire_with_hard_reset():
    cur = torch.tensor([[0.6], [0.6], [0.3], [2.5], [-0.4], [1.2]])
    s = SpikeTrainConversion.apply(cur, 1.0)
    # v: 0.6, 1.2 > 1 spike -> 0, 0.3, 2.8 spike -> 0, -0.4, 0.8
    assert s.flatten().tolist() == [0, 1, 0, 1, 0, 0]


def test_taps_delay_the_input():
    """Tap d reads the input d steps late: a single input spike at t=0 drives tap 1 at t=1."""
    m = SLSSNN(in_shape=(1, 3, 3), channels=[1], strides=[1], taps=2, n_out=2).eval()
    blk = m.blocks[0]
    with torch.no_grad():
        blk.convs[0].weight.zero_()
        blk.convs[1].weight.zero_()
        blk.convs[0].weight[0, 0, 1, 1] = 1.0
        blk.convs[1].weight[0, 0, 1, 1] = 10.0
    x = torch.zeros(T, 1, 1, 3, 3)
    x[0, 0, 0, 1, 1] = 1.0
    cur = (blk.current(x) - blk.bn.bias) * torch.sqrt(blk.bn.running_var + blk.bn.eps)
    assert torch.allclose(cur[:, 0, 0, 1, 1], torch.tensor([1.0, 10.0, 0.0, 0.0]))


def test_spike_train_level_gradient():
    """Every step's current gets the same gradient: the summed output gradient / (T theta),
    inside the window 0 < sum_t I[t] < T theta, else 0."""
    torch.manual_seed(0)
    cur = (torch.randn(T, 64) * 2.0).requires_grad_()
    g_out = torch.randn(T, 64)
    SpikeTrainConversion.apply(cur, 1.5).backward(g_out)
    total = cur.detach().sum(0)
    inside = (total > 0) & (total < T * 1.5)
    want = g_out.sum(0) / (T * 1.5) * inside
    assert torch.allclose(cur.grad, want.expand(T, -1))
    assert 0 < inside.sum() < 64  # both sides of the window are exercised


@pytest.mark.parametrize("block", ["stcb", "conv"])
def test_every_parameter_learns(block):
    torch.manual_seed(0)
    m = SLSSNN(**{**tiny_config(), "block": block})
    x = torch.rand(T, 16, 1, 8, 8) * 2.0
    loss = F.cross_entropy(m(x), torch.randint(0, 10, (16,)))
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, (block, name)


def test_train_model_runs_slssnn():
    ck = loop.train_model("slssnn", "digits", epochs=1, limit=64, batch_size=32,
                          progress=False, log=lambda s: None)
    assert ck["model"] == "slssnn" and ck["config"]["block"] == "stcb"
    assert 0.0 <= ck["metrics"]["test_accuracy"] <= 1.0


# --- export ----------------------------------------------------------------------------------

@pytest.mark.parametrize("block", ["stcb", "conv"])
def test_export_is_exact_in_float(block, tmp_path):
    """Float simulation of the imported graph == the float64 torch model: logits and every
    population's spikes; the taps are Delay nodes that become synapse lags."""
    m = _model(block)
    g = checkpoint_to_nir(_ckpt(m))
    kinds = {type(n).__name__ for n in g.nodes.values()}
    assert {"Delay", "Conv2d"} <= kinds and "neurodeploy_extensions" not in g.metadata
    assert ("IF" if block == "stcb" else "LIF") in kinds
    nir.write(str(tmp_path / "s.nir"), g)
    nir.read(str(tmp_path / "s.nir"))  # standard NIR: stock reader takes it
    fg = import_nir(g)
    lags = sorted((s.name, s.lag) for s in fg.synapses if s.target.startswith("stcb"))
    assert lags == [("conv0_0", 0), ("conv0_1", 1), ("conv1_0", 0), ("conv1_1", 1)]
    rng = np.random.default_rng(0)
    x = np.concatenate([_digits(16), rng.integers(0, 256, (8, T, 8, 8))])
    scores, spikes = simulate(fg, x)
    md = SLSSNN(**_ckpt(m)["config"]).double().eval()
    md.load_state_dict(m.state_dict())
    with torch.no_grad():
        logits, msp = md(model_input(x, "direct").double(), return_spikes=True)
    assert np.allclose(scores / T, logits.numpy(), atol=1e-6, rtol=0)
    for name, s in spikes.items():
        ref = msp[name].numpy().transpose(1, 0, 2, 3, 4).reshape(s.shape).astype(bool)
        assert np.array_equal(s, ref), name
        assert 0 < s.mean() < 1, name


@pytest.mark.parametrize("block", ["stcb", "conv"])
def test_quantized_is_spike_exact_on_torch_ref_and_event_sim(block):
    fg = import_nir(checkpoint_to_nir(_ckpt(_model(block))))
    qg, _ = quantize(fg)
    pops = qg.populations
    if block == "stcb":  # integrate-and-fire: no voltage decay on the chip
        assert all(p.dv == 0 and p.du == 4095 for p in pops.values())
    lagged = {s.name: (s.lag, s.delay) for s in qg.synapses if s.lag}
    assert lagged == {"conv0_1": (1, 1), "conv1_1": (1, 1)}
    x = _digits(8)
    a, b = torch_ref.run(qg, x), event_sim.run(qg, x)
    assert sum(int(s.sum()) for s in a.spikes.values()) > 0
    for k in a.spikes:
        assert np.array_equal(a.spikes[k], b.spikes[k]), k
    for k in a.readouts:
        assert np.array_equal(a.readouts[k], b.readouts[k]), k
