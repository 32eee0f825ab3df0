"""SpikingJelly's own simulation of a NIR graph, loaded by SpikingJelly's own importer.

``spikingjelly.activation_based.nir_exchange.from_nir.import_from_nir(graph, dt=...)`` builds
``IFNode``, ``LIFNode`` and ``CUBALIFNode`` neurons (each wrapped in a stateful module of the
importer's) inside a nirtorch GraphModule, in single-step mode; it checks that the NIR
parameters fit SpikingJelly's discretization at ``dt`` (default 1e-4 s, SpikingJelly's) and
refuses what does not. The run feeds one step at a time, passing the returned state on; spikes
are each neuron's output, the membrane its returned ``v``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from targets.reference._common import (
    Recorder,
    framework_call,
    load,
    neuron_nodes,
    result,
    run_stepwise,
    torch_inputs,
)

NAME = "spikingjelly"
OPTIONS: dict[str, tuple[tuple[Any, ...], str]] = {}
DEFAULT_DT = 1e-4  # import_from_nir's default


def _voltage(_module: Any, out: Any) -> Any:
    """``v``: the first memory in the state a SpikingJelly neuron wrapper returns."""
    state = out[1] if isinstance(out, tuple) and len(out) > 1 else None
    return state[0] if isinstance(state, tuple | list) and state else None


def simulate(graph: Any, inputs: np.ndarray, dt: float | None = None, *,
             membranes: dict[str, np.ndarray] | None = None, notes: list[str] | None = None,
             thresholds: dict[str, np.ndarray] | None = None,
             input_scale: float = 1.0) -> dict[str, np.ndarray]:
    """Spike counts ``[N, T, size]`` of every spiking node of ``graph`` (a ``nir.NIRGraph`` or
    a NIR file) on ``inputs`` ``[N, T, *input_shape]`` (times ``input_scale``), simulated by
    SpikingJelly with step ``dt`` (s; None: its default 1e-4); the graph's output per step
    under the Output node's name. ``membranes``: filled with each node's ``v`` after each step.

    Raises:
        GraphError: SpikingJelly cannot import or run the graph (one line, its reason).
    """
    with framework_call(NAME, "import", notes):  # imports may warn; not installed: one line
        from spikingjelly.activation_based.nir_exchange.from_nir import import_from_nir

    g = load(graph)
    step = DEFAULT_DT if dt is None else float(dt)
    with framework_call(NAME, "import_from_nir", notes):
        net = import_from_nir(g, dt=step)
    rec = Recorder(net, neuron_nodes(g), volts_of=_voltage,
                   threshold_of=lambda m: m.module.v_threshold)
    x = torch_inputs(inputs, input_scale)
    outputs: list[np.ndarray] = []
    with framework_call(NAME, "simulation", notes):
        run_stepwise(net, x, rec, outputs)
    spikes, volts = rec.stacked()
    return result(spikes, volts, g, np.stack(outputs, 1), membranes, thresholds, rec)
