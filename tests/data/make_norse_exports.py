"""Real Norse exports: a LIF network with an LI readout, and a CubaLIF network.

Writes ``norse_{lif_li,cubalif}.nir`` + ``_inputs.npy`` + ``_reference.npz`` (see
make_interop_common.py) with Norse's own exporter (``norse.torch.to_nir``) and Norse's own
simulation of the same modules on the same inputs. Run from the repository root with the
``interop`` extra installed: ``.venv/bin/python tests/data/make_norse_exports.py``.

Norse's cells and defaults: ``LIFBoxCell`` (exported as ``LIF``), ``LIBoxCell`` (exported as
``LI``: the readout, its membrane is recorded), ``LIFCell`` (current-based, exported as
``CubaLIF``); ``tau_mem_inv = 100/s``, ``tau_syn_inv = 200/s``, ``v_th = 1``, reset to 0,
``dt = 1e-3`` s. Norse 1.1.0's exporter writes ``tau = dt / tau_inv`` (``1e-5`` s for the
default 10 ms, not ``1 / tau_inv``): the files keep what Norse writes.
"""

from __future__ import annotations

import importlib.metadata as md

import norse.torch as norse
import numpy as np
import torch
from make_interop_common import save_export, spike_inputs
from norse.torch.module.snn import SNNCell

N, T = 20, 16
DT = 1e-3  # Norse's default step (s), used by the cells and the exporter alike
META = {"framework": "norse", "version": md.version("norse"), "dt": DT}


def simulate(net: norse.SequentialState, x: np.ndarray,
             readout: str | None = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Norse's own run of ``net`` over ``x`` [N, T, in], one ``net(x[:, t], state)`` per step.

    Returns (spikes of every spiking cell, membrane of the ``readout`` cell), both by the cell's
    index in ``net`` (= its NIR node name).
    """
    cells = {str(i): m for i, m in enumerate(net) if isinstance(m, SNNCell)}
    rec: dict[str, list[torch.Tensor]] = {k: [] for k in cells}

    def hook(name):
        def f(_mod, _inp, out):
            rec[name].append(out[0].detach().clone())
        return f

    handles = [m.register_forward_hook(hook(k)) for k, m in cells.items()]
    xt = torch.from_numpy(x).float()
    state = None
    with torch.no_grad():
        for t in range(x.shape[1]):
            _, state = net(xt[:, t], state)
    for h in handles:
        h.remove()
    out = {k: torch.stack(v, 1).numpy() for k, v in rec.items()}
    v = {readout: out.pop(readout)} if readout else {}
    return out, v


def scaled(net: norse.SequentialState, gains: dict[int, float]) -> norse.SequentialState:
    """Multiply the weights of ``net[i]`` by ``gains[i]``: Norse's cells take ``dt / tau`` =
    0.1 of their input per step, so seeded default Linear layers need a gain to fire."""
    with torch.no_grad():
        for i, g in gains.items():
            net[i].weight.mul_(g)
    return net


def main() -> None:
    rng = np.random.default_rng(19)
    torch.manual_seed(19)
    net = scaled(norse.SequentialState(
        torch.nn.Linear(32, 24), norse.LIFBoxCell(dt=DT),
        torch.nn.Linear(24, 6), norse.LIBoxCell(dt=DT),
    ), {0: 30.0, 2: 10.0})
    x = spike_inputs(rng, (N, T, 32), 0.3)
    graph = norse.to_nir(net, torch.zeros(1, 32), dt=DT)
    spikes, v = simulate(net, x, readout="3")
    save_export("norse_lif_li", graph, x, spikes, readouts=v,
                meta=dict(META, notes="LIFBoxCell (LIF) then LIBoxCell (LI readout)"))

    torch.manual_seed(20)
    net = scaled(norse.SequentialState(
        torch.nn.Linear(32, 24), norse.LIFCell(dt=DT),
        torch.nn.Linear(24, 8), norse.LIFCell(dt=DT),
    ), {0: 10.0, 2: 12.0})
    x = spike_inputs(rng, (N, T, 32), 0.3)
    graph = norse.to_nir(net, torch.zeros(1, 32), dt=DT)
    spikes, _ = simulate(net, x)
    save_export("norse_cubalif", graph, x, spikes,
                meta=dict(META, notes="LIFCell (current-based: CubaLIF) x2; the voltage "
                          "integrates the current of the previous step"))


if __name__ == "__main__":
    main()
