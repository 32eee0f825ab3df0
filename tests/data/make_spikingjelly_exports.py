"""Real SpikingJelly exports with default neuron settings: a LIF MLP and an IF conv network.

Writes ``spikingjelly_{lif,if_conv}.nir`` + ``_inputs.npy`` + ``_reference.npz`` (see
make_interop_common.py) with SpikingJelly's own exporter
(``spikingjelly.activation_based.nir_exchange.to_nir.export_to_nir``) and SpikingJelly's own
simulation of the same modules on the same inputs. Run from the repository root with the
``interop`` extra installed: ``.venv/bin/python tests/data/make_spikingjelly_exports.py``.

Neurons keep SpikingJelly's defaults: ``LIFNode(tau=2)`` with ``decay_input=True`` (``v += (x -
v) / tau``), ``IFNode`` (``v += x``), threshold 1, hard reset to ``v_reset = 0`` at the spike,
spikes on ``v >= threshold``, single-step mode. The exporter's ``dt`` is its default 1e-4 s
(``tau_nir = tau * dt``, IF ``r = 1 / dt``).
"""

from __future__ import annotations

import importlib.metadata as md

import numpy as np
import torch
from make_interop_common import save_export, spike_inputs
from spikingjelly.activation_based import functional, neuron
from spikingjelly.activation_based.nir_exchange.to_nir import export_to_nir

DT = 1e-4  # export_to_nir's default
META = {"framework": "spikingjelly", "version": md.version("spikingjelly"), "dt": DT}


def simulate(net: torch.nn.Sequential, x: np.ndarray) -> dict[str, np.ndarray]:
    """SpikingJelly's own single-step run of ``net`` over ``x`` [N, T, ...]: the spikes of every
    neuron module, by its NIR node name (``_<index in net>``: the exporter names nodes as
    torch.fx does)."""
    names = [str(i) for i, m in enumerate(net) if isinstance(m, neuron.BaseNode)]
    rec: dict[str, list[torch.Tensor]] = {k: [] for k in names}

    def hook(name):
        def f(_mod, _inp, out):
            rec[name].append(out.detach().clone())
        return f

    handles = [net[int(k)].register_forward_hook(hook(k)) for k in names]
    functional.reset_net(net)
    xt = torch.from_numpy(x).float()
    with torch.no_grad():
        for t in range(x.shape[1]):
            net(xt[:, t])
    for h in handles:
        h.remove()
    functional.reset_net(net)
    return {f"_{k}": torch.stack(v, 1).numpy() for k, v in rec.items()}


def export(stem: str, net: torch.nn.Sequential, x: np.ndarray, notes: str) -> None:
    graph = export_to_nir(net, torch.zeros(1, *x.shape[2:]), dt=DT)
    functional.reset_net(net)
    spikes = simulate(net, x)
    save_export(stem, graph, x, spikes, meta=dict(META, notes=notes))


def main() -> None:
    rng = np.random.default_rng(49)
    torch.manual_seed(49)
    net = torch.nn.Sequential(
        torch.nn.Linear(32, 24), neuron.LIFNode(),
        torch.nn.Linear(24, 8), neuron.LIFNode(),
    )
    with torch.no_grad():
        net[0].weight.mul_(6.0)
        net[2].weight.mul_(10.0)
    export("spikingjelly_lif", net, spike_inputs(rng, (20, 16, 32), 0.25),
           "LIFNode defaults (tau 2, decay_input, hard reset to 0, >= threshold)")

    torch.manual_seed(50)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1), neuron.IFNode(),
        torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(4, 6, 3), neuron.IFNode(),
        torch.nn.Flatten(),
        torch.nn.Linear(6 * 2 * 2, 5), neuron.IFNode(),
    )
    with torch.no_grad():
        net[0].weight.mul_(7.0)
        net[3].weight.mul_(5.0)
        net[6].weight.mul_(5.0)
    export("spikingjelly_if_conv", net, spike_inputs(rng, (10, 12, 2, 8, 8), 0.3),
           "Conv2d/IFNode/AvgPool2d/Flatten/Linear, IFNode defaults (hard reset to 0)")


if __name__ == "__main__":
    main()
