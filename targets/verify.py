"""N-way spike equivalence: run one graph on several targets, demand identical records.

    python -m targets.verify model.nir --targets torch_ref,event_sim,lava --samples 100

Every population's spike record and every readout record must be equal on all targets (records
are already aligned for each target's latency; see targets/base.py). On the first difference the
report names (sample, timestep, population, neuron) and that neuron's u, v and input on each
target, and the command exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from dataclasses import dataclass

import numpy as np

from core import fixedpoint as fx
from core.errors import UserError
from core.graph import QGraph
from targets.base import RunResult

# One line per target: adding a target is one module with run(graph, inputs, ...) and one entry.
TARGETS = {
    "torch_ref": "targets.torch_ref",
    "event_sim": "targets.event_sim",
    "lava": "targets.lava",
}


def get_target(name: str):
    if name not in TARGETS:
        raise UserError(f"unknown target {name!r}; known: {', '.join(TARGETS)}")
    return importlib.import_module(TARGETS[name])


@dataclass
class Mismatch:
    kind: str  # "spikes" or "readout"
    node: str
    sample: int
    timestep: int
    neuron: int
    values: dict[str, int]  # target -> value at that place
    count: int  # number of differing entries in this node's record

    def describe(self) -> str:
        vals = ", ".join(f"{t}={v}" for t, v in self.values.items())
        return (f"{self.kind} of {self.node!r} differ at sample {self.sample}, timestep "
                f"{self.timestep}, neuron {self.neuron}: {vals} ({self.count} entries differ)")


def compare(graph: QGraph, results: dict[str, RunResult]) -> list[Mismatch]:
    """Every node's first difference between the first target and each other one, in graph
    order (the earliest population first: later differences are usually its consequences)."""
    names = list(results)
    ref = names[0]
    out: list[Mismatch] = []
    for node in graph.order():
        kind = "readout" if node in graph.readouts else "spikes"
        for other in names[1:]:
            a = _record(results[ref], kind, node)
            b = _record(results[other], kind, node)
            if a is None or b is None or a.shape != b.shape:
                sa = None if a is None else a.shape
                sb = None if b is None else b.shape
                out.append(Mismatch(f"{kind} (record shapes {sa} vs {sb})", node, -1, -1, -1,
                                    {ref: -1, other: -1}, -1))
                continue
            diff = a != b
            if not diff.any():
                continue
            s, t, i = np.argwhere(diff)[np.lexsort(np.argwhere(diff).T[::-1])][0]
            out.append(Mismatch(kind, node, int(s), int(t), int(i),
                                {ref: int(a[s, t, i]), other: int(b[s, t, i])},
                                int(diff.sum())))
    return out


def _record(r: RunResult, kind: str, node: str) -> np.ndarray | None:
    rec = r.readouts.get(node) if kind == "readout" else r.spikes.get(node)
    return None if rec is None else np.asarray(rec).astype(np.int64)


def neuron_state_report(graph: QGraph, m: Mismatch, states: dict[str, RunResult]) -> str:
    """u, v and the synaptic input of the mismatching neuron on every target, around the step."""
    if m.node not in graph.populations:
        return ""
    p = graph.populations[m.node]
    lines = [f"state of {m.node}[{m.neuron}] at sample {m.sample} (du={p.du}, dv={p.dv}, "
             f"vth={p.vth} -> fires when v > {p.vth << fx.VTH_SHIFT}):"]
    for tgt, r in states.items():
        if m.node not in r.states:
            lines.append(f"  {tgt}: no state recorded")
            continue
        u, v = (np.asarray(a)[m.sample, :, m.neuron].astype(np.int64) for a in r.states[m.node])
        lo, hi = max(0, m.timestep - 2), m.timestep + 1
        for t in range(lo, min(hi, len(u))):
            u_prev = u[t - 1] if t > 0 else 0
            a_in = (int(u[t]) - int(fx.decay_u(np.int64(u_prev), p.du))) >> fx.ACT_SHIFT
            lines.append(f"  {tgt:<10} t={t}: u={int(u[t])} v={int(v[t])} input={a_in}"
                         f"{'   <-- first difference' if t == m.timestep else ''}")
    return "\n".join(lines)


def run_targets(graph: QGraph, inputs: np.ndarray, targets: list[str], *,
                record_state: bool = False, progress: bool = False
                ) -> tuple[dict[str, RunResult], dict[str, float]]:
    results: dict[str, RunResult] = {}
    walls: dict[str, float] = {}
    for t in targets:
        mod = get_target(t)
        t0 = time.perf_counter()
        results[t] = mod.run(graph, inputs, record_state=record_state, progress=progress)
        walls[t] = time.perf_counter() - t0
    return results, walls


def main(argv: list[str] | None = None) -> int:
    from targets.cli import accuracy, add_common_args, prepare

    ap = argparse.ArgumentParser(
        prog="python -m targets.verify",
        description="Run one graph on several targets and check that every population emits "
        "exactly the same spikes (and every readout the same integers) on all of them. Exit 1 "
        "on the first difference, with that neuron's state on each target.",
    )
    add_common_args(ap)
    ap.add_argument("--targets", default="torch_ref,event_sim,lava",
                    help=f"comma-separated, first is the reference (known: {', '.join(TARGETS)})")
    args = ap.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if len(targets) < 2:
        raise UserError("--targets needs at least two targets to compare")
    for t in targets:
        if t not in TARGETS:
            raise UserError(f"unknown target {t!r}; known: {', '.join(TARGETS)}")
    prep = prepare(args)
    g = prep.graph
    results, walls = run_targets(g, prep.inputs, targets, progress=not args.no_progress)
    mism = compare(g, results)
    n = len(prep.inputs)
    print(f"verify: {n} samples from {prep.source_desc}, T={g.timesteps}, "
          f"{len(g.populations)} populations, {len(g.readouts)} readouts")
    print(f"{'target':<12}{'accuracy':>10}{'spikes':>12}{'syn. events':>14}{'wall s':>9}")
    for t, r in results.items():
        acc = accuracy(g, r, prep.labels)
        acc_s = f"{acc * 100:.2f}%" if acc is not None else "-"
        spk = sum(int(s.sum()) for s in r.spikes.values())
        ev = r.counters.get("synaptic_events", "-")
        print(f"{t:<12}{acc_s:>10}{spk:>12}{ev!s:>14}{walls[t]:>9.2f}")
    if not mism:
        nodes = len(g.populations) + len(g.readouts)
        print(f"spike-exact: 0 mismatches across {len(targets)} targets, {n} samples, "
              f"{nodes} records each")
        return 0
    print(f"MISMATCH: {len(mism)} record(s) differ")
    first = mism[0]
    print("first divergence: " + first.describe())
    if first.sample >= 0:
        one = prep.inputs[first.sample : first.sample + 1]
        involved = list(first.values)
        states, _ = run_targets(g, one, involved, record_state=True)
        shifted = Mismatch(first.kind, first.node, 0, first.timestep, first.neuron,
                           first.values, first.count)
        rep = neuron_state_report(g, shifted, states)
        if rep:
            print(rep.replace("at sample 0", f"at sample {first.sample}"))
    for m in mism[1:]:
        print("  also: " + m.describe())
    return 1


if __name__ == "__main__":
    from core.cli import run_cli

    sys.exit(run_cli("targets.verify", main))
