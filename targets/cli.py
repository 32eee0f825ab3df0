"""Command-line plumbing shared by every target's command: graph, inputs, summary, records.

Every target command (``targets.torch_ref``, ``targets.event_sim``, the Lava command,
``targets.verify``, ``targets.mfi``) takes :func:`add_common_args`, builds its run with
:func:`prepare` (which refuses a bad ``--record`` path and bad labels before any work), runs
it with :func:`run_target` (sharded across dask workers with ``--workers``/``--cluster``,
targets/shard.py; a long run in pieces of :func:`stream_chunk` samples, each piece's records
appended to ``--record`` and dropped, so that memory stays bounded) and a one-target command
prints its summary with :func:`report_run` (a table, or one JSON object with ``--json``).
numpy only (the Lava command runs it in the Lava environment).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convert import load_graph
from convert.neuron_params import RESET_HELP
from convert.quantize import add_calibration_args, calibrate_option
from core.cli import add_output_flags, check_writable, print_json, progress_bar, wants_progress
from core.datasets import CONVERTED_DATASETS, load_dataset
from core.encoding import encode_as_recorded
from core.errors import UserError
from core.fixedpoint import RESET_MODES
from core.graph import QGraph
from core.plots import add_plot_flag, check_plot_dir
from targets.base import (
    OVERFLOW_PREFIX,
    RunResult,
    overflow_events,
    overflow_warning,
    readout_scores,
)
from targets.records import RecordWriter, record_arrays, save_record
from targets.shard import ShardSpec, check_spec, client_for, run_sharded

# Samples drawn from a dataset when --samples is not given: enough for an accuracy to two
# digits, few enough to run in seconds on every target. A user's own --input file runs whole.
DEFAULT_DATASET_SAMPLES = 100

# Samples per piece of a long run (run_target): each piece's records are added to the summary
# and, with --record, appended to the file, then dropped, so memory holds one piece. torch_ref
# keeps a float64 activation per synapse for the whole piece (ds_resnet on MNIST: about 3 MB
# per sample), hence a few hundred; Lava starts one worker process per piece (seconds), hence
# more. benchmarks/memory.py measures the peak for 1,000 and 10,000 samples.
STREAM_CHUNK = {"lava": 2000}
STREAM_CHUNK_DEFAULT = 500


def stream_chunk(target: str) -> int:
    """Samples per piece of a long command-line run on ``target`` (:func:`run_target`)."""
    return STREAM_CHUNK.get(target, STREAM_CHUNK_DEFAULT)


@dataclass
class Prepared:
    """Everything a target command needs after parsing: the graph and the input batch."""

    graph: QGraph
    report: Any  # convert.load_graph's quantization report for this graph
    inputs: np.ndarray  # int [N, T, *input_shape]
    labels: np.ndarray | None  # int64 [N], one class index per sample, or None
    source_desc: str  # where the samples came from, for the summary's first line
    record: str | None = None  # --record path (already checked writable), or None
    as_json: bool = False  # --json: the summary is one JSON object on stdout
    progress: bool = False  # draw progress bars (not --no-progress, and stderr is a terminal)
    strict: bool = False  # --strict: any warning makes the command exit 1
    shard: ShardSpec = field(default_factory=ShardSpec)  # --workers / --cluster
    plot: Path | None = None  # --plot DIR (already checked writable), or None


@dataclass(frozen=True)
class SummaryRow:
    """One command-specific line of a run summary: ``key``/``value`` in the JSON object,
    ``line`` in the table."""

    key: str
    value: Any
    line: str


def add_common_args(ap: argparse.ArgumentParser, plot_help: str | None = None) -> None:
    """The arguments every target command shares (model, samples, inputs, labels, --record,
    --plot, --json, --no-progress/--quiet); ``plot_help``: what this command's ``--plot``
    draws (default: the run's raster and firing-rate histograms, :func:`write_run_plots`)."""
    ap.add_argument("model", help="NIR file: float (from convert.to_nir or another framework) "
                    "or integer (from convert.quantize); float graphs are quantized on load")
    ap.add_argument("--samples", type=int, default=None,
                    help="number of samples (default: all samples of --input from --offset on; "
                    f"{DEFAULT_DATASET_SAMPLES} from a dataset)")
    ap.add_argument("--offset", type=int, default=0, help="index of the first sample (default 0)")
    ap.add_argument("--dataset", default=None,
                    help="dataset to draw samples from (default: the one recorded in the graph)")
    ap.add_argument("--split", default="test", choices=("train", "val", "test"))
    ap.add_argument("--input", default=None, metavar="inputs.npy",
                    help="user-supplied input spikes/values [sample, timestep, *input_shape] "
                    "(for graphs without dataset metadata, e.g. exported by snnTorch or Norse)")
    ap.add_argument("--labels", default=None, metavar="labels.npy",
                    help="labels for --input, to report accuracy: integer class indices "
                    "[sample], exactly one per sample of the --input file")
    ap.add_argument("--timesteps", type=int, default=None,
                    help="timesteps per sample (default: the graph's, else the T axis of "
                    "--input)")
    ap.add_argument("--dt", type=float, default=None,
                    help="time step (s) of a foreign float NIR graph (default: the recorded "
                    "dt, else the one its exporter's convention pins, else 1e-4 with a "
                    "warning); the summary says which")
    ap.add_argument("--reset", default=None, choices=RESET_MODES, help=RESET_HELP)
    ap.add_argument("--input-bitplanes", action="store_true",
                    help="quantize a graded (pixel) input as 8 binary bit planes: the input "
                    "layer becomes multiplication-free (float graphs only)")
    add_calibration_args(ap)
    ap.add_argument("--record", default=None, metavar="out.npz",
                    help="save spike records [sample, timestep, *shape] and counters to this "
                    "file (layout: targets/records.py); a missing folder is created")
    ap.add_argument("--strict", action="store_true",
                    help="exit 1 on any warning (a guessed dt, a synapse that never changes "
                    "its target, a population that never spikes on the inputs, clipping, ...)")
    ap.add_argument("--workers", type=int, default=None, metavar="N",
                    help="split the samples into N contiguous shards run by N local worker "
                    "processes (dask.distributed; Lava: one Lava process per worker); the "
                    "records, spikes and event counts are those of one run "
                    "(docs/distributed.md)")
    ap.add_argument("--cluster", default=None, metavar="ADDRESS",
                    help="run the shards on a running dask cluster, e.g. tcp://host:8786 "
                    "(one shard per worker; each worker needs this repository and its .venv)")
    add_plot_flag(ap, plot_help or "spike rasters per population for the first sample "
                  "(raster.png) and firing-rate histograms (rates.png)")
    add_output_flags(ap)


def _load_npy(path: str, what: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such {what} file")
    try:
        return np.load(p, allow_pickle=False)
    except Exception as e:  # np.load raises several types for a file that is not .npy
        raise UserError(f"{p}: not a .npy array ({type(e).__name__}: {e})") from None


def check_labels(labels: np.ndarray, n_samples: int, source: str = "labels") -> np.ndarray:
    """Labels as int64 [n_samples]: integer class indices, exactly one per input sample.

    Integral floats (``3.0``) are converted; ``source`` names the file in messages.

    Raises:
        UserError: not one-dimensional, not ``n_samples`` long, not integral, or negative.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise UserError(f"{source}: labels must be one class index per sample, shape "
                        f"[{n_samples}]; got shape {list(y.shape)}")
    if len(y) != n_samples:
        raise UserError(f"{source}: {len(y)} labels for {n_samples} input samples; give "
                        "exactly one label per input sample")
    if np.issubdtype(y.dtype, np.floating):
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            raise UserError(f"{source}: labels must be integer class indices; got "
                            f"{y[bad][0].item()!r} (at index {int(np.argmax(bad))})")
    elif not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{source}: labels must be integer class indices; got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise UserError(f"{source}: labels must be class indices >= 0; got {int(y.min())}")
    return y


def _read_input(args: argparse.Namespace) -> np.ndarray | None:
    """The ``--input`` array [sample, timestep, *input_shape], or None without one.

    Raises:
        UserError: with ``--dataset``, a missing or unreadable file, or fewer than two axes.
    """
    if not args.input:
        return None
    if args.dataset:
        raise UserError("--dataset and --input exclude each other: give one source of "
                        "samples")
    x = _load_npy(args.input, "input")
    if x.ndim < 2:
        raise UserError(f"{args.input}: inputs must be [sample, timestep, *input_shape]; "
                        f"got shape {list(x.shape)}")
    return x


def _load_inputs(args: argparse.Namespace, graph: QGraph, x: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None, str]:
    if args.input:
        x = _read_input(args) if x is None else x
        labels = None
        if args.labels:
            labels = check_labels(_load_npy(args.labels, "labels"), len(x), args.labels)
        lo = args.offset
        if lo >= len(x):
            raise UserError(f"--offset {lo} is past the end of {args.input} ({len(x)} samples)")
        hi = len(x) if args.samples is None else min(lo + args.samples, len(x))
        return (x[lo:hi], None if labels is None else labels[lo:hi],
                f"{args.input} [{lo}:{hi}]")
    if args.labels:
        raise UserError("--labels goes with --input (dataset samples bring their own labels)")
    meta = graph.metadata
    dataset = args.dataset or meta.get("dataset")
    if not dataset:
        raise UserError("the graph records no dataset: pass --input inputs.npy "
                        "([sample, timestep, *input_shape]) or --dataset NAME")
    kind = meta.get("encoding")
    if kind not in ("direct", "rate", "frames"):
        raise UserError("the graph records no input encoding: pass --input inputs.npy")
    images, labels = load_dataset(str(dataset), args.split)
    samples = DEFAULT_DATASET_SAMPLES if args.samples is None else args.samples
    lo, hi = args.offset, min(args.offset + samples, len(images))
    if lo >= hi:
        raise UserError(f"--offset {lo} is past the end of {dataset}/{args.split} ({len(images)})")
    x = encode_as_recorded(meta, graph.timesteps, images[lo:hi], first_index=lo)
    desc = f"{dataset}/{args.split} [{lo}:{hi}] ({kind} encoding)"
    if str(dataset) in CONVERTED_DATASETS:  # never shown as recorded events
        desc += ", event streams converted from static images"
    return x, labels[lo:hi].astype(np.int64), desc


def prepare(args: argparse.Namespace) -> Prepared:
    """Graph and inputs for a target command, every argument checked before any work.

    Raises:
        UserError: a bad option, input, label or --record path (one line, exit 2 through
            :func:`core.cli.run_cli`).
        GraphError: the model file cannot be read, imported or quantized.
    """
    if args.samples is not None and args.samples <= 0:
        raise UserError("--samples must be positive")
    if args.offset < 0:
        raise UserError("--offset must be >= 0")
    record = getattr(args, "record", None)
    check_writable(record, "--record")  # a bad path fails now, not after the whole run
    plot = check_plot_dir(getattr(args, "plot", None))
    shard = check_spec(getattr(args, "workers", None), getattr(args, "cluster", None))
    user_x = _read_input(args)  # its T axis is the graph's T when the graph records none
    graph, report = load_graph(args.model, dt=args.dt, timesteps=args.timesteps,
                               reset=getattr(args, "reset", None),
                               input_bitplanes=getattr(args, "input_bitplanes", False),
                               input_timesteps=None if user_x is None else user_x.shape[1],
                               **calibrate_option(args))
    x, labels, desc = _load_inputs(args, graph, user_x)
    if labels is not None and len(graph.readouts) == 1:
        (r,) = graph.readouts.values()
        if labels.size and labels.max() >= r.size:
            raise UserError(f"label {int(labels.max())} is outside the {r.size} classes of "
                            f"readout {r.name!r}")
    return Prepared(graph, report, x, labels, desc, record,
                    as_json=bool(getattr(args, "json", False)), progress=wants_progress(args),
                    strict=bool(getattr(args, "strict", False)), shard=shard, plot=plot)


def dt_summary(graph: QGraph) -> dict[str, Any]:
    """The step the graph was imported with and where it came from: ``{"value": dt in s or
    None, "source": given / recorded / inferred / guessed / default or None, "detail": in
    words}`` (from the graph's metadata, see ``convert.nir_import.import_nir``)."""
    meta = graph.metadata
    dt = meta.get("dt")
    source = meta.get("dt_source") or ("recorded" if dt is not None else None)
    detail = meta.get("dt_detail") or ("recorded in the graph" if dt is not None else
                                       "not recorded")
    return {"value": None if dt is None else float(dt), "source": source, "detail": detail}


def reset_summary(graph: QGraph) -> dict[str, Any]:
    """The populations' reset modes: ``{"modes": {mode: [population, ...]}, "source": given /
    recorded / default or None}`` (``convert.nir_import.resolve_reset``). Every mode but
    ``zero`` runs a neuron program of our own on Loihi 2 (docs/contract.md, "Reset modes")."""
    modes: dict[str, list[str]] = {}
    for p in graph.populations.values():
        modes.setdefault(p.reset, []).append(p.name)
    return {"modes": modes, "source": graph.metadata.get("reset_source")}


def reset_text(graph: QGraph) -> str | None:
    """One line for a summary when some population does not reset to zero, else None."""
    r = reset_summary(graph)
    other = {m: ps for m, ps in r["modes"].items() if m != "zero"}
    if not other:
        return None
    src = f" ({r['source']})" if r["source"] else ""
    modes = ", ".join(f"{m} ({len(ps)} population{'s' * (len(ps) != 1)})"
                      for m, ps in other.items())
    return f"reset: {modes}{src}: a neuron program of our own on Loihi 2"


@dataclass
class RunTotals:
    """What a run's summary needs, without its records: a long run's pieces add up to it
    (:func:`run_target`), so its memory does not grow with the number of samples.

    ``neurons``/``spikes``/``entries``: per population, its size, its spike count and its
    number of record entries (samples x timesteps x neurons); ``scores``: int64 [N, classes]
    with one readout (else None); ``counters``: merged as targets/shard.py merges shards.
    """

    samples: int
    neurons: dict[str, int]
    spikes: dict[str, int]
    entries: dict[str, int]
    scores: np.ndarray | None
    counters: dict[str, Any]

    @classmethod
    def of(cls, graph: QGraph, result: RunResult) -> RunTotals:
        """The totals of one run's records."""
        n = next((len(s) for s in (*result.spikes.values(), *result.readouts.values())), 0)
        scores = (readout_scores(graph, result.readouts) if len(graph.readouts) == 1
                  else None)
        return cls(n, {p: int(s.shape[-1]) for p, s in result.spikes.items()},
                   {p: int(np.asarray(s).sum()) for p, s in result.spikes.items()},
                   {p: int(np.asarray(s).size) for p, s in result.spikes.items()},
                   None if scores is None else np.asarray(scores, dtype=np.int64),
                   dict(result.counters))

    def add(self, other: RunTotals) -> None:
        """Add the next piece's totals (its samples follow ours)."""
        from targets.shard import merge_counters

        self.samples += other.samples
        for p in other.spikes:
            self.neurons[p] = other.neurons[p]
            self.spikes[p] = self.spikes.get(p, 0) + other.spikes[p]
            self.entries[p] = self.entries.get(p, 0) + other.entries[p]
        if other.scores is not None:
            self.scores = (other.scores if self.scores is None
                           else np.concatenate([self.scores, other.scores]))
        self.counters = merge_counters([self.counters, other.counters])


def _totals(graph: QGraph, result: RunResult | RunTotals) -> RunTotals:
    return result if isinstance(result, RunTotals) else RunTotals.of(graph, result)


def silent_populations(result: RunResult | RunTotals) -> list[str]:
    """The populations that never spiked in ``result`` (any sample, any step)."""
    if isinstance(result, RunTotals):
        return [name for name, k in result.spikes.items() if not k]
    return [name for name, s in result.spikes.items() if not np.asarray(s).any()]


def run_warnings(prep: Prepared, result: RunResult | RunTotals | None) -> list[str]:
    """Every warning of a run: the quantization report's (import approximations, a guessed
    dt, synapses that never change their target, clipping, headroom), then one per population
    that never spiked on these inputs (``result``; None: a run without samples)."""
    out = list(getattr(prep.report, "warnings", None) or [])
    if result is not None:
        out += [f"population {name} never spiked on these {len(prep.inputs)} samples"
                for name in silent_populations(result)]
        overflow = overflow_warning(result.counters)
        if overflow:
            out.append(overflow)
    return out


def finish(prog: str, prep: Prepared, warnings: Sequence[str], code: int = 0) -> int:
    """Print each warning as one line on stderr (``prog: warning: ...``) and return the exit
    code: ``code``, or 1 with ``--strict`` when there is any warning."""
    for w in warnings:
        print(f"{prog}: warning: {w}", file=sys.stderr)
    return 1 if prep.strict and warnings and code == 0 else code


def accuracy(graph: QGraph, result: RunResult | RunTotals,
             labels: np.ndarray | None) -> float | None:
    """Fraction (0..1) of samples whose largest class score is their label; None without
    labels or when the graph does not have exactly one readout."""
    if labels is None or len(graph.readouts) != 1:
        return None
    scores = (result.scores if isinstance(result, RunTotals)
              else readout_scores(graph, result.readouts))
    return float(np.mean(np.argmax(scores, axis=1) == labels[: len(scores)]))


def record_extra(graph: QGraph, labels: np.ndarray | None, result: RunResult) -> dict[str, Any]:
    """The arrays saved next to a run's records: ``labels`` and, with one readout, ``scores``."""
    extra: dict[str, Any] = {}
    if labels is not None:
        extra["labels"] = labels
    if len(graph.readouts) == 1:
        extra["scores"] = readout_scores(graph, result.readouts)
    return extra


def save_run_record(prep: Prepared, result: RunResult | RunTotals) -> None:
    """Write ``result`` to ``prep.record`` (layout: targets/records.py), if one was asked for
    (a run in pieces, :class:`RunTotals`, has streamed its records there already)."""
    if prep.record and isinstance(result, RunResult):
        save_record(prep.record, result, record_extra(prep.graph, prep.labels, result))


def run_target(prep: Prepared, target: str, **options: Any) -> RunResult | RunTotals:
    """Run ``prep.inputs`` on ``target`` (a name of targets/shard.py's ``TARGET_MODULES``) with
    the target's ``run`` options (``record_state``, ``lanes``, ``chunk``, ...), as a command
    line asked: sharded across dask workers with ``--workers``/``--cluster``, and in pieces of
    :func:`stream_chunk` samples when there are more.

    Returns the run's :class:`RunResult` when it ran in one piece, else its
    :class:`RunTotals` (the records went to ``--record`` piece by piece; none are kept).
    Progress: the target's own bar for a run in one process, else one bar over the samples.

    Raises:
        Whatever the target's ``run`` raises (UserError, GraphError, ...), and
        EnvironmentMissingError when dask is missing or --cluster cannot be reached.
    """
    n = len(prep.inputs)
    piece = stream_chunk(target)
    sharded = prep.shard.active
    if n <= piece and not sharded:
        return _run_in_process(target, prep.graph, prep.inputs, prep.progress, options)
    ranges = [(lo, min(lo + piece, n)) for lo in range(0, n, piece)] or [(0, 0)]
    client_cm = client_for(prep.shard) if sharded else contextlib.nullcontext()
    writer_cm = (RecordWriter(prep.record, n) if prep.record and len(ranges) > 1
                 else contextlib.nullcontext())
    totals: RunTotals | None = None
    whole: RunResult | None = None
    with client_cm as client, writer_cm as writer, \
            progress_bar(n, desc=target, unit="sample", enabled=prep.progress) as bar:
        for lo, hi in ranges:
            x = prep.inputs[lo:hi]
            if sharded:
                r = run_sharded(target, prep.graph, x, prep.shard, on_samples=bar.update,
                                client=client, **options)
            else:
                r = _run_in_process(target, prep.graph, x, False, options, bar.update)
            if len(ranges) == 1:
                whole = r
                break
            if writer is not None:
                labels = None if prep.labels is None else prep.labels[lo:hi]
                arrays = record_arrays(r)
                arrays.pop("counters")
                arrays.update(record_extra(prep.graph, labels, r))
                writer.append(arrays)
            part = RunTotals.of(prep.graph, r)
            if totals is None:
                totals = part
            else:
                totals.add(part)
            del r  # the piece's records: gone before the next piece runs
        if writer is not None and totals is not None:
            writer.close({"counters": np.array(json.dumps(totals.counters))})
    return whole if whole is not None else totals  # type: ignore[return-value]


def _run_in_process(target: str, graph: QGraph, x: np.ndarray, progress: bool,
                    options: dict[str, Any], on_samples: Any = None) -> RunResult:
    """``target``'s ``run`` in this process; ``on_samples(k)`` told of the finished samples
    (as they complete, for a target that reports them: Lava; else once at the end)."""
    import importlib

    from targets.shard import TARGET_MODULES

    mod = importlib.import_module(TARGET_MODULES[target])
    if on_samples is not None and target == "lava":
        return mod.run(graph, x, on_samples=on_samples, **options)
    r = mod.run(graph, x, progress=progress, **options)
    if on_samples is not None:
        on_samples(len(x))
    return r


def run_summary(name: str, prep: Prepared, result: RunResult | RunTotals,
                wall_s: float) -> dict[str, Any]:
    """The fields of a run's summary, as :func:`report_run` prints them (JSON-ready).

    ``accuracy`` is a fraction (0..1) or None; ``rate_per_step`` is spikes per neuron per step.
    """
    n = len(prep.inputs)
    t = _totals(prep.graph, result)
    pops = {}
    for pop in t.spikes:
        pops[pop] = {"neurons": t.neurons[pop], "spikes": t.spikes[pop],
                     "rate_per_step": t.spikes[pop] / t.entries[pop] if t.entries[pop]
                     else 0.0}
    out: dict[str, Any] = {
        "target": name, "samples": n, "source": prep.source_desc,
        "timesteps": prep.graph.timesteps, "dt": dt_summary(prep.graph),
        "reset": reset_summary(prep.graph), "populations": pops,
    }
    for k in ("synaptic_events", "ac", "mac"):
        if k in result.counters:
            out[k] = int(result.counters[k])
    out["wall_s"] = wall_s
    out["samples_per_s"] = n / max(wall_s, 1e-9)
    out["accuracy"] = accuracy(prep.graph, t, prep.labels)
    out["record"] = prep.record
    out["overflow_events"] = sum(overflow_events(result.counters).values())
    out["overflow"] = {k: int(v) for k, v in result.counters.items()
                       if k.startswith(OVERFLOW_PREFIX)}
    out["silent_populations"] = silent_populations(t)
    silent_syn = getattr(prep.report, "silent_synapses", None)
    out["silent_synapses"] = silent_syn() if silent_syn else []
    out["warnings"] = run_warnings(prep, t)
    return out


def report_run(name: str, prep: Prepared, result: RunResult | RunTotals, wall_s: float,
               extra: Sequence[SummaryRow] = ()) -> int:
    """Save the records (``--record``) and print a one-target run's summary; return the exit
    code (0; 1 with ``--strict`` when there is a warning).

    The summary is a table, or with ``prep.as_json`` one JSON object on stdout with the same
    fields (:func:`run_summary`, then ``extra``'s keys). ``extra``: the command's own rows (the
    event simulator's events/s, Lava's steps/s), printed after the counters. Warnings
    (:func:`run_warnings`) are also printed on stderr, one line each.
    """
    save_run_record(prep, result)
    s = run_summary(name, prep, result, wall_s)
    s["plots"] = write_run_plots(name, prep, result)
    if prep.as_json:
        print_json({**s, **{row.key: row.value for row in extra}})
        return finish(name, prep, s["warnings"])
    n = s["samples"]
    print(f"{name}: {n} samples from {prep.source_desc}, T={s['timesteps']}, "
          f"dt={_dt_text(s['dt'])}")
    if (line := reset_text(prep.graph)) is not None:
        print(line)
    print(f"{'population':<16}{'neurons':>9}{'spikes':>12}{'rate/step':>11}")
    for pop, p in s["populations"].items():
        print(f"{pop:<16}{p['neurons']:>9}{p['spikes']:>12}{p['rate_per_step']:>11.4f}")
    for k in ("synaptic_events", "ac", "mac"):
        if k in s:
            print(f"{k:<16}{s[k]:>21}")
    print(overflow_line(s["overflow"]))
    print(f"{'wall time':<16}{wall_s:>20.2f}s  ({s['samples_per_s']:.1f} samples/s)")
    for row in extra:
        print(row.line)
    if s["accuracy"] is not None:
        print(f"accuracy: {s['accuracy'] * 100:.2f}% ({n} samples)")
    if prep.record:
        print(f"records written to {prep.record}")
    for path in s["plots"]:
        print(f"plot written to {path}")
    return finish(name, prep, s["warnings"])


def write_run_plots(name: str, prep: Prepared, result: RunResult | RunTotals) -> list[str]:
    """With ``--plot DIR``: write ``raster.png`` (the first sample's spikes per population)
    and ``rates.png`` (firing-rate histograms over every sample run) into DIR; returns the
    paths written ([] without --plot). A run streamed in pieces (:class:`RunTotals`) kept no
    spikes: nothing is drawn and a line on stderr says so."""
    if prep.plot is None:
        return []
    if not isinstance(result, RunResult) or not result.spikes or not len(prep.inputs):
        print(f"{name}: --plot: no spike records kept (a run streamed in pieces, or no "
              "sample): no raster drawn", file=sys.stderr)
        return []
    from core.plots import rate_histograms, spike_rasters

    title = f"{name}:"
    return [str(spike_rasters(prep.plot / "raster.png", result.spikes, title=title)),
            str(rate_histograms(prep.plot / "rates.png", result.spikes,
                                title=f"{title} {len(prep.inputs)} sample(s),"))]


def overflow_line(overflow: dict[str, int]) -> str:
    """The summary line of a run's overflow counters (``overflow/<kind>/<population>`` ->
    events): the total, and each nonzero count."""
    events = {k[len(OVERFLOW_PREFIX):]: n for k, n in overflow.items() if n}
    text = f"{'overflow events':<16}{sum(events.values()):>21}"
    return text + (f"  ({', '.join(f'{k} {n}' for k, n in events.items())})" if events else "")


def _dt_text(dt: dict[str, Any]) -> str:
    """``"0.0001 s (inferred from the file: ...)"`` for a summary's first line."""
    if dt["value"] is None:
        return "unknown"
    return f"{dt['value']:g} s ({dt['detail']})"
