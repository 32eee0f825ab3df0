"""Calibrated quantization scales (issue 10, item 1).

A tiny graph where the worst case is loose: 16 graded inputs (0..255) on positive weights,
deployed as bit planes (input weights at exponent 0, so the worst case, every pixel at 255,
sets the scale and leaves the weights a few bits). Calibrated on inputs that stay small, the
scale grows until the biggest weight uses 8 bits and the layer's error against the float graph
falls; inputs beyond the calibration batch wrap u, and every target counts it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convert import load_graph
from convert.calibrate import calibrate, integer_forward, layer_errors, measure
from convert.float_graph import FDense, FGraph, FPopulation, FReadout, FSynapse
from convert.nir_import import import_nir
from convert.quantize import PopulationReport, QuantReport, format_report, quantize
from core import fixedpoint as fx
from core.datasets import load_dataset
from core.encoding import encode_as_recorded
from core.errors import UserError
from core.graph import INPUT, InputSpec
from core.nir_ext import read_nir
from core.readout import predictions
from targets import event_sim, loihi, torch_ref
from targets.base import OVERFLOW_PREFIX, overflow_key

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parents[1] / "data"
T, N_IN, N = 4, 16, 4


def loose_graph() -> FGraph:
    """input (16 graded values) -> Dense (positive weights) -> LIF (current-based, beta 0.5,
    threshold 1) -> Dense -> readout; weights in volts per unit of integer input."""
    rng = np.random.default_rng(0)
    w1 = rng.uniform(0.05, 1.0, size=(N, N_IN)) / 255 * 4
    w2 = rng.normal(size=(2, N))
    return FGraph(
        InputSpec((N_IN,), "graded", 255),
        {"lif": FPopulation("lif", (N,), beta=0.5, alpha=0.0, threshold=1.0,
                            bias=np.zeros(N))},
        {"out": FReadout("out", (2,), np.zeros(2))},
        [FSynapse("fc1", INPUT, "lif", FDense(w1)), FSynapse("fc2", "lif", "out", FDense(w2))],
        T, {"dt": 1e-3})


def small_inputs(n: int = 32, seed: int = 1) -> np.ndarray:
    """Inputs that stay far below the worst case: values 0..40 [n, T, 16]."""
    return np.random.default_rng(seed).integers(0, 41, size=(n, T, N_IN)).astype(np.int16)


@pytest.fixture(scope="module")
def case():
    fg = loose_graph()
    cal = measure(fg, small_inputs(), source="small inputs")
    default = quantize(fg, input_bitplanes=True)
    calibrated = quantize(fg, input_bitplanes=True, calibration=cal)
    return fg, cal, default, calibrated


def test_calibration_reduces_the_error_where_the_worst_case_is_loose(case):
    fg, cal, (qd, rd), (qc, rc) = case
    pd, pc = rd.populations["lif"], rc.populations["lif"]
    assert isinstance(pc, PopulationReport)
    # the worst case held the input weights to a few bits; calibration gives them all 8
    assert rd.synapses["fc1"].max_abs_weight < 64
    assert pc.weight_bits == 8 and rc.synapses["fc1"].max_abs_weight > 127
    assert pc.scale > pd.scale == pc.worst_case_scale
    # on the calibration batch: in range with the margin, and the layer is more exact
    assert pc.calibration_u_headroom >= cal.margin
    assert pc.calibration_u_peak == pytest.approx(cal.u_peak["lif"]) and cal.u_peak["lif"] > 0
    before = layer_errors(fg, qd, {"lif": pd.scale, "out": rd.populations["out"].scale}, cal)
    assert pc.layer_current_error < before["lif"].current / 2
    assert pc.layer_spike_mismatch <= before["lif"].spikes
    assert rc.synapses["fc1"].rel_rms_error < rd.synapses["fc1"].rel_rms_error
    # the worst case now exceeds the range: said, with where the runs count it
    assert pc.a_in_headroom < 1
    assert any("calibrated scale" in w and "overflow/u_wrap/lif" in w for w in rc.warnings)
    assert rc.calibration == {"samples": 32, "percentile": 100.0, "margin": 2.0,
                              "source": "small inputs"}
    text = format_report(rc)
    assert "calibration: 32 samples of small inputs" in text
    assert any(line.split()[:1] == ["lif"] and line.split()[3] == "8"
               for line in text.splitlines() if "e+" in line or "." in line)


def test_without_calibration_nothing_changes(case):
    fg, _, (qd, rd), _ = case
    again, rep = quantize(fg, input_bitplanes=True, calibration=None)
    assert rep == rd and all(np.array_equal(a.weight, b.weight)
                             for a, b in zip(again.synapses, qd.synapses, strict=True))
    d = rd.to_dict()
    assert "calibration" not in d
    assert not {"weight_bits", "worst_case_scale", "layer_current_error"} & set(
        d["populations"]["lif"])
    assert "calibration:" not in format_report(rd)
    # a calibrated report reads back whole from its JSON (the integer NIR file's metadata)
    _, (_, rc) = case[2], case[3]
    assert QuantReport.from_dict(json.loads(json.dumps(rc.to_dict()))) == rc


def test_inputs_beyond_the_calibration_batch_overflow_and_every_target_counts_it(case):
    _, _, (qd, _), (qc, _) = case
    x = np.full((2, T, N_IN), 255, dtype=np.int16)  # the worst case itself
    assert not any(v for k, v in torch_ref.run(qd, x).counters.items()
                   if k.startswith(OVERFLOW_PREFIX))  # worst-case scales: never
    runs = [t.run(qc, x) for t in (torch_ref, event_sim, loihi)]
    counts = [{k: v for k, v in r.counters.items() if k.startswith(OVERFLOW_PREFIX)}
              for r in runs]
    assert counts[0] == counts[1] == counts[2]
    assert counts[0][overflow_key("u_wrap", "lif")] > 0
    for r in runs[1:]:
        assert np.array_equal(r.spikes["lif"], runs[0].spikes["lif"])
    # inside the batch's range: no event
    small = torch_ref.run(qc, small_inputs(4, seed=2))
    assert not any(v for k, v in small.counters.items() if k.startswith(OVERFLOW_PREFIX))


def test_the_recorded_dataset_calibrates_and_the_cli_reports_it(tmp_path):
    src = DATA / "fc_snn_digits.nir"
    qg, rep = load_graph(src, input_bitplanes=True, calibrate=True, calibration_samples=64)
    assert rep.calibration["source"] == "digits/train [0:64]"
    p = rep.populations["lif1"]
    _, worst = load_graph(src, input_bitplanes=True)
    assert p.scale > p.worst_case_scale == worst.populations["lif1"].scale
    assert rep.synapses["fc1"].max_abs_weight > worst.synapses["fc1"].max_abs_weight
    cal_file = tmp_path / "cal.npy"
    images, _ = load_dataset("digits", "train")
    np.save(cal_file, encode_as_recorded(qg.metadata, qg.timesteps, images[:64]))
    out = tmp_path / "m.loihi.nir"
    r = subprocess.run([sys.executable, "-m", "convert.quantize", str(src), "-o", str(out),
                        "--input-bitplanes", "--calibrate", str(cal_file), "--json"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["report"]["calibration"]["samples"] == 64
    # the same batch from the file as from the dataset: the same graph
    assert j["report"]["populations"]["lif1"]["scale"] == p.scale
    cost = j["bitplane_cost"]
    assert cost["synapses"]["fc1"]["graded"]["weight_bits"] == 8
    assert set(cost["targets"]["lif1"]["bitplanes"]) == {"current_error", "spike_mismatch"}
    # the accuracy cost where the user chooses the bit planes: float, graded, bit planes
    acc = cost["accuracy"]
    assert acc["samples"] == 297 and acc["split"] == "digits/test"  # the whole digits test split
    assert {"float", "graded", "bitplanes"} <= set(acc) and acc["float"] > 0.9
    again, rep2 = load_graph(out)  # the integer file embeds the calibrated report
    assert rep2.calibration == j["report"]["calibration"]
    with pytest.raises(UserError, match="already an integer graph"):
        load_graph(out, calibrate=True)


@pytest.mark.parametrize("name", ["fc_snn_digits", "conv_snn_digits", "snntorch_rleaky",
                                  "sinabs_iaf_mlp"])
def test_the_numpy_integer_forward_equals_torch_ref(name):
    """The convert layer's integer forward (calibration reports, the bit-plane accuracy of
    convert.quantize) gives every target's records: pinned against torch_ref."""
    for planes in (False, True):
        qg, _ = load_graph(DATA / f"{name}.nir", input_bitplanes=planes,
                           timesteps=None if "digits" in name else 5)
        rng = np.random.default_rng(0)
        top = qg.input.max_value if qg.input.kind == "graded" else 1
        x = rng.integers(0, top + 1, size=(6, qg.timesteps, *qg.input.shape))
        spikes, readouts = integer_forward(qg, x)
        ref = torch_ref.run(qg, x)
        assert set(spikes) == set(ref.spikes) and sum(int(s.sum()) for s in spikes.values())
        for k in ref.spikes:
            assert np.array_equal(spikes[k], ref.spikes[k]), (name, planes, k)
        for k in ref.readouts:
            assert np.array_equal(readouts[k], ref.readouts[k]), (name, planes, k)


