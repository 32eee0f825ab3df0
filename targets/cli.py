"""Command-line plumbing shared by every target's command: graph, inputs, summary, records.

Every target command (``targets.torch_ref``, ``targets.event_sim``, the Lava command,
``targets.verify``, ``targets.mfi``) takes :func:`add_common_args`, builds its run with
:func:`prepare` (which refuses a bad ``--record`` path and bad labels before any work) and a
one-target command prints its summary with :func:`report_run` (a table, or one JSON object
with ``--json``). numpy only (the Lava command runs it in the Lava environment).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convert import load_graph
from core.cli import add_output_flags, check_writable, print_json, wants_progress
from core.datasets import load_dataset
from core.encoding import encode_as_recorded
from core.errors import UserError
from core.graph import QGraph
from targets.base import (
    OVERFLOW_PREFIX,
    RunResult,
    overflow_events,
    overflow_warning,
    readout_scores,
)
from targets.records import save_record

# Samples drawn from a dataset when --samples is not given: enough for an accuracy to two
# digits, few enough to run in seconds on every target. A user's own --input file runs whole.
DEFAULT_DATASET_SAMPLES = 100


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


@dataclass(frozen=True)
class SummaryRow:
    """One command-specific line of a run summary: ``key``/``value`` in the JSON object,
    ``line`` in the table."""

    key: str
    value: Any
    line: str


def add_common_args(ap: argparse.ArgumentParser) -> None:
    """The arguments every target command shares (model, samples, inputs, labels, --record,
    --json, --no-progress/--quiet)."""
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
    ap.add_argument("--input-bitplanes", action="store_true",
                    help="quantize a graded (pixel) input as 8 binary bit planes: the input "
                    "layer becomes multiplication-free (float graphs only)")
    ap.add_argument("--record", default=None, metavar="out.npz",
                    help="save spike records [sample, timestep, *shape] and counters to this "
                    "file (layout: targets/records.py); a missing folder is created")
    ap.add_argument("--strict", action="store_true",
                    help="exit 1 on any warning (a guessed dt, a synapse that never changes "
                    "its target, a population that never spikes on the inputs, clipping, ...)")
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
    if kind not in ("direct", "rate"):
        raise UserError("the graph records no input encoding: pass --input inputs.npy")
    images, labels = load_dataset(str(dataset), args.split)
    samples = DEFAULT_DATASET_SAMPLES if args.samples is None else args.samples
    lo, hi = args.offset, min(args.offset + samples, len(images))
    if lo >= hi:
        raise UserError(f"--offset {lo} is past the end of {dataset}/{args.split} ({len(images)})")
    x = encode_as_recorded(meta, graph.timesteps, images[lo:hi], first_index=lo)
    desc = f"{dataset}/{args.split} [{lo}:{hi}] ({kind} encoding)"
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
    user_x = _read_input(args)  # its T axis is the graph's T when the graph records none
    graph, report = load_graph(args.model, dt=args.dt, timesteps=args.timesteps,
                               input_bitplanes=getattr(args, "input_bitplanes", False),
                               input_timesteps=None if user_x is None else user_x.shape[1])
    x, labels, desc = _load_inputs(args, graph, user_x)
    if labels is not None and len(graph.readouts) == 1:
        (r,) = graph.readouts.values()
        if labels.size and labels.max() >= r.size:
            raise UserError(f"label {int(labels.max())} is outside the {r.size} classes of "
                            f"readout {r.name!r}")
    return Prepared(graph, report, x, labels, desc, record,
                    as_json=bool(getattr(args, "json", False)), progress=wants_progress(args),
                    strict=bool(getattr(args, "strict", False)))


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


def silent_populations(result: RunResult) -> list[str]:
    """The populations that never spiked in ``result`` (any sample, any step)."""
    return [name for name, s in result.spikes.items() if not np.asarray(s).any()]


def run_warnings(prep: Prepared, result: RunResult | None) -> list[str]:
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


def accuracy(graph: QGraph, result: RunResult, labels: np.ndarray | None) -> float | None:
    """Fraction (0..1) of samples whose largest class score is their label; None without
    labels or when the graph does not have exactly one readout."""
    if labels is None or len(graph.readouts) != 1:
        return None
    scores = readout_scores(graph, result.readouts)
    return float(np.mean(np.argmax(scores, axis=1) == labels[: len(scores)]))


def record_extra(graph: QGraph, labels: np.ndarray | None, result: RunResult) -> dict[str, Any]:
    """The arrays saved next to a run's records: ``labels`` and, with one readout, ``scores``."""
    extra: dict[str, Any] = {}
    if labels is not None:
        extra["labels"] = labels
    if len(graph.readouts) == 1:
        extra["scores"] = readout_scores(graph, result.readouts)
    return extra


def save_run_record(prep: Prepared, result: RunResult) -> None:
    """Write ``result`` to ``prep.record`` (layout: targets/records.py), if one was asked for."""
    if prep.record:
        save_record(prep.record, result, record_extra(prep.graph, prep.labels, result))


def run_summary(name: str, prep: Prepared, result: RunResult, wall_s: float) -> dict[str, Any]:
    """The fields of a run's summary, as :func:`report_run` prints them (JSON-ready).

    ``accuracy`` is a fraction (0..1) or None; ``rate_per_step`` is spikes per neuron per step.
    """
    n = len(prep.inputs)
    pops = {}
    for pop, s in result.spikes.items():
        pops[pop] = {"neurons": int(s.shape[-1]), "spikes": int(s.sum()),
                     "rate_per_step": float(s.mean()) if s.size else 0.0}
    out: dict[str, Any] = {
        "target": name, "samples": n, "source": prep.source_desc,
        "timesteps": prep.graph.timesteps, "dt": dt_summary(prep.graph), "populations": pops,
    }
    for k in ("synaptic_events", "ac", "mac"):
        if k in result.counters:
            out[k] = int(result.counters[k])
    out["wall_s"] = wall_s
    out["samples_per_s"] = n / max(wall_s, 1e-9)
    out["accuracy"] = accuracy(prep.graph, result, prep.labels)
    out["record"] = prep.record
    out["overflow_events"] = sum(overflow_events(result.counters).values())
    out["overflow"] = {k: int(v) for k, v in result.counters.items()
                       if k.startswith(OVERFLOW_PREFIX)}
    out["silent_populations"] = silent_populations(result)
    silent_syn = getattr(prep.report, "silent_synapses", None)
    out["silent_synapses"] = silent_syn() if silent_syn else []
    out["warnings"] = run_warnings(prep, result)
    return out


def report_run(name: str, prep: Prepared, result: RunResult, wall_s: float,
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
    if prep.as_json:
        print_json({**s, **{row.key: row.value for row in extra}})
        return finish(name, prep, s["warnings"])
    n = s["samples"]
    print(f"{name}: {n} samples from {prep.source_desc}, T={s['timesteps']}, "
          f"dt={_dt_text(s['dt'])}")
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
    return finish(name, prep, s["warnings"])


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
