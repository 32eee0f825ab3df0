"""Sharded evaluation: one run's samples split into contiguous shards across processes or
machines with dask.distributed, and the shards' results merged into the single run's result.

    python -m targets.event_sim model.nir --samples 10000 --workers 4
    python -m targets.verify model.nir --targets event_sim,lava --workers 8
    python -m targets.verify model.nir --cluster tcp://scheduler:8786

``--workers N`` starts a local dask cluster of N worker processes (one thread each) for the
run and stops it afterwards; ``--cluster ADDRESS`` uses a running dask scheduler
(``dask scheduler`` on one machine, ``dask worker tcp://scheduler:8786`` on each other one,
started from a checkout of this repository with its ``.venv``: the workers import
``targets`` to run a shard). Each shard runs the target's own ``run`` unchanged on its
samples; for Lava that is one Lava worker process (and its runtime) per dask worker.

Why dask.distributed rather than Ray: pure-Python wheels (no 100 MB platform binary, nothing
to build; it installs where torch and numpy do, Python 3.11 and 3.10 alike), a
``LocalCluster`` of ordinary processes for one machine and a plain ``tcp://`` scheduler
address for many, a small runtime (a scheduler and worker processes; no object store or
dashboard is required) and a ``Future`` interface that maps one-to-one onto "run this shard".

Merging (:func:`merge_results`): records are concatenated in shard order, so they are the
single run's records exactly (every target resets every neuron between samples, so a sample's
records do not depend on which samples ran before it; the tests check sharded == unsharded).
Counters that describe what the network did (synaptic events, ACs/MACs, per-synapse events,
spikes, overflow events, neuron updates) are sums over samples and merge to the single run's
values; ``max_abs_*`` take the maximum. Counters that describe how the run was executed
(:data:`EXECUTION_COUNTERS`: timeline steps, lanes, pipeline flush events, Lava networks,
steps and seconds) are summed over the shards (total work; each shard flushes its own
pipeline) and so differ from a single run's; ``lava_steps_per_s`` is recomputed.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import EnvironmentMissingError, UserError
from core.graph import QGraph
from targets.base import RunResult

# Counters that say how a run was executed rather than what the network did: summed over
# shards, they are the total work of a sharded run and differ from an unsharded run's.
EXECUTION_COUNTERS = frozenset({
    "steps", "lanes", "pipeline_events",
    "lava_runs", "lava_steps", "lava_build_s", "lava_compile_s", "lava_run_s", "lava_wall_s",
    "lava_steps_per_s",
})
# Counters merged by their maximum over shards (peaks of |u| and |v|; event_sim).
MAX_COUNTERS = frozenset({"max_abs_u", "max_abs_v"})

# The target modules a shard may run (verify's registry, without importing verify here).
TARGET_MODULES = {
    "torch_ref": "targets.torch_ref",
    "event_sim": "targets.event_sim",
    "lava": "targets.loihi",
    "onnx_rt": "targets.onnx_rt",
}

# Seconds to wait for a local cluster's workers to start, or to reach a --cluster scheduler.
CONNECT_TIMEOUT_S = 60


@dataclass(frozen=True)
class ShardSpec:
    """Where a run's shards go: ``workers`` local processes, or a running dask scheduler at
    ``cluster`` (``tcp://host:port``). ``shards``: how many pieces to cut the samples into
    (default: one per worker)."""

    workers: int | None = None
    cluster: str | None = None
    shards: int | None = None

    @property
    def active(self) -> bool:
        """True when the run is to be sharded (``--workers`` > 1 or ``--cluster``)."""
        return bool(self.cluster) or (self.workers is not None and self.workers > 1)


def check_spec(workers: int | None, cluster: str | None) -> ShardSpec:
    """The sharding asked for on a command line, checked before any work.

    Raises:
        UserError: ``workers`` < 1, both options given, or an address that is not
            ``tcp://host:port`` (or another dask protocol: ``tls://``, ``ws://``, ...).
    """
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1; got {workers}")
    if workers is not None and cluster:
        raise UserError("--workers and --cluster exclude each other: --workers starts a local "
                        "cluster, --cluster uses a running one")
    if cluster and "://" not in cluster:
        raise UserError(f"--cluster {cluster!r}: give a dask scheduler address such as "
                        "tcp://host:8786")
    return ShardSpec(workers=workers, cluster=cluster)


def split(n: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous ranges [lo, hi) covering 0..n, sizes differing by at most one
    (never an empty range: at most ``n`` shards)."""
    k = max(1, min(int(shards), n)) if n else 1
    base, extra = divmod(n, k)
    out, lo = [], 0
    for i in range(k):
        hi = lo + base + (1 if i < extra else 0)
        out.append((lo, hi))
        lo = hi
    return out


def merge_results(parts: list[RunResult]) -> RunResult:
    """The result of one run over the concatenated samples of ``parts`` (in order).

    Records (spikes, readouts, states) are concatenated along the sample axis; counters are
    summed, ``max_abs_*`` maximized, ``lava_steps_per_s`` recomputed (module docstring).

    Raises:
        ValueError: ``parts`` is empty or the parts record different nodes.
    """
    if not parts:
        raise ValueError("no results to merge")
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    for p in parts[1:]:
        if p.spikes.keys() != first.spikes.keys() or p.readouts.keys() != first.readouts.keys():
            raise ValueError("the shards recorded different nodes")
    spikes = {k: np.concatenate([p.spikes[k] for p in parts]) for k in first.spikes}
    readouts = {k: np.concatenate([p.readouts[k] for p in parts]) for k in first.readouts}
    states = {k: (np.concatenate([p.states[k][0] for p in parts]),
                  np.concatenate([p.states[k][1] for p in parts])) for k in first.states}
    return RunResult(spikes, readouts, merge_counters([p.counters for p in parts]), states)


def merge_counters(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Counters of consecutive runs merged as one run's (see :func:`merge_results`)."""
    out: dict[str, Any] = {}
    for c in parts:
        for k, v in c.items():
            if k not in out:
                out[k] = v
            elif k in MAX_COUNTERS:
                out[k] = max(out[k], v)
            elif isinstance(v, int | float | np.integer | np.floating):
                out[k] = out[k] + v
    if "lava_steps_per_s" in out:
        out["lava_steps_per_s"] = out["lava_steps"] / max(out["lava_run_s"], 1e-9)
    return out


def run_shard(target: str, graph: QGraph, inputs: np.ndarray, options: dict[str, Any]
              ) -> RunResult:
    """Run one shard on ``target`` (what a dask worker executes): the target's own ``run``."""
    mod = importlib.import_module(TARGET_MODULES[target])
    return mod.run(graph, inputs, **options)


@contextmanager
def client_for(spec: ShardSpec) -> Iterator[Any]:
    """A dask ``Client``: of a local cluster of ``spec.workers`` processes (one thread each,
    started here and closed on exit, Ctrl-C included), or of the scheduler at
    ``spec.cluster``.

    Raises:
        EnvironmentMissingError: dask.distributed is not installed, or the scheduler cannot
            be reached within :data:`CONNECT_TIMEOUT_S`.
    """
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise EnvironmentMissingError(
            "sharded runs need dask.distributed: pip install 'distributed' (the train extra "
            "of pyproject.toml has it)") from None
    # dask logs every worker start and stop at INFO: a command prints its own summary only
    for name in ("distributed", "distributed.nanny", "distributed.scheduler",
                 "distributed.worker", "distributed.core", "distributed.http.proxy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if spec.cluster:
        try:
            client = Client(spec.cluster, timeout=CONNECT_TIMEOUT_S)
        except OSError as e:
            raise EnvironmentMissingError(f"--cluster {spec.cluster}: cannot reach the dask "
                                          f"scheduler ({e})") from None
        with client:
            yield client
        return
    # dashboard_address=None: no web server (bokeh is not installed, and a port is a shared
    # resource); processes: one Python per worker, as Lava needs its own process each;
    # silence_logs: the workers' own log lines (a heartbeat that meets the closing scheduler
    # logs an ERROR with a traceback at a normal shutdown); a shard's failure still reaches
    # us as its exception
    with LocalCluster(n_workers=int(spec.workers or 1), threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.CRITICAL) as cluster, \
            Client(cluster, timeout=CONNECT_TIMEOUT_S) as client:
        yield client


def run_sharded(target: str, graph: QGraph, inputs: np.ndarray, spec: ShardSpec, *,
                on_samples: Callable[[int], None] | None = None, client: Any = None,
                **options: Any) -> RunResult:
    """Run ``inputs`` [N, T, *input_shape] on ``target`` in contiguous shards across the
    workers of ``spec`` and merge them (:func:`merge_results`): the same records as
    ``target``'s ``run(graph, inputs, **options)`` in one process.

    ``on_samples(k)``: called as each shard of k samples completes (progress). ``client``:
    an open dask client to use (else one is made for this run with :func:`client_for`).

    Raises:
        UserError: an unknown target.
        EnvironmentMissingError: dask.distributed missing or the scheduler unreachable.
        Whatever the target's ``run`` raises for these inputs (re-raised from the worker).
    """
    if target not in TARGET_MODULES:
        raise UserError(f"unknown target {target!r}; known: {', '.join(TARGET_MODULES)}")
    x = np.asarray(inputs)
    if client is None:
        with client_for(spec) as c:
            return run_sharded(target, graph, x, spec, on_samples=on_samples, client=c,
                               **options)
    from dask.distributed import as_completed

    n_workers = max(1, len(client.scheduler_info().get("workers", {})) or 1)
    ranges = split(len(x), spec.shards or n_workers)
    graph_f = client.scatter(graph, broadcast=True)  # once per worker, not once per shard
    futures = {}
    for i, (lo, hi) in enumerate(ranges):
        xf = client.scatter(x[lo:hi])
        futures[client.submit(run_shard, target, graph_f, xf, options, pure=False,
                              key=f"{target}-shard-{i}-{time.monotonic_ns()}")] = i
    parts: list[RunResult | None] = [None] * len(ranges)
    try:
        for fut in as_completed(futures):
            i = futures[fut]
            parts[i] = fut.result()
            if on_samples is not None:
                lo, hi = ranges[i]
                on_samples(hi - lo)
    except BaseException:
        client.cancel(list(futures))
        raise
    return merge_results([p for p in parts if p is not None])