@pytest.mark.parametrize("args,message", [
    (["--calibrate", "missing.npy"], "missing.npy: no such calibration file"),
    (["--calibrate", "BAD"], "calibration inputs must be \\[sample, 4, \\*\\(64,\\)\\]"),
    (["--calibrate", "--calibration-percentile", "0"], "percentile must be in \\(0, 100\\]"),
])
def test_bad_calibration_options_are_one_line(tmp_path, args, message):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 4, 10)))
    args = [str(bad) if a == "BAD" else str(tmp_path / a) if a == "missing.npy" else a
            for a in args]
    r = subprocess.run([sys.executable, "-m", "convert.quantize", str(DATA / "fc_snn_digits.nir"),
                        "-o", str(tmp_path / "o.nir"), *args], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr
    assert re.search(message, r.stderr), r.stderr
    assert not (tmp_path / "o.nir").exists()


def test_a_calibration_of_another_graph_or_without_a_batch_is_refused():
    fg = loose_graph()
    cal = measure(fg, small_inputs(2))
    cal.u_peak = {"other": 1.0}
    with pytest.raises(UserError, match="measured on another graph"):
        quantize(fg, calibration=cal)
    with pytest.raises(UserError, match="records no dataset"):
        calibrate(fg)  # no dataset recorded, no file given


def test_percentile_ignores_outliers_and_headroom_is_exact():
    fg = loose_graph()
    x = small_inputs(40)
    x[0] = 255  # one outlier sample
    top, p90 = measure(fg, x), measure(fg, x, percentile=90)
    assert p90.u_peak["lif"] < top.u_peak["lif"] / 2
    _, rep = quantize(fg, input_bitplanes=True, calibration=top)
    p = rep.populations["lif"]
    assert p.calibration_u_headroom == pytest.approx(
        fx.UV_MAX / ((1 << fx.ACT_SHIFT) * p.scale * top.u_peak["lif"]))


def test_the_mfi_certificate_reports_the_bit_plane_accuracy_cost(capsys):
    """Where the user chooses bit planes (python -m convert.mfi --input-bitplanes), the
    measured run says what they cost: float, graded and bit-plane accuracy on its samples."""
    from targets.mfi import main as mfi_main

    assert mfi_main([str(DATA / "fc_snn_digits.nir"), "--input-bitplanes", "--samples", "40",
                     "--no-progress", "--json"]) == 0
    acc = json.loads(capsys.readouterr().out)["bitplane_accuracy"]
    assert acc["samples"] == 40 and {"float", "graded", "bitplanes"} <= set(acc)
    x = encode_as_recorded(load_graph(DATA / "fc_snn_digits.nir")[0].metadata, 4,
                           load_dataset("digits", "test")[0][:40])
    qg, _ = load_graph(DATA / "fc_snn_digits.nir", input_bitplanes=True)
    y = load_dataset("digits", "test")[1][:40]
    r = torch_ref.run(qg, x)
    assert acc["bitplanes"] == float(np.mean(predictions(qg, r.readouts) == y))
    assert mfi_main([str(DATA / "fc_snn_digits.nir"), "--samples", "10", "--no-progress",
                     "--json"]) == 1  # the graded pixel input is a MAC edge
    assert "bitplane_accuracy" not in json.loads(capsys.readouterr().out)  # graded: no cost


def test_shifted_bit_planes_run_exactly_on_every_target_and_keep_8_bit_weights():
    """Calibrated, the bit planes take the input layer's weight exponent e < 0 (plane b at
    b + e, its sum floored): 8-bit weights instead of exponent 0's few, a layer error like the
    graded input's, and every target (and the numpy forward) gives the same records."""
    fg = import_nir(read_nir(DATA / "conv_snn_digits.nir"))
    cal = calibrate(fg, samples=64)
    qs, rs = quantize(fg, input_bitplanes=True, calibration=cal)
    q0, r0 = quantize(fg, input_bitplanes=True, calibration=cal, shift_planes=False)
    _, rg = quantize(fg, calibration=cal)
    e = rs.synapses["conv1"].weight_exp
    assert e < 0 and rs.synapses["conv1"].bitplanes == 8
    assert [s.weight_exp for s in qs.synapses if s.name.startswith("conv1_b")] == \
        [b + e for b in range(8)]
    assert [s.weight_exp for s in q0.synapses if s.name.startswith("conv1_b")] == list(range(8))
    assert rs.populations["lif1"].weight_bits == 8 > r0.populations["lif1"].weight_bits
    assert (rs.populations["lif1"].layer_current_error
            < r0.populations["lif1"].layer_current_error / 2)
    graded_error = rg.populations["lif1"].layer_current_error
    assert rs.populations["lif1"].layer_current_error < 2 * graded_error
    x = encode_as_recorded(fg.metadata, fg.timesteps, load_dataset("digits", "test")[0][:6])
    runs = [t.run(qs, x) for t in (torch_ref, event_sim, loihi)]
    spikes, readouts = integer_forward(qs, x)
    for r in runs:
        for k in runs[0].spikes:
            assert np.array_equal(r.spikes[k], runs[0].spikes[k]) and np.array_equal(
                spikes[k], r.spikes[k]), k
        for k in runs[0].readouts:
            assert np.array_equal(r.readouts[k], readouts[k]), k
    assert sum(int(s.sum()) for s in spikes.values()) > 0
