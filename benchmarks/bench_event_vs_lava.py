"""Throughput of our event-driven simulator against Lava, on the same model and the same inputs.

    .venv/bin/python benchmarks/bench_event_vs_lava.py [model.nir] --samples 200 [--json out.json]

Without a model it builds a seeded random 784-256-10 spiking MLP (T=4, Bernoulli input spikes).
With a model, inputs come from the dataset recorded in the graph (as for every target's CLI),
from ``--input x.npy``, or, failing both, from seeded random input of the right kind.
Both targets get the identical integer graph and inputs; the benchmark also checks that their
records are identical. See benchmarks/README.md for what the numbers mean. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.graph import Dense, InputSpec, LIFPopulation, QGraph, Readout  # noqa: E402
from targets import event_sim, loihi  # noqa: E402


def random_mlp(seed: int = 0, timesteps: int = 4, sizes=(784, 256, 10)) -> QGraph:
    """A seeded random spiking MLP with Loihi-valid integers (even weights in [-254, 254])."""
    rng = np.random.default_rng(seed)

    def weights(n_out: int, n_in: int) -> np.ndarray:
        w = np.round(rng.normal(0.0, 30.0, (n_out, n_in)))
        return (2 * np.clip(w, -127, 127)).astype(np.int64)

    n_in, n_hidden, n_out = sizes
    g = QGraph(
        InputSpec((n_in,)),
        {"hidden": LIFPopulation("hidden", (n_hidden,), du=2048, dv=512, vth=1000,
                                 bias_mant=rng.integers(-8, 9, n_hidden), bias_exp=0)},
        {"output": Readout("output", (n_out,))},
        [Dense("fc1", "input", "hidden", weights(n_hidden, n_in)),
         Dense("fc2", "hidden", "output", weights(n_out, n_hidden))],
        timesteps=timesteps,
        metadata={"producer": "benchmarks.bench_event_vs_lava random_mlp"},
    )
    g.validate()
    return g


def random_inputs(graph: QGraph, n: int, rate: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    shape = (n, graph.timesteps, *graph.input.shape)
    x = (rng.random(shape) < rate).astype(np.int64)
    if graph.input.kind == "graded":
        x *= rng.integers(1, graph.input.max_value + 1, shape)
    return x


def load_model(args: argparse.Namespace) -> tuple[QGraph, np.ndarray, str]:
    from core.errors import UserError
    from targets.cli import add_common_args, prepare

    ap = argparse.ArgumentParser()
    add_common_args(ap)
    argv = [args.model, "--samples", str(args.samples)]
    if args.input:
        argv += ["--input", args.input]
    try:
        prep = prepare(ap.parse_args(argv))
        return prep.graph, np.asarray(prep.inputs), prep.source_desc
    except UserError as e:
        if args.input:
            raise
        from convert import load_graph

        graph, _ = load_graph(args.model)
        x = random_inputs(graph, args.samples, args.rate, args.seed)
        return graph, x, f"random input, rate {args.rate} ({e})"


def same_records(a, b) -> bool:
    return all(np.array_equal(a.spikes[k], b.spikes[k]) for k in a.spikes) and all(
        np.array_equal(a.readouts[k], b.readouts[k]) for k in a.readouts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", help="NIR file (default: random 784-256-10 MLP)")
    ap.add_argument("--samples", type=int, default=200, help="samples to run (default 200)")
    ap.add_argument("--input", help="inputs .npy [sample, timestep, *input_shape] for the model")
    ap.add_argument("--timesteps", type=int, default=4, help="T of the random MLP (default 4)")
    ap.add_argument("--rate", type=float, default=0.15,
                    help="input spike probability of random inputs (default 0.15)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lanes", default="1",
                    help="event_sim lanes, comma-separated to time several settings, e.g. 1,16 "
                    "(independent timelines side by side, identical records; default 1). "
                    "Ratios are against the first.")
    ap.add_argument("--chunk", type=int, default=100,
                    help="Lava: samples per built network (targets.loihi.run's chunk)")
    ap.add_argument("--no-lava", action="store_true", help="only time event_sim")
    ap.add_argument("--json", metavar="out.json", help="also write the numbers as JSON")
    args = ap.parse_args(argv)
    if args.samples <= 0:
        ap.error("--samples must be positive")

    if args.model:
        graph, x, source = load_model(args)
        model = args.model
    else:
        graph = random_mlp(args.seed, args.timesteps)
        x = random_inputs(graph, args.samples, args.rate, args.seed)
        model, source = "random 784-256-10 MLP", f"random Bernoulli input, rate {args.rate}"
    n, t_steps = len(x), graph.timesteps

    try:
        lane_settings = [int(v) for v in args.lanes.split(",")]
    except ValueError:
        ap.error("--lanes takes integers, e.g. 1 or 1,16")
    if any(v < 1 for v in lane_settings):
        ap.error("--lanes must be at least 1")

    out: dict = {
        "model": model, "inputs": source, "samples": n, "timesteps": t_steps,
        "machine": f"{platform.machine()} {platform.processor() or ''}, "
                   f"{os.cpu_count()} CPUs".strip(),
        "python": platform.python_version(), "event_sim": [],
    }
    rows: list[tuple[str, float]] = []
    ev = None
    for lanes in lane_settings:
        t0 = time.perf_counter()
        res = event_sim.run(graph, x, lanes=lanes)
        wall = time.perf_counter() - t0
        if ev is not None and not same_records(ev, res):
            raise AssertionError(f"event_sim with {lanes} lanes gave different records")
        if ev is None:
            ev = res
        c = res.counters
        out["event_sim"].append({
            "lanes": c["lanes"], "wall_s": wall, "samples_per_s": n / wall,
            "synaptic_events": c["synaptic_events"], "events_per_sample": c["synaptic_events"] / n,
            "events_per_s": c["synaptic_events"] / wall, "ac": c["ac"], "mac": c["mac"],
            "spike_rate": {p: float(s.mean()) for p, s in res.spikes.items()},
        })
        rows.append((f"event_sim (lanes={c['lanes']})", wall))
    assert ev is not None
    ev_wall = rows[0][1]
    if not args.no_lava:
        t0 = time.perf_counter()
        lv = loihi.run(graph, x, chunk=args.chunk)
        lava_total = time.perf_counter() - t0
        lc = lv.counters
        out["lava"] = {"wall_s_with_subprocess": lava_total,
                       "records_identical_to_event_sim": same_records(ev, lv)}
        if "lava_wall_s" in lc:
            run_s, build_s = float(lc["lava_wall_s"]), float(lc.get("lava_build_s", 0.0))
            out["lava"].update(run_s=run_s, build_s=build_s)
            rows += [("lava: run only", run_s), ("lava: build + run", run_s + build_s)]
        rows.append(("lava: incl. subprocess", lava_total))
    # how many times longer each timing is than the first event_sim setting
    out["relative_to_first_event_sim"] = {name: wall / ev_wall for name, wall in rows}

    print(f"model:   {model}\ninputs:  {source}\nsamples: {n}, T={t_steps}, "
          f"graph depth {graph.depth}")
    print(f"{'target':<26}{'wall s':>10}{'samples/s':>12}{'x time of first':>17}")
    for name, wall in rows:
        print(f"{name:<26}{wall:>10.2f}{n / wall:>12.1f}{wall / ev_wall:>17.2f}")
    for e in out["event_sim"]:
        print(f"event_sim lanes={e['lanes']}: {e['synaptic_events']} synaptic events "
              f"({e['events_per_sample']:.0f}/sample, AC {e['ac']}, MAC {e['mac']}), "
              f"{e['events_per_s']:.3e} events/s")
    rates = ", ".join(f"{p} {r:.3f}" for p, r in out["event_sim"][0]["spike_rate"].items())
    print(f"spike rate per neuron and step: {rates}")
    if "lava" in out:
        same = out["lava"]["records_identical_to_event_sim"]
        print(f"Lava records identical to event_sim (spikes and readouts): "
              f"{'yes' if same else 'NO'}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"written to {args.json}")
    return 0 if out.get("lava", {}).get("records_identical_to_event_sim", True) else 1


if __name__ == "__main__":
    sys.exit(main())
