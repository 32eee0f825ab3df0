"""A real rockpool export with default neuron settings: a LinearTorch / LIFTorch MLP.

Writes ``rockpool_lif.nir`` + ``_inputs.npy`` + ``_reference.npz`` (see make_interop_common.py)
with rockpool's own exporter (``rockpool.nn.modules.torch.nir.to_nir``) and rockpool's own
simulation of the same modules on the same inputs. Run from the repository root with the
``interop`` extra installed: ``.venv/bin/python tests/data/make_rockpool_exports.py``.

``LIFTorch`` keeps rockpool's defaults: ``tau_mem = tau_syn = 20 ms``, ``dt = 1 ms``, threshold 1,
decays ``exp(-dt / tau)``, ``isyn = (isyn + x) * exp(-dt / tau_syn)``, ``vmem = vmem *
exp(-dt / tau_mem) + isyn``, up to 2**16 spikes per step (``floor(v / threshold)`` once
``v >= threshold``) and subtractive reset. The exporter writes a ``CubaLIF`` with ``r = tau_mem *
exp(-dt / tau_mem) / dt`` and no ``w_in``. The reference spikes are counts per step (uint8).
"""

from __future__ import annotations

import importlib.metadata as md

import numpy as np
import torch
from make_interop_common import save_export, spike_inputs
from rockpool.nn.combinators import Sequential
from rockpool.nn.modules import LIFTorch, LinearTorch
from rockpool.nn.modules.torch.nir import to_nir

N, T = 20, 16
META = {"framework": "rockpool", "version": md.version("rockpool"), "dt": 1e-3}


def linear(rng: np.random.Generator, n_in: int, n_out: int, scale: float) -> LinearTorch:
    """A bias-free rockpool LinearTorch with seeded Gaussian weights [n_in, n_out] (rockpool's
    own weight layout) of standard deviation ``scale``."""
    w = torch.from_numpy(rng.normal(0.0, scale, (n_in, n_out))).float()
    return LinearTorch((n_in, n_out), weight=w, has_bias=False)


def main() -> None:
    rng = np.random.default_rng(39)
    net = Sequential(linear(rng, 32, 24, 0.04), LIFTorch(24), linear(rng, 24, 8, 0.06),
                     LIFTorch(8))
    graph = to_nir(net)
    x = spike_inputs(rng, (N, T, 32), 0.25)
    with torch.no_grad():
        _, _, rec = net(torch.from_numpy(x).float(), record=True)
    # rockpool's record holds each LIFTorch's spikes under its Sequential name, which is its
    # NIR node name too
    spikes = {k: v["spikes"].numpy() for k, v in rec.items()
              if isinstance(v, dict) and "spikes" in v}
    save_export("rockpool_lif", graph, x, spikes,
                meta=dict(META, notes="LinearTorch/LIFTorch x2, LIFTorch defaults (multi-spike, "
                          "subtractive reset, exponential decays)"))


if __name__ == "__main__":
    main()
