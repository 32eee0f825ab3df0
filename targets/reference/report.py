"""``--reference`` for ``python -m targets.verify``: run the reference, compare it with the chip,
attribute the differences, print / return the report and draw the plots.

    python -m targets.verify model.nir --input x.npy --dt 1e-4 --targets torch_ref \\
        --reference snntorch [--reference-option reset_mechanism=subtract] [--labels y.npy] \\
        [--plot out/] [--json]

The reference runs first (a framework that refuses the graph stops the command before any
target runs); the deployed side is the first target of ``--targets`` (all targets agree when
verify reports no mismatch). Reference differences do not change verify's exit code.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from convert.float_sim import simulate as float_simulate
from core import fixedpoint as fx
from core.cli import check_writable
from core.errors import UserError
from targets.base import RunResult, readout_scores
from targets.reference import REFERENCES, parse_options, rules, simulate
from targets.reference import compare as cmp
from targets.reference._common import SPIKING, load, output_node
from targets.reference.float_ref import float_graph

# how many flipped samples the table lists (the JSON lists all)
SHOWN_FLIPS = 20


def add_reference_args(ap: argparse.ArgumentParser) -> None:
    """``--reference``, ``--reference-option`` and ``--checkpoint`` (``--plot DIR`` is every
    target command's, targets.cli: with ``--reference`` it also gets agreement.png and
    raster_reference.png)."""
    g = ap.add_argument_group("reference run: the chip against the framework the model came from")
    g.add_argument("--reference", default=None, choices=list(REFERENCES),
                   help="also simulate the graph with this reference and report, per "
                   "population, how many spikes the chip keeps and why the others differ: "
                   "float (our float simulation), checkpoint (the trained torch model, with "
                   "--checkpoint), or a framework loading the file with its own NIR importer")
    g.add_argument("--reference-option", action="append", default=None, metavar="KEY=VALUE",
                   help="an option of the reference's simulation (repeatable), e.g. snntorch's "
                   "reset_mechanism=subtract and reset_delay=true (what NIR does not record), "
                   "sinabs' min_v_mem=none, and dt=SECONDS for any reference (default: --dt, "
                   "else the deployed graph's)")
    g.add_argument("--checkpoint", default=None, metavar="ckpt.pt",
                   help="the checkpoint the graph was exported from (--reference checkpoint)")


def check_reference_args(args: argparse.Namespace) -> dict[str, Any]:
    """Check the reference arguments before any work; return the reference's options.

    Raises:
        UserError: an option without ``--reference``, an unknown option, ``--checkpoint``
            without ``--reference checkpoint`` (or the reverse), a ``--plot`` folder that cannot
            be written.
    """
    if args.reference is None:
        for flag, val in (("--reference-option", args.reference_option),
                          ("--checkpoint", args.checkpoint)):
            if val:
                raise UserError(f"{flag} goes with --reference")
        return {}
    opts = parse_options(args.reference, args.reference_option)
    if args.reference == "checkpoint":
        if not args.checkpoint:
            raise UserError("--reference checkpoint needs --checkpoint ckpt.pt")
        opts["checkpoint"] = args.checkpoint
    elif args.checkpoint:
        raise UserError("--checkpoint goes with --reference checkpoint")
    if args.plot:
        check_writable(Path(args.plot) / "agreement.png", "--plot")
    return opts


def reference_dt(args: argparse.Namespace, graph: Any) -> float | None:
    """The step (s) the reference runs with unless its option ``dt`` says: ``--dt``, else the
    one the deployed graph was imported with (recorded in its metadata), else None (the
    framework's own default)."""
    if args.dt is not None:
        return float(args.dt)
    dt = graph.metadata.get("dt")
    return None if dt is None else float(dt)


def deployed_reset(graph: Any) -> str | None:
    """The reset mode the deployed graph's populations were imported with (one for the
    whole graph, ``convert.nir_import.resolve_reset``), or None for a graph without
    populations."""
    modes = {p.reset for p in graph.populations.values()}
    return modes.pop() if len(modes) == 1 else graph.metadata.get("reset")


def run_reference(args: argparse.Namespace, graph: Any, inputs: np.ndarray,
                  options: dict[str, Any]) -> dict[str, Any]:
    """The reference's simulation of ``args.model`` on ``inputs`` [N, T, ...]: ``{"spikes":
    node -> [N, T, size], "membranes": node -> [N, T, size], "notes": [...], "output": name}``.

    ``graph`` is the deployed QGraph (its metadata gives the input scale our own graphs record).

    Raises:
        GraphError: the reference cannot import or run the graph.
    """
    membranes: dict[str, np.ndarray] = {}
    thresholds: dict[str, np.ndarray] = {}
    notes: list[str] = []
    scale = float(graph.metadata.get("input_scale", 1.0) or 1.0)
    n, t = inputs.shape[:2]
    inputs = inputs.reshape(n, t, *graph.input.shape)  # as the graph's Input node has it
    opts = dict(options)
    dt = opts.pop("dt") if "dt" in opts else reference_dt(args, graph)
    if args.reference == "float" and "reset" not in opts:  # our float model as deployed
        opts["reset"] = deployed_reset(graph)
    res = simulate(args.reference, args.model, inputs, dt, membranes=membranes,
                   notes=notes, thresholds=thresholds, input_scale=scale, **opts)
    return {"spikes": res, "membranes": membranes, "thresholds": thresholds, "notes": notes,
            "dt": dt,
            "output": output_node(load(args.model)), "options": options}


def _deployed_states(run: Callable[..., RunResult], graph: Any, inputs: np.ndarray,
                     samples: list[int]) -> tuple[dict[int, int], RunResult]:
    """Re-run ``samples`` with the target's ``run``, recording states: (sample -> row, run)."""
    rows = {s: i for i, s in enumerate(samples)}
    return rows, run(graph, inputs[samples], record_state=True)


def _nir_thresholds(model: str) -> dict[str, np.ndarray]:
    """The v_threshold of every spiking NIR node, flat (for the reference's v / threshold
    where the reference does not say at which threshold its modules fire)."""
    out = {}
    for k, node in load(model).nodes.items():
        if type(node).__name__ in SPIKING and hasattr(node, "v_threshold"):
            out[k] = np.asarray(node.v_threshold, dtype=np.float64).reshape(-1)
    return out


def _membranes_at(first: dict[str, Any], ref_v: np.ndarray | None,
                  thr: np.ndarray | None, dep_v: np.ndarray | None, vth: Any) -> dict[str, Any]:
    """Both sides' membrane around the first difference, as a fraction of the threshold
    (the chip's: integer v / (vth * 2**6); the reference's: its v / the threshold its module
    fires at, else the NIR node's v_threshold)."""
    s, t, i = first["sample"], first["step"], first["neuron"]
    steps = list(range(max(0, t - 1), t + 1))
    out: dict[str, Any] = {"steps": steps}
    if dep_v is not None:
        th_dep = np.asarray(vth, dtype=np.int64).reshape(-1)
        th_dep = int(th_dep[i if th_dep.size > 1 else 0]) << fx.VTH_SHIFT
        out["v_deployed"] = [float(dep_v[t_] / th_dep) for t_ in steps]
    if ref_v is not None:
        th = 1.0 if thr is None else float(thr[i if thr.size > 1 else 0])
        out["v_reference"] = [float(ref_v[s, t_, i] / th) for t_ in steps]
    return out


def reference_report(args: argparse.Namespace, prep: Any, ref: dict[str, Any],
                     deployed: RunResult, target: str, run: Callable[..., RunResult]
                     ) -> dict[str, Any]:
    """Compare the reference run ``ref`` (:func:`run_reference`) with ``deployed`` (the run
    of ``target`` on ``prep``'s inputs; ``run`` is that target's ``run(graph, inputs, *,
    record_state)``, called again on the samples whose membranes or saturation are checked).
    The report is JSON-ready (docs/foreign-nir.md, "Reference runs")."""
    g, x = prep.graph, prep.inputs
    spikes = ref["spikes"]
    out_name = ref["output"]
    pops: dict[str, dict[str, Any]] = {}
    not_compared: dict[str, str] = {}
    refs, deps = {}, {}
    for k, r in spikes.items():
        if k == out_name:
            continue
        if k not in deployed.spikes:
            not_compared[k] = "no deployed population of that name"
            continue
        d = np.asarray(deployed.spikes[k], np.int64)
        if d.shape != r.shape:
            not_compared[k] = f"shapes differ: reference {list(r.shape)}, chip {list(d.shape)}"
            continue
        refs[k], deps[k] = r, d
    for k in deployed.spikes:
        if k not in spikes:
            not_compared[k] = "the reference records no node of that name"
    order = [k for k in g.order() if k in refs]
    for k in order:
        pops[k] = cmp.agreement(refs[k], deps[k])
    # predictions: the single readout on the chip, the graph's output summed over time there
    dep_scores = readout_scores(g, deployed.readouts) if len(g.readouts) == 1 else None
    ref_out = spikes.get(out_name)
    ref_scores = None if ref_out is None else np.asarray(ref_out, np.float64).sum(axis=1)
    pred = cmp.predictions(ref_scores, dep_scores, prep.labels)
    # causes: our float model, imported as the deployed graph was (its dt, not a reference
    # option's), as deployed and under each alternative rule
    fg = float_graph(args.model, reference_dt(args, g), x.shape[1], deployed_reset(g))
    causes = _causes(fg, prep, refs, deps, run) if refs else None
    # both sides' membranes at each population's first difference
    firsts = sorted({p["first_difference"]["sample"] for p in pops.values()
                     if p["first_difference"]})
    if firsts:
        rows, states = _deployed_states(run, g, x, firsts)
        thr = {**_nir_thresholds(args.model), **ref["thresholds"]}
        for k, p in pops.items():
            f = p["first_difference"]
            if f is None:
                continue
            dv = states.states.get(k, (None, None))[1]
            dep_v = None if dv is None else np.asarray(dv)[rows[f["sample"]], :, f["neuron"]]
            vth = g.populations[k].vth
            f.update(_membranes_at(f, ref["membranes"].get(k), thr.get(k), dep_v, vth))
    n = len(x)
    changed = np.zeros(n, dtype=bool)
    for k in refs:
        changed |= (refs[k] != deps[k]).reshape(n, -1).any(axis=1)
    entries = sum(p["entries"] for p in pops.values())
    equal = sum(p["equal_entries"] for p in pops.values())
    rep = {
        "reference": args.reference, "options": {k: v for k, v in ref["options"].items()},
        "deployed": target, "dt": ref["dt"], "notes": ref["notes"], "populations": pops,
        "not_compared": not_compared,
        "equal_share": equal / entries if entries else None,
        "samples": n, "samples_differing": int(changed.sum()),
        "predictions": pred, "causes": causes,
        "plots": None,
    }
    if args.plot:
        from targets.reference.plot import write_plots

        rep["plots"] = write_plots(args.plot, rep, refs, deps, _plot_sample(rep, changed))
    return rep


def _plot_sample(rep: dict[str, Any], changed: np.ndarray) -> int:
    """The sample the raster shows: the first flipped one, else the first that differs."""
    pred = rep["predictions"]
    if pred and pred["flipped"]:
        return int(pred["flipped"][0])
    idx = np.flatnonzero(changed)
    return int(idx[0]) if idx.size else 0


def _causes(fg: Any, prep: Any, refs: dict[str, np.ndarray], deps: dict[str, np.ndarray],
            run: Callable[..., RunResult]) -> dict[str, Any]:
    """:func:`compare.attribute` with our float model ``fg``'s runs (as deployed and under
    each alternative rule) and the chip's v (saturation)."""
    x = prep.inputs
    floats = {k: s.astype(np.int64) for k, s in float_simulate(fg, x)[1].items() if k in refs}
    alts = {}
    # alternative rules only where our float model differs from the reference somewhere
    semantic = any(bool(np.any(floats[k] != refs[k])) for k in refs if k in floats)
    for r in rules.alternatives(fg) if semantic else []:
        sims = rules.simulate(fg, x, r)[0]
        alts[r.label] = {k: sims[k] for k in refs if k in sims}
    quant_samples = sorted({int(s) for k in refs if k in floats
                            for s in np.flatnonzero(((refs[k] != deps[k]) & (floats[k] == refs[k]))
                                                    .reshape(len(x), -1).any(axis=1))})
    saturated = None
    if quant_samples:
        _, states = _deployed_states(run, prep.graph, x, quant_samples)
        saturated = {}
        for k in refs:
            if k not in states.states:
                continue
            v = np.asarray(states.states[k][1])
            sat = np.zeros(refs[k].shape, dtype=bool)
            sat[quant_samples] = cmp.saturated_so_far(v, fx.V_LIMIT)
            saturated[k] = sat
    floats = {k: floats[k] for k in refs if k in floats}
    mode = deployed_reset(prep.graph) or "zero"
    roundings = None
    scales = {n: r.scale for n, r in (prep.report.populations.items() if prep.report else ())
              if getattr(r, "scale", None)}
    if quant_samples and scales:  # which rounding moves each quantization entry
        roundings = {label: {k: v for k, v in rules.simulate(g, x)[0].items() if k in refs}
                     for label, g in rules.rounded_graphs(fg, prep.graph, scales).items()}
    return cmp.attribute(refs, deps, floats, alts, saturated,
                         ours=f"ours (as deployed): reset {mode!r}: "
                         f"{fx.RESET_DESCRIPTIONS.get(mode, mode)}", roundings=roundings)


def print_reference(rep: dict[str, Any]) -> None:
    """The report as tables: per population, predictions, causes, the rules tried."""
    opts = ", ".join(f"{k}={v}" for k, v in rep["options"].items() if k != "checkpoint")
    print(f"reference {rep['reference']}{f' ({opts})' if opts else ''} vs {rep['deployed']}: "
          f"{rep['samples_differing']} of {rep['samples']} samples differ"
          + (f", {rep['equal_share'] * 100:.2f}% of spike entries equal"
             if rep["equal_share"] is not None else ""))
    for line in rep["notes"]:
        print(f"  note: {line}")
    w = max([14, *(len(k) + 2 for k in rep["populations"])])
    print(f"{'population':<{w}}{'neurons':>8}{'equal':>9}{'samples diff':>14}"
          f"{'spikes ref':>12}{'spikes chip':>13}  first difference (sample, step, neuron)")
    for k, p in rep["populations"].items():
        f = p["first_difference"]
        fd = "-"
        if f:
            fd = (f"({f['sample']}, {f['step']}, {f['neuron']}): ref {f['reference']}, "
                  f"chip {f['deployed']}")
            if "v_reference" in f or "v_deployed" in f:
                vs = []
                for side, key in (("ref", "v_reference"), ("chip", "v_deployed")):
                    if key in f:
                        vs.append(f"{side} " + "/".join(f"{v:.3f}" for v in f[key]))
                fd += f"; v/threshold at steps {f['steps']}: " + ", ".join(vs)
        print(f"{k:<{w}}{p['neurons']:>8}{p['equal_share'] * 100:>8.2f}%"
              f"{p['samples_differing']:>8} / {p['samples']:<4}{p['spikes_reference']:>12}"
              f"{p['spikes_deployed']:>13}  {fd}")
    for k, why in rep["not_compared"].items():
        print(f"  not compared: {k} ({why})")
    pred = rep["predictions"]
    if pred:
        line = f"predictions: {pred['agree']} of {rep['samples']} equal"
        if pred["accuracy_reference"] is not None:
            line += (f"; accuracy reference {pred['accuracy_reference'] * 100:.2f}%, chip "
                     f"{pred['accuracy_deployed'] * 100:.2f}%")
        print(line)
        if pred["flipped"]:
            shown = ", ".join(map(str, pred["flipped"][:SHOWN_FLIPS]))
            more = len(pred["flipped"]) - SHOWN_FLIPS
            print(f"  prediction flips in samples: {shown}{f' (+{more} more)' if more > 0 else ''}")
    c = rep["causes"]
    if c and c["causes"]:
        total = sum(r["entries"] for r in c["causes"])
        print(f"{'entries':>9}{'share':>8}  cause of differing entries (check that attributes it)")
        for r in c["causes"]:
            print(f"{r['entries']:>9}{r['entries'] / total * 100:>7.1f}%  {r['cause']}")
            print(f"{'':>19}({r['check']})")
            for label, n in (r.get("detail") or {}).items():  # which rounding, checked
                print(f"{'':>19}{n:>6}  {label}")
    if c and len(c["rules"]) > 1:
        print("our float model under each neuron rule, agreement with the reference:")
        for r in c["rules"]:
            print(f"  {r['equal_share'] * 100:>7.2f}%  {r['rule']}"
                  f"{'   <- attributed' if r['rule'] == c['best_rule'] else ''}")
    if rep["plots"]:
        print(f"plots written: {', '.join(rep['plots'])}")
