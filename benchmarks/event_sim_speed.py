"""How fast event_sim runs, against Lava, and how its cost scales (issue 12, item 1 and 5).

    .venv/bin/python benchmarks/event_sim_speed.py                 # everything below
    .venv/bin/python benchmarks/event_sim_speed.py table --zoo runs/speed_zoo --lava-samples 4
    .venv/bin/python benchmarks/event_sim_speed.py activity   # docs/figures/event_sim_activity.png
    .venv/bin/python benchmarks/event_sim_speed.py size       # docs/figures/event_sim_size.png

``table``: for every zoo model trained briefly on MNIST (``--zoo DIR``: ``<model>.nir`` files;
missing ones are trained with ``--train``: one epoch on the first 3,000 training images, seed 0,
then exported) and for the digits goldens in tests/data: event_sim samples/s (best of
``--lanes``, best of ``--repeats`` runs, MNIST test images encoded as the graph records), Lava's
run loop samples/s on the first ``--lava-samples`` of the same inputs (``lava_wall_s``, the time
inside ``Network.run``; Lava's records are checked equal to event_sim's), their ratio, synaptic
events per second and per sample, and event_sim's peak memory over ``--mem-samples`` samples run
with :func:`targets.event_sim.iter_run` in chunks of ``--chunk`` (only the class scores kept;
tracemalloc's peak of every allocation during the run, numpy arrays included; the inputs are
made before and not counted). ``--baseline DIR`` also times another copy of the simulator
(``DIR/event_sim_old``, e.g. the package as committed before issue 12) for before/after.

``activity``: time per sample against events per sample at 10 input activity levels (a trained
model's MNIST images with each nonzero pixel kept with probability p; seeded random MLP with
Bernoulli spikes at rate p). ``size``: time per sample against network size at a fixed input
rate, for a dense MLP (events grow with the size) and one with a fixed fan-out per input
(events stay fixed, only the neurons grow); both fit ``time = a * events + b * neuron updates``.

Timings are CPU seconds of this process (``time.process_time``: on a shared machine, wall time
measures the other jobs too), except Lava's run loop, which runs in Lava's own processes and
reports wall time; the ratio therefore uses event_sim's wall time of the same best run. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.graph import Dense, InputSpec, LIFPopulation, QGraph, Readout  # noqa: E402
from targets import event_sim  # noqa: E402

ZOO = ("fc_snn", "conv_snn", "cml_net", "ds_resnet", "spiking_mlp", "cml_spikformer")
GOLDENS = ("fc_snn_digits", "conv_snn_digits", "cml_net_digits", "ds_resnet_digits",
           "spiking_mlp_digits")
FIGURES = ROOT / "docs" / "figures"


# ----------------------------------------------------------------------------------- models

def train_zoo_model(name: str, zoo: Path) -> Path:
    """Train ``name`` for one epoch on the first 3,000 MNIST training images (seed 0; ds_resnet
    in its fast config) and export it to ``zoo/<name>.nir``."""
    import torch

    from convert.to_nir import main as to_nir
    from train.checkpoint import save_checkpoint
    from train.loop import train_model

    torch.set_num_threads(1)
    config = None
    if name == "ds_resnet":
        from models.ds_resnet import fast_config

        config = fast_config((1, 28, 28), 10)
    ckpt = train_model(name, "mnist", 1, None, seed=0, limit=3000, eval_limit=200,
                       config=config, progress=False, threads=1, log=lambda s: None)
    ckpt.pop("resume", None)
    zoo.mkdir(parents=True, exist_ok=True)
    save_checkpoint(zoo / f"{name}.pt", ckpt)
    to_nir([str(zoo / f"{name}.pt"), "-o", str(zoo / f"{name}.nir"), "-q"])
    return zoo / f"{name}.nir"


def dataset_inputs(graph: QGraph, n: int, offset: int = 0) -> np.ndarray:
    """The first ``n`` test images of the graph's dataset, encoded as the graph records
    (uint8 when they fit: direct pixels and rate spikes do)."""
    from core.datasets import load_dataset
    from core.encoding import encode_as_recorded

    images, _ = load_dataset(graph.metadata["dataset"], "test")
    images = images[offset:offset + n]
    x = encode_as_recorded(graph.metadata, graph.timesteps, images, first_index=offset)
    return x.astype(np.uint8) if x.min() >= 0 and x.max() <= 255 else x


def random_mlp(sizes: tuple[int, ...], seed: int = 0, fanout: int | None = None,
               timesteps: int = 4) -> QGraph:
    """Seeded random spiking MLP (even 8-bit weights, small biases). ``fanout``: keep only that
    many random nonzero weights per source neuron of the first layer (fixed events per spike)."""
    rng = np.random.default_rng(seed)
    pops, syns = {}, []
    src = "input"
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        w = (2 * np.clip(np.round(rng.normal(0, 30 if fanout is None else 60, (n_out, n_in))),
                         -127, 127)).astype(np.int64)
        if fanout is not None and i == 0:
            keep = np.zeros_like(w, dtype=bool)
            for j in range(n_in):
                keep[rng.choice(n_out, min(fanout, n_out), replace=False), j] = True
            w = np.where(keep, w, 0)
        last = i == len(sizes) - 2
        tgt = "output" if last else f"h{i}"
        if not last:
            pops[tgt] = LIFPopulation(tgt, (n_out,), du=2048, dv=512, vth=1000,
                                      bias_mant=rng.integers(-8, 9, n_out), bias_exp=0)
        syns.append(Dense(f"fc{i}", src, tgt, w))
        src = tgt
    g = QGraph(InputSpec((sizes[0],)), pops, {"output": Readout("output", (sizes[-1],))}, syns,
               timesteps=timesteps, metadata={"producer": "benchmarks.event_sim_speed"})
    g.validate()
    return g


def bernoulli(graph: QGraph, n: int, rate: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n, graph.timesteps, *graph.input.shape)) < rate).astype(np.uint8)


# ---------------------------------------------------------------------------------- timing

def time_event_sim(graph: QGraph, x: np.ndarray, lanes: int, repeats: int,
                   module=event_sim) -> dict:
    """Best of ``repeats`` runs (CPU time) with the tables compiled beforehand, once (the
    compile step is timed apart: ``compile_s``). A ``module`` without ``compile_graph`` (a
    baseline copy from before it existed) is timed end to end, less its compile step timed
    alone."""
    module.run(graph, x[:2], lanes=min(lanes, 2))  # numba's cached kernels loaded
    t0 = time.process_time()
    compiled = (module.compile_graph(graph, module.DENSE_ROWS_MIN_DENSITY)
                if hasattr(module, "compile_graph") else
                module.build_synapses(graph, lanes, module.DENSE_ROWS_MIN_DENSITY))
    compile_s = time.process_time() - t0
    best = None
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        if hasattr(module, "compile_graph"):
            tl = module.simulate(graph, module.check_inputs(graph, x), lanes=lanes,
                                 compiled=compiled)
            res = module._result(tl)
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        else:
            res = module.run(graph, x, lanes=lanes)
            cpu = time.process_time() - c0 - compile_s
            wall = time.perf_counter() - w0 - compile_s
        if best is None or cpu < best["cpu_s"]:
            best = {"cpu_s": cpu, "wall_s": wall, "result": res}
    n = len(x)
    ev = best["result"].counters["synaptic_events"]
    best.update(lanes=lanes, samples=n, samples_per_s=n / best["cpu_s"],
                events=ev, events_per_sample=ev / n, events_per_s=ev / best["cpu_s"],
                neuron_updates=best["result"].counters["neuron_updates"], compile_s=compile_s)
    return best


def same_records(a, b, n: int | None = None) -> bool:
    sl = slice(None, n)
    return all(np.array_equal(a.spikes[k][sl], b.spikes[k][sl]) for k in b.spikes) and all(
        np.array_equal(a.readouts[k][sl], b.readouts[k][sl]) for k in b.readouts)


def peak_memory(graph: QGraph, x: np.ndarray, lanes: int, chunk: int) -> dict:
    """tracemalloc peak (MB) of a streamed run: iter_run in chunks, only the scores kept."""
    from targets.base import readout_scores

    tracemalloc.start()
    c0 = time.process_time()
    scores = []
    for _, r in event_sim.iter_run(graph, x, chunk=chunk, lanes=lanes):
        if len(graph.readouts) == 1:
            scores.append(readout_scores(graph, r.readouts))
    cpu = time.process_time() - c0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"samples": len(x), "chunk": chunk, "peak_mb": peak / 2**20, "cpu_s": cpu}


def lava_run_loop(graph: QGraph, x: np.ndarray) -> dict:
    from targets import loihi

    t0 = time.perf_counter()
    res = loihi.run(graph, x, chunk=len(x))
    total = time.perf_counter() - t0
    c = res.counters
    run_s = float(c["lava_wall_s"])
    return {"samples": len(x), "run_s": run_s, "build_s": float(c.get("lava_build_s", 0.0)),
            "total_s": total, "samples_per_s": len(x) / run_s, "result": res}


# ----------------------------------------------------------------------------------- table

def table(args: argparse.Namespace) -> dict:
    from convert import load_graph

    zoo = Path(args.zoo)
    models: list[tuple[str, Path]] = []
    for name in (args.models.split(",") if args.models else ZOO):
        path = zoo / f"{name}.nir"
        if not path.exists():
            if not args.train:
                print(f"skip {name}: {path} missing (pass --train to train it)", flush=True)
                continue
            print(f"training {name} (1 epoch, 3,000 MNIST images) ...", flush=True)
            train_zoo_model(name, zoo)
        models.append((f"{name}, MNIST", path))
    if not args.no_goldens:
        models += [(f"{g.replace('_digits', '')}, digits golden", ROOT / "tests/data" /
                    f"{g}.nir") for g in GOLDENS]
    baseline = None
    if args.baseline:
        sys.path.insert(0, str(Path(args.baseline)))
        import event_sim_old as baseline  # noqa: F811 (the copy under --baseline)

    lanes_list = [int(v) for v in args.lanes.split(",")]
    rows = []
    for label, path in models:
        graph, _ = load_graph(path)
        x = dataset_inputs(graph, args.samples)
        best = None
        for lanes in lanes_list:
            t = time_event_sim(graph, x, lanes, args.repeats)
            if best is not None and not same_records(best["result"], t["result"]):
                raise AssertionError(f"{label}: lanes={lanes} changed the records")
            if best is None or t["cpu_s"] < best["cpu_s"]:
                best = t
        row = {k: v for k, v in best.items() if k != "result"}
        row.update(model=label, path=str(path),
                   neurons=sum(p.size for p in graph.populations.values()),
                   synapses=len(graph.synapses), timesteps=graph.timesteps)
        if baseline is not None:
            old = min((time_event_sim(graph, x, int(lanes), 1, baseline)
                       for lanes in args.baseline_lanes.split(",")), key=lambda t: t["cpu_s"])
            if not same_records(old["result"], best["result"]):
                raise AssertionError(f"{label}: the baseline's records differ")
            row["baseline"] = {k: v for k, v in old.items() if k != "result"}
        if args.lava_samples:
            k = min(args.lava_samples, len(x))
            lv = lava_run_loop(graph, x[:k])
            row["lava"] = {k2: v for k2, v in lv.items() if k2 != "result"}
            row["lava"]["records_identical"] = same_records(best["result"], lv["result"], k)
            # per-sample run loop time over event_sim's per-sample wall time (same load)
            row["ratio_vs_lava"] = (lv["run_s"] / k) / (best["wall_s"] / len(x))
        if args.mem_samples:
            # as many samples as --mem-seconds allows at the measured rate, in whole chunks
            # (at least two), up to --mem-samples
            fit_n = int(best["samples_per_s"] * args.mem_seconds) // args.chunk * args.chunk
            xm = dataset_inputs(graph, min(args.mem_samples, max(2 * args.chunk, fit_n)))
            row["memory"] = peak_memory(graph, xm, best["lanes"], args.chunk)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items()}, default=float), flush=True)
    return {"rows": rows, "machine": machine(), "samples": args.samples,
            "lanes": lanes_list, "repeats": args.repeats}


def markdown(result: dict) -> str:
    head = ("| model | neurons | events/sample | event_sim samples/s | Lava run loop samples/s "
            "| event_sim / Lava | events/s | peak memory |")
    lines = [head, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["rows"]:
        lava = r.get("lava")
        lv = f"{lava['samples_per_s']:.2f} ({lava['samples']})" if lava else "—"
        ratio = f"{r['ratio_vs_lava']:.0f}×" if lava else "—"
        if lava and not lava["records_identical"]:
            ratio += " (records DIFFER)"
        mem = r.get("memory")
        mm = f"{mem['peak_mb']:.0f} MB ({mem['samples']:,})" if mem else "—"
        lines.append(f"| {r['model']} | {r['neurons']:,} | {r['events_per_sample']:.3g} | "
                     f"{r['samples_per_s']:.1f} (lanes {r['lanes']}) | {lv} | {ratio} | "
                     f"{r['events_per_s']:.2e} | {mm} |")
    if any("baseline" in r for r in result["rows"]):
        lines += ["", "| model | before: samples/s | after: samples/s | speed-up |",
                  "| --- | ---: | ---: | ---: |"]
        for r in result["rows"]:
            b = r.get("baseline")
            if b:
                lines.append(f"| {r['model']} | {b['samples_per_s']:.1f} | "
                             f"{r['samples_per_s']:.1f} | "
                             f"{r['samples_per_s'] / b['samples_per_s']:.1f}× |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ scaling

def fit(events: np.ndarray, updates: np.ndarray, seconds: np.ndarray) -> tuple[float, float]:
    """Least squares ``seconds = a * events + b * updates`` (both >= 0): ns per event, ns per
    neuron update."""
    from scipy.optimize import nnls

    (a, b), _ = nnls(np.stack([events, updates], 1), seconds)
    return float(a * 1e9), float(b * 1e9)


def activity(args: argparse.Namespace) -> dict:
    from convert import load_graph

    levels = np.linspace(0.1, 1.0, 10)
    series = {}
    path = Path(args.zoo) / "cml_net.nir"
    if path.exists():
        graph, _ = load_graph(path)
        base = dataset_inputs(graph, args.scale_samples)
        rng = np.random.default_rng(0)
        pts = []
        for p in levels:
            x = base * (rng.random(base.shape) < p)
            t = time_event_sim(graph, x, args.scale_lanes, args.repeats)
            pts.append((t["events_per_sample"], t["cpu_s"] / len(x), t["neuron_updates"] / len(x)))
        series["cml_net (trained, MNIST pixels kept with probability p)"] = pts
    graph = random_mlp((784, 1024, 10))
    pts = []
    for p in levels * 0.5:
        t = time_event_sim(graph, bernoulli(graph, args.scale_samples, p), args.scale_lanes,
                           args.repeats)
        pts.append((t["events_per_sample"], t["cpu_s"] / len(t["result"].readouts["output"]),
                    t["neuron_updates"] / args.scale_samples))
    series["random MLP 784-1024-10 (Bernoulli input, rate 0.05-0.5)"] = pts
    out = {"levels": levels.tolist(), "series": {}}
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, pts in series.items():
        ev, sec, upd = (np.array(c) for c in zip(*pts, strict=True))
        ns_ev, ns_upd = fit(ev, upd, sec)
        out["series"][name] = {"events_per_sample": ev.tolist(), "s_per_sample": sec.tolist(),
                               "neuron_updates_per_sample": upd.tolist(),
                               "ns_per_event": ns_ev, "ns_per_neuron_update": ns_upd}
        ax.plot(ev, sec * 1e3, "o-", label=f"{name}\n{ns_ev:.2f} ns/event + "
                f"{ns_upd:.1f} ns/neuron update")
    ax.set_xlabel("synaptic events per sample")
    ax.set_ylabel("CPU ms per sample (event_sim)")
    ax.set_title("event_sim: cost vs input activity (10 levels)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURES / "event_sim_activity.png", dpi=120)
    return out


def size(args: argparse.Namespace) -> dict:
    hidden = [256, 512, 1024, 2048, 4096, 8192]
    rate = 0.1
    out: dict = {"hidden": hidden, "rate": rate, "series": {}}
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, fanout in (("dense 784-H-10: events grow with H", None),
                          ("fan-out 64 per input, 784-H-10: events fixed", 64)):
        ev, sec, upd = [], [], []
        for h in hidden:
            g = random_mlp((784, h, 10), fanout=fanout)
            t = time_event_sim(g, bernoulli(g, args.scale_samples, rate), args.scale_lanes,
                               args.repeats)
            ev.append(t["events_per_sample"])
            sec.append(t["cpu_s"] / args.scale_samples)
            upd.append(t["neuron_updates"] / args.scale_samples)
        ns_ev, ns_upd = fit(np.array(ev), np.array(upd), np.array(sec))
        out["series"][label] = {"events_per_sample": ev, "s_per_sample": sec,
                                "neuron_updates_per_sample": upd, "ns_per_event": ns_ev,
                                "ns_per_neuron_update": ns_upd}
        ax.plot(hidden, np.array(sec) * 1e3, "o-",
                label=f"{label}\n({ns_ev:.2f} ns/event + {ns_upd:.1f} ns/neuron update)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("hidden neurons H")
    ax.set_ylabel("CPU ms per sample (event_sim)")
    ax.set_title(f"event_sim: cost vs network size (input rate {rate})")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURES / "event_sim_size.png", dpi=120)
    return out


def machine() -> dict:
    return {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "load_average": os.getloadavg()[0],
            "compiled_kernels": event_sim.kernels.COMPILED}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", nargs="*", default=["table", "activity", "size"],
                    choices=["table", "activity", "size"])
    ap.add_argument("--zoo", default="runs/speed_zoo",
                    help="folder of <model>.nir trained on MNIST (default runs/speed_zoo)")
    ap.add_argument("--train", action="store_true",
                    help="train and export the zoo models missing from --zoo (1 epoch, 3,000 "
                    "images each: minutes on a CPU)")
    ap.add_argument("--models", help=f"comma-separated subset of {','.join(ZOO)}")
    ap.add_argument("--no-goldens", action="store_true", help="skip the digits goldens")
    ap.add_argument("--samples", type=int, default=128, help="event_sim samples per model")
    ap.add_argument("--lanes", default="1,16,64", help="lane settings to try (best is kept)")
    ap.add_argument("--repeats", type=int, default=2, help="runs per setting (best is kept)")
    ap.add_argument("--lava-samples", type=int, default=4,
                    help="samples run on Lava per model (0: no Lava)")
    ap.add_argument("--mem-samples", type=int, default=10000,
                    help="samples of the streamed peak-memory run (0: none)")
    ap.add_argument("--mem-seconds", type=float, default=60,
                    help="fewer memory samples (whole chunks, at least 2) where --mem-samples "
                    "would take longer than this at the measured rate (default 60)")
    ap.add_argument("--chunk", type=int, default=1000, help="samples per streamed chunk")
    ap.add_argument("--scale-samples", type=int, default=256,
                    help="samples per point of the scaling plots")
    ap.add_argument("--scale-lanes", type=int, default=16)
    ap.add_argument("--baseline", metavar="DIR",
                    help="folder holding event_sim_old/ (a copy of the package as it was) to "
                    "time before/after")
    ap.add_argument("--baseline-lanes", default="1,16",
                    help="lane settings for the baseline, one run each (default 1,16)")
    ap.add_argument("--json", metavar="out.json", help="write every number as JSON")
    args = ap.parse_args(argv)
    out: dict = {"machine": machine()}
    if "table" in args.what:
        out["table"] = table(args)
        print(markdown(out["table"]))
    if "activity" in args.what:
        out["activity"] = activity(args)
        print(json.dumps(out["activity"], indent=1))
    if "size" in args.what:
        out["size"] = size(args)
        print(json.dumps(out["size"], indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
