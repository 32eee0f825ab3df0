"""docs/integer-nir.md's worked examples, run on torch_ref and event_sim and through a file.

The expected values are read from the page itself (the fenced blocks that follow a
``<!-- pinned: NAME -->`` marker), so the page cannot drift from the code: change one and this
test fails until the other agrees. The graphs are built here whole, as the page's tables state.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import nir
import numpy as np
import pytest
from sklearn.datasets import load_digits

from core import fixedpoint as fx
from core.datasets import load_dataset
from core.encoding import encode
from core.graph import (
    INPUT,
    Conv,
    Dense,
    InputSpec,
    LIFPopulation,
    QGraph,
    Readout,
    SpikeAttention,
)
from core.nir_ext import read_nir
from core.nir_io import from_nir, write_qgraph
from targets import event_sim, torch_ref
from targets.base import RunResult, check_inputs, readout_scores

DOC = Path(__file__).resolve().parents[2] / "docs" / "integer-nir.md"
TARGETS = {"torch_ref": torch_ref.run, "event_sim": event_sim.run}


# --- reading the page ------------------------------------------------------------------------

def pinned(name: str) -> str:
    """The body of the fenced block right after ``<!-- pinned: name -->`` on the page."""
    m = re.search(rf"<!-- pinned: {re.escape(name)} -->\s*```[^\n]*\n(.*?)```", DOC.read_text(),
                  re.S)
    assert m, f"docs/integer-nir.md has no pinned block {name!r}"
    return m.group(1)


def assignments(name: str) -> dict[str, Any]:
    """``key = python literal`` lines of a pinned block, e.g. ``{"spikes A": [[...]]}``."""
    out = {}
    for line in pinned(name).splitlines():
        if line.strip():
            key, value = line.split("=", 1)
            out[key.strip()] = ast.literal_eval(value.strip())
    return out


def edge_list(name: str) -> list[tuple[str, str]]:
    """``a -> b, c -> d, ...`` (over several lines) as a list of pairs, in order."""
    pairs = [p.strip() for p in pinned(name).replace("\n", " ").split(",") if p.strip()]
    return [tuple(x.strip() for x in p.split("->")) for p in pairs]  # type: ignore[misc]


# --- the page's graphs -----------------------------------------------------------------------

def example_a() -> QGraph:
    """Example A: population A and readout R, a floored exponent, a balancing delay."""
    a = LIFPopulation("A", (2,), du=2048, dv=1024, vth=10, bias_mant=np.array([3, -5]),
                      bias_exp=2)
    return QGraph(
        InputSpec((3,), "graded", 15), {"A": a}, {"R": Readout("R", (2,), np.array([7, -3]))},
        [Dense("exc", INPUT, "A", np.array([[2, 1, 0], [0, 3, 1]]), 0),
         Dense("inh", INPUT, "A", np.array([[-1, 0, -3], [0, -1, 0]]), -1),
         Dense("out", "A", "R", np.array([[10, -4], [-6, 8]]), 0),
         Dense("skip", INPUT, "R", np.array([[1, 0, 0], [0, 0, 2]]), 0, delay=1)],
        timesteps=3)


def _relay(name: str, shape: tuple[int, ...]) -> LIFPopulation:
    """du = dv = 4095, vth = 0, no bias: u = a << 6, a spike exactly where a > 0."""
    return LIFPopulation(name, shape, du=4095, dv=4095, vth=0,
                         bias_mant=np.zeros(int(np.prod(shape)), dtype=np.int64), bias_exp=0)


def example_b() -> QGraph:
    """Example B: convs, max pooling of currents, a delayed spike attention, flattens."""
    sh = (2, 1, 2)
    return QGraph(
        InputSpec((1, 2, 4), "spikes", 1), {n: _relay(n, sh) for n in ("q", "k", "v", "o")},
        {"R": Readout("R", (4,))},
        [Conv("cq", INPUT, "q", np.array([[[[1, 1], [1, 1]]], [[[1, 0], [0, -1]]]]), (2, 2),
              (0, 0), 1, (1, 2, 4), sh),
         Conv("ck", INPUT, "k", np.array([[[[0, 1], [0, 0]]], [[[1, 0], [0, 0]]]]), (2, 2),
              (0, 0), 1, (1, 2, 4), sh),
         Conv("cv", INPUT, "v", np.array([[[[3]]], [[[-2]]]]), (1, 1), (0, 0), 1, (1, 2, 4), sh,
              max_pool=(2, 2)),
         SpikeAttention("att", ("q", "k", "v"), "o", heads=1, shift=-1, delay=1),
         Dense("ro", "o", "R", 10 * np.eye(4, dtype=np.int64)),
         Conv("qr", "q", "R", np.array([[[[1]], [[0]]], [[[0]], [[-1]]]]), (1, 1), (0, 0), 1,
              sh, sh, delay=2)],
        timesteps=2)


def example_c(bitplanes: bool = True) -> QGraph:
    """Example C: one weight matrix over 3 bit planes (or, as its twin, over graded values)."""
    w = np.array([[4, -2]])
    if not bitplanes:
        return QGraph(InputSpec((2,), "graded", 7), {}, {"R": Readout("R", (1,))},
                      [Dense("d", INPUT, "R", w, 0)], timesteps=1)
    return QGraph(InputSpec((2,), "graded", 7, bitplanes=3), {}, {"R": Readout("R", (1,))},
                  [Dense(f"d_b{b}", INPUT, "R", w, b, 0, (2 * b, 2 * b + 2)) for b in range(3)],
                  timesteps=1)


def _file_roundtrip(graph: QGraph, path: Path) -> tuple[nir.NIRGraph, QGraph]:
    write_qgraph(path, graph)
    g = read_nir(path)
    return g, from_nir(g)


def _runs(graph: QGraph, x: np.ndarray) -> dict[str, RunResult]:
    return {name: run(graph, x, record_state=True) for name, run in TARGETS.items()}


# --- example A -------------------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_example_a_records_as_the_page_states(target):
    g = example_a()
    g.validate()
    assert g.latency() == {INPUT: 0, "A": 1, "R": 2}
    x = np.array(assignments("example-a-input")["x"])
    want = assignments("example-a-records")
    r = TARGETS[target](g, x, record_state=True)
    assert r.spikes["A"].astype(int).tolist() == want["spikes A"]
    assert r.states["A"][0].tolist() == want["u A"]
    assert r.states["A"][1].tolist() == want["v A"]
    assert r.readouts["R"].tolist() == want["readout R"]  # recorded without the readout bias
    assert readout_scores(g, r.readouts).tolist() == want["scores R"]  # sum + T * bias


def test_example_a_arithmetic_quoted_in_the_text():
    """The two roundings the page's step-by-step text shows: N1 truncates, S2 floors."""
    assert fx.decay_u(np.array([-192, 320]), 2048).tolist() == [-95, 159]
    assert fx.dense_output(np.array([-7, -2, -18]), -1).tolist() == [-4, -1, -9]
    assert fx.decay_v(np.array([-180, 300]), 1024).tolist() == [-135, 225]


