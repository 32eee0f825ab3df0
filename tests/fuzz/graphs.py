"""Differential fuzzing of the NIR import (issue 8): a hypothesis generator of NIR graphs, an
independent numpy simulation of the NIR node equations, and :func:`check_case`, the property
every generated graph must satisfy.

The property: the graph is either refused before any target runs with ONE
``core.errors.NeurodeployError`` (a one-line message), or it runs on torch_ref and event_sim
with identical spikes, readouts and overflow counters. Where the quantization report says the
deployment is exact up to the fixed point's rounding (every synapse ``rel_rms_error == 0``,
nothing clipped, decays quantized exactly, thresholds exact, no bias, no overflow counted), the
deployed spikes are also compared with :func:`nir_float_sim` (written from the NIR equations in
docs/foreign-nir.md, not from our importer): the first spike that differs must be at a neuron
whose float membrane lies within the error bound of the integer arithmetic (one unit per
truncating decay per step, 64 per flooring synapse per step, accumulated) of its threshold.
Graphs outside that subset (recurrence, Delay, convs, pools, readouts, bias, inexact report)
are only checked torch_ref == event_sim.
"""

from __future__ import annotations

import signal
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np
from hypothesis import strategies as st

from convert import load_graph
from core.errors import NeurodeployError
from targets import event_sim, torch_ref

DT = 2.0 ** -10  # dyadic: dt / tau and the gains are exact in float
NEURONS = ("LIF", "IF", "CubaLIF")
SIMPLE = {"Input", "Output", "Linear", "Affine", "Scale", "Flatten", "LIF", "IF", "CubaLIF"}
CORRUPTIONS = ("truncate", "unknown_type", "dangling_edge", "wrong_shape")


@dataclass
class Case:
    """One generated case: the graph, its input batch [N, T, *shape] (0/1), and what was done
    to the file after writing it (``corrupt``: one of :data:`CORRUPTIONS` or None)."""

    graph: nir.NIRGraph
    x: np.ndarray
    corrupt: str | None = None
    simple: bool = False  # inside the subset nir_float_sim covers
    features: set[str] = field(default_factory=set)  # "join", "recurrence", "groups", ...


@dataclass
class Outcome:
    """What :func:`check_case` found: ``kind`` is ``run``, ``refused``, ``traceback``,
    ``disagreement`` or ``hang``; ``detail`` the message; ``float_checked`` whether the run was
    compared with :func:`nir_float_sim`."""

    kind: str
    detail: str = ""
    float_checked: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------- parameters
