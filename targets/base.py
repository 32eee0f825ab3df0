"""The interface every target implements: integer graph + input batch -> spikes and counters.

A target is one module exposing ``run(graph, inputs, **options) -> RunResult``. Records are
aligned to the trained model's time axis: entry [sample, t] of population p is what p did in
response to input step t, whatever latency the target's execution adds (a deployed synapse adds
one step; see ``QGraph.latency``). Comparing targets is then a plain equality of arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.errors import UserError
from core.graph import QGraph


@dataclass
class RunResult:
    spikes: dict[str, np.ndarray]  # population -> bool [N, T, size]
    readouts: dict[str, np.ndarray]  # readout -> int64 [N, T, size] (bias not included)
    counters: dict[str, int] = field(default_factory=dict)
    # optional per-population state traces for mismatch reports: name -> (u, v) int64 [N, T, size]
    states: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def check_inputs(graph: QGraph, inputs: np.ndarray) -> np.ndarray:
    """Validate an input batch [N, T, *input_shape]; return what the synapses read: int64
    [N, T, input.flat_size] (graded values split into bit planes if the graph asks for it)."""
    x = np.asarray(inputs)
    want = (graph.timesteps, *graph.input.shape)
    if x.ndim < 2 or int(np.prod(x.shape[2:])) != graph.input.size or x.shape[1] != want[0]:
        raise UserError(
            f"inputs must be [sample, timestep, *{graph.input.shape}] with "
            f"{graph.timesteps} timesteps; got {x.shape}"
        )
    exact = np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_
    if not exact and not np.all(x == np.round(x)):
        raise UserError("inputs must be integers (spikes 0/1 or graded values)")
    x = x.astype(np.int64).reshape(x.shape[0], x.shape[1], graph.input.size)
    lo, hi = (0, graph.input.max_value)
    if x.size and (x.min() < lo or x.max() > hi):
        raise UserError(
            f"input values must lie in [{lo}, {hi}] for a {graph.input.kind} input; "
            f"got [{x.min()}, {x.max()}]"
        )
    if graph.input.bitplanes:
        planes = [(x >> b) & 1 for b in range(graph.input.bitplanes)]
        x = np.concatenate(planes, axis=2)  # plane-major: entry b*size + j is bit b of j
    return x


def readout_scores(graph: QGraph, readouts: dict[str, np.ndarray]) -> np.ndarray:
    """Class scores: the single readout summed over time plus its per-step bias."""
    if len(graph.readouts) != 1:
        raise UserError(f"classification needs one readout, graph has {len(graph.readouts)}")
    (name, r), = graph.readouts.items()
    total = readouts[name].sum(axis=1)
    if r.bias is not None:
        total = total + r.bias * graph.timesteps
    return total


def unpipeline(raw: np.ndarray, latency: int, n_samples: int, timesteps: int) -> np.ndarray:
    """Cut a deployed timeline [steps, size] back into [N, T, size] using a node's latency.

    Samples run back to back: input step t of sample s is emitted at step s*T + t and reaches a
    node of latency L at step s*T + t + L.
    """
    need = n_samples * timesteps + latency
    if raw.shape[0] < need:
        raise UserError(f"timeline has {raw.shape[0]} steps, needs {need}")
    return raw[latency : latency + n_samples * timesteps].reshape(n_samples, timesteps, -1)
