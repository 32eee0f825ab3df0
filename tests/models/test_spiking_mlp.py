"""Spiking MLP (mixer-SNN): shapes, gradients, exact BN folding through export + import,
MFI edges, latency balancing, and spike-exact torch_ref == event_sim after quantization."""

import numpy as np
import pytest
import torch
from torch import nn

from convert.float_sim import simulate
from convert.nir_import import import_nir
from convert.quantize import quantize
from convert.to_nir import export_model
from core.datasets import load_dataset
from core.encoding import encode, input_scale
from core.graph import INPUT
from models import registry
from models.spiking_mlp import PatchCell, SpikingMLP, tiny_config
from targets import event_sim, torch_ref
from targets.mfi import certificate
from train.loop import model_input

T = 4
META = {"dt": 1e-3, "timesteps": T, "encoding": "direct", "input_scale": input_scale("direct"),
        "reset": "zero", "spike_comparison": ">"}


def _model(seed: int = 0) -> SpikingMLP:
    """Tiny model with non-trivial BN statistics (so that folding is really exercised) and
    gains large enough that every population fires on digits."""
    torch.manual_seed(seed)
    m = SpikingMLP(**tiny_config())
    g = torch.Generator().manual_seed(seed + 1)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d):
            n = mod.num_features
            mod.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            mod.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
            mod.weight.data.copy_(torch.rand(n, generator=g) * 1.5 + 1.0)
            mod.bias.data.copy_(torch.randn(n, generator=g) * 0.2 + 0.3)
    return m.eval().double()


@pytest.fixture(scope="module")
def setup():
    m = _model()
    fg = import_nir(export_model(m, "spiking_mlp", tuple(m.in_shape), META))
    images, _ = load_dataset("digits", "test")
    x = encode(images[:24], "direct", T)
    return m, fg, x


def test_config_shapes_and_records():
    cfg = SpikingMLP.default_config((28, 28), 10)
    assert cfg["in_shape"] == [1, 28, 28] and cfg["patch"] == 4 and cfg["depths"] == [1, 1]
    assert cfg["beta"] == 0.5 and cfg["threshold"] == 1.0 and cfg["n_out"] == 10
    assert registry.default_config("spiking_mlp", (28, 28), 10) == cfg
    m = registry.build_model("spiking_mlp", cfg)
    assert isinstance(m, SpikingMLP)
    assert m.grids == [(24, 7, 7), (48, 4, 4)]
    assert m.head.bias is None
    tiny = SpikingMLP(**tiny_config())
    logits, rec = tiny(torch.rand(T, 3, 1, 8, 8), return_spikes=True)
    assert logits.shape == (3, 10)
    assert tuple(rec) == tiny.lif_names
    assert rec["s0_embed"].shape == (T, 3, 6, 4, 4)
    assert rec["s0b0_ffn"].shape == (T, 3, 16, 18)  # token-major hidden layer
    assert rec["s1_pc_a"].shape == (T, 3, 4, 2, 2)
    assert rec["s1b0_ch"].shape == (T, 3, 12, 2, 2)
    for v in rec.values():
        assert set(torch.unique(v).tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="divisible by 3"):
        PatchCell(6, 8, {})
    with pytest.raises(ValueError, match="divisible by"):
        SpikingMLP(in_shape=(1, 10, 10), patch=4)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    m = SpikingMLP(**tiny_config())
    x = torch.rand(T, 8, 1, 8, 8) * 2
    loss = nn.functional.cross_entropy(m(x), torch.arange(8) % 10)
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_export_import_is_exact_bn_folded(setup):
    m, fg, x = setup
    scores, spikes = simulate(fg, x)
    with torch.no_grad():
        logits, rec = m(model_input(x, "direct").double(), return_spikes=True)
    assert np.allclose(scores / T, logits.numpy(), atol=1e-5)
    assert np.array_equal(scores.argmax(1), logits.numpy().argmax(1))
    assert set(spikes) == set(m.lif_names)
    for name, s in rec.items():
        torch_spikes = s.transpose(0, 1).reshape(len(x), T, -1).numpy().astype(bool)
        assert np.array_equal(spikes[name], torch_spikes), name
        assert 0 < torch_spikes.mean() < 1, f"{name} is silent or saturated"


def test_every_synapse_but_the_first_is_mfi(setup):
    _, fg, _ = setup
    from_input = [s for s in fg.synapses if s.source == INPUT]
    # the pixel conv, and its current summed (as the stage-0 embedding) into both block LIFs
    assert {s.target for s in from_input} == {"s0_embed", "s0b0_tok", "s0b0_ch"}
    # one NIR conv on three paths: three synapses, named after it
    assert all(s.name.startswith("s0_embed_conv") for s in from_input)
    assert len({s.name for s in fg.synapses}) == len(fg.synapses)
    for s in fg.synapses:
        if s.source != INPUT:
            assert s.source in fg.populations, s.name  # binary spikes of a LIF population
    qg, _ = quantize(fg)
    edges = certificate(qg)
    macs = {e.synapse for e in edges if e.is_mac}
    assert macs == {s.name for s in qg.synapses if s.source == INPUT}


def test_residual_paths_are_latency_balanced(setup):
    _, fg, _ = setup
    # a synapse is named after its linear node (plus source and target when that node is on
    # several paths)
    delay = {(s.name.split(f"_{s.source}_to_")[0], s.target): s.delay for s in fg.synapses}
    # embedding current: 1 synapse; token path: mix -> LIF -> fuse = 2 synapses deeper
    assert delay[("s0_embed_conv", "s0b0_tok")] == 2
    assert delay[("s0b0_fuse_x", "s0b0_tok")] == 1
    assert delay[("s0b0_fuse_h", "s0b0_tok")] == 0
    # the channel LIF also waits for the FFN (two more synapses)
    assert delay[("s0_embed_conv", "s0b0_ch")] == 4
    assert delay[("s0b0_fc2", "s0b0_ch")] == 0
    qg, _ = quantize(fg)
    lat = qg.latency()  # raises if any meeting paths are unbalanced
    assert lat["s0_embed"] == 1 and lat["s0b0_ch"] == 5 and lat["output"] == qg.depth


def test_quantized_targets_are_spike_exact(setup):
    _, fg, x = setup
    qg, report = quantize(fg)
    assert any(s.delay > 0 for s in qg.synapses)
    ref = torch_ref.run(qg, x)
    ev = event_sim.run(qg, x)
    assert set(ref.spikes) == set(ev.spikes) == set(qg.populations)
    for name in qg.populations:
        assert np.array_equal(ref.spikes[name], ev.spikes[name]), name
    assert sum(int(s.sum()) for s in ref.spikes.values()) > 0
    for name in qg.readouts:
        assert np.array_equal(ref.readouts[name], ev.readouts[name]), name
    # quantization keeps the tiny model's decisions on most samples
    scores, _ = simulate(fg, x)
    q_scores = ref.readouts["output"].sum(axis=1)
    assert np.mean(q_scores.argmax(1) == scores.argmax(1)) >= 0.5
    assert not any("clipped" in w for w in report.warnings)


def test_export_refuses_a_wrong_input_shape():
    m = SpikingMLP(**tiny_config()).eval()
    with pytest.raises(ValueError, match="built for input"):
        export_model(m, "spiking_mlp", (1, 28, 28), META)