def test_example_a_deployed_timeline_as_the_page_states():
    g = example_a()
    x = np.array(assignments("example-a-input")["x"])
    tl = event_sim.simulate(g, check_inputs(g, x), record_state=True)
    rows = [line.split(None, 1) for line in pinned("example-a-timeline").splitlines()[1:]]
    assert tl.counters["steps"] == len(rows) == 2 * g.timesteps + g.depth
    for k_text, rest in rows:
        k = int(k_text)
        u, v, s, r = ast.literal_eval("(" + re.sub(r"\]\s+\[", "], [", rest.strip()) + ")")
        assert tl.u["A"][k, 0].tolist() == u, k
        assert tl.v["A"][k, 0].tolist() == v, k
        assert tl.spikes["A"][k, 0].astype(int).tolist() == s, k
        assert tl.readouts["R"][k, 0].tolist() == r, k


def test_example_a_file_edges_and_stock_nir(tmp_path):
    g = example_a()
    f, back = _file_roundtrip(g, tmp_path / "a.nir")
    assert [tuple(e) for e in f.edges] == edge_list("example-a-edges")
    stock = nir.read(str(tmp_path / "a.nir"))  # only standard primitives: stock NIR reads it
    assert int(stock.nodes["skip_delay"].metadata["steps"]) == 1
    assert int(stock.nodes["inh"].metadata["loihi_weight_exp"]) == -1
    assert stock.nodes["R"].metadata["loihi_readout_bias"].tolist() == [7, -3]
    x = np.array(assignments("example-a-input")["x"])
    want = assignments("example-a-records")
    r = event_sim.run(back, x, record_state=True)
    assert r.spikes["A"].astype(int).tolist() == want["spikes A"]
    assert r.readouts["R"].tolist() == want["readout R"]


