"""DS-ResNet with multi-level firing: MLF semantics and surrogate, tdBN folding, export through
the builder (one conv, K populations per MLF unit), latency balancing of the shortcuts, and
torch_ref == event_sim on the quantized graph."""

import numpy as np
import pytest
import torch

from convert.export.ds_resnet import export
from convert.float_sim import simulate
from convert.nir_import import import_nir
from convert.quantize import quantize
from core.graph import INPUT
from models.ds_resnet import (
    MLF,
    DSResNet,
    TdBN,
    fast_config,
    mlf_reference,
    published_config,
    tiny_config,
)
from targets import event_sim, torch_ref
from targets.mfi import certificate

T = 4
SHAPE = (1, 8, 8)
META = {"dt": 1e-3, "timesteps": T, "encoding": "direct", "input_scale": 1 / 255,
        "input_max": 255, "reset": "zero", "spike_comparison": ">"}


def _calibrated(seed: int = 0, dtype=torch.float64) -> DSResNet:
    """Tiny net with random tdBN affines (so that every MLF level fires) and running statistics
    estimated on random inputs, in eval mode."""
    torch.manual_seed(seed)
    m = DSResNet(**tiny_config(SHAPE)).to(dtype)
    for mod in m.modules():
        if isinstance(mod, TdBN):
            mod.weight.data.uniform_(1.5, 3.0)
            mod.bias.data.uniform_(0.0, 0.8)
            mod.momentum = None  # cumulative average over the calibration batches
            mod.reset_running_stats()
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randint(0, 256, (T, 16, *SHAPE)).to(dtype) / 255)
    return m.eval()


def _inputs(n: int = 6, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, T, *SHAPE))


@pytest.fixture(scope="module")
def deployed():
    m = _calibrated()
    fg = import_nir(export(m, SHAPE).graph(META))
    qg, report = quantize(fg)
    return m, fg, qg, report


# --- the model -------------------------------------------------------------------------------
def test_shapes_names_and_configs():
    m = DSResNet(**tiny_config(SHAPE))
    x = torch.rand(T, 3, *SHAPE)
    logits, rec = m(x, return_spikes=True)
    assert logits.shape == (3, 10)
    assert torch.equal(m(x[:, :, 0]), logits)  # [T, B, H, W] for one channel
    units = [name for name, _ in m.mlf_units()]
    assert units == ["stem", "s1b0_unit1", "s1b0_unit2", "s2b0_unit1", "s2b0_unit2",
                     "s2b0_shortcut", "s3b0_unit1", "s3b0_unit2", "s3b0_shortcut"]
    assert list(rec) == [f"{u}_l{k}" for u in units for k in range(3)]
    assert rec["stem_l0"].shape == (T, 3, 4, 8, 8)
    assert rec["s3b0_unit2_l2"].shape == (T, 3, 8, 2, 2)
    assert all(set(v.unique().tolist()) <= {0.0, 1.0} for v in rec.values())
    assert m.fc.bias is None
    with pytest.raises(ValueError, match="expects input"):
        m(torch.rand(T, 3, 2, 8, 8))
    cfg = DSResNet.default_config((28, 28), 10)
    assert cfg["in_shape"] == [1, 28, 28] and cfg["widths"] == [16, 32, 64]
    assert cfg["blocks"] == [2, 2, 2] and cfg["strides"] == [1, 2, 2] and cfg["n_out"] == 10
    assert all(type(v) in (int, float, list) for v in cfg.values())
    assert published_config()["widths"] == [64, 128, 256]
    assert published_config()["blocks"] == [3, 3, 3]
    assert fast_config((28, 28), 10)["strides"] == [2, 2, 2]
    assert DSResNet(**cfg)(torch.rand(1, 1, 1, 28, 28)).shape == (1, 10)


