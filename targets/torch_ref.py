"""Reference target: the trained model's integer forward, batched, layer by layer, in torch.

No synaptic latency here: layer l at step t sees layer l-1 at step t, exactly as the model was
trained; a recurrent synapse (a population onto itself) brings its spikes of step t - 1 - delay
(nothing before the sample's step 1 + delay), and one with a model delay (``lag``, a NIR Delay)
its source's values of step t - lag. The deployed targets must reproduce these records
after removing their latency. The graph walk is ``convert/int_forward.py`` (shared with
chip-exact training, so the training forward IS this target): core/fixedpoint.py applied to
int64 tensors, matrix products and convolutions in float64 (exact for these integer
magnitudes, < 2**53) rounded back to int64. Samples run in batches (``--batch``) on the CPU
or a CUDA GPU (``--device``); records and counters do not depend on either.

    python -m targets.torch_ref model.nir --samples 1000 [--device auto] [--batch 512]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from convert import int_forward
from convert.int_forward import attention_output, synapse_output  # noqa: F401 (public API)
from core import fixedpoint as fx
from core.cli import progress as progress_iter
from core.cli import run_cli
from core.errors import UserError
from core.graph import QGraph
from targets.base import OverflowCounter, RunResult, check_inputs
from targets.cli import add_common_args, prepare, report_run, run_target

#: Samples per batch when none is given: bounds memory (every step of every node of a batch
#: is held at once) while keeping the products large enough to be efficient.
DEFAULT_BATCH = 512


def resolve_device(device: str | None) -> torch.device:
    """``cpu``, ``cuda`` (``cuda:N``) or ``auto``/None (CUDA when present, else the CPU).

    Raises:
        UserError: an unknown device name, or CUDA asked for where there is none.
    """
    name = "auto" if device is None else str(device)
    if name != "auto" and not (name == "cpu" or name.startswith("cuda")):
        raise UserError(f"--device must be cpu, cuda or auto; got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA GPU is available to torch here (use cpu "
                        "or auto)")
    return int_forward.pick_device(name)


def run(graph: QGraph, inputs: np.ndarray, *, record_state: bool = False,
        progress: bool = False, device: str | None = "cpu", batch: int | None = None
        ) -> RunResult:
    """Run ``inputs`` [N, T, *input_shape] (integers) through ``graph``, ``batch`` samples at
    a time (default :data:`DEFAULT_BATCH`) on ``device`` (``cpu``, ``cuda``, ``auto``).

    ``progress``: a bar over the batches (over the nodes for a single batch) on a terminal.
    Counters: ``synaptic_events``, ``ac``, ``mac``, ``events/<synapse>`` and
    ``overflow/<kind>/<population>`` (every neuron update of every sample;
    ``targets.base.OverflowCounter``); summed over batches, so they do not depend on the
    batch size. Raises ``UserError`` for inputs of the wrong shape or range
    (``targets.base.check_inputs``), a bad device or batch, and ``OverflowError`` when an
    accumulation leaves float64's exact integer range.
    """
    if batch is not None and (isinstance(batch, bool) or int(batch) < 1):
        raise UserError(f"--batch must be a positive integer, got {batch!r}")
    dev = resolve_device(device)
    x_all = check_inputs(graph, inputs)
    n = x_all.shape[0]
    size = n if n == 0 else min(int(batch or DEFAULT_BATCH), n)
    starts = list(range(0, n, size)) if n else [0]
    spikes: dict[str, list[np.ndarray]] = {}
    readouts: dict[str, list[np.ndarray]] = {}
    states: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    counters: dict[str, int] = {}
    overflow = OverflowCounter(list(graph.populations))
    many = len(starts) > 1
    for lo in progress_iter(starts, total=len(starts), desc="torch_ref",
                            enabled=progress and many, unit="batch"):
        x = torch.from_numpy(x_all[lo : lo + size]).to(dev)
        with torch.no_grad():
            r = int_forward.forward(graph, x, count_events=True, record_state=record_state,
                                    progress=progress and not many)
        for name, rec in r.spikes.items():
            spikes.setdefault(name, []).append(rec.cpu().numpy())
        for name, rec in r.readouts.items():
            readouts.setdefault(name, []).append(rec.cpu().numpy())
        for name, (u, v) in r.states.items():
            states.setdefault(name, []).append((u.cpu().numpy(), v.cpu().numpy()))
        for key, value in r.counters.items():
            counters[key] = counters.get(key, 0) + int(value)
        for name, counts in r.overflow.items():
            overflow.add_counts(name, dict(zip(fx.OVERFLOW_KINDS, counts.tolist(),
                                               strict=True)))
    counters.update(overflow.counters())
    return RunResult(
        {k: np.concatenate(v) for k, v in spikes.items()},
        {k: np.concatenate(v) for k, v in readouts.items()},
        counters,
        {k: (np.concatenate([a for a, _ in v]), np.concatenate([b for _, b in v]))
         for k, v in states.items()},
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m targets.torch_ref``: run a NIR model on the reference target, print the
    summary (accuracy, spikes per population, synaptic events; or ``--json``)."""
    ap = argparse.ArgumentParser(
        prog="python -m targets.torch_ref",
        description="Run a NIR model on the reference target: the trained model's integer "
        "forward in torch, in batches on the CPU or a GPU, no synaptic latency. Prints "
        "accuracy, spike counts and synaptic events (ACs on spikes, MACs on graded inputs).",
        epilog="example: python -m targets.torch_ref model.nir --samples 1000",
    )
    add_common_args(ap)
    ap.add_argument("--device", default="cpu",
                    help="where to run: cpu, cuda (a CUDA GPU; int64 arithmetic is exact "
                    "there too) or auto (cuda when present) (default: cpu)")
    ap.add_argument("--batch", type=int, default=None, metavar="N",
                    help=f"samples per batch: memory grows with it, results do not change "
                    f"(default: {DEFAULT_BATCH})")
    ap.add_argument("--record-state", action="store_true",
                    help="also save u and v of every population in --record")
    args = ap.parse_args(argv)
    resolve_device(args.device)  # a bad device fails before the graph is loaded
    if args.batch is not None and args.batch < 1:
        raise UserError(f"--batch must be a positive integer, got {args.batch}")
    prep = prepare(args)
    t0 = time.perf_counter()
    result = run_target(prep, "torch_ref", record_state=args.record_state,
                        device=args.device, batch=args.batch)
    return report_run("torch_ref", prep, result, time.perf_counter() - t0)


if __name__ == "__main__":
    sys.exit(run_cli("torch_ref", main))
