"""Command-line plumbing shared by every target's command: graph, inputs, summary, records.

numpy only (the Lava script runs it in the Lava environment).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convert import load_graph
from core.datasets import load_dataset
from core.encoding import encode_as_recorded
from core.errors import UserError
from core.graph import QGraph
from targets.base import RunResult, readout_scores
from targets.records import save_record


@dataclass
class Prepared:
    graph: QGraph
    report: dict[str, Any]
    inputs: np.ndarray  # int [N, T, *input_shape]
    labels: np.ndarray | None
    source_desc: str
    record: str | None = None


def add_common_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("model", help="NIR file: float (from convert.to_nir or another framework) "
                    "or integer (from convert.quantize); float graphs are quantized on load")
    ap.add_argument("--samples", type=int, default=100, help="number of samples (default 100)")
    ap.add_argument("--offset", type=int, default=0, help="index of the first sample (default 0)")
    ap.add_argument("--dataset", default=None,
                    help="dataset to draw samples from (default: the one recorded in the graph)")
    ap.add_argument("--split", default="test", choices=("train", "val", "test"))
    ap.add_argument("--input", default=None, metavar="inputs.npy",
                    help="user-supplied input spikes/values [sample, timestep, *input_shape] "
                    "(for graphs without dataset metadata, e.g. exported by snnTorch or Norse)")
    ap.add_argument("--labels", default=None, metavar="labels.npy",
                    help="labels for --input, to report accuracy")
    ap.add_argument("--timesteps", type=int, default=None,
                    help="timesteps per sample, for graphs that do not record it")
    ap.add_argument("--dt", type=float, default=None,
                    help="time step of a foreign NIR graph (default: recorded dt, else 1e-4)")
    ap.add_argument("--input-bitplanes", action="store_true",
                    help="quantize a graded (pixel) input as 8 binary bit planes: the input "
                    "layer becomes multiplication-free (float graphs only)")
    ap.add_argument("--record", default=None, metavar="out.npz",
                    help="save spike records [sample, timestep, *shape] and counters to this file")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")


def _load_inputs(args: argparse.Namespace, graph: QGraph) -> tuple[np.ndarray, Any, str]:
    if args.input:
        p = Path(args.input)
        if not p.is_file():
            raise UserError(f"{p}: no such input file")
        try:
            x = np.load(p, allow_pickle=False)
        except Exception as e:
            raise UserError(f"{p}: not a .npy array ({e})") from None
        x = x[args.offset : args.offset + args.samples]
        labels = None
        if args.labels:
            labels = np.load(args.labels, allow_pickle=False)[args.offset : args.offset + len(x)]
        return x, labels, f"{p} [{args.offset}:{args.offset + len(x)}]"
    meta = graph.metadata
    dataset = args.dataset or meta.get("dataset")
    if not dataset:
        raise UserError("the graph records no dataset: pass --input inputs.npy "
                        "([sample, timestep, *input_shape]) or --dataset NAME")
    kind = meta.get("encoding")
    if kind not in ("direct", "rate"):
        raise UserError("the graph records no input encoding: pass --input inputs.npy")
    images, labels = load_dataset(str(dataset), args.split)
    lo, hi = args.offset, min(args.offset + args.samples, len(images))
    if lo >= hi:
        raise UserError(f"--offset {lo} is past the end of {dataset}/{args.split} ({len(images)})")
    x = encode_as_recorded(meta, graph.timesteps, images[lo:hi], first_index=lo)
    return x, labels[lo:hi], f"{dataset}/{args.split} [{lo}:{hi}] ({kind} encoding)"




def prepare(args: argparse.Namespace) -> Prepared:
    if args.samples <= 0:
        raise UserError("--samples must be positive")
    graph, report = load_graph(args.model, dt=args.dt, timesteps=args.timesteps,
                               input_bitplanes=getattr(args, "input_bitplanes", False))
    x, labels, desc = _load_inputs(args, graph)
    return Prepared(graph, report, x, labels, desc, args.record)


def accuracy(graph: QGraph, result: RunResult, labels: np.ndarray | None) -> float | None:
    if labels is None or len(graph.readouts) != 1:
        return None
    scores = readout_scores(graph, result.readouts)
    return float(np.mean(np.argmax(scores, axis=1) == labels[: len(scores)]))


def report_run(name: str, prep: Prepared, result: RunResult, wall_s: float) -> int:
    g = prep.graph
    n = len(prep.inputs)
    acc = accuracy(g, result, prep.labels)
    print(f"{name}: {n} samples from {prep.source_desc}, T={g.timesteps}")
    print(f"{'population':<16}{'neurons':>9}{'spikes':>12}{'rate/step':>11}")
    for pop, s in result.spikes.items():
        rate = s.mean() if s.size else 0.0
        print(f"{pop:<16}{s.shape[-1]:>9}{int(s.sum()):>12}{rate:>11.4f}")
    for k in ("synaptic_events", "ac", "mac"):
        if k in result.counters:
            print(f"{k:<16}{int(result.counters[k]):>21}")
    print(f"{'wall time':<16}{wall_s:>20.2f}s  ({n / max(wall_s, 1e-9):.1f} samples/s)")
    if acc is not None:
        print(f"accuracy: {acc * 100:.2f}% ({n} samples)")
    if prep.record:
        extra: dict[str, Any] = {}
        if prep.labels is not None:
            extra["labels"] = prep.labels
        if len(g.readouts) == 1:
            extra["scores"] = readout_scores(g, result.readouts)
        save_record(prep.record, result, extra)
        print(f"records written to {prep.record}")
    return 0
