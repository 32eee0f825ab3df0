"""rockpool's own simulation of a NIR graph, loaded by rockpool's own importer.

``rockpool.nn.modules.torch.nir.from_nir`` builds ``LIFTorch`` (CubaLIF), ``LIFNeuronTorch``
(LIF) and ``LinearTorch`` (Linear/Affine) modules inside a nirtorch ``GraphExecutor``; they run
the whole series at once on ``[N, T, features]``. Each neuron module's step is
``dt = min(tau_mem / (1 + r))`` (rockpool's importer reconstructs it from the exporter's
``r = tau_mem exp(-dt / tau_mem) / dt``, close to but not exactly the exported ``dt``); passing
``dt`` sets it on every imported neuron module instead. rockpool's defaults: up to 2**16 spikes
per step (``floor(v / threshold)`` once ``v >= threshold``) and reset by subtraction. Spikes are
each module's output, the membrane its recorded ``vmem``.
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
)

NAME = "rockpool"
OPTIONS: dict[str, tuple[tuple[Any, ...], str]] = {}


def simulate(graph: Any, inputs: np.ndarray, dt: float | None = None, *,
             membranes: dict[str, np.ndarray] | None = None, notes: list[str] | None = None,
             thresholds: dict[str, np.ndarray] | None = None,
             input_scale: float = 1.0) -> dict[str, np.ndarray]:
    """Spike counts ``[N, T, size]`` of every spiking node of ``graph`` (a ``nir.NIRGraph`` or
    a NIR file) on ``inputs`` ``[N, T, features]`` (times ``input_scale``), simulated by
    rockpool; the graph's output per step under the Output node's name. ``dt`` (s): the step
    of every neuron module (None: what rockpool's importer reconstructs). ``membranes``:
    filled with each node's ``vmem`` after each step.

    Raises:
        GraphError: rockpool cannot import or run the graph (one line, rockpool's reason).
    """
    with framework_call(NAME, "import", notes):  # imports may warn; not installed: one line
        import torch
        from rockpool.nn.modules.torch.nir import from_nir

    g = load(graph)
    n, t = inputs.shape[:2]
    with framework_call(NAME, "from_nir", notes):
        net = from_nir(g)
    nodes = neuron_nodes(g)
    rec = Recorder(net, nodes, threshold_of=lambda m: m.threshold)
    for k, m in rec.modules.items():
        if m is None:
            continue
        if dt is not None:
            if notes is not None:
                notes.append(f"rockpool: node {k!r} runs with dt = {float(dt):g} s (its "
                             f"importer reconstructed {float(m.dt):.6g} s)")
            m.dt = float(dt)
        m._record = membranes is not None  # rockpool's per-module state record
    x = torch_inputs(inputs, input_scale).reshape(n, t, -1)
    with framework_call(NAME, "simulation", notes), torch.no_grad(), rec:
        out = net(x)
    out = out[0] if isinstance(out, tuple) else out
    spikes = {k: s[:, 0].reshape(n, t, -1) for k, s in rec.stacked()[0].items()}
    volts = {k: m._record_dict["vmem"].detach().numpy().astype(np.float64).reshape(n, t, -1)
             for k, m in rec.modules.items()
             if m is not None and "vmem" in getattr(m, "_record_dict", {})}
    output = out.detach().numpy().astype(np.float64).reshape(n, t, -1)
    return result(spikes, volts, g, output, membranes, thresholds, rec)
