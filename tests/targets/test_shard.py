"""Sharded evaluation (targets/shard.py) and runs in pieces (targets.cli.run_target): the same
records and counters as one run in one process (issue 12 items 3 and 5)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import targets.cli as tcli
from core.cli import run_cli
from core.errors import UserError
from targets import event_sim, loihi, torch_ref
from targets.base import RunResult
from targets.records import RecordWriter, load_record
from targets.shard import (
    EXECUTION_COUNTERS,
    ShardSpec,
    check_spec,
    client_for,
    merge_counters,
    run_sharded,
    split,
)
from tests.lava_scripts.lava_test_graphs import delay_pool_graph, mixed_graph, random_inputs

ROOT = Path(__file__).resolve().parents[2]
FC = ROOT / "tests" / "data" / "fc_snn_digits.nir"
needs_lava = pytest.mark.skipif(
    not (ROOT / ".venv-lava" / "bin" / "python").exists()
    and not os.environ.get(loihi.ENV_VAR), reason="no Lava environment")


def _same_run(a: RunResult, b: RunResult) -> None:
    """Identical records, and identical counters except those that say how the run was
    executed (shard.EXECUTION_COUNTERS)."""
    for kind in ("spikes", "readouts"):
        ra, rb = getattr(a, kind), getattr(b, kind)
        assert ra.keys() == rb.keys()
        for k in ra:
            np.testing.assert_array_equal(ra[k], rb[k], err_msg=f"{kind}/{k}")
    assert a.states.keys() == b.states.keys()
    for k, (u, v) in a.states.items():
        np.testing.assert_array_equal(u, b.states[k][0])
        np.testing.assert_array_equal(v, b.states[k][1])
    ca = {k: v for k, v in a.counters.items() if k not in EXECUTION_COUNTERS}
    cb = {k: v for k, v in b.counters.items() if k not in EXECUTION_COUNTERS}
    assert ca == cb


def test_split_is_contiguous_and_balanced():
    assert split(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert split(2, 5) == [(0, 1), (1, 2)]  # never an empty shard
    assert split(0, 4) == [(0, 0)]


def test_merge_counters_sums_maximizes_and_recomputes_rates():
    m = merge_counters([
        {"synaptic_events": 3, "max_abs_u": 7, "lava_steps": 10, "lava_run_s": 1.0,
         "lava_steps_per_s": 10.0},
        {"synaptic_events": 4, "max_abs_u": 5, "lava_steps": 30, "lava_run_s": 1.0,
         "lava_steps_per_s": 30.0},
    ])
    assert m["synaptic_events"] == 7 and m["max_abs_u"] == 7
    assert m["lava_steps_per_s"] == pytest.approx(20.0)


def test_bad_sharding_options_are_refused_in_one_line():
    with pytest.raises(UserError, match="at least 1"):
        check_spec(0, None)
    with pytest.raises(UserError, match="exclude each other"):
        check_spec(2, "tcp://h:8786")
    with pytest.raises(UserError, match="scheduler address"):
        check_spec(None, "localhost:8786")
    assert not check_spec(1, None).active and check_spec(None, "tcp://h:1").active


@pytest.fixture(scope="module")
def client():
    """One local cluster of two worker processes for every sharded test of this module."""
    with client_for(ShardSpec(workers=2)) as c:
        yield c


def test_event_sim_sharded_equals_unsharded(client):
    g = delay_pool_graph(seed=3)
    x = random_inputs(g, 7, seed=4, rate=0.4)
    _same_run(event_sim.run(g, x, record_state=True),
              run_sharded("event_sim", g, x, ShardSpec(workers=2), client=client,
                          record_state=True))
    # more shards than workers: still contiguous, in order
    _same_run(event_sim.run(g, x), run_sharded("event_sim", g, x,
                                               ShardSpec(workers=2, shards=5), client=client))


@needs_lava
@pytest.mark.slow  # two Lava runtimes (and torch imported in both workers): ~30 s, loaded
def test_lava_and_torch_ref_sharded_equal_unsharded(client):
    """One Lava worker process per dask worker; merged records and counters as one run."""
    g = mixed_graph(seed=2)
    x = random_inputs(g, 6, seed=5, rate=0.3)
    spec = ShardSpec(workers=2)
    _same_run(loihi.run(g, x), run_sharded("lava", g, x, spec, client=client))
    _same_run(torch_ref.run(g, x), run_sharded("torch_ref", g, x, spec, client=client))


def test_records_streamed_in_pieces_equal_one_write(tmp_path, monkeypatch, capsys):
    """A long run in pieces (here 7 samples each) writes the file one run writes, and prints
    the same summary."""
    whole, pieces = tmp_path / "whole.npz", tmp_path / "pieces.npz"
    args = [str(FC), "--samples", "20", "--json", "--record-state"]

    def summary(rec: Path) -> dict:
        capsys.readouterr()
        assert run_cli("event_sim", _event_sim_main, [*args, "--record", str(rec)]) == 0
        return json.loads(capsys.readouterr().out)

    a = summary(whole)
    monkeypatch.setattr(tcli, "STREAM_CHUNK_DEFAULT", 7)
    b = summary(pieces)
    assert not list(tmp_path.glob(".*"))  # the streaming folder is gone
    for k in ("wall_s", "samples_per_s", "events_per_s", "record"):
        a.pop(k), b.pop(k)
    assert a == b
    with np.load(whole) as za, np.load(pieces) as zb:
        assert sorted(za.files) == sorted(zb.files)
        for k in za.files:
            if k != "counters":
                np.testing.assert_array_equal(za[k], zb[k], err_msg=k)
    ca = {k: v for k, v in load_record(whole).counters.items() if k not in EXECUTION_COUNTERS}
    cb = {k: v for k, v in load_record(pieces).counters.items() if k not in EXECUTION_COUNTERS}
    assert ca == cb


def _event_sim_main(argv):
    from targets.event_sim.__main__ import main

    return main(argv)


def test_record_writer_leaves_nothing_on_an_interrupt(tmp_path):
    out = tmp_path / "r.npz"
    with pytest.raises(KeyboardInterrupt), RecordWriter(out, 4) as w:
        w.append({"spikes/a": np.zeros((2, 3, 5), bool)})
        raise KeyboardInterrupt
    assert not list(tmp_path.iterdir())
    w = RecordWriter(out, 4)
    w.append({"spikes/a": np.zeros((2, 3, 5), bool)})
    with pytest.raises(ValueError, match="incomplete"):
        w.close()
    assert not list(tmp_path.iterdir())
