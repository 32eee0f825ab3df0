"""Deployment rewrites: bit-plane inputs, balancing delays, max pooling of currents."""

from dataclasses import replace
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from convert import load_graph
from convert.nir_builder import NIRBuilder
from convert.nir_import import import_nir
from convert.quantize import quantize
from core.graph import (
    LAVA_MAX_DELAY,
    Conv,
    GraphError,
    InputSpec,
    LIFPopulation,
    QGraph,
    check_lava_limits,
    runs_as_dense_on_lava,
)
from core.nir_ext import read_nir
from core.nir_io import write_qgraph
from targets import torch_ref
from targets.mfi import certificate
from tests.golden import golden_inputs

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize("model", ["fc_snn_digits.nir", "conv_snn_digits.nir"])
def test_bitplane_input_is_exactly_the_graded_input(model):
    fg = import_nir(read_nir(DATA / model))
    graded, _ = quantize(fg, input_exp_zero=True)
    planes, rep = quantize(fg, input_bitplanes=True)
    assert rep.input_bitplanes == 8 and planes.input.flat_size == 8 * planes.input.size
    x = golden_inputs(graded)
    a, b = torch_ref.run(graded, x), torch_ref.run(planes, x)
    for name in a.spikes:
        assert np.array_equal(a.spikes[name], b.spikes[name])
    for name in a.readouts:
        assert np.array_equal(a.readouts[name], b.readouts[name])
    assert sum(int(s.sum()) for s in a.spikes.values()) > 0
    assert not any(e.is_mac for e in certificate(planes))
    assert any(e.is_mac for e in certificate(graded))
    assert b.counters["mac"] == 0 and a.counters["mac"] > 0


def _residual_cml_graph() -> nir.NIRGraph:
    """input -> conv-maxpool-lif (a) -> conv-lif (b) -> conv-lif (c); a also feeds c directly."""
    g = torch.Generator().manual_seed(0)
    b = NIRBuilder((1, 8, 8))
    c1 = b.conv("input", weight=torch.randn(4, 1, 3, 3, generator=g), padding=1)
    a = b.lif(b.maxpool(c1, 2), 0.5, 1.0, name="a")
    bb = b.lif(b.conv(a, weight=torch.randn(4, 4, 3, 3, generator=g), padding=1), 0.5, 1.0,
               name="b")
    c = b.lif(b.conv([a, bb], weight=torch.randn(4, 4, 3, 3, generator=g), padding=1), 0.5, 1.0,
              name="c")
    b.output(b.linear(b.flatten(c), weight=torch.randn(3, 64, generator=g)))
    return b.graph({"dt": 1e-3, "timesteps": 5, "encoding": "direct", "input_scale": 1 / 255,
                    "input_max": 255})


def test_residual_gets_delay_and_maxpool_survives_integer_nir(tmp_path):
    fg = import_nir(_residual_cml_graph())
    qg, _ = quantize(fg)
    delays = {(s.source, s.target): s.delay for s in qg.synapses}
    assert delays[("a", "c")] == 1 and delays[("b", "c")] == 0
    assert qg.latency()["c"] == 3
    pooled = [s for s in qg.synapses if getattr(s, "max_pool", None)]
    assert len(pooled) == 1 and pooled[0].out_shape == (4, 4, 4)
    path = tmp_path / "m.loihi.nir"
    write_qgraph(path, qg)
    with pytest.raises(AssertionError):
        nir.read(str(path))  # the stock reader refuses the extension node, loudly
    back, _ = load_graph(path)
    by_name = {s.name: s for s in back.synapses}
    assert sorted(by_name) == sorted(s.name for s in qg.synapses)
    for s in qg.synapses:
        t = by_name[s.name]
        assert (s.source, s.target, s.delay) == (t.source, t.target, t.delay)
        assert getattr(s, "max_pool", None) == getattr(t, "max_pool", None)
        assert np.array_equal(s.weight, t.weight)
    x = np.random.default_rng(0).integers(0, 256, (6, 5, 1, 8, 8))
    r1, r2 = torch_ref.run(qg, x), torch_ref.run(back, x)
    for n in r1.spikes:
        assert np.array_equal(r1.spikes[n], r2.spikes[n])


