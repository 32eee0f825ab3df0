"""Real Sinabs exports with default neuron settings: an IAF MLP and a conv / SumPool network.

Writes ``sinabs_{iaf_mlp,conv}.nir`` + ``_inputs.npy`` + ``_reference.npz`` (see
make_interop_common.py) with Sinabs' own exporter (``sinabs.to_nir``) and Sinabs' own simulation
of the same modules on the same inputs. Run from the repository root with the ``interop`` extra
installed: ``.venv/bin/python tests/data/make_sinabs_exports.py``.

Every ``IAF`` keeps Sinabs' defaults: threshold 1, ``spike_fn=MultiSpike`` (as many spikes in one
step as whole thresholds in v, fired on ``v >= threshold``), ``reset_fn=MembraneSubtract()``, no
lower bound on v. Sinabs' exporter writes an ``IF`` with ``r = 1`` and no ``v_reset``: Sinabs'
step is ``v += input``, i.e. NIR's ``dv/dt = r I`` with ``dt = 1`` (what ``meta`` records). The
reference spikes are counts per step (uint8), not 0/1.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as md

import nir
import numpy as np
import sinabs
import sinabs.layers as sl
import torch
from make_interop_common import save_export, spike_inputs

META = {"framework": "sinabs", "version": md.version("sinabs"), "dt": 1.0}


def simulate(net: torch.nn.Sequential, x: torch.Tensor, n: int,
             t: int) -> dict[str, np.ndarray]:
    """Sinabs' own run of ``net`` on ``x`` [n * t, ...] (the whole time series at once):
    the spike counts of every IAF layer as [n, t, ...], by its index in ``net`` (= its NIR node
    name)."""
    names = [str(i) for i, m in enumerate(net) if isinstance(m, sl.IAF)]
    rec: dict[str, torch.Tensor] = {}

    def hook(name):
        def f(_mod, _inp, out):
            rec[name] = out.detach().clone()
        return f

    handles = [net[int(k)].register_forward_hook(hook(k)) for k in names]
    sinabs.reset_states(net)
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return {k: v.reshape(n, t, -1).numpy() for k, v in rec.items()}


def with_input_shapes(graph: nir.NIRGraph, net: torch.nn.Sequential,
                      sample: torch.Tensor) -> nir.NIRGraph:
    """Sinabs' exporter leaves ``Conv2d.input_shape`` and ``Flatten.input_type`` as None, which
    nir 1.0.8's ``nir.write`` cannot store: fill them in from one forward pass of ``sample``
    (the file is otherwise what Sinabs writes)."""
    shapes: dict[str, tuple[int, ...]] = {}
    handles = [m.register_forward_hook(
        lambda _m, inp, _out, k=str(i): shapes.__setitem__(k, tuple(inp[0].shape[1:])))
        for i, m in enumerate(net) if isinstance(m, torch.nn.Conv2d | torch.nn.Flatten)]
    with torch.no_grad():
        net(sample)
    for h in handles:
        h.remove()
    sinabs.reset_states(net)
    nodes = dict(graph.nodes)
    for k, s in shapes.items():
        if isinstance(nodes[k], nir.Conv2d):
            nodes[k] = dataclasses.replace(nodes[k], input_shape=s[-2:])
        else:
            nodes[k] = dataclasses.replace(nodes[k], input_type={"input": np.array(s)})
    return nir.NIRGraph(nodes=nodes, edges=graph.edges)


def main() -> None:
    rng = np.random.default_rng(29)
    # An IAF MLP. IAFSqueeze is Sinabs' IAF on [batch * time, ...] (what ``sinabs.from_nir``
    # builds too); with plain IAF on [batch, time, features] the exporter, which drops only
    # dimension 0, would record the time axis in the Input node's shape.
    n, t = 20, 16
    torch.manual_seed(29)
    net = torch.nn.Sequential(
        torch.nn.Linear(32, 24, bias=False), sl.IAFSqueeze(num_timesteps=t),
        torch.nn.Linear(24, 8, bias=False), sl.IAFSqueeze(num_timesteps=t),
    )
    with torch.no_grad():
        net[0].weight.mul_(1.5)
        net[2].weight.mul_(2.0)
    x = spike_inputs(rng, (n, t, 32), 0.25)
    graph = sinabs.to_nir(net, torch.zeros(t, 32))
    spikes = simulate(net, torch.from_numpy(x).float().reshape(n * t, 32), n, t)
    save_export("sinabs_iaf_mlp", graph, x, spikes,
                meta=dict(META, notes="IAF defaults: MultiSpike, MembraneSubtract, >= threshold"))

    # A conv net: Conv2d -> IAFSqueeze -> SumPool2d -> Conv2d -> IAFSqueeze -> Flatten -> Linear
    # -> IAFSqueeze, on [batch * time, C, H, W] as Sinabs runs convolutions.
    n, t = 10, 12
    torch.manual_seed(30)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1, bias=False), sl.IAFSqueeze(num_timesteps=t),
        sl.SumPool2d(2),
        torch.nn.Conv2d(4, 6, 3, bias=False), sl.IAFSqueeze(num_timesteps=t),
        torch.nn.Flatten(),
        torch.nn.Linear(6 * 2 * 2, 5, bias=False), sl.IAFSqueeze(num_timesteps=t),
    )
    with torch.no_grad():
        net[0].weight.mul_(2.5)
        net[3].weight.mul_(0.6)
        net[6].weight.mul_(1.5)
    x = spike_inputs(rng, (n, t, 2, 8, 8), 0.3)
    graph = with_input_shapes(sinabs.to_nir(net, torch.zeros(t, 2, 8, 8)), net,
                              torch.zeros(t, 2, 8, 8))
    spikes = simulate(net, torch.from_numpy(x).float().reshape(n * t, 2, 8, 8), n, t)
    save_export("sinabs_conv", graph, x, spikes,
                meta=dict(META, notes="Conv2d/IAFSqueeze/SumPool2d/Flatten/Linear, IAF defaults"))


if __name__ == "__main__":
    main()
