"""Convolutions NIR's own type inference gets wrong (issue 8, item 3): grouped convs, non-square
kernels, unequal strides and paddings. nir 1.0.8's ``Conv2d`` infers its types as if groups
were 1 and the kernel square; the integer-graph writer sets the types itself, so such a graph
quantizes, is written, reads back unchanged and runs spike-identically on torch_ref, event_sim
and Lava (Lava's own ``Conv`` for convs that read spikes, the dense-mapped conv for one that
reads a graded input with a weight exponent)."""

from __future__ import annotations

import nir
import numpy as np
import pytest

from convert import load_graph
from convert.quantize import main as quantize_main
from core.errors import GraphError
from core.graph import (
    LAVA_CONV_FIELD_MAX,
    Conv,
    Dense,
    InputSpec,
    LIFPopulation,
    QGraph,
    Readout,
    check_lava_limits,
    runs_as_dense_on_lava,
)
from core.nir_ext import read_nir
from core.nir_io import check_node_types, from_nir, to_nir, write_qgraph
from core.ops import conv2d, conv2d_out_hw
from targets import event_sim, loihi, torch_ref
from targets.loihi import layout

T = 8


def _lif(shape: tuple[int, ...], threshold: float = 1.0) -> nir.LIF:
    """A LIF with beta 0.5 at dt = 1 ms (tau 2 ms), input gain dt r / tau = 1."""
    return nir.LIF(tau=np.full(shape, 2e-3), r=np.full(shape, 2.0), v_leak=np.zeros(shape),
                   v_threshold=np.full(shape, threshold), v_reset=np.zeros(shape))


def _conv(rng, shape, c_out, kernel, stride, padding, groups, scale):
    """A ``nir.Conv2d`` reading ``shape`` (C, H, W), and its output shape."""
    c, h, w = shape
    weight = rng.normal(0.0, scale, size=(c_out, c // groups, *kernel))
    node = nir.Conv2d(input_shape=(h, w), weight=weight, stride=stride, padding=padding,
                      dilation=1, groups=groups, bias=np.zeros(c_out))
    return node, (c_out, *conv2d_out_hw((h, w), kernel, stride, padding))


def _chain(layers: list[tuple[str, object]], in_shape, out_size, meta) -> nir.NIRGraph:
    """Input -> layers... -> Output, one edge after another (no NIR type check: NIR would
    reject exactly the convs under test)."""
    nodes = {"input": nir.Input({"input": np.array(in_shape)}), **dict(layers),
             "output": nir.Output({"output": np.array([out_size])})}
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:], strict=True)),
                        metadata={"dt": 1e-3, "timesteps": T, **meta}, type_check=False)


def issue_graph(rng) -> nir.NIRGraph:
    """Issue 8's graph: Input(2,13,7) -> Conv2d(weight [4,1,3,1], groups 2, stride (2,1),
    padding (1,0)) -> LIF -> SumPool2d(kernel 2, stride 2, padding 1) -> Flatten -> Linear ->
    LIF."""
    conv, shape = _conv(rng, (2, 13, 7), 4, (3, 1), (2, 1), (1, 0), 2, 1.2)
    c, h, w = shape
    pooled = (c, *conv2d_out_hw((h, w), (2, 2), (2, 2), (1, 1)))
    n_flat = int(np.prod(pooled))
    return _chain([
        ("conv", conv), ("lif1", _lif(shape)),
        ("pool", nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                               padding=np.array([1, 1]))),
        ("flat", nir.Flatten({"input": np.array(pooled)}, start_dim=0, end_dim=-1)),
        ("lin", nir.Linear(weight=rng.normal(0.0, 0.4, size=(5, n_flat)))),
        ("lif2", _lif((5,))),
    ], (2, 13, 7), 5, {})


def two_conv_graph(rng) -> nir.NIRGraph:
    """A depthwise conv with a (1, 3) kernel, then a dense (groups 1) conv with a (2, 3)
    kernel from a population: Lava's Conv reading spikes, twice."""
    dw, s1 = _conv(rng, (3, 6, 9), 3, (1, 3), (1, 2), (0, 1), 3, 1.0)
    c2, s2 = _conv(rng, s1, 4, (2, 3), (2, 1), (1, 1), 1, 0.6)
    n_flat = int(np.prod(s2))
    return _chain([
        ("dw", dw), ("lif1", _lif(s1)), ("c2", c2), ("lif2", _lif(s2)),
        ("flat", nir.Flatten({"input": np.array(s2)}, start_dim=0, end_dim=-1)),
        ("lin", nir.Linear(weight=rng.normal(0.0, 0.4, size=(3, n_flat)))),
        ("lif3", _lif((3,))),
    ], (3, 6, 9), 3, {})