def test_mlf_hand_made_trace():
    # one neuron, x = 0.7, 0.7, 2.0, 3.0; beta 0.25; thresholds 0.6 / 1.6 / 2.6
    # level 0: 0.7 s, 0.7 s, 2.0 s, 3.0 s
    # level 1: 0.7, 0.875, 2.21875 s, 3.0 s
    # level 2: 0.7, 0.875, 2.21875, 0.5546875 + 3.0 = 3.5546875 s
    x = torch.tensor([0.7, 0.7, 2.0, 3.0]).reshape(T, 1)
    count, levels = MLF()(x)
    assert levels[:, :, 0].int().tolist() == [[1, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert count.flatten().tolist() == [1.0, 1.0, 2.0, 3.0]
    # exactly at a threshold: no spike (strict >); then 0.25 + 2.75 = 3.0 spikes; reset to 0:
    # 0.6 stays silent (a subtractive reset would give 0.25 * 2.0 + 0.6 = 1.1 and spike)
    count, _ = MLF(thresholds=(1.0,))(torch.tensor([1.0, 2.75, 0.6]).reshape(3, 1))
    assert count.flatten().tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize("detach_reset", [False, True])
def test_fused_mlf_equals_plain_autograd(detach_reset):
    torch.manual_seed(0)
    x = (torch.randn(5, 3, 4, 6, dtype=torch.float64) * 1.5 + 1.0).requires_grad_()
    m = MLF(detach_reset=detach_reset)
    count, levels = m(x)
    ref = mlf_reference(x, m.thresholds, m.beta, 1.0, detach_reset)
    assert torch.equal(levels.to(ref.dtype), ref.detach())
    assert torch.equal(count, ref.sum(1))
    g = torch.randn_like(count)
    (got,) = torch.autograd.grad((count * g).sum(), x)
    (want,) = torch.autograd.grad((ref.sum(1) * g).sum(), x, retain_graph=True)
    assert torch.allclose(got, want, atol=1e-12, rtol=0)
    # gradient flows through every level: each level's own surrogate contributes
    for k in range(3):
        (gk,) = torch.autograd.grad((ref[:, k] * g).sum(), x, retain_graph=True)
        assert gk.abs().sum() > 0


def test_rectangular_windows_tile_the_input_range():
    # one step: d count / dx = number of windows |x - th_k| < 0.5 containing x
    x = torch.tensor([0.15, 0.6, 1.05, 1.15, 1.6, 2.05, 2.15, 3.05, 0.0, 3.2, -1.0, 5.0],
                     dtype=torch.float64).reshape(1, -1).requires_grad_()
    count, _ = MLF()(x)
    (g,) = torch.autograd.grad(count.sum(), x)
    assert g.flatten().tolist() == [1.0] * 8 + [0.0] * 4


def test_gradient_reaches_every_parameter():
    m = _calibrated(dtype=torch.float32).train()
    m(torch.rand(T, 4, *SHAPE)).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_tdbn_statistics_and_fold():
    torch.manual_seed(0)
    bn = TdBN(3, alpha=1.0, vth=0.6).double()
    bn.weight.data = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    bn.bias.data = torch.tensor([0.0, 0.3, -0.2], dtype=torch.float64)
    x = torch.randn(T, 5, 3, 4, 4, dtype=torch.float64) * 3 + 1
    y = bn(x)  # training: statistics over (T, B, H, W) per channel
    mean = y.mean(dim=(0, 1, 3, 4))
    std = y.std(dim=(0, 1, 3, 4), unbiased=False)
    assert torch.allclose(mean, bn.bias, atol=1e-12)
    assert torch.allclose(std, 0.6 * bn.weight, atol=1e-4)
    bn.eval()
    scale, shift = bn.fold()
    assert torch.allclose(bn(x), x * scale[:, None, None] + shift[:, None, None], atol=1e-12)


# --- export, import, quantization -------------------------------------------------------------
def test_float_simulation_of_the_export_reproduces_the_model(deployed):
    m, fg, _, _ = deployed
    x = _inputs()
    scores, spikes = simulate(fg, x)
    with torch.no_grad():
        logits, rec = m(torch.from_numpy(x).double().transpose(0, 1) / 255, return_spikes=True)
    assert np.abs(scores / T - logits.numpy()).max() < 1e-5
    assert np.array_equal(scores.argmax(1), logits.numpy().argmax(1))
    assert set(spikes) == set(rec)
    for name, s in rec.items():
        assert np.array_equal(spikes[name], s.transpose(0, 1).reshape(len(x), T, -1).numpy() > 0)
    # the comparison means something: every level of the stem and of a deep unit fires
    for unit in ("stem", "s2b0_unit2"):
        for k in range(3):
            assert spikes[f"{unit}_l{k}"].any(), f"{unit}_l{k} never fires"


def test_every_mlf_unit_is_one_conv_into_k_populations(deployed):
    m, fg, _, _ = deployed
    g = export(m, SHAPE).graph(META)
    for unit, mod in m.mlf_units():
        assert mod.mlf.thresholds == (0.6, 1.6, 2.6)
        for k, th in enumerate(mod.mlf.thresholds):
            pop = f"{unit}_l{k}"
            assert [a for a, b in g.edges if b == pop] == [f"{unit}_conv"]
            assert np.allclose(np.asarray(g.nodes[pop].v_threshold), th)
            assert fg.populations[pop].beta == pytest.approx(0.25)
    # the summed populations of a block output each feed the next conv with the same weights
    into = fg.incoming("s2b0_unit1_l0")
    sources = [s.source for s in into]
    assert sources == [f"s1b0_unit2_l{k}" for k in range(3)] + [f"stem_l{k}" for k in range(3)]
    assert all(np.array_equal(s.op.weight, into[0].op.weight) for s in into)
    readout = fg.incoming("output")
    assert len(readout) == 6  # s3b0_unit2 and s3b0_shortcut levels, GAP + Linear each


def test_identity_shortcuts_get_balancing_delays_and_mfi_holds_past_the_stem(deployed):
    _, _, qg, report = deployed
    delay = {(s.source, s.target): s.delay for s in qg.synapses}
    for k in range(3):
        for j in range(3):
            # identity: the stem's levels skip s1b0's two synaptic layers
            assert delay[(f"stem_l{k}", f"s2b0_unit1_l{j}")] == 2
            assert delay[(f"stem_l{k}", f"s2b0_shortcut_l{j}")] == 2
            assert delay[(f"s1b0_unit2_l{k}", f"s2b0_unit1_l{j}")] == 0
            # a conv shortcut is one synaptic layer against the main path's two
            assert delay[(f"s2b0_shortcut_l{k}", f"s3b0_unit1_l{j}")] == 1
            assert delay[(f"s2b0_unit2_l{k}", f"s3b0_unit1_l{j}")] == 0
    lat = qg.latency()  # raises unless every path into every node is balanced
    assert lat["output"] == 8  # stem + 3 blocks x 2 layers + readout
    assert not report.warnings
    macs = [e for e in certificate(qg) if e.is_mac]
    assert {e.source for e in macs} == {INPUT}
    assert {e.target for e in macs} == {"stem_l0", "stem_l1", "stem_l2"}


def test_torch_ref_equals_event_sim_exactly(deployed):
    _, _, qg, _ = deployed
    x = _inputs(4, seed=2)
    ref = torch_ref.run(qg, x)
    ev = event_sim.run(qg, x)
    assert sum(int(s.sum()) for s in ref.spikes.values()) > 0
    for name, s in ref.spikes.items():
        assert np.array_equal(s, ev.spikes[name]), name
    for name, r in ref.readouts.items():
        assert np.array_equal(r, ev.readouts[name]), name


def test_bitplane_input_makes_the_whole_net_multiplication_free(deployed):
    _, fg, _, _ = deployed
    planes, _ = quantize(fg, input_bitplanes=True)
    graded, _ = quantize(fg, input_exp_zero=True)
    assert not any(e.is_mac for e in certificate(planes))
    x = _inputs(2, seed=3)
    a, b = torch_ref.run(planes, x), torch_ref.run(graded, x)
    assert sum(int(s.sum()) for s in a.spikes.values()) > 0
    for name, s in a.spikes.items():
        assert np.array_equal(s, b.spikes[name]), name
