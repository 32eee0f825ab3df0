"""The targets' command lines as a user meets them: torch_ref, verify, mfi and the shared
summary (targets.cli): one wrapper, the same flags everywhere, bad input refused in one line
before any work (exit 2), --json, --record, no progress bars off a terminal.

Runs on the small golden graphs in tests/data (digits, 8x8) so that every command takes well
under a second once imported; a few tests start a real process to see exit codes and streams
exactly as a shell does.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from convert import load_graph
from core.cli import run_cli
from core.datasets import load_dataset
from core.encoding import encode_as_recorded
from targets import cli as tcli
from targets import event_sim, mfi, torch_ref, verify
from targets.base import RunResult
from targets.records import load_record, load_records

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
FC = DATA / "fc_snn_digits.nir"  # integer graph, digits, direct encoding, one readout


def _cli(main, *argv: str | Path) -> int:
    return run_cli("cmd", main, [str(a) for a in argv])


def _sh(*argv: str | Path, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *map(str, argv)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def fc_inputs(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    """7 digits encoded as fc_snn records them (x.npy) and their labels (y.npy, int64)."""
    graph, _ = load_graph(FC)
    images, labels = load_dataset("digits", "test")
    x = encode_as_recorded(graph.metadata, graph.timesteps, images[:7])
    d = tmp_path_factory.mktemp("inputs")
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", labels[:7].astype(np.int64))
    return d / "x.npy", d / "y.npy", labels[:7].astype(np.int64)


# --- 1. torch_ref has a command line ------------------------------------------------------


def test_torch_ref_command_as_the_docs_type_it():
    r = _sh("-m", "targets.torch_ref", FC, "--samples", "12")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("torch_ref: 12 samples from digits/test [0:12]")
    assert "lif1" in r.stdout and "synaptic_events" in r.stdout
    assert "accuracy: " in r.stdout
    assert r.stderr == ""  # no progress bar into a pipe


def test_torch_ref_summary_equals_its_run(fc_inputs, capsys):
    x, y, labels = fc_inputs
    assert _cli(torch_ref.main, FC, "--input", x, "--labels", y, "--json") == 0
    s = json.loads(capsys.readouterr().out)
    graph, _ = load_graph(FC)
    res = torch_ref.run(graph, np.load(x))
    assert s["target"] == "torch_ref" and s["samples"] == 7 and s["timesteps"] == 4
    assert s["populations"]["lif1"]["spikes"] == int(res.spikes["lif1"].sum())
    assert s["synaptic_events"] == res.counters["synaptic_events"]
    assert s["accuracy"] == tcli.accuracy(graph, res, labels)


# --- 2. no progress bars off a terminal ---------------------------------------------------


@pytest.mark.parametrize("cmd", [
    ("-m", "targets.verify", FC, "--targets", "torch_ref,event_sim", "--samples", "8"),
    ("-m", "targets.mfi", FC, "--samples", "8"),
])
def test_no_progress_bar_redraws_into_a_pipe(cmd):
    r = _sh(*cmd)
    assert r.returncode in (0, 1), r.stderr  # mfi exits 1 for fc_snn's graded input layer
    assert r.stderr == ""
    assert "\r" not in r.stdout


# --- 3. --record checked up front; a missing folder is created ------------------------------


@pytest.mark.parametrize("module", ["targets.torch_ref", "targets.verify", "targets.mfi"])
def test_bad_record_path_fails_before_the_run(tmp_path, module):
    (tmp_path / "file.txt").write_text("not a folder")
    t0 = time.perf_counter()
    r = _sh("-m", module, FC, "--targets" if module == "targets.verify" else "--samples",
            "torch_ref,event_sim" if module == "targets.verify" else "50",
            "--record", tmp_path / "file.txt" / "out.npz")
    assert r.returncode == 2
    assert r.stdout == ""  # nothing ran
    (line,) = r.stderr.splitlines()
    assert "--record" in line and "file.txt" in line
    assert time.perf_counter() - t0 < 60


def test_record_folder_is_created_and_holds_the_run(tmp_path, fc_inputs, capsys):
    x, y, labels = fc_inputs
    rec = tmp_path / "new" / "folder" / "run.npz"
    assert _cli(torch_ref.main, FC, "--input", x, "--labels", y, "--record", rec) == 0
    assert f"records written to {rec}" in capsys.readouterr().out
    graph, _ = load_graph(FC)
    ref = torch_ref.run(graph, np.load(x))
    got = load_record(rec)
    np.testing.assert_array_equal(got.spikes["lif1"], ref.spikes["lif1"])
    np.testing.assert_array_equal(got.readouts["output"], ref.readouts["output"])
    with np.load(rec) as z:
        np.testing.assert_array_equal(z["labels"], labels)
        assert z["scores"].shape == (7, 10)


# --- 4. verify --record writes every target's records ---------------------------------------


def test_verify_record_holds_every_target(tmp_path, fc_inputs, capsys):
    x, y, labels = fc_inputs
    rec = tmp_path / "v" / "all.npz"
    rc = _cli(verify.main, FC, "--targets", "torch_ref,event_sim", "--input", x, "--labels", y,
              "--record", rec)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"records of torch_ref, event_sim written to {rec}" in out
    runs = load_records(rec)
    assert list(runs) == ["torch_ref", "event_sim"]
    graph, _ = load_graph(FC)
    ref = torch_ref.run(graph, np.load(x))
    for run in runs.values():
        np.testing.assert_array_equal(run.spikes["lif1"], ref.spikes["lif1"])
        np.testing.assert_array_equal(run.readouts["output"], ref.readouts["output"])
    assert runs["event_sim"].counters["synaptic_events"] == ref.counters["synaptic_events"]
    with np.load(rec) as z:
        np.testing.assert_array_equal(z["labels"], labels)
        assert z["torch_ref/scores"].shape == z["event_sim/scores"].shape == (7, 10)
    np.testing.assert_array_equal(load_record(rec, "event_sim").spikes["lif1"],
                                  ref.spikes["lif1"])


def test_verify_help_documents_the_record_layout(capsys):
    with pytest.raises(SystemExit):
        verify.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "'<target>/spikes/<population>'" in text and "'targets'" in text


def run(graph, inputs, *, record_state: bool = False, progress: bool = False) -> RunResult:
    """A broken target for the mismatch tests: torch_ref with one spike flipped."""
    res = torch_ref.run(graph, inputs, record_state=record_state)
    spikes = {k: v.copy() for k, v in res.spikes.items()}
    spikes["lif1"][0, 2, 5] ^= True
    return RunResult(spikes, res.readouts, res.counters, res.states)


def test_verify_mismatch_is_reported_and_recorded(tmp_path, monkeypatch, fc_inputs, capsys):
    monkeypatch.setitem(verify.TARGETS, "flipped", __name__)
    x, _, _ = fc_inputs
    rec = tmp_path / "m.npz"
    assert _cli(verify.main, FC, "--targets", "torch_ref,flipped", "--input", x, "--json",
                "--record", rec) == 1
    s = json.loads(capsys.readouterr().out)
    assert s["spike_exact"] is False
    first = s["mismatches"][0]
    assert (first["node"], first["sample"], first["timestep"], first["neuron"]) == \
        ("lif1", 0, 2, 5)
    assert "lif1[5] at sample 0" in s["first_divergence_state"]
    assert s["targets"]["flipped"]["spikes"] == s["targets"]["torch_ref"]["spikes"] + (
        1 if not load_records(rec)["torch_ref"].spikes["lif1"][0, 2, 5] else -1)
    assert list(load_records(rec)) == ["torch_ref", "flipped"]
    assert _cli(verify.main, FC, "--targets", "torch_ref,flipped", "--input", x) == 1
    out = capsys.readouterr().out
    assert "MISMATCH: 1 record(s) differ" in out
    assert "first divergence: spikes of 'lif1' differ at sample 0, timestep 2, neuron 5" in out


# --- 5. labels: integers, one per input sample --------------------------------------------


def test_integral_float_labels_are_converted(tmp_path, fc_inputs, capsys):
    x, y, labels = fc_inputs
    np.save(tmp_path / "yf.npy", labels.astype(np.float32))
    assert _cli(torch_ref.main, FC, "--input", x, "--labels", y, "--json") == 0
    want = json.loads(capsys.readouterr().out)["accuracy"]
    assert want > 0.5
    assert _cli(torch_ref.main, FC, "--input", x, "--labels", tmp_path / "yf.npy", "--json") == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == want


@pytest.mark.parametrize(("labels", "message"), [
    (np.array([0.5, 1, 2, 3, 4, 5, 6]), "labels must be integer class indices; got 0.5"),
    (np.arange(5), "5 labels for 7 input samples; give exactly one label per input sample"),
    (np.arange(9), "9 labels for 7 input samples"),
    (np.zeros((7, 1), dtype=np.int64), "shape [7]; got shape [7, 1]"),
    (np.array([0, 1, 2, 3, 4, 5, -1]), "class indices >= 0"),
    (np.array([0, 1, 2, 3, 4, 5, 10]), "label 10 is outside the 10 classes"),
    (np.array(["a"] * 7), "labels must be integer class indices; got dtype <U1"),
])
def test_bad_labels_are_one_line_exit_2(tmp_path, fc_inputs, capsys, labels, message):
    x, _, _ = fc_inputs
    np.save(tmp_path / "bad.npy", labels)
    for main in (torch_ref.main, verify.main):
        assert _cli(main, FC, "--input", x, "--labels", tmp_path / "bad.npy",
                    "--targets" if main is verify.main else "--offset",
                    "torch_ref,event_sim" if main is verify.main else "0") == 2
        cap = capsys.readouterr()
        assert cap.out == ""
        (line,) = cap.err.splitlines()
        assert message in line


def test_labels_without_input_are_refused(fc_inputs, capsys):
    x, y, _ = fc_inputs
    assert _cli(torch_ref.main, FC, "--labels", y) == 2
    assert "--labels goes with --input" in capsys.readouterr().err
    assert _cli(torch_ref.main, FC, "--input", x, "--dataset", "digits") == 2
    assert "--dataset and --input exclude each other" in capsys.readouterr().err


def test_labels_follow_offset_and_samples(fc_inputs, capsys):
    x, y, labels = fc_inputs
    graph, _ = load_graph(FC)
    xs = np.load(x)
    assert _cli(torch_ref.main, FC, "--input", x, "--labels", y, "--offset", "2", "--samples",
                "3", "--json") == 0
    s = json.loads(capsys.readouterr().out)
    assert s["samples"] == 3 and s["source"].endswith("[2:5]")
    res = torch_ref.run(graph, xs[2:5])
    assert s["accuracy"] == tcli.accuracy(graph, res, labels[2:5])


# --- 6. --samples: all of the user's file, 100 of a dataset -----------------------------------


def test_samples_default_to_the_whole_input_file(fc_inputs, capsys):
    x, _, _ = fc_inputs
    assert _cli(torch_ref.main, FC, "--input", x) == 0
    assert capsys.readouterr().out.startswith(f"torch_ref: 7 samples from {x} [0:7]")
    assert _cli(torch_ref.main, FC, "--input", x, "--offset", "4") == 0
    assert capsys.readouterr().out.startswith(f"torch_ref: 3 samples from {x} [4:7]")
    assert _cli(torch_ref.main, FC, "--input", x, "--offset", "7") == 2
    assert "past the end" in capsys.readouterr().err


def test_samples_default_to_100_of_a_dataset(capsys):
    assert _cli(torch_ref.main, FC) == 0
    assert capsys.readouterr().out.startswith("torch_ref: 100 samples from digits/test [0:100]")


def test_help_says_the_samples_default(capsys):
    with pytest.raises(SystemExit):
        torch_ref.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default: all samples of --input from --offset on; 100 from a dataset" in text


# --- 7. --json: one object with the table's fields --------------------------------------------


def test_verify_json(fc_inputs, capsys):
    x, y, _ = fc_inputs
    assert _cli(verify.main, FC, "--targets", "torch_ref,event_sim", "--input", x, "--labels",
                y, "--json") == 0
    s = json.loads(capsys.readouterr().out)
    assert s["spike_exact"] is True and s["mismatches"] == []
    assert s["samples"] == 7 and s["records_compared"] == 2
    assert list(s["targets"]) == ["torch_ref", "event_sim"]
    a, b = s["targets"].values()
    assert a["accuracy"] == b["accuracy"] and a["spikes"] == b["spikes"] > 0
    assert a["synaptic_events"] == b["synaptic_events"]


def test_mfi_json_has_the_certificate_fields(fc_inputs, capsys):
    x, _, _ = fc_inputs
    assert _cli(mfi.main, FC, "--input", x, "--json") == 1  # graded input: MACs remain
    s = json.loads(capsys.readouterr().out)
    assert s["multiplication_free"] is False and s["mac_edges"] == ["fc1"]
    assert s["samples"] == 7
    assert [e["synapse"] for e in s["edges"]] == ["fc1", "fc2"]
    graph, _ = load_graph(FC)
    counters = event_sim.run(graph, np.load(x)).counters
    assert s["measured_per_sample"]["mac"] == counters["mac"] / 7
    assert s["measured_per_sample"]["ac"] == counters["ac"] / 7
    assert _cli(mfi.main, FC, "--input", x) == 1
    text = capsys.readouterr().out
    assert f"{s['static_per_sample']['ac']} ACs, {s['static_per_sample']['mac']} MACs" in text


def test_mfi_static_only_refuses_run_options(tmp_path, capsys):
    assert _cli(mfi.main, FC, "--static-only", "--record", tmp_path / "r.npz") == 2
    assert "--record needs a measured run: drop --static-only" in capsys.readouterr().err
    assert _cli(mfi.main, FC, "--static-only", "--json") == 1
    s = json.loads(capsys.readouterr().out)
    assert s["samples"] is None and s["measured_per_sample"] is None


def test_report_run_json_with_extra_rows(fc_inputs, capsys):
    """The shared summary (what event_sim and the Lava command print), as JSON and table."""
    x, y, _ = fc_inputs
    ap = argparse.ArgumentParser()
    tcli.add_common_args(ap)
    prep = tcli.prepare(ap.parse_args([str(FC), "--input", str(x), "--labels", str(y),
                                       "--json"]))
    assert prep.as_json and not prep.progress
    res = event_sim.run(prep.graph, prep.inputs)
    extra = [tcli.SummaryRow("events_per_s", 123.0, "events/s  123")]
    assert tcli.report_run("event_sim", prep, res, 0.5, extra) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["target"] == "event_sim" and s["events_per_s"] == 123.0
    assert s["wall_s"] == 0.5 and s["samples_per_s"] == 14.0
    prep = tcli.prepare(ap.parse_args([str(FC), "--input", str(x)]))
    tcli.report_run("event_sim", prep, res, 0.5, extra)
    out = capsys.readouterr().out
    assert "events/s  123" in out and "accuracy" not in out


# --- 8. an unknown NIR node type is named ------------------------------------------------------


def test_unknown_node_type_is_one_line_naming_node_and_type(tmp_path):
    bad = tmp_path / "unknown.nir"
    shutil.copy(DATA / "snntorch_mlp.nir", bad)
    with h5py.File(bad, "r+") as f:
        del f["node/nodes/1/type"]
        f["node/nodes/1/type"] = np.bytes_("Leakyy")
    r = _sh("-m", "targets.torch_ref", bad, "--input", DATA / "snntorch_mlp_inputs.npy",
            "--timesteps", "10")
    assert r.returncode == 2
    assert r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert "'1'" in line and "'Leakyy'" in line
    assert "AssertionError" not in line