def graded_graph(rng) -> nir.NIRGraph:
    """A grouped (3, 2) conv with stride (1, 2) on a graded input (pixels up to 255): the
    quantizer gives it a negative weight exponent, so Lava runs it as its dense map."""
    conv, s1 = _conv(rng, (4, 5, 6), 4, (3, 2), (1, 2), (1, 0), 2, 0.01)
    n_flat = int(np.prod(s1))
    return _chain([
        ("conv", conv), ("lif1", _lif(s1)),
        ("flat", nir.Flatten({"input": np.array(s1)}, start_dim=0, end_dim=-1)),
        ("lin", nir.Linear(weight=rng.normal(0.0, 0.4, size=(3, n_flat)))),
        ("lif2", _lif((3,))),
    ], (4, 5, 6), 3, {"input_max": 255})


CASES = {
    "issue": (issue_graph, None),
    "two_convs": (two_conv_graph, None),
    "graded": (graded_graph, "graded"),
}


def _inputs(rng, qg, n=3):
    shape = (n, T, *qg.input.shape)
    if qg.input.kind == "graded":
        return rng.integers(0, qg.input.max_value + 1, size=shape)
    return (rng.random(shape) < 0.35).astype(np.int64)


def _same_graph(a, b) -> None:
    assert a.input == b.input and a.timesteps == b.timesteps
    assert list(a.populations) == list(b.populations)
    for name, p in a.populations.items():
        q = b.populations[name]
        assert (p.shape, p.du, p.dv, p.vth, p.bias_exp) == (q.shape, q.du, q.dv, q.vth,
                                                            q.bias_exp)
        assert np.array_equal(p.bias_mant, q.bias_mant)
    by_name = {t.name: t for t in b.synapses}
    assert sorted(by_name) == sorted(s.name for s in a.synapses)
    for s in a.synapses:
        t = by_name[s.name]
        assert type(s) is type(t) and np.array_equal(s.weight, t.weight)
        assert (s.source, s.target, s.weight_exp, s.delay) == (t.source, t.target,
                                                               t.weight_exp, t.delay)
        if isinstance(s, Conv):
            assert (tuple(s.stride), tuple(s.padding), s.groups, tuple(s.in_shape),
                    tuple(s.out_shape)) == (tuple(t.stride), tuple(t.padding), t.groups,
                                            tuple(t.in_shape), tuple(t.out_shape))


@pytest.mark.parametrize("case", sorted(CASES))
def test_grouped_and_non_square_convs_write_read_back_and_run_on_every_target(case, tmp_path):
    build, kind = CASES[case]
    rng = np.random.default_rng(3)
    src = tmp_path / "g.nir"
    nir.write(src, build(rng))
    qg, report = load_graph(src, input_kind=kind)
    convs = [s for s in qg.synapses if isinstance(s, Conv)]
    assert any(s.groups > 1 or s.weight.shape[2] != s.weight.shape[3] for s in convs)
    if case == "graded":  # the dense-mapped conv of the Lava target is exercised too
        assert all(runs_as_dense_on_lava(s) for s in convs)
    else:
        assert not any(runs_as_dense_on_lava(s) for s in convs)

    out = tmp_path / "g.loihi.nir"
    write_qgraph(out, qg, report)
    back = from_nir(read_nir(out))
    _same_graph(qg, back)

    x = _inputs(rng, back)
    ref = torch_ref.run(back, x)
    assert all(s.any() for s in ref.spikes.values()), "a population never spikes"
    for other in (event_sim.run(back, x), loihi.run(back, x)):
        for name, s in ref.spikes.items():
            assert np.array_equal(s, other.spikes[name]), name
        for name, r in ref.readouts.items():
            assert np.array_equal(r, other.readouts[name]), name


