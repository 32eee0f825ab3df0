"""The ONNX step graph (convert/to_onnx.py) and the onnx_rt target (targets/onnx_rt.py).

The golden hashes on onnx_rt are in tests/targets/test_golden.py. Here: the worked examples of
docs/integer-nir.md, the contract's wraps and saturation pinned by hand and against
core.fixedpoint, convs of every shape, recurrence, the command line, an exported file, verify,
the no-torch promise and the snippet of docs/onnx.md, run as printed.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from convert import load_graph
from convert.to_onnx import main as to_onnx_main
from convert.to_onnx import step_metadata, to_onnx
from core import fixedpoint as fx
from core.errors import GraphError
from core.graph import (
    INPUT,
    Conv,
    Dense,
    InputSpec,
    LIFPopulation,
    QGraph,
    Readout,
    SpikeAttention,
    balance_delays,
)
from targets import event_sim, onnx_rt
from targets.base import RunResult, readout_scores
from targets.verify import main as verify_main
from tests.core.test_integer_nir_doc import assignments, example_a, example_b, example_c
from tests.golden import golden_inputs

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"


def assert_same(a: RunResult, b: RunResult) -> None:
    """Identical spikes, readouts, traces and per-synapse event counts."""
    assert a.spikes.keys() == b.spikes.keys() and a.readouts.keys() == b.readouts.keys()
    for k in a.spikes:
        assert np.array_equal(a.spikes[k], b.spikes[k]), k
    for k in a.readouts:
        assert np.array_equal(a.readouts[k], b.readouts[k]), k
    assert a.states.keys() == b.states.keys()
    for k in a.states:
        for i in (0, 1):
            assert np.array_equal(a.states[k][i], b.states[k][i]), (k, "uv"[i])
    events = [k for k in a.counters if k.startswith("events/")]
    assert events and {k: a.counters[k] for k in events} == {k: b.counters[k] for k in events}


# --- docs/integer-nir.md's worked examples ---------------------------------------------------

@pytest.mark.parametrize("lanes", [1, 2])
def test_example_a_records_as_the_page_states(lanes):
    g = example_a()
    want = assignments("example-a-records")
    r = onnx_rt.run(g, np.array(assignments("example-a-input")["x"]), record_state=True,
                    lanes=lanes)
    assert r.spikes["A"].astype(int).tolist() == want["spikes A"]
    assert r.states["A"][0].tolist() == want["u A"]
    assert r.states["A"][1].tolist() == want["v A"]
    assert r.readouts["R"].tolist() == want["readout R"]
    assert readout_scores(g, r.readouts).tolist() == want["scores R"]
    assert step_metadata(g)["readouts"]["R"]["bias"] == [7, -3]  # what a driver scores with


@pytest.mark.parametrize("lanes", [1, 2])
def test_example_b_conv_pool_attention_as_the_page_states(lanes):
    x = np.array(assignments("example-b-input")["x"])
    want = assignments("example-b-records")
    r = onnx_rt.run(example_b(), x, record_state=True, lanes=lanes)
    for p in ("q", "k", "v", "o"):
        assert r.spikes[p].astype(int).tolist() == want[f"spikes {p}"], p
    for p in ("q", "v", "o"):
        assert (r.states[p][0] >> fx.ACT_SHIFT).tolist() == want[f"input {p}"], p
    assert r.readouts["R"].tolist() == want["readout R"]
    assert_same(event_sim.run(example_b(), x, record_state=True), r)


def test_example_c_bit_planes_are_split_in_the_graph():
    r = onnx_rt.run(example_c(), np.array([[[5, 6]]]))
    assert r.readouts["R"].tolist() == assignments("example-c-records")["readout R"]
    assert r.counters["events/d_b0"] == 1 and r.counters["events/d_b2"] == 2


def test_recurrent_synapse_carries_within_the_sample_only():
    """docs/integer-nir.md example D: the spike handed back and forth, dropped at a sample's
    end (T8)."""
    relay = LIFPopulation("P", (2,), 4095, 4095, 0, np.zeros(2, dtype=np.int64))
    g = QGraph(InputSpec((2,), "spikes"), {"P": relay}, {"R": Readout("R", (1,))},
               [Dense("in", INPUT, "P", np.eye(2, dtype=np.int64)),
                Dense("rec", "P", "P", np.array([[0, 1], [1, 0]])),
                Dense("out", "P", "R", np.array([[1, 2]]))], timesteps=4)
    x = np.array([[[1, 0], [0, 0], [0, 0], [0, 0]], [[0, 0], [0, 0], [0, 1], [0, 0]]])
    r = onnx_rt.run(g, x, record_state=True)
    assert r.spikes["P"].astype(int).tolist() == [[[1, 0], [0, 1], [1, 0], [0, 1]],
                                                  [[0, 0], [0, 0], [0, 1], [1, 0]]]
    assert r.readouts["R"].tolist() == [[[1], [2], [1], [2]], [[0], [0], [2], [1]]]
    assert_same(event_sim.run(g, x, record_state=True), r)


# --- the contract's arithmetic ---------------------------------------------------------------

def _one_neuron(du: int, dv: int, vth: int, bias_mant: int, bias_exp: int, t: int) -> QGraph:
    """One neuron whose input a = x0 - x1 (graded, up to 2**40): any a_in, either sign."""
    p = LIFPopulation("P", (1,), du, dv, vth, np.array([bias_mant]), bias_exp)
    return QGraph(InputSpec((2,), "graded", 2**40), {"P": p}, {"R": Readout("R", (1,))},
                  [Dense("a", INPUT, "P", np.array([[1, -1]])),
                   Dense("o", "P", "R", np.array([[1]]))], timesteps=t)


def _a_in(values: list[int]) -> np.ndarray:
    a = np.array(values, dtype=np.int64)
    return np.stack([np.maximum(a, 0), np.maximum(-a, 0)], -1)[None]  # [1, T, 2]


def test_int32_shift_and_24_bit_correction_of_u_by_hand():
    # a = 2^25 + 5: a << 6 = 2^31 + 320 wraps at 32 bits to -2^31 + 320 = -2147483328 (N2);
    # that is <= -2^23, so one correction adds 2^24: u = -2130706112 (N3), outside 24 bits.
    # v = clip(u) = -(2^23 - 1) (N5).
    g = _one_neuron(du=4095, dv=4095, vth=0, bias_mant=0, bias_exp=0, t=1)
    r = onnx_rt.run(g, _a_in([2**25 + 5]), record_state=True)
    assert r.states["P"][0].tolist() == [[[-2130706112]]]
    assert r.states["P"][1].tolist() == [[[-(2**23 - 1)]]]


@pytest.mark.parametrize("du,dv,vth,bias_mant,bias_exp", [
    (0, 0, 100, 4095, 7), (4095, 4095, 0, -4096, 7), (2048, 1024, 10, 3, 2),
    (1, 4094, 131071, -1, 0), (4000, 7, 5000, 1234, 5)])
def test_lif_matches_fixedpoint_at_the_extremes(du, dv, vth, bias_mant, bias_exp):
    """Decays of negative values (toward zero), the u wrap and correction, v saturation, the
    threshold and reset: step by step against core.fixedpoint.lif_step on numpy."""
    a = [2**17, 2**23, -(2**23), 2**25 + 5, -(2**25) - 7, 0, 0, 2**30, -(2**31), 1, -1, 0,
         123456, -654321, 2**24, 0]
    g = _one_neuron(du, dv, vth, bias_mant, bias_exp, t=len(a))
    r = onnx_rt.run(g, _a_in(a), record_state=True)
    u = v = np.zeros(1, dtype=np.int64)
    bias = fx.effective_bias(np.array([bias_mant]), bias_exp)
    for t, a_t in enumerate(a):
        u, v, s = fx.lif_step(u, v, np.array([a_t]), du, dv, vth, bias)
        assert (r.states["P"][0][0, t, 0], r.states["P"][1][0, t, 0]) == (u[0], v[0]), t
        assert r.spikes["P"][0, t, 0] == s[0], t


def test_conv_output_wraps_at_24_bits_before_its_exponent():
    # 130 channels of 255 times weight 255: 8,453,250 > 2^23 wraps to 8,453,250 - 2^24 =
    # -8,323,966; exponent -1 floors it to -4,161,983.
    g = QGraph(InputSpec((130, 1, 1), "graded", 255), {}, {"R": Readout("R", (1,))},
               [Conv("c", INPUT, "R", np.full((1, 130, 1, 1), 255), (1, 1), (0, 0), 1,
                     (130, 1, 1), (1, 1, 1), weight_exp=-1)], timesteps=1)
    r = onnx_rt.run(g, np.full((1, 1, 130, 1, 1), 255))
    assert r.readouts["R"].tolist() == [[[-4161983]]]
    assert_same(event_sim.run(g, np.full((1, 1, 130, 1, 1), 255)), r)


# --- convolutions of every shape, bit planes, attention heads: against event_sim ------------

def _pop(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> LIFPopulation:
    size = int(np.prod(shape))
    return LIFPopulation(name, shape, int(rng.integers(0, 4096)), int(rng.integers(0, 4096)),
                         int(rng.integers(0, 200)), rng.integers(-4096, 4096, size),
                         int(rng.integers(0, 8)))


def _random_graph(seed: int) -> tuple[QGraph, np.ndarray]:
    """A graded (or bit-plane) input into a grouped, strided, padded, non-square conv with
    max pooling (trailing rows dropped), a delayed dense skip, a multi-head attention with a
    shift and a delay, and a readout with bias."""
    rng = np.random.default_rng(seed)
    planes = 3 if seed % 2 else 0
    top = 7 if planes else 255
    cin, h, w, groups = 4, 7, 6, 2
    kh, kw, st, pd = 3, 2, (2, 1), (1, 1)
    ho, wo = (h + 2 * pd[0] - kh) // st[0] + 1, (w + 2 * pd[1] - kw) // st[1] + 1  # 4, 7
    shape = (4, ho // 2, wo // 2)  # pooled 2x2: the last column has no full window
    kern = rng.integers(-256, 256, (4, cin // groups, kh, kw))
    size = cin * h * w
    convs = [Conv(f"c_b{b}" if planes else "c", INPUT, "A", kern, st, pd, groups, (cin, h, w),
                  shape, max_pool=(2, 2), weight_exp=(b if planes else -2),
                  source_slice=(b * size, (b + 1) * size) if planes else None)
             for b in range(planes or 1)]
    inp = InputSpec((cin, h, w), "graded", top, bitplanes=planes)
    pops = {"A": _pop("A", shape, rng), "B": _pop("B", (10,), rng)}
    pops.update({n: _pop(n, (4, 1, 3), rng) for n in ("q", "k", "v", "o")})
    n_a = int(np.prod(shape))
    syns = [*convs,
            Dense("ab", "A", "B", rng.integers(-256, 256, (10, n_a)), -1),
            Dense("xb", INPUT, "B", rng.integers(-256, 256, (10, inp.flat_size)), -6),
            *[Dense(f"x{n}", INPUT, n, rng.integers(-256, 256, (12, inp.flat_size)), -4)
              for n in "qkv"],
            SpikeAttention("att", ("q", "k", "v"), "o", heads=2, shift=-1, delay=1),
            Dense("br", "B", "R", rng.integers(-256, 256, (5, 10)), 0),
            Dense("or", "o", "R", rng.integers(-256, 256, (5, 12)), 1)]
    syns = balance_delays([*pops, "R"], syns)
    g = QGraph(inp, pops, {"R": Readout("R", (5,), rng.integers(-100, 100, 5))}, syns,
               timesteps=3)
    g.validate()
    return g, rng.integers(0, top + 1, (3, 3, cin, h, w))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("lanes", [1, 3])
def test_random_graphs_match_event_sim(seed, lanes):
    g, x = _random_graph(seed)
    ref = event_sim.run(g, x, record_state=True)
    assert any(s.any() for s in ref.spikes.values())
    assert_same(ref, onnx_rt.run(g, x, record_state=True, lanes=lanes))


def test_graph_that_does_not_validate_is_refused_in_one_line_before_running():
    g = example_c()
    g.synapses[0].weight_exp = 9
    for call in (lambda: to_onnx(g), lambda: onnx_rt.run(g, np.array([[[5, 6]]]))):
        with pytest.raises(GraphError, match="synapse 'd_b0': weight_exp 9 out of range"):
            call()


def test_only_integer_tensors_in_the_graph():
    model = onnx.shape_inference.infer_shapes(to_onnx(example_b()), strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    ints = {onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.INT16,
            onnx.TensorProto.BOOL}
    infos = [*model.graph.value_info, *model.graph.input, *model.graph.output]
    assert infos and all(i.type.tensor_type.elem_type in ints for i in infos)
    assert all(t.data_type in ints for t in model.graph.initializer)


# --- files, command lines, verify -------------------------------------------------------------

def test_export_command_and_exported_file_run_like_event_sim(tmp_path):
    out = tmp_path / "conv.onnx"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert to_onnx_main([str(DATA / "conv_snn_digits.nir"), "-o", str(out), "--json"]) == 0
    summary = json.loads(buf.getvalue())
    assert summary["output"] == str(out) and summary["opset"] == 18
    onnx.checker.check_model(str(out), full_check=True)
    g, _ = load_graph(DATA / "conv_snn_digits.nir")
    x = golden_inputs(g)[:6]
    ref = event_sim.run(g, x, record_state=True)
    assert_same(ref, onnx_rt.run_model(out, x, record_state=True, lanes=2))


def test_export_command_refuses_bad_input_in_one_line(tmp_path):
    missing = subprocess.run([sys.executable, "-m", "convert.to_onnx", str(tmp_path / "no.nir"),
                              "-o", str(tmp_path / "x.onnx")], cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.count("\n") == 1 and "no.nir" in missing.stderr
    same = subprocess.run([sys.executable, "-m", "convert.to_onnx", "m.nir", "-o", "m.nir"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert same.returncode == 2 and "is the input file" in same.stderr


def test_verify_compares_onnx_rt_with_the_other_targets():
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = verify_main([str(DATA / "cml_net_digits.nir"), "--targets",
                          "event_sim,onnx_rt,torch_ref", "--samples", "6", "--json"])
    s = json.loads(buf.getvalue())
    assert rc == 0 and s["spike_exact"] and not s["mismatches"]
    ev = {t: r["synaptic_events"] for t, r in s["targets"].items()}
    assert ev["onnx_rt"] == ev["event_sim"] == ev["torch_ref"] > 0


def test_onnx_rt_command_reports_like_every_target():
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = onnx_rt.main([str(DATA / "fc_snn_digits.nir"), "--samples", "5", "--lanes", "2",
                           "--json"])
    s = json.loads(buf.getvalue())
    g, _ = load_graph(DATA / "fc_snn_digits.nir")
    ref = event_sim.run(g, golden_inputs(g)[:5])
    assert rc == 0 and s["target"] == "onnx_rt" and s["samples"] == 5
    assert s["synaptic_events"] == ref.counters["synaptic_events"]
    assert s["steps"] == 3 * g.timesteps + g.depth  # 5 samples on 2 lanes: 3 per lane


def test_onnx_rt_never_imports_torch():
    code = ("import sys, numpy as np\n"
            "from core.graph import INPUT, Dense, InputSpec, QGraph, Readout\n"
            "import targets.onnx_rt as t\n"
            "g = QGraph(InputSpec((2,), 'graded', 7), {}, {'R': Readout('R', (1,))},\n"
            "           [Dense('d', INPUT, 'R', np.array([[4, -2]]))], timesteps=1)\n"
            "r = t.run(g, np.array([[[5, 6]]]))\n"
            "assert r.readouts['R'].tolist() == [[[8]]]\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_docs_snippet_runs_as_printed(tmp_path):
    """docs/onnx.md's snippet, run in a folder with the exported cml_net and its inputs."""
    text = (ROOT / "docs" / "onnx.md").read_text()
    code = re.search(r"<!-- run: onnx-snippet -->\s*```python\n(.*?)```", text, re.S).group(1)
    assert len(code.strip().splitlines()) <= 16
    g, _ = load_graph(DATA / "cml_net_digits.nir")
    x = golden_inputs(g)
    np.save(tmp_path / "inputs.npy", x)
    with contextlib.redirect_stdout(io.StringIO()):
        assert to_onnx_main([str(DATA / "cml_net_digits.nir"), "-o",
                             str(tmp_path / "model.onnx")]) == 0
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    scores = readout_scores(g, event_sim.run(g, x[:1]).readouts)[0]
    want = f"scores {scores.tolist()} class {int(scores.argmax())}"
    assert res.stdout.strip() == want
    assert want in text  # the output the page shows is the output it gets
