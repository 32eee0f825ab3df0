"""Run a netx network file with lava-dl's OWN ``netx.hdf5.Network`` on Lava (fixed point).

Runs under ``.venv-lava`` (lava-nc 0.10 + lava-dl 0.6.0 installed ``--no-deps``; no torch):

    .venv-lava/bin/python targets/loihi/netx_lava.py NET.net INPUT.npy L0,L1,... OUT.npz

``INPUT.npy``: int spikes [N, T, *shape] with the input layer's shape in our (C, H, W)
order; ``L0,L1,...``: each block's latency (:func:`run`). ``OUT.npz``: ``layer<j>`` = int64
[N*T + depth, size] spikes of the j-th block of ``Network.layers`` over the whole timeline,
flattened in our C-order over (C, H, W).

lava-dl's netx package imports torch in places a CUBA network never reaches: the package
``__init__`` and Lava's compiler (which imports every module beside a process) both import
``netx/sequential_modules.py`` (torch modules, no Lava process models), and ``netx/hdf5.py``'s
``from lava.lib.dl.slayer.neuron.rf import neuron_params`` (RF neurons only). The stand-ins
below replace exactly those: the package is entered without running its ``__init__``,
``sequential_modules`` is an empty module, and ``neuron_params`` raises if an RF neuron ever
asks for it. Everything that builds and runs the network (``hdf5.Network``, ``blocks``,
``utils``) is lava-dl's own code.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np


def _stand_ins() -> None:
    """Make ``lava.lib.dl.netx.hdf5`` importable without torch (module docstring)."""
    spec = importlib.util.find_spec("lava.lib.dl")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("lava-dl is not installed in this environment (see docs/netx.md)")
    root = Path(list(spec.submodule_search_locations)[0])
    for name, path in (("lava.lib.dl.netx", root / "netx"),
                       ("lava.lib.dl.slayer", root / "slayer"),
                       ("lava.lib.dl.slayer.neuron", root / "slayer" / "neuron")):
        mod = types.ModuleType(name)
        mod.__path__ = [str(path)]  # a package whose __init__ (torch) is not run
        mod.__file__ = str(path / "__init__.py")
        sys.modules[name] = mod
    # Lava's compiler imports every module beside a process to find its models; this one
    # holds torch modules only (no Lava process models), so an empty stand-in is equivalent
    seq = types.ModuleType("lava.lib.dl.netx.sequential_modules")
    seq.__file__ = str(root / "netx" / "sequential_modules.py")  # where the compiler looks
    sys.modules[seq.__name__] = seq
    rf = types.ModuleType("lava.lib.dl.slayer.neuron.rf")

    def neuron_params(*_args: object, **_kwargs: object) -> dict:
        raise NotImplementedError("RF neurons need lava-dl's slayer (torch); not available")

    rf.neuron_params = neuron_params  # type: ignore[attr-defined]
    sys.modules["lava.lib.dl.slayer.neuron.rf"] = rf


def _to_lava(x: np.ndarray) -> np.ndarray:
    """[T, *shape] (C, H, W) -> Lava's [*shape reversed (x, y, c), T]."""
    return np.ascontiguousarray(np.moveaxis(x, 0, -1).transpose(
        *reversed(range(x.ndim - 1)), x.ndim - 1))


def run(net_file: str, x: np.ndarray, latencies: list[int]) -> dict[str, np.ndarray]:
    """Spikes of every block of netx's Network for input batch ``x`` [N, T, *shape].

    The samples run back to back in one Network, as our Lava target runs them
    (``targets/loihi/layout.py`` ``to_timeline``): input step t of sample s at Lava step
    ``s*T + t``, ``max(latencies)`` zero steps after the last. netx's own reset option
    (``Network(reset_interval=T)``: Lava's ``LIFReset`` in every block) clears each block's
    state between samples; its phase is set per block from ``latencies`` (block j's input
    arrives ``latencies[j]`` steps after the input's, delays included) to ``(latency + 1) %
    T``, the 1-based step our Lava target resets at (``targets/loihi/network.py``), since
    netx's default phase (one step per block) ignores delays. Returns ``layer<j>``: int64
    [N*T + depth, size] over the whole timeline (cut by the caller with
    ``targets.base.unpipeline``).
    """
    _stand_ins()
    from lava.lib.dl.netx import hdf5
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    n, t = x.shape[:2]
    steps = n * t + max(latencies)
    data = np.zeros((*reversed(x.shape[2:]), steps), dtype=np.int64)
    data[..., : n * t] = _to_lava(x.reshape(n * t, *x.shape[2:]))
    net = hdf5.Network(net_config=net_file, reset_interval=t)
    if len(net.layers) != len(latencies):
        raise SystemExit(f"netx built {len(net.layers)} blocks, {len(latencies)} latencies")
    for layer, lat in zip(net.layers, latencies, strict=True):
        layer.neuron.proc_params.overwrite("reset_offset", (lat + 1) % t)
    src = Source(data=data)
    src.s_out.connect(net.inp)
    sinks = []
    for layer in net.layers:
        sink = Sink(shape=layer.out.shape, buffer=steps)
        layer.out.connect(sink.a_in)
        sinks.append(sink)
    net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    out = {}
    for j, sink in enumerate(sinks):
        rec = np.moveaxis(sink.data.get(), -1, 0)  # (steps, x, y, c)
        rec = rec.transpose(0, *reversed(range(1, rec.ndim)))  # (steps, c, y, x)
        out[f"layer{j}"] = rec.reshape(steps, -1).astype(np.int64)
    net.stop()
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: netx_lava.py NET.net INPUT.npy LATENCIES OUT.npz", file=sys.stderr)
        return 2
    net_file, inp, lats, out = argv
    res = run(net_file, np.load(inp), [int(v) for v in lats.split(",")])
    np.savez(out, **res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
