"""Sinabs' own simulation of a NIR graph, loaded by Sinabs' own importer.

``sinabs.from_nir(graph, batch_size=N)`` builds ``IAFSqueeze`` (IF), ``LIFSqueeze`` (LIF) and
``ExpLeakSqueeze`` (LI) layers inside a nirtorch ``GraphExecutor``; they run the whole series at
once on ``[N * T, ...]`` (time folded into the batch, sample-major), with Sinabs' defaults:
``MultiSpike`` (``floor(v / threshold)`` spikes once ``v >= threshold``) and
``MembraneSubtract``. The importer also floors the membrane of an IF at ``-threshold``
(``min_v_mem``), which Sinabs' own ``IAF`` does not do by default: the option ``min_v_mem``
(a number, or ``none`` for no floor) sets it on every imported spiking layer. Spikes are each
layer's output, the membrane its recorded ``v_mem`` (Sinabs' ``record_states``). Sinabs has no
``dt``: a step is one call.
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
    torch_inputs,
    unfold,
)

NAME = "sinabs"
OPTIONS: dict[str, tuple[tuple[Any, ...], str]] = {
    "min_v_mem": (("none", "<number>"), "lower bound of the membrane of every imported "
                  "spiking layer (Sinabs' importer: -threshold for IF)"),
}
_KEEP = object()


def simulate(graph: Any, inputs: np.ndarray, dt: float | None = None, *,
             membranes: dict[str, np.ndarray] | None = None, notes: list[str] | None = None,
             thresholds: dict[str, np.ndarray] | None = None,
             input_scale: float = 1.0, min_v_mem: Any = _KEEP) -> dict[str, np.ndarray]:
    """Spike counts ``[N, T, size]`` of every spiking node of ``graph`` (a ``nir.NIRGraph`` or
    a NIR file) on ``inputs`` ``[N, T, *input_shape]`` (times ``input_scale``), simulated by
    Sinabs; the graph's output per step under the Output node's name. ``dt`` is not used
    (Sinabs' step is one call). ``min_v_mem``: None for no floor, or a number.
    ``membranes``: filled with each node's ``v_mem`` after each step.

    Raises:
        GraphError: Sinabs cannot import or run the graph (one line, Sinabs' reason).
    """
    with framework_call(NAME, "import", notes):  # imports may warn; not installed: one line
        import sinabs
        import sinabs.layers as sl
        import torch

    g = load(graph)
    n, t = inputs.shape[:2]
    with framework_call(NAME, "from_nir", notes):
        net = sinabs.from_nir(g, batch_size=n)
    layers = [m for m in net.modules() if isinstance(m, sl.StatefulLayer)]
    for m in layers:
        if min_v_mem is not _KEEP and hasattr(m, "min_v_mem"):
            m.min_v_mem = None if min_v_mem is None else float(min_v_mem)
        if membranes is not None and hasattr(m, "record_states"):
            m.record_states = True
    nodes = neuron_nodes(g)
    rec = Recorder(net, nodes, threshold_of=lambda m: m.spike_threshold)
    x = torch_inputs(inputs, input_scale).reshape(n * t, *inputs.shape[2:])
    with framework_call(NAME, "simulation", notes), torch.no_grad(), rec:
        sinabs.reset_states(net)
        out = net(x)
    out = out[0] if isinstance(out, tuple) else out
    spikes = {k: unfold(s[:, 0], n, t) for k, s in rec.stacked()[0].items()}
    volts = {}
    for k in nodes:
        m = rec.modules[k]
        recs = getattr(m, "recordings", None) or {}
        if "v_mem" in recs:
            volts[k] = unfold(recs["v_mem"].detach().numpy().astype(np.float64), n, t)
    output = unfold(out.detach().numpy().astype(np.float64), n, t)
    return result(spikes, volts, g, output, membranes, thresholds, rec)
