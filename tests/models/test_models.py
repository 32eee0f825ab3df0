"""LIF semantics (the chip contract in float), surrogate gradients, the two small
architectures, the shared layers (time fold, input check), the model protocol every registered
model follows, and the registry (names and import paths)."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from core.errors import ConfigError
from models.conv_snn import ConvSNN
from models.defaults import TrainingDefaults
from models.fc_snn import FCSNN
from models.layers import SpikingModel, image_shape, seq_to_ann, time_major_input
from models.neuron import LIF, ATanSpike, validate_beta
from models.registry import (
    MODELS,
    build_model,
    default_config,
    resolve,
    spec_of,
    training_defaults,
)


def _ref_lif(x, beta, th):
    """Plain-python reference of the contract: v = beta v + x; s = v > th; v = 0 where s."""
    v = np.zeros(x.shape[1:])
    out = []
    for t in range(x.shape[0]):
        v = beta * v + x[t]
        s = v > th
        v = np.where(s, 0.0, v)
        out.append(s.astype(np.float32))
    return np.stack(out)


def test_lif_hand_made_trace():
    lif = LIF(beta=0.5, threshold=1.0)
    # one neuron, B=1: v: 0.6 -> 0.3+0.6=0.9 -> 0.45+0.6=1.05 spike -> reset 0 -> 0.6
    x = torch.tensor([0.6, 0.6, 0.6, 0.6]).reshape(4, 1, 1)
    s, v = lif(x, return_voltage=True)
    assert s.flatten().tolist() == [0.0, 0.0, 1.0, 0.0]
    assert torch.allclose(v.flatten(), torch.tensor([0.6, 0.9, 1.05, 0.6]))


def test_lif_strictly_greater_and_hard_reset():
    lif = LIF(beta=0.5, threshold=1.0)
    # exactly at threshold: no spike; then 0.5 + 0.75 = 1.25 spikes; reset to 0 (not subtract)
    x = torch.tensor([1.0, 0.75, 0.25, 2.0, 0.0]).reshape(5, 1, 1)
    s, v = lif(x, return_voltage=True)
    assert s.flatten().tolist() == [0.0, 1.0, 0.0, 1.0, 0.0]
    # after the spike at t=1 the state is 0, so v(t=2) = 0.25 (a subtractive reset would give 0.5)
    assert v.flatten().tolist() == [1.0, 1.25, 0.25, 2.125, 0.0]


def test_lif_matches_reference_on_random_input():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 5, 4) * 1.5
    for beta in (0.25, 0.5, 1.0, 4095 / 4096):
        got = LIF(beta=beta, threshold=0.7)(x).numpy()
        assert np.array_equal(got, _ref_lif(x.double().numpy(), beta, 0.7))
    assert LIF()(x).shape == x.shape


def test_lif_attributes_and_beta_validation():
    lif = LIF(beta=0.75, threshold=2.0)
    assert lif.beta == 0.75 and lif.threshold == 2.0
    assert LIF().beta == 0.5 and LIF().threshold == 1.0
    assert validate_beta(1234 / 4096) == 1234 / 4096
    for bad in (0.3, 0.1, 1 / 8192, 0.0, 1.5, -0.5, float("nan")):
        with pytest.raises(ValueError, match="1/4096"):
            LIF(beta=bad)


def test_surrogate_gradient_is_arctan():
    v = torch.tensor([0.0, 0.5, 1.0, 1.5, 3.0], requires_grad=True)
    s = ATanSpike.apply(v, 1.0, 2.0)
    assert s.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    s.sum().backward()
    expect = [1.0 / (1 + (math.pi * (x - 1.0)) ** 2) for x in v.tolist()]  # alpha = 2
    assert torch.allclose(v.grad, torch.tensor(expect))


def test_gradient_flows_through_time_and_reset():
    torch.manual_seed(0)
    x = (torch.rand(4, 2, 3) * 2).requires_grad_()
    LIF()(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # gradient reaches earlier timesteps through the leak
    assert (x.grad[0] != 0).all()
    x2 = x.detach().clone().requires_grad_()
    LIF(detach_reset=True)(x2).sum().backward()
    assert not torch.allclose(x.grad, x2.grad)  # the reset path contributes when not detached


def test_fc_snn_structure_forward_and_grads():
    torch.manual_seed(0)
    m = FCSNN(n_in=64, n_hidden=32, n_out=10)
    assert m.fc1.bias is not None and m.fc2.bias is None
    assert isinstance(m.lif1, LIF)
    x = torch.rand(4, 5, 64) * 3
    logits, spikes = m(x, return_spikes=True)
    assert logits.shape == (5, 10) and spikes["lif1"].shape == (4, 5, 32)
    assert set(spikes["lif1"].unique().tolist()) <= {0.0, 1.0}
    # logits are the time-average of the (bias-free) readout of the spikes
    assert torch.allclose(logits, (spikes["lif1"] @ m.fc2.weight.T).mean(0))
    assert torch.equal(m.forward_with_spikes(x)[0], logits)
    logits.sum().backward()
    assert m.fc1.weight.grad.abs().sum() > 0 and m.fc2.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="expects input"):
        m(torch.rand(4, 5, 63))


@pytest.mark.parametrize("hw", [8, 28])
def test_conv_snn_shapes_and_grads(hw):
    torch.manual_seed(0)
    m = ConvSNN(in_shape=(1, hw, hw))
    assert m.fc.in_features == 16 * (hw // 4) ** 2 and m.fc.bias is None
    x = torch.rand(3, 2, 1, hw, hw) * 4
    logits, sp = m(x, return_spikes=True)
    assert logits.shape == (2, 10)
    assert sp["lif1"].shape == (3, 2, 8, hw, hw) and sp["lif2"].shape == (
        3,
        2,
        16,
        hw // 2,
        hw // 2,
    )
    assert torch.allclose(m(x[:, :, 0]), logits)  # [T, B, H, W] accepted for one channel
    # folding T into the batch does not mix samples: sample 1 alone gives the same logits
    assert torch.allclose(m(x[:, 1:]), logits[1:], atol=1e-6)
    logits.sum().backward()
    assert m.conv1.weight.grad.abs().sum() > 0 and m.conv2.weight.grad.abs().sum() > 0


def test_registry():
    assert {"fc_snn", "conv_snn"} <= set(MODELS)
    assert MODELS["fc_snn"] is FCSNN and MODELS["conv_snn"] is ConvSNN
    cfg = default_config("fc_snn", (8, 8), 10)
    assert cfg["n_in"] == 64 and cfg["n_out"] == 10
    assert default_config("fc_snn", (28, 28), 10)["n_in"] == 784
    assert default_config("fc_snn", (28, 28), 10)["n_hidden"] <= 512
    assert default_config("conv_snn", (28, 28), 10)["in_shape"] == [1, 28, 28]
    assert default_config("conv_snn", (3, 32, 32), 100)["in_shape"] == [3, 32, 32]
    m = build_model("fc_snn", cfg)
    assert isinstance(m, FCSNN) and m.fc1.in_features == 64
    c = build_model("conv_snn", default_config("conv_snn", (8, 8), 10))
    assert isinstance(c, ConvSNN) and c.in_shape == (1, 8, 8)
    with pytest.raises(ValueError, match="valid models: fc_snn, conv_snn, "):
        build_model("resnet", {})
    with pytest.raises(ValueError, match="bad config"):
        build_model("fc_snn", {"n_hiden": 3})
    with pytest.raises(ValueError, match="1/4096"):
        build_model("fc_snn", {**cfg, "beta": 0.3})


# --- the shared layers -----------------------------------------------------------------------

def test_seq_to_ann_folds_time_into_the_batch():
    torch.manual_seed(0)
    x = torch.rand(3, 2, 4, 6, 6)
    conv = nn.Conv2d(4, 5, 3)
    y = seq_to_ann(conv, x)
    assert y.shape == (3, 2, 5, 4, 4)
    for t in range(3):  # each timestep of each sample is its own batch entry
        for b in range(2):
            assert torch.allclose(y[t, b], conv(x[t, b : b + 1])[0], atol=1e-6)
    assert seq_to_ann(lambda z: z.sum(1), x).shape == (3, 2, 6, 6)
    with pytest.raises(ConfigError, match="time-major"):
        seq_to_ann(conv, torch.rand(4))


def test_time_major_input_check():
    x = torch.rand(4, 2, 8, 8)
    assert time_major_input(x, (64,), "M").shape == (4, 2, 64)  # flattened (C order)
    assert torch.equal(time_major_input(x, (64,), "M")[1, 0], x[1, 0].reshape(-1))
    assert time_major_input(x, (1, 8, 8), "M").shape == (4, 2, 1, 8, 8)  # channel inserted
    same = torch.rand(4, 2, 3, 8, 8)
    assert time_major_input(same, (3, 8, 8), "M") is same
    with pytest.raises(ConfigError, match=r"M expects input \[T, B, 3, 8, 8\], got shape"):
        time_major_input(x, (3, 8, 8), "M")  # no channel axis invented for C > 1
    with pytest.raises(ConfigError, match="expects input"):
        time_major_input(x, (63,), "M")
    assert image_shape((28, 28)) == (1, 28, 28) and image_shape([3, 32, 32]) == (3, 32, 32)
    with pytest.raises(ConfigError, match="image shape"):
        image_shape((784,))


def test_training_defaults_are_checked():
    d = TrainingDefaults()
    assert (d.lr, d.batch_size, d.schedule, d.epochs, d.timesteps, d.encoding) == (
        2e-3, 64, "cosine", 3, 4, "direct")
    assert dataclasses.replace(d, lr=1e-2).as_dict()["lr"] == 1e-2
    for bad, match in (({"lr": 0.0}, "learning rate"), ({"lr": float("nan")}, "learning rate"),
                       ({"batch_size": 0}, "batch_size must be"),
                       ({"epochs": -1}, "epochs must be"), ({"timesteps": 0}, "timesteps must"),
                       ({"schedule": "step"}, "unknown schedule"),
                       ({"encoding": "latency"}, "unknown encoding")):
        with pytest.raises(ConfigError, match=match):
            dataclasses.replace(d, **bad)


# --- the model protocol ----------------------------------------------------------------------

# Small constructor overrides so that every registered model runs fast on 8x8 / 16x16 inputs.
SMALL = {
    "fc_snn": ((8, 8), {"n_hidden": 16}),
    "conv_snn": ((8, 8), {}),
    "cml_net": ((8, 8), {"channels": [4, 8, 8]}),
    "ds_resnet": ((8, 8), {"widths": [4, 8, 8], "blocks": [1, 1, 1]}),
    "spiking_mlp": ((8, 8), {"dim": 6}),
    "cml_spikformer": ((16, 16), {"tokenizer_channels": [4, 8], "dim": 16, "heads": 2,
                                  "mlp_ratio": 2}),
    "sma_net": ((8, 8), {"channels": [4, 8], "block_channels": 8}),
}

# What each model was measured with (docs/models/*.md, docs/model-zoo.md).
MEASURED = {
    "fc_snn": (2e-3, 64, 3),
    "conv_snn": (2e-3, 64, 1),
    "cml_net": (2e-3, 64, 1),
    "ds_resnet": (5e-3, 128, 1),
    "spiking_mlp": (1e-2, 32, 1),
    "cml_spikformer": (1e-2, 32, 1),
    "sma_net": (5e-3, 64, 3),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_model_follows_the_protocol(name):
    cls = MODELS[name]
    assert issubclass(cls, SpikingModel) and resolve(name) is cls and spec_of(cls) == name
    shape, small = SMALL[name]
    cfg = cls.default_config(shape, 7)
    assert all(type(v) in (int, float, str, list, bool) for v in cfg.values()), cfg
    assert default_config(name, shape, 7) == cfg
    torch.manual_seed(0)
    m = build_model(name, {**cfg, **small}).eval()
    x = torch.rand(4, 2, *shape) * 2  # dataset images [T, B, H, W]: every model takes them
    with torch.no_grad():
        logits, spikes = m.forward_with_spikes(x)
        assert torch.equal(m(x), logits)
    assert logits.shape == (2, 7)
    assert tuple(spikes) == tuple(m.lif_names)  # records named and ordered as lif_names
    for s in spikes.values():
        assert s.shape[:2] == (4, 2) and set(s.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ConfigError, match="expects input"):
        m(torch.rand(4, 2, 5, 5))
    lr, batch, epochs = MEASURED[name]
    hp = training_defaults(name)
    assert hp is cls.TRAINING and (hp.lr, hp.batch_size, hp.epochs) == (lr, batch, epochs)
    assert (hp.schedule, hp.timesteps, hp.encoding) == ("cosine", 4, "direct")


class _NotAModel:
    pass


class _NoDefaults(nn.Module):
    def forward_with_spikes(self, x):
        return x, {}


def test_resolve_import_paths():
    assert resolve("models.fc_snn:FCSNN") is FCSNN
    assert spec_of(FCSNN(n_in=4)) == "fc_snn"
    assert spec_of(_NoDefaults) == f"{__name__}:_NoDefaults"
    for spec, match in (("no_such_pkg_xyz.mod:Net", "cannot import module 'no_such_pkg_xyz.mod'"),
                        ("models.fc_snn:Nope", "has no 'Nope'"),
                        (f"{__name__}:_NotAModel", "not a torch.nn.Module"),
                        (f"{__name__}:_NoDefaults", "lacks default_config, lif_names"),
                        ("fc snn", "unknown model"), ("pkg:", "unknown model")):
        with pytest.raises(ConfigError, match=match):
            resolve(spec)
    assert training_defaults("models.fc_snn:FCSNN") is FCSNN.TRAINING
