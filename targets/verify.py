"""N-way spike equivalence: run one graph on several targets, demand identical records.

    python -m targets.verify model.nir --targets torch_ref,event_sim,lava --samples 100

Every population's spike record and every readout record must be equal on all targets (records
are already aligned for each target's latency; see targets/base.py). On the first difference the
report names (sample, timestep, population, neuron) and that neuron's u, v and input on each
target, and the command exits 1. ``--json`` prints the same summary as one JSON object;
``--record out.npz`` saves every target's records in one file (layout: targets/records.py).

Target modules are imported by name, only when run (:data:`TARGETS`): a comparison of
event_sim and Lava never loads torch.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import sys
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from core import fixedpoint as fx
from core.cli import print_json, progress_bar, run_cli
from core.errors import UserError
from core.graph import QGraph
from targets.base import OVERFLOW_PREFIX, RunResult, overflow_warning
from targets.cli import (
    Prepared,
    accuracy,
    add_common_args,
    dt_summary,
    finish,
    prepare,
    record_extra,
    reset_summary,
    reset_text,
    run_warnings,
    silent_populations,
)
from targets.records import save_records
from targets.reference.report import (
    add_reference_args,
    check_reference_args,
    print_reference,
    reference_report,
    run_reference,
)
from targets.report import chip_section
from targets.shard import ShardSpec, client_for, merge_results, run_sharded

# The registry: target name -> module with run(graph, inputs, *, record_state, progress).
# Adding a target is one module and one entry. Modules are imported when run, by name, so that
# a run without torch_ref never imports torch (the Lava environment has none).
TARGETS = {
    "torch_ref": "targets.torch_ref",
    "event_sim": "targets.event_sim",
    "lava": "targets.loihi",
    "onnx_rt": "targets.onnx_rt",  # the ONNX step graph in onnxruntime (docs/onnx.md)
}


def get_target(name: str) -> ModuleType:
    """The module of target ``name`` (imported on first use).

    Raises:
        UserError: ``name`` is not in :data:`TARGETS`.
    """
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
                record_state: bool = False, progress: bool = False,
                shard: ShardSpec | None = None, estimate: bool = False,
                ) -> tuple[dict[str, RunResult], dict[str, float]]:
    """Run ``inputs`` [N, T, *input_shape] on each target in turn.

    Returns (target -> its run, target -> wall seconds). ``progress``: let each target draw its
    bar (pass :func:`core.cli.wants_progress`'s answer). ``shard``: split the samples across
    dask workers (``--workers``/``--cluster``, targets/shard.py; one cluster for every target);
    the merged records are those of one run. ``estimate``: before a long Lava run, time its
    first sample and say on stderr how long the rest will take when that is more than
    :data:`ESTIMATE_SAY_S` (:func:`lava_estimate`). Raises ``UserError`` for an unknown target
    and whatever a target raises for inputs it refuses.
    """
    results: dict[str, RunResult] = {}
    walls: dict[str, float] = {}
    sharded = shard is not None and shard.active
    for t in targets:
        get_target(t)  # an unknown name fails before any cluster starts
    with (client_for(shard) if sharded else contextlib.nullcontext()) as client:
        workers = (len(client.scheduler_info().get("workers", {})) or 1) if sharded else 1
        for t in targets:
            mod = get_target(t)
            t0 = time.perf_counter()
            first: RunResult | None = None
            x = inputs
            if t == "lava" and estimate and len(inputs) > ESTIMATE_MIN_SAMPLES:
                first, est = lava_estimate(graph, inputs, record_state=record_state,
                                           workers=workers)
                if est > ESTIMATE_SAY_S:
                    print(f"targets.verify: Lava will take about {_duration(est)} for "
                          f"{len(inputs)} samples (timed on the first sample"
                          f"{f', {workers} workers' if workers > 1 else ''})",
                          file=sys.stderr, flush=True)
                x = inputs[1:]
            if sharded:
                with progress_bar(len(x), desc=t, unit="sample", enabled=progress) as bar:
                    r = run_sharded(t, graph, x, shard, client=client, on_samples=bar.update,
                                    record_state=record_state)
            else:
                r = mod.run(graph, x, record_state=record_state, progress=progress)
            results[t] = r if first is None else merge_results([first, r])
            walls[t] = time.perf_counter() - t0
    return results, walls


# A Lava run of more samples than this is preceded by a timed first sample (lava_estimate);
# the estimate is said when it exceeds ESTIMATE_SAY_S seconds ("more than a few minutes").
ESTIMATE_MIN_SAMPLES = 10
ESTIMATE_SAY_S = 120.0


def lava_estimate(graph: QGraph, inputs: np.ndarray, *, record_state: bool = False,
                  chunk: int = 100, workers: int = 1) -> tuple[RunResult, float]:
    """Run the first sample of ``inputs`` on Lava and estimate the seconds all of them take.

    Returns (the first sample's run, which the caller merges with the rest's; the estimate).
    The estimate: one worker start (the first sample's wall time beyond building, compiling
    and stepping its network) plus, per ``chunk``-sample network, its build and compile time,
    plus every step at the first run's seconds per step; divided over ``workers``.
    """
    from targets import loihi

    t0 = time.perf_counter()
    first = loihi.run(graph, inputs[:1], record_state=record_state, chunk=chunk)
    wall = time.perf_counter() - t0
    c = first.counters
    per_net = c["lava_build_s"] + c["lava_compile_s"]
    startup = max(0.0, wall - per_net - c["lava_run_s"])
    per_step = c["lava_run_s"] / max(c["lava_steps"], 1)
    n = len(inputs)
    nets = -(-n // chunk)
    steps = n * graph.timesteps + nets * graph.depth
    est = startup + (nets * per_net + steps * per_step) / max(workers, 1)
    return first, est


def _duration(s: float) -> str:
    """``"3 min"``, ``"2 h 05 min"``: a duration for people."""
    m = round(s / 60)
    return f"{m} min" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def verify_summary(prep: Prepared, results: dict[str, RunResult], walls: dict[str, float],
                   mismatches: list[Mismatch], state_report: str | None) -> dict[str, Any]:
    """The fields of verify's summary, as the table shows them (JSON-ready).

    ``accuracy`` is a fraction (0..1) or None; ``mismatches`` lists every differing record's
    first difference (sample/timestep/neuron -1 when the record shapes differ).
    """
    g = prep.graph
    per_target = {}
    for t, r in results.items():
        per_target[t] = {
            "accuracy": accuracy(g, r, prep.labels),
            "spikes": sum(int(s.sum()) for s in r.spikes.values()),
            "synaptic_events": r.counters.get("synaptic_events"),
            **_overflow_fields(r),
            "wall_s": walls[t],
        }
    first = next(iter(results.values()), None)
    silent_syn = getattr(prep.report, "silent_synapses", None)
    warnings = run_warnings(prep, first)  # the first target's overflow among them
    ref_counts = _overflow_fields(first)["overflow"]
    for t, r in list(results.items())[1:]:  # a target that counts differently says so too
        counts = _overflow_fields(r)["overflow"]
        if counts and ref_counts and counts != ref_counts:
            warnings.append(overflow_warning(r.counters, t) or
                            f"{t}: no overflow event, unlike {next(iter(results))}")
    return {
        "samples": len(prep.inputs), "source": prep.source_desc, "timesteps": g.timesteps,
        "dt": dt_summary(g), "reset": reset_summary(g), "reset_line": reset_text(g),
        "populations": len(g.populations), "readouts": len(g.readouts),
        "targets": per_target,
        "spike_exact": not mismatches,
        "records_compared": len(g.populations) + len(g.readouts),
        "mismatches": [dataclasses.asdict(m) for m in mismatches],
        "first_divergence_state": state_report,
        "record": prep.record,
        "silent_populations": [] if first is None else silent_populations(first),
        "silent_synapses": silent_syn() if silent_syn else [],
        "warnings": warnings,
    }


def _overflow_fields(r: RunResult | None) -> dict[str, Any]:
    """A target's overflow counters for the summary: ``overflow_events`` (total; None for a
    target that does not count them) and ``overflow`` (``overflow/<kind>/<population>`` ->
    events, every key the target reports)."""
    counts = {k: int(v) for k, v in (r.counters if r else {}).items()
              if k.startswith(OVERFLOW_PREFIX)}
    return {"overflow_events": sum(counts.values()) if counts else None, "overflow": counts}


def _print_table(s: dict[str, Any], mismatches: list[Mismatch]) -> None:
    print(f"verify: {s['samples']} samples from {s['source']}, T={s['timesteps']}, "
          f"{s['populations']} populations, {s['readouts']} readouts")
    if s["dt"]["value"] is not None:
        print(f"dt: {s['dt']['value']:g} s ({s['dt']['detail']})")
    if s.get("reset_line"):
        print(s["reset_line"])
    print(f"{'target':<12}{'accuracy':>10}{'spikes':>12}{'syn. events':>14}{'overflow':>10}"
          f"{'wall s':>9}")
    for t, r in s["targets"].items():
        acc_s = f"{r['accuracy'] * 100:.2f}%" if r["accuracy"] is not None else "-"
        ev = "-" if r["synaptic_events"] is None else r["synaptic_events"]
        ov = "-" if r["overflow_events"] is None else r["overflow_events"]
        print(f"{t:<12}{acc_s:>10}{r['spikes']:>12}{ev!s:>14}{ov!s:>10}{r['wall_s']:>9.2f}")
    if not mismatches:
        print(f"spike-exact: 0 mismatches across {len(s['targets'])} targets, {s['samples']} "
              f"samples, {s['records_compared']} records each")
    else:
        print(f"MISMATCH: {len(mismatches)} record(s) differ")
        print("first divergence: " + mismatches[0].describe())
        if s["first_divergence_state"]:
            print(s["first_divergence_state"])
        for m in mismatches[1:]:
            print("  also: " + m.describe())
    if s["record"]:
        print(f"records of {', '.join(s['targets'])} written to {s['record']}")


def _first_divergence_state(prep: Prepared, first: Mismatch) -> str | None:
    """Re-run the first differing sample with state recording on the targets involved."""
    if first.sample < 0:
        return None
    one = prep.inputs[first.sample : first.sample + 1]
    states, _ = run_targets(prep.graph, one, list(first.values), record_state=True)
    shifted = dataclasses.replace(first, sample=0)
    rep = neuron_state_report(prep.graph, shifted, states)
    return rep.replace("at sample 0", f"at sample {first.sample}") if rep else None


def main(argv: list[str] | None = None) -> int:
    """``python -m targets.verify``: exit 0 when every target gives the same records, 1 on a
    difference, 2 on bad input."""
    ap = argparse.ArgumentParser(
        prog="python -m targets.verify",
        description="Run one graph on several targets and check that every population emits "
        "exactly the same spikes (and every readout the same integers) on all of them. Exit 1 "
        "on the first difference, with that neuron's state on each target. --record saves "
        "every target's records in one .npz: '<target>/spikes/<population>', "
        "'<target>/readouts/<readout>', '<target>/counters', '<target>/scores', plus 'targets' "
        "(names in run order) and 'labels' (full layout: targets/records.py).",
    )
    add_common_args(ap)
    ap.add_argument("--targets", default="torch_ref,event_sim,lava",
                    help="comma-separated; the first is compared with the others (and is the "
                    f"chip --reference compares with) (known: {', '.join(TARGETS)})")
    add_reference_args(ap)
    args = ap.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if len(targets) < (1 if args.reference else 2):
        raise UserError("--targets needs at least two targets to compare (one with --reference)")
    if len(set(targets)) != len(targets):
        raise UserError(f"--targets names a target twice: {args.targets}")
    for t in targets:
        if t not in TARGETS:
            raise UserError(f"unknown target {t!r}; known: {', '.join(TARGETS)}")
    ref_options = check_reference_args(args)
    prep = prepare(args)
    # the reference first: a framework that refuses the graph stops here, before any target
    ref = run_reference(args, prep.graph, prep.inputs, ref_options) if args.reference else None
    g = prep.graph
    results, walls = run_targets(g, prep.inputs, targets, progress=prep.progress,
                                 shard=prep.shard, estimate=True)
    mism = compare(g, results)
    if prep.record:
        extra: dict[str, Any] = {}
        for t, r in results.items():
            extra.update({f"{t}/{k}": v for k, v in record_extra(g, None, r).items()})
        if prep.labels is not None:
            extra["labels"] = prep.labels
        save_records(prep.record, results, extra)
    state = _first_divergence_state(prep, mism[0]) if mism else None
    summary = verify_summary(prep, results, walls, mism, state)
    # the chip report's short form (targets.report): cores, chips, energy/latency estimate
    summary["chip_report"] = chip_section(g, prep.inputs, results)
    if ref is not None:  # the chip (first target) against the reference; not an exit code
        summary["reference"] = reference_report(args, prep, ref, results[targets[0]], targets[0],
                                                get_target(targets[0]).run)
    summary["plots"] = _write_plots(prep, results, targets)
    if prep.as_json:
        print_json(summary)
    else:
        _print_table(summary, mism)
        print(summary["chip_report"]["text"])
        if ref is not None:
            print_reference(summary["reference"])
        for path in summary["plots"]:
            print(f"plot written to {path}")
    return finish("targets.verify", prep, summary["warnings"], 1 if mism else 0)


def _write_plots(prep: Prepared, results: dict[str, RunResult], targets: list[str]
                 ) -> list[str]:
    """With ``--plot DIR``: the first target's raster.png and rates.png, and for every other
    target whose spikes differ from the first's, divergence_<target>.png (differing entries
    per step and population, first divergence named). The reference's agreement.png and
    reference_raster.png are its report's (``reference.plots``). Returns the paths."""
    if prep.plot is None:
        return []
    from core.plots import divergence_plot, rate_histograms, spike_rasters

    first = results[targets[0]]
    out = [str(spike_rasters(prep.plot / "raster.png", first.spikes,
                             title=f"verify, {targets[0]}:")),
           str(rate_histograms(prep.plot / "rates.png", first.spikes,
                               title=f"verify, {targets[0]}, {len(prep.inputs)} sample(s):"))]
    for t in targets[1:]:
        other = results[t].spikes
        if any(k in other and not np.array_equal(v, other[k]) for k, v in first.spikes.items()):
            out.append(str(divergence_plot(prep.plot / f"divergence_{t}.png", first.spikes,
                                           other, names=(targets[0], t), title="verify:")))
    return out


if __name__ == "__main__":
    sys.exit(run_cli("targets.verify", main))
