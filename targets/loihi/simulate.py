"""The chunked run loop: a batch of samples through one Lava network per chunk.

Lava environment only (imports lava through :mod:`targets.loihi.network`). From the main
environment call :func:`targets.loihi.run`, which runs this in the Lava worker.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable

import numpy as np

from core import fixedpoint as fx
from core.errors import UserError
from core.graph import QGraph, check_lava_limits
from targets.base import OverflowCounter, RunResult, check_inputs, unpipeline
from targets.loihi.layout import to_timeline
from targets.loihi.network import Network


def simulate(
    graph: QGraph,
    inputs: np.ndarray,
    *,
    chunk: int = 100,
    record_state: bool = False,
    on_samples: Callable[[int], None] | None = None,
) -> RunResult:
    """Run ``inputs`` [N, T, *input_shape] on Lava (Loihi2SimCfg, fixed_pt); records aligned
    as in targets/base.py (spikes bool, readouts and states int64, [N, T, size]).

    ``chunk`` samples share one network, built, compiled and run afresh for every chunk (the
    source and sinks hold ``chunk*T + depth`` steps, so this bounds memory). ``record_state``
    adds u and v (after each step, v after its spike reset) per population. ``on_samples(k)``
    is called as samples complete, k at a time (progress; Lava then runs in pieces of about a
    sample, :meth:`targets.loihi.network.Network.run`).

    Counters: ``samples``, ``spikes`` (all records), ``lava_runs`` (networks),
    ``lava_steps`` (all chunks), ``lava_build_s`` (creating the processes),
    ``lava_compile_s`` (compilation and process start-up), ``lava_run_s`` (the steps alone),
    ``lava_wall_s`` (compile + run), ``lava_steps_per_s`` (lava_steps / lava_run_s); times in s;
    ``overflow/<kind>/<population>``: the overflow events of Lava's own LIF updates on the
    steps the records keep (``targets.loihi.models.StateLIFResetModel``).

    Raises:
        UserError: bad inputs (:func:`targets.base.check_inputs`) or ``chunk`` < 1.
        GraphError: an invalid graph, or one beyond Lava's limits
            (``core.graph.check_lava_limits``: delays over 63 steps, a dense-mapped conv that
            could wrap at 24 bits).
    """
    if chunk < 1:
        raise UserError(f"chunk must be at least 1; got {chunk}")
    graph.validate()
    check_lava_limits(graph)
    x = check_inputs(graph, inputs)
    n, T = x.shape[0], graph.timesteps
    lat = graph.latency()
    # spike counts (int64) for a graded reset mode (LIFPopulation.graded), else bool
    spikes = {p: np.zeros((n, T, pop.size), dtype=np.int64 if pop.graded else bool)
              for p, pop in graph.populations.items()}
    readouts = {r: np.zeros((n, T, ro.size), dtype=np.int64) for r, ro in graph.readouts.items()}
    states = {p: (np.zeros((n, T, pop.size), dtype=np.int64),
                  np.zeros((n, T, pop.size), dtype=np.int64))
              for p, pop in graph.populations.items()} if record_state else {}
    counters: dict = {"samples": n, "lava_runs": 0, "lava_steps": 0, "lava_build_s": 0.0,
                      "lava_compile_s": 0.0, "lava_run_s": 0.0, "lava_wall_s": 0.0}
    overflow = OverflowCounter(list(graph.populations))
    for start in range(0, n, chunk):
        xs = x[start : start + chunk]
        k = xs.shape[0]
        with tempfile.TemporaryDirectory(prefix="neurodeploy-lava-") as workdir:
            t0 = time.perf_counter()
            net = Network(graph, to_timeline(xs, graph.depth), record_state=record_state,
                          workdir=workdir)
            if net.altered_weights and start == 0:
                warnings.warn(
                    f"Lava alters {net.altered_weights} Dense weight(s) of this graph "
                    "(mixed-sign matrices lose their lowest bit); results will differ "
                    "from other targets", stacklevel=2,
                )
            t1 = time.perf_counter()
            if on_samples is None:
                raw = net.run()
            else:  # a sample is complete once its last step has passed the deepest node
                reported = 0

                def on_steps(done: int, k: int = k) -> None:
                    nonlocal reported
                    ready = min(k, max(0, (done - graph.depth) // T))
                    if ready > reported:
                        on_samples(ready - reported)
                        reported = ready

                raw = net.run(on_steps, first_piece=T)
                if reported < k:
                    on_samples(k - reported)
            t2 = time.perf_counter()
        counters["lava_build_s"] += t1 - t0
        counters["lava_wall_s"] += t2 - t1
        counters["lava_compile_s"] += net.compile_s
        counters["lava_run_s"] += net.run_s
        counters["lava_steps"] += net.steps
        counters["lava_runs"] += 1
        sl = slice(start, start + k)
        for p in graph.populations:
            rec = unpipeline(raw[f"spikes/{p}"], lat[p], k, T)
            spikes[p][sl] = rec if graph.populations[p].graded else rec != 0
            # the steps the records keep: lat[p] ... lat[p] + k*T - 1
            window = raw[f"overflow/{p}"][:, lat[p] : lat[p] + k * T].sum(axis=1)
            overflow.add_counts(p, dict(zip(fx.OVERFLOW_KINDS, window.tolist(), strict=True)))
            if record_state:
                for j, key in enumerate("uv"):
                    states[p][j][sl] = unpipeline(raw[f"states/{p}/{key}"], lat[p], k, T)
        for r in graph.readouts:
            readouts[r][sl] = unpipeline(raw[f"readouts/{r}"], lat[r], k, T)
    counters["spikes"] = int(sum(int(s.sum()) for s in spikes.values()))
    counters["lava_steps_per_s"] = counters["lava_steps"] / max(counters["lava_run_s"], 1e-9)
    counters.update(overflow.counters())
    return RunResult(spikes=spikes, readouts=readouts, counters=counters, states=states)
