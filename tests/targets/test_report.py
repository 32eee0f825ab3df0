"""The chip report (targets/report): the Loihi 2 mapper on hand-computed cases, the energy and
latency estimate from given counters, and the command on a golden model."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.graph import INPUT, Conv, Dense, InputSpec, LIFPopulation, QGraph, Readout
from targets.report import chip_report, report_section
from targets.report.energy import dense_macs_per_step, estimate, mean_hops
from targets.report.limits import LOIHI1_COSTS, LOIHI2
from targets.report.resources import map_graph, synapse_list_bits, weight_bits


def _pop(name: str, n: int, reset: str | None = None) -> LIFPopulation:
    p = LIFPopulation(name, (n,), du=4095, dv=0, vth=10, bias_mant=np.zeros(n, np.int64))
    return replace(p, reset=reset) if reset else p


def _chain(n_in: int, n_a: int, n_r: int, w1: np.ndarray | None = None, t: int = 2) -> QGraph:
    """input (n_in spikes) -> A (n_a LIF) -> R (n_r readout), weights 1 unless given."""
    w1 = np.ones((n_a, n_in), np.int64) if w1 is None else w1
    return QGraph(InputSpec((n_in,)), {"A": _pop("A", n_a)}, {"R": Readout("R", (n_r,))},
                  [Dense("s1", INPUT, "A", w1), Dense("s2", "A", "R", np.ones((n_r, n_a),
                                                                             np.int64))], t)


def test_weight_bits_hand_computed() -> None:
    assert weight_bits(np.array([[3, -5]])) == 4  # 3 magnitude bits + sign
    assert weight_bits(np.array([[4, 8]])) == 2  # shared trailing zeros: 1, 2 -> 2 bits
    assert weight_bits(np.array([[1, 1]])) == 1
    assert weight_bits(np.array([[100, 3]])) == 8  # 7 bits -> the 8-bit format
    assert weight_bits(np.array([[255, -256]])) == 9  # the full signed range
    assert weight_bits(np.zeros((2, 2), np.int64)) == 1


def test_synapse_list_bits_hand_computed() -> None:
    # blocks of 64 synapses, 10-bit header, rounded up to 64-bit words
    got = synapse_list_bits(np.array([0, 10, 64, 65]), 8)
    assert got.tolist() == [0, 128, 576, 640]  # 90->128; 522->576; 576 + (18->64)


def test_dense_chain_two_cores() -> None:
    rm = map_graph(_chain(100, 10, 2))
    a, r = rm.layer("A"), rm.layer("R")
    assert (rm.cores, rm.chips, rm.fits) == (2, 1, True)
    assert a.used["fan-in axons"] == 100 and a.used["fan-out axons"] == 10
    assert r.used["fan-in axons"] == 10 and r.used["fan-out axons"] == 0
    # 100 axons x dense list of 10 one-bit weights (10 + 10 bits -> one 64-bit word); the
    # sparse list (7 bits each) would take 128 bits per axon; plus 10 neurons x 64 state bits
    assert a.synapse_bits == 100 * 64
    assert a.used["memory"] == 100 * 64 + 10 * 64
    assert a.weight_bits == {"s1": 1}
    assert a.binding == "fan-in axons"  # 100/4096 beats 7040 bits / 192 KiB and 10/8192


def test_split_by_neurons() -> None:
    rm = map_graph(_chain(100, 10, 2), replace(LOIHI2, neurons_per_core=4))
    a = rm.layer("A")
    assert (a.cores, a.neurons_per_core, a.binding) == (3, 4, "neurons")  # 4 + 4 + 2
    assert a.used["fan-in axons"] == 100  # every core sees every input (dense)
    assert rm.cores == 4


def test_fan_in_cannot_be_split_away() -> None:
    rm = map_graph(_chain(100, 10, 2), replace(LOIHI2, fan_in_axons=50))
    a = rm.layer("A")
    assert not rm.fits and not a.fits
    assert a.cores == 1  # splitting would not help: not attempted
    assert "fan-in axons 100 > 50" in a.reason and "one neuron per core" in a.reason
    rep = chip_report(_chain(100, 10, 2), limits=replace(LOIHI2, fan_in_axons=50))
    assert rep.warnings and "does not fit" in rep.warnings[0]


def test_fan_out_forces_source_split() -> None:
    # R (20) splits into 2 cores by neurons; every A neuron reaches both: fan-out 2 per neuron
    lim = replace(LOIHI2, neurons_per_core=10, fan_out_axons=15)
    rm = map_graph(_chain(4, 10, 20), lim)
    a, r = rm.layer("A"), rm.layer("R")
    assert r.cores == 2 and r.binding == "neurons"
    assert a.cores == 2  # 10 neurons x 2 destination cores = 20 > 15; 5 x 2 = 10 fits
    assert a.used["fan-out axons"] == 10 and a.binding == "fan-out axons"
    assert a.out_axons_per_neuron == 2.0


def test_sparse_and_dense_lists() -> None:
    w = np.zeros((1000, 2), np.int64)
    w[:, 0] = 1
    w[0, 1] = 1
    a = map_graph(_chain(2, 1000, 1, w)).layer("A")
    # axon 0: 1000 synapses; dense lists (1 bit each): 15 blocks of 64 (74 -> 128 bits) and
    # one of 40 (50 -> 64) = 1984; axon 1 dense: 1984 too, sparse (1 synapse, 10 index bits):
    # 21 -> 64. Per synapse and core the smaller format: dense 3968 < sparse 12032 + 64
    assert a.synapse_bits == 3968
    assert a.connections == 1001


def test_max_pool_and_reset_needs() -> None:
    w = np.ones((2, 1, 3, 3), np.int64)
    conv = Conv("c", INPUT, "P", w, stride=(1, 1), padding=(1, 1), groups=1,
                in_shape=(1, 4, 4), out_shape=(2, 2, 2), max_pool=(2, 2))
    g = QGraph(InputSpec((1, 4, 4)), {"P": replace(_pop("P", 8), shape=(2, 2, 2),
                                                      reset="subtract")},
               {"R": Readout("R", (1,))}, [conv, Dense("d", "P", "R", np.ones((1, 8),
                                                                             np.int64))], 2)
    p = map_graph(g).layer("P")
    assert p.compartments_per_neuron == 5  # 4 window compartments + the neuron
    assert p.used["neurons"] == 40
    assert any("max pooling of currents" in n for n in p.needs)
    assert any("'subtract'" in n and "neuron program" in n for n in p.needs)
    # every conv output reads the 3x3 taps inside the 4x4 input: fan-in is all 16 pixels
    assert p.used["fan-in axons"] == 16
    # taps inside the input per output position: 4 corners x 4, 8 edges x 6, 4 inner x 9
    assert dense_macs_per_step(g, conv) == 2 * (4 * 4 + 8 * 6 + 4 * 9)
    assert p.connections == 200  # every tap nonzero, every conv output kept by the pool


def test_mean_hops() -> None:
    assert mean_hops(0, 1, 1, 1, 8) == 1.0
    assert mean_hops(0, 1, 9, 1, 8) == 2.0  # one row down, one column right
    assert mean_hops(0, 2, 2, 1, 8) == 1.5


def test_energy_hand_computed() -> None:
    g = _chain(4, 2, 1)  # T = 2
    rm = map_graph(g)
    counters = {"events/s1": 10, "events/s2": 3, "spikes/A": 3}
    e = estimate(g, rm, counters, 1)
    a, r = e.layers
    c = LOIHI1_COSTS
    # A: 10 synops; 4 updates, 3 of them spiking; 3 spikes to 1 destination core 1 hop away
    assert a.synops == 10 and a.ac == 10 and a.mac == 0
    assert a.chip_pj == pytest.approx(10 * c.synop_pj + 3 * c.neuron_update_active_pj
                                      + 1 * c.neuron_update_inactive_pj
                                      + 3 * (c.spike_within_tile_pj + 1 * c.hop_pj))
    assert a.chip_pj == pytest.approx(546.6)
    assert r.chip_pj == pytest.approx(3 * 23.6 + 2 * 52.0)
    assert e.chip_uj == pytest.approx((546.6 + 174.8) * 1e-6)
    # dense MACs: (4*2 + 2*1) per step x 2 steps x 4.6 pJ
    assert e.gpu_uj == pytest.approx(20 * 4.6e-6)
    assert e.snn_45nm_uj == pytest.approx(13 * 0.9e-6)
    # busiest core A per step: 5 synops, 2 updates of which 1.5 spiking (per step, per core)
    assert e.step_ns == pytest.approx(
        5 * c.synop_ns + 2 * c.neuron_update_inactive_ns
        + 1.5 * (c.neuron_update_active_ns - c.neuron_update_inactive_ns) + c.barrier_ns)
    assert e.step_ns == pytest.approx(17.5 + 12.2 + 3.45 + 299)
    assert e.latency_us == pytest.approx(4 * e.step_ns * 1e-3)  # T + depth = 2 + 2 steps
    assert e.throughput_us == pytest.approx(2 * e.step_ns * 1e-3)
    with pytest.raises(ValueError):
        estimate(g, rm, counters, 0)


def test_energy_reuses_measured_counts() -> None:
    """On a real event_sim run the estimate's synaptic ops are the run's, not recounted."""
    from convert import load_graph
    from core.datasets import load_dataset
    from core.encoding import encode_as_recorded
    from targets import event_sim

    g, _ = load_graph("tests/data/fc_snn_digits.nir")
    images, _ = load_dataset("digits", "test")
    x = encode_as_recorded(g.metadata, g.timesteps, images[:4], first_index=0)
    res = event_sim.run(g, x)
    rep = chip_report(g, res.counters, 4, neurobench=False)
    total = sum(lay.synops for lay in rep.energy.layers) * 4
    assert total == pytest.approx(res.counters["synaptic_events"])
    spikes = sum(lay.spikes for lay in rep.energy.layers) * 4
    assert spikes == pytest.approx(res.counters["spikes/lif1"])
    ours = rep.neurobench[0]
    assert ours.effective_acs + ours.effective_macs == pytest.approx(total / 4)
    sec = report_section(g, res.counters, 4)
    assert sec["cores"] == 2 and "estimate" in sec["text"]


def test_neurobench_dense_matches_ours() -> None:
    """NeuroBench's own Dense count on the float model equals our dense MAC count."""
    pytest.importorskip("neurobench")
    from convert import load_graph
    from convert.nir_import import import_nir
    from core.datasets import load_dataset
    from core.encoding import encode_as_recorded
    from core.nir_ext import read_nir
    from targets import event_sim

    path = "tests/data/fc_snn_digits.nir"
    g, _ = load_graph(path)
    fg = import_nir(read_nir(path), timesteps=g.timesteps)
    images, _ = load_dataset("digits", "test")
    x = encode_as_recorded(g.metadata, g.timesteps, images[:3], first_index=0)
    res = event_sim.run(g, x)
    rep = chip_report(g, res.counters, 3, float_graph=fg, inputs=x)
    nb, ours = rep.neurobench
    assert nb.model.startswith("float") and ours.model.startswith("deployed")
    assert nb.dense_synops == ours.dense_synops == (64 * 256 + 256 * 10) * g.timesteps
    assert 0 < nb.activation_sparsity < 1 and nb.footprint_bytes > 0


