"""The MFI certificate's counts (targets/mfi.py), pinned on hand-computed graphs.

The static worst case of an edge is its number of connections (events of one step with every
source entry active) times T; a Conv counts them on its own output, before any max pooling,
without the taps that fall in the zero padding. Each case below states the count by hand and
checks that the event simulator's measured count reaches it exactly when every source entry
is active (so the padding exclusion is exact, not a bound) and stays below it otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from convert import load_graph
from core.graph import INPUT, Conv, Dense, InputSpec, LIFPopulation, QGraph, Readout, SpikeAttention
from targets import event_sim
from targets.mfi import certificate, certificate_summary, format_certificate
from tests.golden import golden_inputs

DATA = Path(__file__).resolve().parents[1] / "data"


def _edges(graph: QGraph, x: np.ndarray | None = None) -> dict:
    counters = None if x is None else event_sim.run(graph, x).counters
    return {e.synapse: e for e in certificate(graph, counters)}


# --- Dense -----------------------------------------------------------------------------------

def _dense() -> QGraph:
    w = np.array([[1, 0, 2], [4, -3, 0]])  # fan-out of the 3 sources: 2, 1, 1 -> 4 per step
    return QGraph(InputSpec((3,), "spikes"), {}, {"R": Readout("R", (2,))},
                  [Dense("d", INPUT, "R", w)], timesteps=2)


def test_dense_static_is_nonzero_weights_times_t():
    g = _dense()
    e = _edges(g)["d"]
    assert e.static_ops_per_step == 4
    assert e.static_ops_per_sample(g.timesteps) == 8
    s = certificate_summary(g, list(_edges(g).values()), None)
    assert s["edges"][0]["static_ops_per_sample"] == 8
    assert s["static_per_sample"] == {"ac": 8, "mac": 0}


def test_dense_measured_by_hand_and_all_active_reaches_static():
    g = _dense()
    x = np.array([[[1, 1, 0], [0, 1, 1]]])  # step 0: 2 + 1, step 1: 1 + 1
    assert _edges(g, x)["d"].measured_ops == 5
    ones = np.ones((3, 2, 3), dtype=np.int64)  # 3 samples, every source active
    assert _edges(g, ones)["d"].measured_ops == 3 * 8


# --- Conv with padding and stride ------------------------------------------------------------

def _conv(kernel: np.ndarray, t: int = 1) -> QGraph:
    """Input (1, 3, 3), a 3x3 kernel, stride 2, padding 1: output (1, 2, 2)."""
    return QGraph(InputSpec((1, 3, 3), "spikes"), {}, {"R": Readout("R", (4,))},
                  [Conv("c", INPUT, "R", kernel[None, None], (2, 2), (1, 1), 1, (1, 3, 3),
                        (1, 2, 2))], timesteps=t)


def test_conv_padding_taps_are_not_counted():
    # Output row y reads input rows 2y-1 .. 2y+1: rows {-1, 0, 1} and {1, 2, 3}, two real rows
    # each; the same for columns. So every output has 2 x 2 real taps: 4 outputs x 4 = 16
    # (counting the padding taps too would give 9 x 4 = 36).
    g = _conv(np.ones((3, 3), dtype=np.int64), t=2)
    e = _edges(g)["c"]
    assert e.static_ops_per_step == 16
    assert e.static_ops_per_sample(2) == 32
    # without its centre tap (which always reads a real pixel: (2y, 2x)): 16 - 4 = 12
    hollow = np.ones((3, 3), dtype=np.int64)
    hollow[1, 1] = 0
    assert _edges(_conv(hollow))["c"].static_ops_per_step == 12


def test_conv_measured_by_hand_and_exact_when_all_active():
    g = _conv(np.ones((3, 3), dtype=np.int64))
    centre = np.zeros((1, 1, 1, 3, 3), dtype=np.int64)
    centre[..., 1, 1] = 1  # read by all 4 outputs
    corner = np.zeros_like(centre)
    corner[..., 0, 0] = 1  # read by output (0, 0) only
    assert _edges(g, centre)["c"].measured_ops == 4
    assert _edges(g, corner)["c"].measured_ops == 1
    assert _edges(g, np.ones((1, 1, 1, 3, 3), dtype=np.int64))["c"].measured_ops == 16


# --- Conv followed by max pooling of currents --------------------------------------------------

def test_conv_with_max_pool_counts_the_conv_output_not_the_pooled_one():
    # Input (1, 4, 4), 3x3 kernel, stride 1, padding 1: the conv output is 4 x 4, pooled 2x2
    # to 2 x 2. Real taps per output position along one axis: 2, 3, 3, 2 (sum 10), so
    # 10 x 10 = 100 connections per step. Counted on the pooled output (the old bug) it was
    # 9 x 2 x 2 = 36.
    g = QGraph(InputSpec((1, 4, 4), "spikes"), {}, {"R": Readout("R", (4,))},
               [Conv("c", INPUT, "R", np.ones((1, 1, 3, 3), dtype=np.int64), (1, 1), (1, 1), 1,
                     (1, 4, 4), (1, 2, 2), max_pool=(2, 2))], timesteps=2)
    g.validate()
    e = _edges(g, np.ones((2, 2, 1, 4, 4), dtype=np.int64))["c"]
    assert e.input_kind == "binary spikes +max"
    assert e.static_ops_per_step == 100
    assert e.static_ops_per_sample(2) == 200
    assert e.measured_ops == 2 * 200  # two samples, every pixel on at every step


# --- bit planes ------------------------------------------------------------------------------

def _planes() -> QGraph:
    w = np.array([[4, -2]])
    return QGraph(InputSpec((2,), "graded", 7, bitplanes=3), {}, {"R": Readout("R", (1,))},
                  [Dense(f"d_b{b}", INPUT, "R", w, b, 0, (2 * b, 2 * b + 2)) for b in range(3)],
                  timesteps=1)


def test_bit_planes_are_acs_each_plane_its_connections():
    g = _planes()
    x = np.array([[[5, 6]]])  # planes: bit 0 = [1, 0], bit 1 = [0, 1], bit 2 = [1, 1]
    edges = _edges(g, x)
    assert [e.input_kind for e in edges.values()] == ["bit plane 0", "bit plane 1",
                                                      "bit plane 2"]
    assert [e.static_ops_per_step for e in edges.values()] == [2, 2, 2]
    assert [e.measured_ops for e in edges.values()] == [1, 1, 2]
    s = certificate_summary(g, list(edges.values()), 1)
    assert s["static_per_sample"] == {"ac": 6, "mac": 0}
    assert s["measured_per_sample"] == {"ac": 4.0, "mac": 0.0}
    assert s["multiplication_free"]
    # the graded twin: one MAC edge, 2 connections, both values nonzero
    twin = QGraph(InputSpec((2,), "graded", 7), {}, {"R": Readout("R", (1,))},
                  [Dense("d", INPUT, "R", np.array([[4, -2]]))], timesteps=1)
    e = _edges(twin, x)["d"]
    assert e.is_mac and e.static_ops_per_step == 2 and e.measured_ops == 2


# --- spike attention -------------------------------------------------------------------------

def _relay(name: str, shape: tuple[int, ...]) -> LIFPopulation:
    return LIFPopulation(name, shape, du=4095, dv=4095, vth=0,
                         bias_mant=np.zeros(int(np.prod(shape)), dtype=np.int64))


def _attention() -> QGraph:
    """q, k, v: relays (2, 1, 2) (dim 2, 2 tokens) copying input entries 0-3, 4-7, 8-11."""
    sh = (2, 1, 2)
    pick = [np.eye(4, 12, 4 * j, dtype=np.int64) for j in range(3)]
    return QGraph(
        InputSpec((12,), "spikes"), {n: _relay(n, sh) for n in ("q", "k", "v", "o")},
        {"R": Readout("R", (4,))},
        [Dense("to_q", INPUT, "q", pick[0]), Dense("to_k", INPUT, "k", pick[1]),
         Dense("to_v", INPUT, "v", pick[2]),
         SpikeAttention("att", ("q", "k", "v"), "o", heads=1),
         Dense("ro", "o", "R", np.eye(4, dtype=np.int64))], timesteps=1)


def test_attention_static_and_measured_by_hand():
    g = _attention()
    g.validate()
    # static: 2 * dim * N**2 = 2 * 2 * 4 = 16 per step
    assert _edges(g)["att"].static_ops_per_step == 16
    # q = [[1, 1], [0, 1]], k = [[0, 1], [1, 1]], v = [[1, 1], [0, 0]] ([feature][token]);
    # v fires at both tokens, so ANDs = sum_i (sum_n q[i, n]) (sum_m k[i, m]) = 2*1 + 1*2 = 4;
    # A = q^T k = [[0, 1], [1, 2]]: nonzero counts per column m: 1, 2, each added once per
    # v spike at m (one each): 3 additions. 7 events.
    x = np.array([[[1, 1, 0, 1, 0, 1, 1, 1, 1, 1, 0, 0]]])
    assert _edges(g, x)["att"].measured_ops == 7
    # every spike on: N*N*dim ANDs + N*N*dim additions = the static count, exactly
    assert _edges(g, np.ones((1, 1, 12), dtype=np.int64))["att"].measured_ops == 16


# --- the table and the golden graphs ---------------------------------------------------------

def test_table_columns_are_both_per_sample():
    g = _conv(np.ones((3, 3), dtype=np.int64), t=2)
    x = np.ones((1, 2, 1, 3, 3), dtype=np.int64)
    text = format_certificate(g, list(_edges(g, x).values()), 1)
    head, row = text.splitlines()[:2]
    assert head.split()[-2:] == ["static/sample", "measured/sample"]
    assert row.split()[-2:] == ["32", "32.0"]
    assert "static worst case per sample (T=2): 32 ACs, 0 MACs" in text


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*_digits.nir")))
def test_measured_never_exceeds_static_on_golden_graphs(name):
    g, _ = load_graph(DATA / name)
    x = golden_inputs(g)
    edges = certificate(g, event_sim.run(g, x).counters)
    s = certificate_summary(g, edges, len(x))
    for e, row in zip(edges, s["edges"], strict=True):
        assert e.measured_ops is not None, e.synapse
        assert row["measured_ops_per_sample"] <= row["static_ops_per_sample"], e.synapse
    for kind in ("ac", "mac"):
        assert s["measured_per_sample"][kind] <= s["static_per_sample"][kind]
