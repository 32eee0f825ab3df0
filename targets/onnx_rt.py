"""The fourth target: the integer step graph exported to ONNX, driven in onnxruntime.

:func:`convert.to_onnx.to_onnx` writes one global step of the deployed chip as an ONNX graph
(state in, state out, int64 arithmetic exactly as docs/integer-nir.md defines it). This target
drives that graph over the deployed timeline, as event_sim and Lava run it: samples back to
back, input step t of sample s presented at global step ``s*T + t``, zeros after the last
sample, ``N*T + depth`` steps in all; then each record is cut back to [sample, timestep] with
the node's latency (:func:`targets.base.unpipeline`), so its records equal the other targets'.
Everything the driver needs besides the graph (T, latencies, state shapes) is read from the
model's own metadata, so it drives an exported ``.onnx`` file the same way (:func:`run_model`).

``lanes=k`` runs k independent timelines side by side (the batch axis of every ONNX tensor),
each on a contiguous block of samples; every population resets between samples, so the records
are identical for every k (tested). Counters: ``events/<synapse>`` (computed inside the step
graph, counted only for source steps that belong to a sample, as event_sim counts them),
``synaptic_events``, ``ac``, ``mac``, ``spikes/<population>``, ``steps``, ``lanes``, and
``overflow/<kind>/<population>`` (the step graph's overflow outputs, on the steps and lanes of
real samples: the same counts as every target's, docs/contract.md "Overflow").

numpy and onnxruntime only: no torch. docs/onnx.md shows how to drive the model yourself.

    python -m targets.onnx_rt model.nir --samples 100 [--lanes 8] [--json]
    python -m targets.verify model.nir --targets event_sim,onnx_rt
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from convert.to_onnx import META_KEY, initial_state, to_onnx
from core import fixedpoint as fx
from core.cli import progress_bar, run_cli
from core.errors import EnvironmentMissingError, GraphError, UserError
from core.graph import INPUT, QGraph
from targets.base import (
    OverflowCounter,
    RunResult,
    check_inputs,
    lanes_in_sample,
    unpipeline,
)
from targets.cli import SummaryRow, add_common_args, prepare, report_run, run_target

try:  # the `onnx` extra (pyproject.toml)
    import onnxruntime as ort
except ImportError:  # pragma: no cover - exercised only without the extra
    ort = None

__all__ = ["run", "run_model", "session", "model_metadata", "drive", "main"]


def session(model: Any) -> Any:
    """An onnxruntime ``InferenceSession`` on the CPU for a ModelProto, bytes or a file path.

    One intra-op thread: each step's tensors are small, and threads cost more than they save.

    Raises:
        EnvironmentMissingError: onnxruntime is not installed.
    """
    if ort is None:
        raise EnvironmentMissingError(
            "onnxruntime is not installed: pip install 'neurodeploy[onnx]' (or run "
            ".ci/setup-env, which installs it into .venv)")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    elif isinstance(model, (str, Path)):
        model = str(model)
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def model_metadata(sess: Any) -> dict[str, Any]:
    """The step graph's ``neurodeploy`` metadata (convert.to_onnx.step_metadata), parsed.

    Raises:
        GraphError: the model carries no such metadata (not written by convert.to_onnx).
    """
    props = sess.get_modelmeta().custom_metadata_map
    if META_KEY not in props:
        raise GraphError("this ONNX model has no 'neurodeploy' metadata: it was not written by "
                         "python -m convert.to_onnx")
    return json.loads(props[META_KEY])


def drive(sess: Any, meta: dict[str, Any], x: np.ndarray, *, lanes: int = 1,
          record_state: bool = False, progress: bool = False) -> RunResult:
    """Run the step graph over the deployed timeline of ``x`` and cut the records.

    ``x``: int64 [N, T, input size], the raw input values (spikes or graded values, not bit
    planes: the step graph splits them). ``lanes``: independent timelines side by side (at
    most N). Returns records aligned like every target's (targets/base.py).
    """
    n, t_steps = x.shape[:2]
    if t_steps != meta["timesteps"]:
        raise UserError(f"inputs have {t_steps} timesteps, the model {meta['timesteps']}")
    lanes = max(1, min(int(lanes), n)) if n else 1
    per_lane = -(-n // lanes) if n else 0
    lanes = -(-n // per_lane) if n else 1  # no lane of pure padding
    size = int(meta["input"]["size"])
    pad = lanes * per_lane - n
    if pad:
        x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), dtype=x.dtype)])
    x = np.ascontiguousarray(x.reshape(lanes, per_lane * t_steps, size).astype(np.int64))
    n_in = per_lane * t_steps
    steps = n_in + int(meta["depth"])
    lat = meta["latency"]
    pops, readouts = meta["populations"], meta["readouts"]
    syns = meta["synapses"]
    state = initial_state(meta, lanes)
    names = list(state)
    overflow_names = [f"overflow/{kind}/{p}" for p in pops for kind in fx.OVERFLOW_KINDS]
    out_names = ([f"spikes/{p}" for p in pops] + [f"readout/{r}" for r in readouts]
                 + [f"events/{s}" for s in syns] + overflow_names
                 + [f"next/{k}" for k in names])
    overflow = OverflowCounter(list(pops))
    graded = set(meta.get("graded_populations", ()))  # spike counts (a graded reset mode)
    raw_s = {p: np.zeros((steps, lanes, sz), dtype=np.int64 if p in graded else bool)
             for p, sz in pops.items()}
    raw_r = {r: np.zeros((steps, lanes, d["size"]), dtype=np.int64) for r, d in readouts.items()}
    traced = pops if record_state else {}
    raw_u = {p: np.zeros((steps, lanes, sz), dtype=np.int64) for p, sz in traced.items()}
    raw_v = {p: np.zeros((steps, lanes, sz), dtype=np.int64) for p, sz in traced.items()}
    events = dict.fromkeys(syns, 0)
    extra = 0
    zeros = np.zeros((lanes, size), dtype=np.int64)
    # a synapse's events at step k belong to a sample when its sources' latency is inside one
    src_lat = {s: (0 if d["sources"][0] == INPUT else lat[d["sources"][0]])
               for s, d in syns.items()}
    with progress_bar(steps, desc="onnx_rt", enabled=progress, unit="step") as bar:
        for k in range(steps):
            feed = {"step": np.array(k, dtype=np.int64), "x": x[:, k] if k < n_in else zeros}
            feed.update(state)
            res = dict(zip(out_names, sess.run(out_names, feed), strict=True))
            for p in pops:
                raw_s[p][k] = res[f"spikes/{p}"]
                nv = lanes_in_sample(k, lat[p], t_steps, per_lane, n, lanes)
                if nv:  # inside real samples only, as every target counts them
                    overflow.add_counts(p, {kind: int(res[f"overflow/{kind}/{p}"][:nv].sum())
                                            for kind in fx.OVERFLOW_KINDS})
                if record_state:
                    raw_u[p][k] = res[f"next/u/{p}"]
                    raw_v[p][k] = res[f"next/v/{p}"]
            for r in readouts:
                raw_r[r][k] = res[f"readout/{r}"]
            for s in syns:
                ev = res[f"events/{s}"]
                nv = lanes_in_sample(k, src_lat[s], t_steps, per_lane, n, lanes)
                inside = int(ev[:nv].sum())
                events[s] += inside
                extra += int(ev.sum()) - inside
            state = {name: res[f"next/{name}"] for name in names}
            bar.update(1)

    def cut(raw: np.ndarray, node: str) -> np.ndarray:
        if n == 0:
            return np.zeros((0, t_steps, raw.shape[-1]), dtype=raw.dtype)
        parts = [unpipeline(raw[:, b], lat[node], per_lane, t_steps) for b in range(lanes)]
        return np.concatenate(parts)[:n]

    spikes = {p: cut(a, p) for p, a in raw_s.items()}
    counters: dict[str, int] = {"synaptic_events": 0, "ac": 0, "mac": 0}
    for s, d in syns.items():
        counters[f"events/{s}"] = events[s]
        counters["synaptic_events"] += events[s]
        counters["mac" if d["graded"] else "ac"] += events[s]
    counters.update({f"spikes/{p}": int(a.sum()) for p, a in spikes.items()})
    counters.update({"steps": steps, "lanes": lanes, "pipeline_events": extra})
    counters.update(overflow.counters())
    return RunResult(spikes, {r: cut(a, r) for r, a in raw_r.items()}, counters,
                     {p: (cut(raw_u[p], p), cut(raw_v[p], p)) for p in raw_u})


def run(graph: QGraph, inputs: np.ndarray, *, record_state: bool = False,
        progress: bool = False, lanes: int = 1) -> RunResult:
    """Export ``graph`` as the ONNX step graph and drive it in onnxruntime.

    ``inputs``: [sample, timestep, *input_shape] integers. ``lanes``: independent timelines
    side by side (identical records). Returns spikes (bool [N, T, size]), readouts (int64
    [N, T, size], bias excluded), counters and, with ``record_state``, the (u, v) traces.

    Raises:
        GraphError: the graph does not validate (before anything runs).
        UserError: ``inputs`` has the wrong shape, non-integers or values out of range.
        EnvironmentMissingError: onnx or onnxruntime is not installed.
    """
    graph.validate()
    check_inputs(graph, inputs)  # shape, integers, range (the bit planes are split in-graph)
    x = np.asarray(inputs).astype(np.int64).reshape(len(inputs), graph.timesteps, -1)
    sess = session(to_onnx(graph))
    return drive(sess, model_metadata(sess), x, lanes=lanes, record_state=record_state,
                 progress=progress)


def run_model(model: str | Path, inputs: np.ndarray, *, record_state: bool = False,
              progress: bool = False, lanes: int = 1) -> RunResult:
    """Drive an exported ``.onnx`` step graph (python -m convert.to_onnx) on ``inputs``
    [sample, timestep, *input_shape] integers, with only what the file itself records.

    Raises:
        GraphError: the file is not a neurodeploy step graph.
        UserError: ``inputs`` do not match the model's input (shape, timesteps, range).
    """
    sess = session(model)
    meta = model_metadata(sess)
    x = np.asarray(inputs)
    spec = meta["input"]
    if x.ndim < 2 or x.shape[1] != meta["timesteps"] or int(np.prod(x.shape[2:])) != spec["size"]:
        raise UserError(f"inputs must be [sample, timestep, *{tuple(spec['shape'])}] with "
                        f"{meta['timesteps']} timesteps; got {x.shape}")
    if x.size and (x.min() < 0 or x.max() > spec["max_value"]):
        raise UserError(f"input values must lie in [0, {spec['max_value']}]")
    x = x.astype(np.int64).reshape(x.shape[0], x.shape[1], spec["size"])
    return drive(sess, meta, x, lanes=lanes, record_state=record_state, progress=progress)


def main(argv: list[str] | None = None) -> int:
    """``python -m targets.onnx_rt``: run a NIR model as its ONNX step graph in onnxruntime
    and print what every target prints (accuracy, spikes, synaptic events; or ``--json``)."""
    ap = argparse.ArgumentParser(
        prog="python -m targets.onnx_rt",
        description="Run a NIR model as its ONNX step graph (python -m convert.to_onnx) in "
        "onnxruntime, over the deployed timeline (docs/onnx.md). Prints accuracy, spike "
        "counts and synaptic events (ACs on spikes, MACs on graded inputs).",
        epilog="example: python -m targets.onnx_rt model.nir --samples 100",
    )
    add_common_args(ap)
    ap.add_argument("--lanes", type=int, default=1,
                    help="independent timelines side by side, each on a contiguous block of "
                    "samples (same records; fewer onnxruntime calls; default 1)")
    ap.add_argument("--record-state", action="store_true",
                    help="also save u and v of every population in --record")
    args = ap.parse_args(argv)
    if args.lanes < 1:
        ap.error("--lanes must be at least 1")
    prep = prepare(args)
    t0 = time.perf_counter()
    result = run_target(prep, "onnx_rt", record_state=args.record_state, lanes=args.lanes)
    wall = time.perf_counter() - t0
    c = result.counters
    steps = SummaryRow("steps", c["steps"],
                       f"{'steps':<16}{c['steps']:>21}  (x {c['lanes']} lane(s), one "
                       "onnxruntime call each)")
    return report_run("onnx_rt", prep, result, wall, [steps])


if __name__ == "__main__":
    sys.exit(run_cli("onnx_rt", main))
