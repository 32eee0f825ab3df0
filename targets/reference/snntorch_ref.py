"""snnTorch's own simulation of a NIR graph, loaded by snnTorch's own importer.

``snntorch.import_nir.import_from_nir`` builds ``Leaky`` (LIF), ``Synaptic`` (CubaLIF) and
``RLeaky``/``RSynaptic`` (a recurrent subgraph) modules with ``init_hidden=True`` inside a
``nirtorch`` GraphModule; it always chooses ``reset_mechanism="zero"`` with
``reset_delay=False`` and assumes ``dt = 1e-4`` s. A NIR file does not record the reset
snnTorch trained with (its exporter writes ``v_reset = 0`` whatever the model's
``reset_mechanism``; the default is ``"subtract"``, applied one step late): the options
``reset_mechanism`` and ``reset_delay`` set them on the imported neurons, as snnTorch's own
constructor would, to simulate the model as it was trained. The run feeds one step at a time;
spikes are each neuron module's output, the membrane its ``mem`` after the step.
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

NAME = "snntorch"
# option -> (allowed values, what it does); values are parsed by targets.reference.parse_options
OPTIONS = {
    "reset_mechanism": (("subtract", "zero"),
                        "reset of every imported neuron (snnTorch's importer: zero)"),
    "reset_delay": ((True, False), "apply the reset one step late, as snnTorch's default "
                    "(its importer: false)"),
}
ASSUMED_DT = 1e-4  # hard-coded in snnTorch's importer


def _set_reset(m: Any, mechanism: str | None, delay: bool | None) -> None:
    """Give an imported snnTorch neuron the reset it was trained with: what its constructor
    does with ``reset_mechanism`` (the state function follows the mechanism) and
    ``reset_delay``."""
    if mechanism is not None:
        m.reset_mechanism = mechanism  # snnTorch's setter also sets reset_mechanism_val
        fns = {0: m._base_sub, 1: m._base_zero, 2: m._base_int}
        m.state_function = fns[int(m.reset_mechanism_val)]
    if delay is not None:
        m.reset_delay = bool(delay)


def simulate(graph: Any, inputs: np.ndarray, dt: float | None = None, *,
             membranes: dict[str, np.ndarray] | None = None, notes: list[str] | None = None,
             thresholds: dict[str, np.ndarray] | None = None,
             input_scale: float = 1.0, reset_mechanism: str | None = None,
             reset_delay: bool | None = None) -> dict[str, np.ndarray]:
    """Spike counts ``[N, T, size]`` of every spiking node of ``graph`` (a ``nir.NIRGraph`` or
    a NIR file) on ``inputs`` ``[N, T, *input_shape]`` (times ``input_scale``), simulated by
    snnTorch; the graph's output per step under the Output node's name.

    ``dt`` (s): snnTorch's importer assumes 1e-4 whatever is passed (a different value is
    noted). ``membranes``: filled with each node's ``mem`` after each step.

    Raises:
        GraphError: snnTorch cannot import or run the graph (one line, snnTorch's reason).
    """
    with framework_call(NAME, "import", notes):  # imports may warn; not installed: one line
        import snntorch
        from snntorch import utils
        from snntorch.import_nir import import_from_nir

    g = load(graph)
    nodes = neuron_nodes(g)
    if notes is not None and dt is not None and not np.isclose(dt, ASSUMED_DT):
        notes.append(f"snntorch: its importer assumes dt = {ASSUMED_DT:g} s, not {dt:g} s")
    with framework_call(NAME, "import_from_nir", notes):
        net = import_from_nir(g)
    neurons = [m for m in net.modules() if isinstance(m, snntorch.SpikingNeuron)]
    for m in neurons:
        _set_reset(m, reset_mechanism, reset_delay)
    x = torch_inputs(inputs, input_scale)
    rec = Recorder(net, nodes, volts_of=lambda m, _out: m.mem.clone(),
                   threshold_of=lambda m: m.threshold)
    outputs: list[np.ndarray] = []
    with framework_call(NAME, "simulation", notes):
        utils.reset(net)
        run_stepwise(net, x, rec, outputs)
    spikes, volts = rec.stacked()
    return result(spikes, volts, g, np.stack(outputs, 1), membranes, thresholds, rec)