def test_quantize_command_writes_the_issue_graph(tmp_path, capsys):
    """``python -m convert.quantize`` on issue 8's graph: no traceback from NIR's conv type
    inference, and the file it writes reads back."""
    src, out = tmp_path / "g.nir", tmp_path / "g.loihi.nir"
    nir.write(src, issue_graph(np.random.default_rng(0)))
    assert quantize_main([str(src), "-o", str(out), "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out
    qg, _ = load_graph(out)
    assert [s.groups for s in qg.synapses if isinstance(s, Conv)] == [2]


@pytest.mark.parametrize("groups,cpg,opg", [(130, 1, 1), (254, 1, 2), (256, 2, 1), (5, 3, 2)])
def test_lava_conv_groups_merges_groups_into_block_diagonal_ones(groups, cpg, opg):
    """Lava keeps ``groups`` in a signed 8-bit Var: more than 127 groups become at most 127
    block-diagonal ones, the same convolution."""
    rng = np.random.default_rng(groups)
    w = rng.integers(-9, 10, size=(groups * opg, cpg, 2, 3))
    merged, g2 = layout.lava_conv_groups(w, groups)
    assert g2 <= LAVA_CONV_FIELD_MAX and groups % g2 == 0
    assert g2 == (groups if groups <= LAVA_CONV_FIELD_MAX else max(
        d for d in range(1, LAVA_CONV_FIELD_MAX + 1) if groups % d == 0))
    x = rng.integers(0, 2, size=(2, groups * cpg, 4, 5)).astype(np.float64)
    assert np.array_equal(conv2d(x, merged, (1, 2), (1, 0), g2),
                          conv2d(x, w, (1, 2), (1, 0), groups))


def _depthwise_graph(channels: int, kernel: tuple[int, int]) -> QGraph:
    """input (C, kh + 1, 2) spikes -> depthwise conv (C groups) -> population -> readout."""
    rng = np.random.default_rng(channels)
    kh, kw = kernel
    in_shape = (channels, kh + 1, kw + 1)
    out_shape = (channels, 2, 2)
    size = int(np.prod(out_shape))
    w = rng.integers(1, 30, size=(channels, 1, kh, kw)) * 2
    return QGraph(InputSpec(in_shape, "spikes", 1),
                  {"p": LIFPopulation("p", out_shape, 4095, 2048, 10 * kh * kw,
                                      np.zeros(size, dtype=np.int64))},
                  {"r": Readout("r", (size,))},
                  [Conv("c", "input", "p", w, (1, 1), (0, 0), channels, in_shape, out_shape),
                   Dense("d", "p", "r", np.eye(size, dtype=np.int64))], 3, {})


def test_lava_runs_a_depthwise_conv_with_more_than_127_groups():
    qg = _depthwise_graph(130, (2, 1))
    qg.validate()
    x = (np.random.default_rng(1).random((2, 3, *qg.input.shape)) < 0.5).astype(np.int64)
    a, b = torch_ref.run(qg, x), loihi.run(qg, x)
    assert a.spikes["p"].any()
    assert np.array_equal(a.spikes["p"], b.spikes["p"])
    assert np.array_equal(a.readouts["r"], b.readouts["r"])


def test_lava_refuses_a_conv_field_beyond_8_bits_before_it_starts():
    qg = _depthwise_graph(1, (1, LAVA_CONV_FIELD_MAX + 1))
    qg.validate()  # torch_ref and event_sim run it
    with pytest.raises(GraphError, match=r"synapse 'c': kernel \(1, 128\) is larger than 127"):
        check_lava_limits(qg)
    x = np.zeros((1, 3, *qg.input.shape), dtype=np.int64)
    with pytest.raises(GraphError, match="the most Lava's Conv can hold"):
        loihi.run(qg, x)


def test_the_writer_sets_and_checks_the_types_nir_gets_wrong(tmp_path):
    """nir 1.0.8 infers the issue graph's conv input as [1, 13, 7] (C_in/groups channels): its
    own type check refuses the graph our writer now writes with the right types."""
    qg, _ = load_graph(_write(tmp_path, issue_graph(np.random.default_rng(0))))
    g = to_nir(qg)
    conv = g.nodes["conv"]
    assert conv.input_type["input"].tolist() == [2, 13, 7]
    assert conv.output_type["output"].tolist() == list(qg.synapses[0].conv_shape)
    check_node_types(dict(g.nodes), list(g.edges))  # what the writer ran: it passes
    bad = dict(g.nodes)  # the node as nir.Conv2d types it by itself
    bad["conv"] = nir.Conv2d(input_shape=(13, 7), weight=conv.weight, stride=conv.stride,
                             padding=conv.padding, dilation=1, groups=2, bias=conv.bias)
    with pytest.raises(ValueError, match="type mismatch"):  # what writing did before
        nir.NIRGraph(nodes=dict(bad), edges=list(g.edges), metadata={}, type_check=True)
    with pytest.raises(GraphError, match=r"edge 'input' -> 'conv' joins shape \[2, 13, 7\] to "
                                         r"\[1, 13, 7\]"):
        check_node_types(bad, list(g.edges))


def _write(tmp_path, g: nir.NIRGraph):
    path = tmp_path / "float.nir"
    nir.write(path, g)
    return path
