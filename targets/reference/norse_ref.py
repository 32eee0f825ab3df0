"""Norse's own simulation of a NIR graph, loaded by Norse's own importer.

``norse.torch.from_nir(graph, dt=...)`` builds ``LIFBoxCell`` (LIF), a ``CubaLIF`` module of
Norse's (``LIBoxCell`` synapse then ``LIFBoxCell``) and ``IAFCell`` (IF) inside a nirtorch
``GraphExecutor``, with ``tau_inv = 1 / tau`` and reset to ``v_reset``; a node type it does not
know (e.g. ``LI``) becomes nothing and is skipped (noted). ``dt`` defaults to Norse's 1e-3 s.
Norse 1.1.0's exporter writes ``tau = dt / tau_inv`` instead of ``1 / tau_inv``, so its own
exports run with the decays they were trained with only when imported with ``dt = 1e-6`` for
a 1e-3 export (``dt * tau_inv`` is then the trained ``dt / tau``). The run feeds one step at a
time; spikes are each neuron module's output, the membrane its state's ``v``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from targets.reference._common import (
    Recorder,
    find_module,
    framework_call,
    load,
    neuron_nodes,
    result,
    run_stepwise,
    torch_inputs,
)

NAME = "norse"
OPTIONS: dict[str, tuple[tuple[Any, ...], str]] = {}
DEFAULT_DT = 1e-3  # norse.torch.from_nir's default


def _voltage(_module: Any, out: Any) -> Any:
    """The membrane in a Norse cell's returned state (a CubaLIF's: its LIF part)."""
    state = out[1] if isinstance(out, tuple) and len(out) > 1 else None
    if not hasattr(state, "v") and isinstance(state, tuple):  # CubaLIF: (synapse, LIF) states
        state = state[-1]
    return getattr(state, "v", None)


def _threshold(module: Any) -> Any:
    """``v_th`` of a Norse cell (a CubaLIF module's: its LIF part)."""
    cell = getattr(module, "lif", module)
    return getattr(getattr(cell, "p", None), "v_th", None)


def simulate(graph: Any, inputs: np.ndarray, dt: float | None = None, *,
             membranes: dict[str, np.ndarray] | None = None, notes: list[str] | None = None,
             thresholds: dict[str, np.ndarray] | None = None,
             input_scale: float = 1.0) -> dict[str, np.ndarray]:
    """Spike counts ``[N, T, size]`` of every spiking node of ``graph`` (a ``nir.NIRGraph`` or
    a NIR file) on ``inputs`` ``[N, T, *input_shape]`` (times ``input_scale``), simulated by
    Norse with step ``dt`` (s; None: Norse's default 1e-3); the graph's output per step under
    the Output node's name. ``membranes``: filled with each node's ``v`` after each step.

    Raises:
        GraphError: Norse cannot import or run the graph (one line, Norse's reason).
    """
    with framework_call(NAME, "import", notes):  # imports may warn; not installed: one line
        import norse.torch as norse

    g = load(graph)
    step = DEFAULT_DT if dt is None else float(dt)
    with framework_call(NAME, "from_nir", notes):
        net = norse.from_nir(g, dt=step)
    rec = Recorder(net, neuron_nodes(g), volts_of=_voltage, threshold_of=_threshold)
    if notes is not None:
        notes.extend(f"norse: its importer maps node {n!r} ({type(node).__name__}) to nothing: "
                     "it is skipped" for n, node in g.nodes.items()
                     if type(node).__name__ not in ("Input", "Output") and find_module(net, n)
                     is None)
    x = torch_inputs(inputs, input_scale)
    outputs: list[np.ndarray] = []
    with framework_call(NAME, "simulation", notes):
        run_stepwise(net, x, rec, outputs)
    spikes, volts = rec.stacked()
    return result(spikes, volts, g, np.stack(outputs, 1), membranes, thresholds, rec)