def test_cli_json_and_plots(tmp_path, capsys) -> None:
    from targets.report.__main__ import main

    code = main(["tests/data/conv_snn_digits.nir", "--samples", "3", "--json",
                 "--no-neurobench", "--plot", str(tmp_path)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    res = out["report"]["resources"]
    assert res["cores"] == sum(lay["cores"] for lay in res["layers"]) and res["chips"] == 1
    assert out["report"]["energy"]["note"].startswith("ESTIMATE")
    for name in ("resources.png", "energy.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_cli_static_only_refuses_samples(capsys) -> None:
    from core.cli import run_cli
    from targets.report.__main__ import main

    code = run_cli("targets.report", main, ["tests/data/fc_snn_digits.nir", "--static-only",
                                            "--samples", "3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--samples needs a measured run" in err[0]
    assert main(["tests/data/fc_snn_digits.nir", "--static-only"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Loihi 2 resource map: 2 neuro-core(s) on 1 chip(s)\n")
    assert "lif1" in out and "memory 10%" in out and "ESTIMATE" not in out  # no run, no estimate


def test_verify_appends_chip_report(capsys) -> None:
    from targets.verify import main

    code = main(["tests/data/fc_snn_digits.nir", "--targets", "torch_ref,event_sim",
                 "--samples", "3", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    sec = out["chip_report"]
    assert (sec["cores"], sec["chips"], sec["fits"]) == (2, 1, True)
    assert sec["binding"] == {"lif1": "memory", "output": "fan-in axons"}
    assert sec["energy_uj"] > 0 and sec["estimate"].startswith("ESTIMATE")


@pytest.mark.slow
def test_neurobench_checkpoint_equals_float_replay(tmp_path) -> None:
    """NeuroBench on the trained torch model and on its exported float graph count the same
    synaptic operations and sparsity (the replay builds what the checkpoint computes)."""
    pytest.importorskip("neurobench")
    import nir

    from convert import load_graph
    from convert.nir_import import import_nir
    from convert.to_nir import checkpoint_to_nir
    from core.datasets import load_dataset
    from core.encoding import encode_as_recorded
    from core.nir_ext import read_nir
    from targets.report.nbmetrics import checkpoint_metrics, float_metrics
    from train.checkpoint import save_checkpoint
    from train.loop import train_model

    ck = train_model("fc_snn", "digits", 1, None, seed=0, limit=100, eval_limit=20,
                     progress=False)
    save_checkpoint(tmp_path / "c.pt", ck)
    nir.write(str(tmp_path / "c.nir"), checkpoint_to_nir(ck))
    g, _ = load_graph(tmp_path / "c.nir")
    images, _ = load_dataset("digits", "test")
    x = encode_as_recorded(g.metadata, g.timesteps, images[:5], first_index=0)
    a = checkpoint_metrics(str(tmp_path / "c.pt"), x)
    b = float_metrics(import_nir(read_nir(tmp_path / "c.nir"), timesteps=g.timesteps), x)
    assert a.dense_synops == b.dense_synops
    assert a.effective_acs == pytest.approx(b.effective_acs)
    assert a.effective_macs == pytest.approx(b.effective_macs)
    assert a.activation_sparsity == pytest.approx(b.activation_sparsity)


def test_spike_attention_is_not_mapped_but_costed() -> None:
    from core.graph import SpikeAttention

    shape = (4, 3)  # dim 4, 3 tokens
    pops = {n: replace(_pop(n, 12), shape=shape) for n in ("q", "k", "v", "o")}
    syns = [Dense(f"to_{n}", INPUT, n, np.ones((12, 6), np.int64)) for n in ("q", "k", "v")]
    syns += [SpikeAttention("attn", ("q", "k", "v"), "o", heads=2),
             Dense("head", "o", "R", np.ones((2, 12), np.int64))]
    g = QGraph(InputSpec((6,)), pops, {"R": Readout("R", (2,))}, syns, 2)
    rm = map_graph(g)
    assert len(rm.unmapped) == 1 and rm.unmapped[0].startswith("attn (q, k, v -> o)")
    assert any("spike attention attn" in n for n in rm.layer("o").needs)
    assert rm.layer("o").used["fan-in axons"] == 0  # nothing stored at o for the attention
    assert rm.layer("q").used["fan-out axons"] == 12  # one axon per neuron to the process
    e = estimate(g, rm, {"events/attn": 40, "events/to_q": 6}, 1)
    o = next(lay for lay in e.layers if lay.node == "o")
    assert o.synops == 40 and o.ac == 40  # the certificate counts its ANDs + adds as ACs
    assert o.dense_macs == 2 * 4 * 3 * 3 * 2  # 2 * dim * N**2 per step, T = 2


def test_zoo_script_rewrites_only_its_section(tmp_path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("chip_report_zoo",
                                                  "benchmarks/chip_report_zoo.py")
    zoo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zoo)
    row = zoo.measure("fc_snn", Path("tests/data/fc_snn_digits.nir").resolve(), "golden", 3,
                      None)
    assert (row["cores"], row["chips"], row["fits"]) == (2, 1, True)
    md = zoo.markdown([row])
    assert md.startswith(zoo.BEGIN) and md.endswith(zoo.END) and "| fc_snn (digits) |" in md
    doc = tmp_path / "zoo.md"
    doc.write_text("# head\n\nother section\n")
    zoo.write_docs(md, doc)
    zoo.write_docs(md.replace("golden", "again"), doc)  # replaced, not appended twice
    text = doc.read_text()
    assert text.startswith("# head\n\nother section\n") and text.count(zoo.BEGIN) == 1
    assert "again" in text and "| golden |" not in text


def test_row_bands_beat_channels_for_a_conv() -> None:
    # input (2, 4, 4) -> 3x3 conv, padding 1 -> P (2, 4, 4); 16 neurons and 24 axons per core
    w = np.ones((2, 2, 3, 3), np.int64)
    conv = Conv("c", INPUT, "P", w, stride=(1, 1), padding=(1, 1), groups=1,
                in_shape=(2, 4, 4), out_shape=(2, 4, 4))
    head = np.zeros((1, 32), np.int64)
    head[0, :8] = 1
    g = QGraph(InputSpec((2, 4, 4)), {"P": replace(_pop("P", 32), shape=(2, 4, 4))},
               {"R": Readout("R", (1,))}, [conv, Dense("d", "P", "R", head)], 2)
    lim = replace(LOIHI2, neurons_per_core=16, fan_in_axons=24)
    p = map_graph(g, lim).layer("P")
    # channel by channel, a core of one whole channel reads all 32 inputs (> 24): 4 cores of
    # half a channel (2 rows: 2 channels x 3 rows x 4 = 24 inputs each). Row bands: a core
    # of rows 0-1 of both channels reads rows 0-2 of both input channels = 24: 2 cores
    assert (p.cores, p.split, p.used["fan-in axons"]) == (2, "rows", 24)
    assert map_graph(g, replace(lim, fan_in_axons=32)).layer("P").split == "channels"  # tie