def test_maxpool_of_currents_matches_float_model():
    from convert.float_sim import simulate

    fg = import_nir(_residual_cml_graph())
    x = np.random.default_rng(1).integers(0, 256, (20, 5, 1, 8, 8))
    _, spikes = simulate(fg, x)
    qg, _ = quantize(fg)
    r = torch_ref.run(qg, x)
    agree = np.mean(spikes["a"] == r.spikes["a"])
    assert agree > 0.97  # integer vs float: only rounding near threshold may differ
    assert r.spikes["a"].any()


def test_bitplane_file_round_trip(tmp_path):
    qg, _ = load_graph(DATA / "conv_snn_digits.nir", input_bitplanes=True)
    path = tmp_path / "bp.loihi.nir"
    write_qgraph(path, qg)
    back, _ = load_graph(path)
    assert back.input.bitplanes == 8
    assert [s.source_slice for s in back.synapses if s.source == "input"] == [
        (b * 64, (b + 1) * 64) for b in range(8)]


def test_lava_limits_are_named_rules_beside_validate():
    """Loihi 2's DelayDense holds at most 63 steps; a conv the Lava target runs as a dense map
    must not reach the 24-bit wrap. Both graphs are valid for the other targets."""
    qg, _ = load_graph(DATA / "fc_snn_digits.nir")
    check_lava_limits(qg)
    for delay, ok in ((LAVA_MAX_DELAY, True), (LAVA_MAX_DELAY + 1, False)):
        delayed = replace(qg, synapses=[replace(s, delay=delay) for s in qg.synapses])
        delayed.validate()
        if ok:
            check_lava_limits(delayed)
        else:
            with pytest.raises(GraphError, match="'fc1': delay 64 > 63"):
                check_lava_limits(delayed)
    pooled = _pooled_conv_graph(delay=LAVA_MAX_DELAY + 1)  # its delay rides in a relay
    pooled.validate()
    check_lava_limits(pooled)
    wide = _wide_graded_conv_graph()  # 255 * (16 * 3 * 3 * 255) >= 2**23 with exponent -1
    wide.validate()
    assert runs_as_dense_on_lava(wide.synapses[0])
    with pytest.raises(GraphError, match="'conv': a bit-plane conv with worst-case sum 9363600"):
        check_lava_limits(wide)
    check_lava_limits(replace(wide, synapses=[replace(wide.synapses[0], weight_exp=0)]))


def _pooled_conv_graph(delay: int) -> QGraph:
    w = np.ones((2, 1, 3, 3), dtype=np.int64)
    return QGraph(InputSpec((1, 6, 6)), {"p": LIFPopulation("p", (2, 3, 3), 0, 0, 10,
                                                            np.zeros(18, dtype=np.int64))}, {},
                  [Conv("conv", "input", "p", w, (1, 1), (1, 1), 1, (1, 6, 6), (2, 3, 3),
                        delay, (2, 2))], 2)


def _wide_graded_conv_graph() -> QGraph:
    w = np.full((1, 16, 3, 3), 255, dtype=np.int64)
    return QGraph(InputSpec((16, 4, 4), "graded", 255),
                  {"p": LIFPopulation("p", (1, 4, 4), 0, 0, 10, np.zeros(16, dtype=np.int64))},
                  {}, [Conv("conv", "input", "p", w, (1, 1), (1, 1), 1, (16, 4, 4), (1, 4, 4),
                            weight_exp=-1)], 2)


def test_bitplane_graph_runs_on_lava_through_the_worker():
    from targets import loihi

    qg, _ = load_graph(DATA / "fc_snn_digits.nir", input_bitplanes=True)
    x = golden_inputs(qg)[:4]
    a, b = torch_ref.run(qg, x), loihi.run(qg, x)
    for name in a.spikes:
        assert np.array_equal(a.spikes[name], b.spikes[name])
    for name in a.readouts:
        assert np.array_equal(a.readouts[name], b.readouts[name])