# --- example B -------------------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_example_b_records_as_the_page_states(target):
    g = example_b()
    g.validate()
    assert g.latency() == {INPUT: 0, "q": 1, "k": 1, "v": 1, "o": 3, "R": 4}
    x = np.array(assignments("example-b-input")["x"])
    want = assignments("example-b-records")
    r = TARGETS[target](g, x, record_state=True)
    for p in ("q", "k", "v", "o"):
        assert r.spikes[p].astype(int).tolist() == want[f"spikes {p}"], p
    for p in ("q", "v", "o"):  # relays: u = a << 6
        assert (r.states[p][0] >> fx.ACT_SHIFT).tolist() == want[f"input {p}"], p
        assert not (r.states[p][0] % (1 << fx.ACT_SHIFT)).any()
    assert r.readouts["R"].tolist() == want["readout R"]


def test_example_b_file_edges_attention_inputs_and_stock_nir(tmp_path):
    g = example_b()
    f, back = _file_roundtrip(g, tmp_path / "b.nir")
    assert [tuple(e) for e in f.edges] == edge_list("example-b-edges")
    assert f.nodes["att"].inputs == "att_delay_q,att_delay_k,att_delay_v"
    assert int(f.nodes["att"].metadata["loihi_shift"]) == -1 and f.nodes["att"].scale == 0.5
    conv = f.nodes["qr"]  # written but ignored by readers: zero bias, unit dilation, (H, W)
    assert conv.bias.tolist() == [0, 0] and np.asarray(conv.dilation).tolist() == [1, 1]
    assert np.asarray(conv.input_shape).tolist() == [1, 2]
    with pytest.raises(AssertionError):  # extension nodes: stock NIR refuses the file
        nir.read(str(tmp_path / "b.nir"))
    x = np.array(assignments("example-b-input")["x"])
    a, b = _runs(g, x), _runs(back, x)
    for name in TARGETS:
        assert all(np.array_equal(a[name].spikes[p], b[name].spikes[p]) for p in a[name].spikes)
        assert np.array_equal(a[name].readouts["R"], b[name].readouts["R"])


# --- example D ---------------------------------------------------------------------------------

def example_d() -> QGraph:
    """Example D: a relay population with a recurrent synapse that swaps its two neurons."""
    return QGraph(
        InputSpec((2,), "spikes", 1), {"P": _relay("P", (2,))}, {"R": Readout("R", (1,))},
        [Dense("in", INPUT, "P", np.eye(2, dtype=np.int64)),
         Dense("rec", "P", "P", np.array([[0, 1], [1, 0]])),
         Dense("out", "P", "R", np.array([[1, 2]]))],
        timesteps=4)


