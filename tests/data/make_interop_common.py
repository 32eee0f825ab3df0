"""Shared by the tests/data/make_<framework>_exports.py scripts: how one export is saved.

Each export is three files next to this one, read by tests/convert/test_interop_exports.py
without the framework installed:

- ``<stem>.nir``: the graph as the framework's own NIR exporter wrote it (``nir.write``);
- ``<stem>_inputs.npy``: int8 spikes (0/1), ``[sample, timestep, *input_shape]``;
- ``<stem>_reference.npz``: the framework's own simulation of the same network on those inputs.
  ``spikes.<node>``: uint8 ``[sample, timestep, neurons]`` for each spiking NIR node (the
  neurons flattened in C, H, W order, as our targets record them); ``v.<node>``: float32
  membrane ``[sample, timestep, neurons]`` of a non-spiking readout node; ``meta``: a JSON
  string with the framework, its version, the ``dt`` (s) its time constants assume, and notes.

Not run by the tests: the scripts need the frameworks (the ``interop`` extra, installed in
``.venv`` by ``.ci/setup-env``). Run them from the repository root, e.g.
``.venv/bin/python tests/data/make_snntorch_exports.py``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import nir
import numpy as np

# where the files go: tests/data, or NEURODEPLOY_EXPORT_DIR (the test that re-runs the scripts
# writes elsewhere and compares)
DATA = os.environ.get("NEURODEPLOY_EXPORT_DIR") or os.path.dirname(os.path.abspath(__file__))


def spike_inputs(rng: np.random.Generator, shape: tuple[int, ...], rate: float) -> np.ndarray:
    """Bernoulli spikes: int8 array of ``shape`` (``[sample, timestep, *input_shape]``), each
    entry 1 with probability ``rate``."""
    return (rng.random(shape) < rate).astype(np.int8)


def save_export(
    stem: str, graph: nir.NIRGraph, inputs: np.ndarray, spikes: dict[str, np.ndarray], *,
    meta: dict[str, Any], readouts: dict[str, np.ndarray] | None = None,
) -> None:
    """Write ``<stem>.nir``, ``<stem>_inputs.npy`` and ``<stem>_reference.npz`` into ``DATA``.

    ``spikes`` / ``readouts``: per NIR node name, arrays ``[sample, timestep, ...]`` from the
    framework's own simulation (flattened to ``[sample, timestep, neurons]`` here). ``meta``
    must say ``framework``, ``version`` and ``dt`` (s). Prints a one-line summary per node
    (spike rate) so that a silent or saturated layer is seen when the script is run.
    """
    n, t = inputs.shape[:2]
    # no compression: nir.write's gzip fails on the scalar parameters snnTorch 1.0 writes
    nir.write(os.path.join(DATA, f"{stem}.nir"), graph, compression=None)
    np.save(os.path.join(DATA, f"{stem}_inputs.npy"), inputs.astype(np.int8))
    arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta, sort_keys=True))}
    for name, s in spikes.items():
        s = np.asarray(s).reshape(n, t, -1)
        # a neuron that fires twice in a step (rockpool, sinabs) keeps its count
        arrays[f"spikes.{name}"] = s.astype(np.uint8)
        print(f"{stem}: {name}: {s.shape[-1]} neurons, spike rate {s.mean():.3f}, "
              f"max per step {int(s.max())}")
    for name, v in (readouts or {}).items():
        arrays[f"v.{name}"] = np.asarray(v, dtype=np.float32).reshape(n, t, -1)
        print(f"{stem}: {name}: readout {arrays[f'v.{name}'].shape[-1]} values")
    np.savez_compressed(os.path.join(DATA, f"{stem}_reference.npz"), **arrays)