def _weights(draw, shape: tuple[int, ...], wild: bool) -> np.ndarray:
    """Weights: small multiples of 1/4 (exact), or wild (huge/tiny magnitudes, NaN/inf)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    if not wild:
        return rng.integers(-2, 3, size=shape).astype(np.float64) / 4  # max/254 divides all
    mag = 10.0 ** draw(st.sampled_from([-12, -6, -3, 0, 2, 4, 8, 12, 30]))
    w = rng.normal(size=shape) * mag
    poison = draw(st.sampled_from([None] * 9 + [np.nan, np.inf, -np.inf]))
    if poison is not None and w.size:
        w.flat[draw(st.integers(0, w.size - 1))] = poison
    return w


POISON = [np.nan, np.inf, -np.inf, 0.0, -1.0]


def _scalar(draw, exact: list[float], wild: list[float], is_wild: bool) -> float:
    """One of ``exact``; for a wild node one of the extremes ``wild``, one time in ten a value
    of :data:`POISON` (NaN, inf, 0, negative)."""
    if not is_wild:
        return draw(st.sampled_from(exact))
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(POISON))
    return draw(st.sampled_from(wild))


def _neuron(draw, kind: str, n: int, wild: bool) -> Any:
    """A neuron node of ``n`` neurons (parameters as arrays of shape (n,))."""
    full = lambda v: np.full(n, v, dtype=np.float64)  # noqa: E731
    tau = _scalar(draw, [DT * 2, DT * 4, DT * 8, DT * 16],
                  [DT, DT * 1.0001, DT * 0.5, 1e9, DT * 3, DT * 4095], wild)
    thr = _scalar(draw, [0.25, 0.5, 1.0, 2.0], [1e-9, 1e9, 1e-30, 0.5, 1e-4, 3e3], wild)
    r = _scalar(draw, [1.0, 2.0, 4.0], [1.0, 1e-12, 1e12, 3.7, 1e-3], wild)
    if kind == "LIF":
        return nir.LIF(tau=full(tau), r=full(r), v_leak=full(0.0), v_threshold=full(thr),
                       v_reset=full(0.0))
    if kind == "IF":
        return nir.IF(r=full(r / DT if not wild else r), v_threshold=full(thr),
                      v_reset=full(0.0))
    tau_syn = _scalar(draw, [DT * 2, DT * 4], [DT, DT * 0.9, 1e6, DT * 1.5, DT * 4096], wild)
    return nir.CubaLIF(tau_syn=full(tau_syn), tau_mem=full(tau), r=full(r), v_leak=full(0.0),
                       v_threshold=full(thr), v_reset=full(0.0), w_in=full(1.0))


def _linear(draw, n_in: int, n_out: int, wild: bool) -> Any:
    kind = draw(st.sampled_from(["Linear", "Linear", "Affine", "Scale"] if n_in == n_out
                                else ["Linear", "Linear", "Affine"]))
    if kind == "Scale":
        return nir.Scale(scale=np.full(n_in, _scalar(draw, [0.5, 1.0, 2.0],
                                                     [1e-9, 1e9, 0.3, -2.0], wild)))
    w = _weights(draw, (n_out, n_in), wild)
    if kind == "Affine":
        b = np.zeros(n_out) if not draw(st.booleans()) else _weights(draw, (n_out,), wild)
        return nir.Affine(weight=w, bias=b)
    return nir.Linear(weight=w)


# ------------------------------------------------------------------------------- graphs
@st.composite
def dense_graphs(draw, exact: bool = False) -> Case:
    """Chains of Linear/Affine/Scale into neurons, with optional branches that join again
    (two paths into one neuron node), self-recurrence, Delay, Threshold and an LI/I/Output
    readout. ``exact``: only the subset :func:`nir_float_sim` covers, exact parameters."""
    wild = not exact and draw(st.booleans()) and draw(st.booleans())  # a quarter of the graphs
    n_in = draw(st.integers(1, 16))
    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array([n_in]))}
    edges: list[tuple[str, str]] = []
    prev, size, simple, features = "input", n_in, True, set()
    earlier: list[tuple[str, int]] = [("input", n_in)]
    for i in range(draw(st.integers(1, 3))):
        n = draw(st.integers(1, 32))
        kind = draw(st.sampled_from(NEURONS))
        pop = f"pop{i}"
        nodes[pop] = _neuron(draw, kind, n, wild)
        paths = draw(st.integers(1, 2))  # 2: a residual join into pop
        if paths == 2:
            features.add("join")
        for j in range(paths):
            syn = f"w{i}_{j}"
            # the second path: from the previous node (a branch that joins again) or, a skip
            # connection, from any earlier node (the input included)
            src, src_size = (prev, size) if j == 0 else draw(st.sampled_from(earlier))
            if src != prev:
                features.add("skip")
            nodes[syn] = _linear(draw, src_size, n, wild)
            edges += [(src, syn), (syn, pop)]
            if isinstance(nodes[syn], nir.Affine) and np.any(nodes[syn].bias):
                simple = False
        if not exact and draw(st.integers(0, 5)) == 0:  # self-recurrence
            nodes[f"rec{i}"] = nir.Linear(weight=_weights(draw, (n, n), wild) / 4)
            edges += [(pop, f"rec{i}"), (f"rec{i}", pop)]
            features.add("recurrence")
            simple = False
        if not exact and draw(st.integers(0, 7)) == 0:  # a Delay after the population
            nodes[f"delay{i}"] = nir.Delay(delay=np.full(n, DT * draw(st.integers(0, 3))))
            edges.append((pop, f"delay{i}"))
            pop = f"delay{i}"
            simple = False
        prev, size = pop, n
        earlier.append((pop, n))
    tail = "output" if exact else draw(st.sampled_from(["output", "output", "li", "i",
                                                          "threshold"]))
    if tail != "output":
        simple = False
        n_out = draw(st.integers(1, 8))
        nodes["wout"] = nir.Linear(weight=_weights(draw, (n_out, size), wild))
        edges.append((prev, "wout"))
        if tail == "li":
            nodes["ro"] = nir.LI(tau=np.full(n_out, DT * 4), r=np.ones(n_out),
                                 v_leak=np.zeros(n_out))
        elif tail == "i":
            nodes["ro"] = nir.I(r=np.ones(n_out))
        else:
            nodes["ro"] = nir.Threshold(threshold=np.full(n_out, 0.5))
        edges.append(("wout", "ro"))
        prev, size = "ro", n_out
    nodes["output"] = nir.Output(output_type=np.array([size]))
    edges.append((prev, "output"))
    g = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT}, type_check=False)
    if wild:
        features.add("wild")
    return Case(g, _inputs(draw, (n_in,)), simple=simple and not wild, features=features)


@st.composite
def conv_graphs(draw) -> Case:
    """Input (C, H, W) -> Conv2d (groups, stride, padding; or Conv1d) -> LIF/IF ->
    SumPool2d/AvgPool2d -> Flatten -> Linear -> neuron -> Output."""
    wild = draw(st.integers(0, 3)) == 0
    groups = draw(st.sampled_from([1, 1, 2]))
    c_in = groups * draw(st.integers(1, 2))
    c_out = groups * draw(st.integers(1, 2))
    one_d = draw(st.booleans()) and draw(st.booleans())
    h = 1 if one_d else draw(st.integers(2, 6))
    w_ = draw(st.integers(2, 7))
    kh = 1 if one_d else draw(st.integers(1, min(3, h)))
    kw = draw(st.integers(1, min(3, w_)))
    stride = (1 if one_d else draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad = (0 if one_d else draw(st.integers(0, 1)), draw(st.integers(0, 1)))
    weight = _weights(draw, (c_out, c_in // groups, kh, kw), wild)
    oh = (h + 2 * pad[0] - kh) // stride[0] + 1
    ow = (w_ + 2 * pad[1] - kw) // stride[1] + 1
    if one_d:
        conv = nir.Conv1d(input_shape=w_, weight=weight[:, :, 0], stride=stride[1],
                          padding=pad[1], dilation=1, groups=groups, bias=np.zeros(c_out))
        in_shape: tuple[int, ...] = (c_in, w_)
        shape: tuple[int, ...] = (c_out, ow)
    else:
        conv = nir.Conv2d(input_shape=(h, w_), weight=weight, stride=stride, padding=pad,
                          dilation=1, groups=groups, bias=np.zeros(c_out))
        in_shape, shape = (c_in, h, w_), (c_out, oh, ow)
    kind = draw(st.sampled_from(["LIF", "IF"]))
    pop = _neuron(draw, kind, int(np.prod(shape)), wild)
    for k, v in list(pop.__dict__.items()):  # parameters of the map's shape
        if isinstance(v, np.ndarray) and v.size == int(np.prod(shape)):
            setattr(pop, k, v.reshape(shape))
    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array(in_shape)), "conv": conv,
                             "pop0": pop}
    edges = [("input", "conv"), ("conv", "pop0")]
    prev, flat = "pop0", int(np.prod(shape))
    if not one_d and oh >= 2 and ow >= 2 and draw(st.booleans()):
        pk = 2
        ps = draw(st.integers(1, 2))
        pp = draw(st.integers(0, 1))
        pool = (nir.SumPool2d(kernel_size=np.array([pk, pk]), stride=np.array([ps, ps]),
                              padding=np.array([pp, pp])) if draw(st.booleans()) else
                nir.AvgPool2d(kernel_size=np.array([pk, pk]), stride=np.array([ps, ps]),
                              padding=np.array([pp, pp])))
        nodes["pool"] = pool
        edges.append((prev, "pool"))
        prev = "pool"
        flat = c_out * ((oh + 2 * pp - pk) // ps + 1) * ((ow + 2 * pp - pk) // ps + 1)
    nodes["flat"] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
    edges.append((prev, "flat"))
    n = draw(st.integers(1, 8))
    nodes["fc"] = nir.Linear(weight=_weights(draw, (n, flat), wild))
    nodes["pop1"] = _neuron(draw, draw(st.sampled_from(NEURONS)), n, wild)
    nodes["output"] = nir.Output(output_type=np.array([n]))
    edges += [("flat", "fc"), ("fc", "pop1"), ("pop1", "output")]
    g = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT}, type_check=False)
    features = {f for f, on in (("groups", groups > 1), ("stride", max(stride) > 1),
                                 ("padding", max(pad) > 0), ("wild", wild)) if on}
    return Case(g, _inputs(draw, in_shape), features=features)


def _inputs(draw, shape: tuple[int, ...]) -> np.ndarray:
    n = draw(st.integers(1, 3))
    t = draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    return (rng.random((n, t, *shape)) < draw(st.sampled_from([0.1, 0.5, 0.9]))).astype(np.int64)


@st.composite
def cases(draw) -> Case:
    """Any generated case: a dense or conv graph, a tenth of them corrupted on disk."""
    case = draw(st.one_of(dense_graphs(exact=True), dense_graphs(), dense_graphs(),
                          conv_graphs()))
    if draw(st.integers(0, 9)) == 0:
        case.corrupt = draw(st.sampled_from(CORRUPTIONS))
        case.simple = False
    return case


# ------------------------------------------------------------------------------- files
def write_case(case: Case, path: Path) -> Path:
    """Write the graph as a user would get it, then apply the case's corruption."""
    g = case.graph
    if case.corrupt == "dangling_edge":
        g = nir.NIRGraph(nodes=g.nodes, edges=[*g.edges, (next(iter(g.nodes)), "nowhere")],
                         metadata=g.metadata, type_check=False)
    elif case.corrupt == "wrong_shape":
        nodes = dict(g.nodes)
        name = next(k for k, v in nodes.items() if isinstance(v, nir.Linear | nir.Conv2d |
                                                              nir.Conv1d | nir.Affine))
        old = nodes[name]
        if isinstance(old, nir.Affine):
            nodes[name] = nir.Affine(weight=old.weight[:, :-1] if old.weight.shape[1] > 1
                                     else np.ones((old.weight.shape[0], 3)), bias=old.bias)
        elif isinstance(old, nir.Linear):
            w = old.weight
            nodes[name] = nir.Linear(weight=w[:, :-1] if w.shape[1] > 1 else np.ones((1, 3)))
        else:
            nodes[name] = nir.Linear(weight=np.ones((2, 5)))
        g = nir.NIRGraph(nodes=nodes, edges=g.edges, metadata=g.metadata, type_check=False)
    nir.write(str(path), g, compression=None)
    if case.corrupt == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: max(len(data) // 3, 8)])
    elif case.corrupt == "unknown_type":
        with h5py.File(path, "r+") as f:
            grp = f["node"]["nodes"]
            first = sorted(grp.keys())[0]
            del grp[first]["type"]
            grp[first]["type"] = np.bytes_("Hologram")
    return path


# ------------------------------------------------------------------------------- float sim
def nir_float_sim(g: nir.NIRGraph, x: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The NIR equations of docs/foreign-nir.md, forward Euler at ``g.metadata['dt']``, for a
    feed-forward graph of Input/Linear/Affine/Scale/Flatten/LIF/IF/CubaLIF/Output: each
    neuron node -> (spikes bool [N, T, n], membrane before the spike test [N, T, n]).
    Edges into one node sum; everything within one step (zero latency); reset to zero on
    ``v > threshold``."""
    dt = float(g.metadata["dt"])
    order = _topo(g)
    n, t_steps = x.shape[:2]
    state: dict[str, list[np.ndarray]] = {}
    rec: dict[str, tuple[list, list]] = {}
    for t in range(t_steps):
        val: dict[str, np.ndarray] = {}
        for name in order:
            node = g.nodes[name]
            ins = [val[s] for s, d in g.edges if d == name]
            cur = sum(ins) if ins else None
            if isinstance(node, nir.Input):
                val[name] = x[:, t].reshape(n, -1).astype(np.float64)
            elif isinstance(node, nir.Linear | nir.Affine):
                out = cur @ np.asarray(node.weight, np.float64).T
                val[name] = out + node.bias if isinstance(node, nir.Affine) else out
            elif isinstance(node, nir.Scale):
                val[name] = cur * np.asarray(node.scale).reshape(-1)
            elif isinstance(node, nir.Flatten | nir.Output):
                val[name] = cur
            else:
                u, v = state.get(name, [np.zeros_like(cur), np.zeros_like(cur)])
                thr = np.asarray(node.v_threshold).reshape(-1)
                if isinstance(node, nir.IF):
                    v = v + dt * np.asarray(node.r).reshape(-1) * cur
                elif isinstance(node, nir.LIF):
                    a = dt / np.asarray(node.tau).reshape(-1)
                    v = (1 - a) * v + a * np.asarray(node.r).reshape(-1) * cur
                else:
                    a_s = dt / np.asarray(node.tau_syn).reshape(-1)
                    a_m = dt / np.asarray(node.tau_mem).reshape(-1)
                    u = (1 - a_s) * u + a_s * np.asarray(node.w_in).reshape(-1) * cur
                    v = (1 - a_m) * v + a_m * np.asarray(node.r).reshape(-1) * u
                s = v > thr
                rec.setdefault(name, ([], []))
                rec[name][0].append(s)
                rec[name][1].append(v.copy())
                v = np.where(s, 0.0, v)
                state[name] = [u, v]
                val[name] = s.astype(np.float64)
    return {k: (np.stack(a, 1), np.stack(b, 1)) for k, (a, b) in rec.items()}


def _topo(g: nir.NIRGraph) -> list[str]:
    order: list[str] = []
    left = list(g.nodes)
    while left:
        for name in left:
            if all(s in order for s, d in g.edges if d == name):
                order.append(name)
                left.remove(name)
                break
        else:
            raise ValueError("cycle")
    return order


def _report_exact(qg, report) -> bool:
    """The report states no quantization error beyond the fixed point's rounding."""
    if report is None or report.warnings and any("clipped" in w for w in report.warnings):
        return False
    for s in report.synapses.values():  # rounded weights enter the bound; clipped ones cannot
        if s.target in qg.populations and (s.weights_clipped
                                           or getattr(s, "kind", "") == "attention"):
            return False
    for name, p in report.populations.items():
        if getattr(p, "kind", "") != "lif":
            continue
        pop = qg.populations.get(name)
        if pop is None or p.vth_clipped or p.biases_clipped or np.any(pop.bias_mant):
            return False
        if abs(p.beta - p.beta_quantized) > 1e-12 or abs(p.alpha - p.alpha_quantized) > 1e-12:
            return False
    return True


def _float_agrees(case: Case, qg, report, spikes: dict[str, np.ndarray]) -> str | None:
    """None if the deployed spikes are within the integer arithmetic's error bound of
    :func:`nir_float_sim`, else a description of the first spike that is not."""
    ref = nir_float_sim(case.graph, case.x)
    if set(ref) != set(spikes):
        return None  # populations renamed or split: not comparable one to one
    order = [p for p in _topo(case.graph) if p in ref]
    first = None
    for p in order:  # the earliest step with a difference; ties: the first in topological order
        diff = np.argwhere(ref[p][0] != spikes[p])
        if len(diff) and (first is None or diff[:, 1].min() < first[1]):
            first = (p, int(diff[:, 1].min()))
    if first is None:
        return None
    p, t = first
    rp = report.populations[p]
    e_u = e_v = 0.0
    for step in range(t + 1):  # decays truncate (< 1 unit each); input: see _input_error
        e_a = _input_error(case, report, ref, p, step)
        if e_a is None:
            return None
        e_u += 1 + 64 * e_a
        e_v += e_u + 1
    scale = 64 * rp.scale
    v_int = ref[p][1][:, t] * scale
    margin = np.abs(v_int - 64 * rp.vth)
    bad = (ref[p][0][:, t] != spikes[p][:, t]) & (margin > e_v + 1e-6 * np.abs(v_int) + 1e-6)
    if np.any(bad):
        return (f"{p}: deployed spikes differ from the NIR float simulation at step {t} where "
                f"the float membrane is {margin[bad].min():.1f} units from the threshold "
                f"(bound {e_v:.0f})")
    return None


def _input_error(case: Case, report, ref: dict, p: str, t: int) -> float | None:
    """Bound on |deployed a_in - scale * float input| of population ``p`` at step ``t`` (integer
    input units), while the spikes so far agree: every integer weight is within 1 of
    ``weight * scale / 2**exp`` (rounded, to an even number when signs mix), so each active
    source adds at most ``2**exp``; a negative exponent floors the sum (< 1 more). None when a
    synapse's source is not known here."""
    e = 0.0
    for s in report.synapses.values():
        if s.target != p:
            continue
        if s.source == "input":
            active = case.x[:, t].reshape(case.x.shape[0], -1).sum(axis=1).max()
        elif s.source in ref:
            active = ref[s.source][0][:, t].sum(axis=1).max()
        else:
            return None
        e += 2.0 ** s.weight_exp * float(active) + (1 if s.weight_exp < 0 else 0)
    return e


# ------------------------------------------------------------------------------- property
class _Hang(Exception):
    pass


def _alarm(signum, frame):  # noqa: ARG001
    raise _Hang()


def check_case(case: Case, path: Path, timeout_s: int = 20) -> Outcome:
    """Write, load and run one case (see the module docstring); never raises."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout_s)
    try:
        return _check(case, path)
    except _Hang:
        return Outcome("hang", f"no answer within {timeout_s} s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _check(case: Case, path: Path) -> Outcome:
    try:
        write_case(case, path)
    except _Hang:
        raise
    except Exception as e:  # noqa: BLE001  the nir package refuses to write it: not ours
        return Outcome("unwritable", f"{type(e).__name__}: {e}".splitlines()[0])
    try:
        qg, report = load_graph(path, input_timesteps=case.x.shape[1])
    except _Hang:
        raise
    except NeurodeployError as e:
        msg = str(e)
        if "\n" in msg.strip():
            return Outcome("traceback", f"refusal of more than one line: {msg!r}")
        return Outcome("refused", msg)
    except Exception:  # noqa: BLE001
        return Outcome("traceback", traceback.format_exc())
    if case.corrupt:
        return Outcome("disagreement", f"a corrupted file ({case.corrupt}) was accepted")
    try:
        a = torch_ref.run(qg, case.x)
        b = event_sim.run(qg, case.x)
    except _Hang:
        raise
    except Exception:  # noqa: BLE001  accepted, then a target failed: never allowed
        return Outcome("traceback", "after load_graph accepted it:\n" + traceback.format_exc())
    for what, ra, rb in (("spikes", a.spikes, b.spikes), ("readouts", a.readouts, b.readouts)):
        if set(ra) != set(rb) or any(not np.array_equal(ra[k], rb[k]) for k in ra):
            return Outcome("disagreement", f"torch_ref != event_sim ({what})")
    ov_a = {k: v for k, v in a.counters.items() if k.startswith("overflow/")}
    ov_b = {k: v for k, v in b.counters.items() if k.startswith("overflow/")}
    if ov_a != ov_b:
        return Outcome("disagreement", f"overflow counters differ: {ov_a} != {ov_b}")
    checked = False
    if case.simple and not any(ov_a.values()) and _report_exact(qg, report):
        checked = True
        bad = _float_agrees(case, qg, report, a.spikes)
        if bad:
            return Outcome("disagreement", bad, True)
    return Outcome("run", float_checked=checked,
                   extra={"spikes": int(sum(s.sum() for s in a.spikes.values())),
                          "overflow": int(sum(ov_a.values())),
                          "warnings": len(report.warnings) if report else 0})


def reason(msg: str) -> str:
    """A refusal grouped by its kind: the message with node names and numbers removed, cut
    to its leading words."""
    import re

    m = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", msg)
    m = re.sub(r"[-+]?\d[\d.e+-]*", "#", m)
    return " ".join(m.split()[:8])