@pytest.mark.parametrize("target", TARGETS)
def test_example_d_records_as_the_page_states(target):
    g = example_d()
    g.validate()
    assert g.latency() == {INPUT: 0, "P": 1, "R": 2}
    x = np.array(assignments("example-d-input")["x"])
    want = assignments("example-d-records")
    r = TARGETS[target](g, x, record_state=True)
    assert r.spikes["P"].astype(int).tolist() == want["spikes P"]
    assert r.states["P"][0].tolist() == want["u P"]
    assert r.readouts["R"].tolist() == want["readout R"]


def test_example_d_deployed_timeline_as_the_page_states():
    g = example_d()
    x = np.array(assignments("example-d-input")["x"])
    tl = event_sim.simulate(g, check_inputs(g, x), record_state=True)
    rows = [line.split(None, 1) for line in pinned("example-d-timeline").splitlines()[1:]]
    assert tl.counters["steps"] == len(rows) == 2 * g.timesteps + g.depth
    for k_text, rest in rows:
        k = int(k_text)
        u, s, r = ast.literal_eval("(" + re.sub(r"\]\s+\[", "], [", rest.strip()) + ")")
        assert tl.u["P"][k, 0].tolist() == u, k
        assert tl.spikes["P"][k, 0].astype(int).tolist() == s, k
        assert tl.readouts["R"][k, 0].tolist() == r, k


def test_example_d_file_edges_mark_and_stock_nir(tmp_path):
    g = example_d()
    f, back = _file_roundtrip(g, tmp_path / "d.nir")
    assert [tuple(e) for e in f.edges] == edge_list("example-d-edges")
    stock = nir.read(str(tmp_path / "d.nir"))  # only standard primitives: stock NIR reads it
    assert int(stock.nodes["rec"].metadata["loihi_recurrent"]) == 1
    assert "loihi_recurrent" not in stock.nodes["in"].metadata
    x = np.array(assignments("example-d-input")["x"])
    assert event_sim.run(back, x).spikes["P"].astype(int).tolist() == \
        assignments("example-d-records")["spikes P"]


# --- example C and the inputs ----------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_example_c_bit_planes_equal_the_graded_synapse(target):
    want = assignments("example-c-records")["readout R"]
    x = np.array([[[5, 6]]])
    planes = example_c()
    planes.validate()
    assert check_inputs(planes, x).tolist() == [[[1, 0, 0, 1, 1, 1]]]
    assert TARGETS[target](planes, x).readouts["R"].tolist() == want
    assert TARGETS[target](example_c(bitplanes=False), x).readouts["R"].tolist() == want


def test_rate_encoding_example():
    """I4: the generator draws and the spikes the page states for image index 5, seed 0, T 2."""
    ex = assignments("rate-encoding")
    image = np.array([ex["image"]], dtype=np.uint8)
    r = np.random.default_rng([0, 5]).integers(0, 255, size=(2, 2, 2), dtype=np.uint8)
    assert r.tolist() == ex["r"]
    assert encode(image, "rate", 2, seed=0, first_index=5)[0].tolist() == ex["spikes"]
    assert (r < image[0]).astype(int).tolist() == ex["spikes"]


def test_digits_recipe_of_the_page():
    """I3: digits = sklearn's images scaled by round(v * 255 / 16), split 1200/300/297 by
    ``default_rng(0).permutation``."""
    bunch = load_digits()  # the page's recipe, rebuilt here independently of core.datasets
    pixels = np.round(bunch.images * 255 / 16).astype(np.uint8)
    assert pixels[bunch.images == 8].min() == 128  # round half to even: 127.5 -> 128
    perm = np.random.default_rng(0).permutation(len(pixels))
    for split, idx in zip(("train", "val", "test"),
                          (perm[:1200], perm[1200:1500], perm[1500:]), strict=True):
        images, labels = load_dataset("digits", split)
        assert np.array_equal(images, pixels[idx]) and np.array_equal(labels, bunch.target[idx])
