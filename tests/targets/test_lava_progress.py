"""Lava's progress is honest (issue 12 item 4): the bar moves as samples complete, not once
per 100-sample network, and a run in pieces gives exactly the records of one run."""

from __future__ import annotations

import numpy as np
import pytest

import targets.loihi as loihi
from tests.lava_scripts.lava_test_graphs import delay_pool_graph, random_inputs

pytestmark = pytest.mark.skipif(
    not (loihi.REPO_ROOT / ".venv-lava" / "bin" / "python").exists(),
    reason="no Lava environment")


class _Recorder:
    """Stands in for core.cli.progress_bar: records every update (a bar draws only on a
    terminal, which a test has not)."""

    updates: list[int] = []

    def __init__(self, total: int, **kw) -> None:
        _Recorder.updates = []

    def update(self, n: int = 1) -> None:
        _Recorder.updates.append(n)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def test_progress_moves_per_sample_and_pieces_change_no_record(monkeypatch):
    g = delay_pool_graph(seed=3)  # delays and pooling: a pipeline deeper than one step
    x = random_inputs(g, 12, seed=4, rate=0.4)
    whole = loihi.run(g, x, chunk=8, record_state=True)  # one Lava run per network
    monkeypatch.setattr(loihi, "progress_bar", _Recorder)
    pieces = loihi.run(g, x, chunk=8, record_state=True, progress=True)
    # two networks (8 + 4 samples), each reported in several steps, summing to every sample
    assert sum(_Recorder.updates) == len(x)
    assert len(_Recorder.updates) > 2, _Recorder.updates
    for kind in ("spikes", "readouts"):
        a, b = getattr(whole, kind), getattr(pieces, kind)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{kind}/{k}")
    for k, (u, v) in whole.states.items():
        np.testing.assert_array_equal(u, pieces.states[k][0])
        np.testing.assert_array_equal(v, pieces.states[k][1])
    assert pieces.counters["lava_steps"] == whole.counters["lava_steps"]


def test_verify_says_up_front_how_long_lava_will_take(monkeypatch, capsys):
    """The first sample is timed, the estimate said before the rest runs, and the first
    sample's run merged with the rest's is still spike-exact against event_sim."""
    import targets.verify as verify
    from core.cli import run_cli

    monkeypatch.setattr(verify, "ESTIMATE_SAY_S", 0.0)  # say it even for a short run
    monkeypatch.setattr(verify, "ESTIMATE_MIN_SAMPLES", 2)
    fc = loihi.REPO_ROOT / "tests" / "data" / "fc_snn_digits.nir"
    rc = run_cli("targets.verify", verify.main,
                 [str(fc), "--samples", "12", "--targets", "event_sim,lava"])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    assert "targets.verify: Lava will take about" in err
    assert "for 12 samples (timed on the first sample)" in err
    assert "spike-exact: 0 mismatches" in out
