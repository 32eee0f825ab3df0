"""Real snnTorch exports with default neuron settings: Leaky, Synaptic and RLeaky networks.

Writes ``snntorch_{leaky,synaptic,rleaky}.nir`` + ``_inputs.npy`` + ``_reference.npz`` (see
make_interop_common.py) with snnTorch's own exporter (``snntorch.export_nir.export_to_nir``) and
snnTorch's own simulation of the same modules on the same inputs. Run from the repository root
with the ``interop`` extra installed: ``.venv/bin/python tests/data/make_snntorch_exports.py``.

Every neuron keeps snnTorch's defaults (``reset_mechanism="subtract"``, threshold 1), which is
what a user gets; snnTorch's export writes ``v_reset = 0`` regardless, so the file cannot tell.
snnTorch's time constants assume ``dt = 1e-4`` s (``tau = dt / (1 - beta)``, hard-coded in its
exporter). snnTorch 1.0 writes scalar LIF parameters that nir 1.0.8's type inference rejects:
type inference is switched off for the export, exactly as in make_snntorch_mlp.py.
"""

from __future__ import annotations

import importlib.metadata as md

import nir
import numpy as np
import snntorch as snn
import torch
from make_interop_common import save_export, spike_inputs
from snntorch import utils
from snntorch.export_nir import export_to_nir

# snnTorch 1.0 + nir 1.0.8: its scalar LIF parameters fail nir's type check
nir.NIRGraph.infer_types = lambda self: None

N, T = 20, 16
META = {"framework": "snntorch", "version": md.version("snntorch"), "dt": 1e-4}


def simulate(net: torch.nn.Sequential, x: np.ndarray) -> dict[str, np.ndarray]:
    """snnTorch's own run of ``net`` (modules with ``init_hidden=True``) over ``x`` [N, T, in]:
    the spikes of every snnTorch neuron module, by its NIR node name: its index in ``net``, and
    ``<index>.lif`` for a recurrent one (exported as a subgraph; nested names as read_nir
    flattens them)."""
    names = [str(i) for i, m in enumerate(net) if isinstance(m, snn.SpikingNeuron)]
    rec: dict[str, list[torch.Tensor]] = {k: [] for k in names}
    nir_name = {k: f"{k}.lif" if isinstance(net[int(k)], snn.RLeaky | snn.RSynaptic) else k
                for k in names}

    def hook(name):
        def f(_mod, _inp, out):
            rec[name].append((out[0] if isinstance(out, tuple) else out).detach().clone())
        return f

    handles = [net[int(k)].register_forward_hook(hook(k)) for k in names]
    utils.reset(net)
    xt = torch.from_numpy(x).float()
    with torch.no_grad():
        for t in range(x.shape[1]):
            net(xt[:, t])
    for h in handles:
        h.remove()
    return {nir_name[k]: torch.stack(v, 1).numpy() for k, v in rec.items()}


def scaled(net: torch.nn.Sequential, gains: dict[int, float]) -> torch.nn.Sequential:
    """Multiply the weights of ``net[i]`` by ``gains[i]`` (seeded default-initialised Linear
    layers are too weak to make 1-threshold neurons fire on sparse inputs)."""
    with torch.no_grad():
        for i, g in gains.items():
            net[i].weight.mul_(g)
    return net


def export(stem: str, net: torch.nn.Sequential, x: np.ndarray, notes: str) -> None:
    graph = export_to_nir(net, torch.zeros(1, x.shape[-1]))
    spikes = simulate(net, x)
    save_export(stem, graph, x, spikes, meta=dict(META, notes=notes))


def main() -> None:
    rng = np.random.default_rng(9)
    torch.manual_seed(9)
    # The measurement: a 64-32-10 MLP of default Leaky neurons (beta 0.9 / 0.8)
    net = scaled(torch.nn.Sequential(
        torch.nn.Linear(64, 32), snn.Leaky(beta=0.9, init_hidden=True),
        torch.nn.Linear(32, 10), snn.Leaky(beta=0.8, init_hidden=True, output=True),
    ), {0: 3.0, 2: 3.0})
    export("snntorch_leaky", net, spike_inputs(rng, (N, T, 64), 0.25),
           "Leaky, default reset_mechanism='subtract' (applied one step after the spike)")

    torch.manual_seed(10)
    net = scaled(torch.nn.Sequential(
        torch.nn.Linear(32, 24), snn.Synaptic(alpha=0.6, beta=0.85, init_hidden=True),
        torch.nn.Linear(24, 8), snn.Synaptic(alpha=0.5, beta=0.8, init_hidden=True, output=True),
    ), {0: 1.5, 2: 2.5})
    export("snntorch_synaptic", net, spike_inputs(rng, (N, T, 32), 0.25),
           "Synaptic (CubaLIF), default reset_mechanism='subtract'")

    torch.manual_seed(11)
    net = scaled(torch.nn.Sequential(
        torch.nn.Linear(24, 16), snn.RLeaky(beta=0.85, linear_features=16, init_hidden=True),
        torch.nn.Linear(16, 8), snn.Leaky(beta=0.8, init_hidden=True, output=True),
    ), {0: 3.0, 2: 5.0})
    export("snntorch_rleaky", net, spike_inputs(rng, (N, T, 24), 0.25),
           "RLeaky (all-to-all recurrent Linear, exported as a NIR subgraph) then Leaky; "
           "default reset_mechanism='subtract'")


if __name__ == "__main__":
    main()
