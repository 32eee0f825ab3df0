"""The interface every target implements: integer graph + input batch -> spikes and counters.

A target is one module exposing ``run(graph, inputs, **options) -> RunResult``. Records are
aligned to the trained model's time axis: entry [sample, t] of population p is what p did in
response to input step t, whatever latency the target's execution adds (a deployed synapse adds
one step; see ``QGraph.latency``). Comparing targets is then a plain equality of arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core import fixedpoint as fx
from core.errors import UserError
from core.graph import QGraph
from core.readout import readout_scores  # noqa: F401 (re-exported: its home is core)


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


def unpipeline(raw: np.ndarray, latency: int, n_samples: int, timesteps: int) -> np.ndarray:
    """Cut a deployed timeline [steps, size] back into [N, T, size] using a node's latency.

    Samples run back to back: input step t of sample s is emitted at step s*T + t and reaches a
    node of latency L at step s*T + t + L.
    """
    need = n_samples * timesteps + latency
    if raw.shape[0] < need:
        raise UserError(f"timeline has {raw.shape[0]} steps, needs {need}")
    return raw[latency : latency + n_samples * timesteps].reshape(n_samples, timesteps, -1)


# --- overflow counters -------------------------------------------------------------------------
# Every target counts, per population, the neuron updates where the arithmetic left unbounded
# integers (core.fixedpoint.Overflow: a_in_wrap, u_wrap, v_wrap, v_saturate), over the steps
# its records cover, under one key scheme: ``overflow/<kind>/<population>``. Equal records on
# two targets give equal counts.

OVERFLOW_PREFIX = "overflow/"


def overflow_key(kind: str, population: str) -> str:
    """The counter key of one overflow kind (``fixedpoint.OVERFLOW_KINDS``) in a population:
    ``overflow/<kind>/<population>``."""
    return f"{OVERFLOW_PREFIX}{kind}/{population}"


class OverflowCounter:
    """Counts :class:`core.fixedpoint.Overflow` events per population and kind.

    ``add(population, overflow)`` adds the True entries of each flag array (numpy or torch);
    :meth:`counters` gives every population's every kind as ``overflow/<kind>/<population>``
    -> int, zeros included, so that every target reports the same keys.
    """

    def __init__(self, populations: list[str]) -> None:
        self.counts = {p: dict.fromkeys(fx.OVERFLOW_KINDS, 0) for p in populations}

    def add(self, population: str, overflow: fx.Overflow) -> None:
        """Add one update's events (``overflow``'s arrays, any shape)."""
        counts = self.counts[population]
        for kind, flags in zip(fx.OVERFLOW_KINDS, overflow, strict=True):
            counts[kind] += int(flags.sum())

    def add_counts(self, population: str, counts: dict[str, int]) -> None:
        """Add events already counted: kind -> number."""
        for kind, n in counts.items():
            self.counts[population][kind] += int(n)

    def counters(self) -> dict[str, int]:
        """``overflow/<kind>/<population>`` -> events, for every population and kind."""
        return {overflow_key(k, p): n for p, c in self.counts.items() for k, n in c.items()}


def overflow_events(counters: dict[str, Any]) -> dict[str, int]:
    """The nonzero overflow counters of a run (key -> events), in key order."""
    return {k: int(v) for k, v in counters.items() if k.startswith(OVERFLOW_PREFIX) and int(v)}


def overflow_warning(counters: dict[str, Any], target: str | None = None) -> str | None:
    """The warning for a run with overflow events, one line (None without any): how many, of
    which kind in which population, and what it means; ``target`` names the run's target."""
    events = overflow_events(counters)
    if not events:
        return None
    total = sum(events.values())
    parts = ", ".join(f"{k[len(OVERFLOW_PREFIX):]} {n}" for k, n in events.items())
    who = f"{target}: " if target else ""
    return (f"{who}{total} overflow event(s) ({parts}): the neurons' state left Loihi's "
            "fixed-point range, so the deployed network no longer computes what the float "
            "network does (docs/contract.md, 'Overflow')")


def lanes_in_sample(step: int, latency: int, timesteps: int, per_lane: int, n: int,
                    lanes: int) -> int:
    """How many leading lanes have a node of ``latency`` inside a real sample at ``step``.

    ``n`` samples run on ``lanes`` side-by-side timelines of ``per_lane`` samples each (lane l
    holds samples ``l*per_lane ...``), back to back with ``timesteps`` steps per sample, as
    :func:`unpipeline` cuts them. Shared by the targets that simulate the deployed timeline
    (event_sim, onnx_rt).
    """
    k = step - latency
    if k < 0 or k >= per_lane * timesteps:
        return 0
    j = k // timesteps  # sample index within the lane
    return min(lanes, -(-(n - j) // per_lane))
