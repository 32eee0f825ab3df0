"""What the framework runners share: reading the graph, finding the framework's module of a NIR
node, recording per-step outputs with forward hooks, and turning a framework's failure into one
line. torch is imported inside the functions that need it (this module is imported only by the
runners, which import torch themselves).
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import GraphError
from core.nir_ext import is_extension, read_nir
from core.nir_io import is_integer_graph

# NIR neuron types whose output is spikes (a population of ours); LI and I do not spike.
SPIKING = ("LIF", "CubaLIF", "IF")


def load(graph: Any) -> Any:
    """A private copy of ``graph`` (a ``nir.NIRGraph``, or the path of a NIR file read with
    :func:`core.nir_ext.read_nir`, which also reads snnTorch 1.0's scalar parameters): the
    frameworks' importers modify the graph they are given.

    Raises:
        GraphError: the file cannot be read, is an integer graph (written by
            ``convert.quantize``: no framework reads it), or holds a neurodeploy extension
            node (no framework knows it).
    """
    g = read_nir(graph) if isinstance(graph, str | Path) else copy.deepcopy(graph)
    if is_integer_graph(g):
        raise GraphError("this is an integer graph (convert.quantize's output): a reference "
                         "simulation needs the float NIR file it was made from")
    for name, node in g.nodes.items():
        if is_extension(node):
            raise GraphError(f"node {name!r} is a neurodeploy extension "
                             f"({type(node).__name__}) that no other framework reads")
    return g


def neuron_nodes(g: Any) -> list[str]:
    """The spiking neuron nodes of ``g`` (:data:`SPIKING`), in the graph's node order."""
    return [k for k, v in g.nodes.items() if type(v).__name__ in SPIKING]


def output_node(g: Any) -> str:
    """The name of the graph's single ``Output`` node.

    Raises:
        GraphError: the graph has no Output node or several.
    """
    outs = [k for k, v in g.nodes.items() if type(v).__name__ == "Output"]
    if len(outs) != 1:
        raise GraphError(f"the graph has {len(outs)} Output nodes; a reference run needs one")
    return outs[0]


def find_module(net: Any, name: str) -> Any | None:
    """The submodule the framework's importer made of NIR node ``name``, or None.

    nirtorch names modules after the NIR node with ``.`` replaced by ``_`` (and a Python
    keyword prefixed with ``nir_node_``)."""
    mods = dict(net.named_modules())
    base = name.replace(".", "_")
    for cand in (name, base, f"nir_node_{base}"):
        if cand in mods:
            return mods[cand]
    return None


def first(out: Any) -> Any:
    """A module's output without its state: the first element of a tuple output."""
    return out[0] if isinstance(out, tuple | list) else out


class Recorder:
    """Forward hooks on the modules of ``nodes``: every call's output (through ``spikes_of``)
    and, when ``volts_of`` is given, the membrane after the call (``volts_of(module, out)``);
    ``threshold_of(module)``: the threshold the framework's module fires at (for
    :meth:`thresholds`).

    Use as a context manager (the hooks are removed on exit); :meth:`stacked` returns the
    records as numpy arrays ``[N, calls, size]`` (one call per time step).
    """

    def __init__(self, net: Any, nodes: list[str], *,
                 spikes_of: Callable[[Any], Any] = first,
                 volts_of: Callable[[Any, Any], Any] | None = None,
                 threshold_of: Callable[[Any], Any] | None = None):
        self.modules = {k: find_module(net, k) for k in nodes}
        self.spikes: dict[str, list[np.ndarray]] = {k: [] for k in nodes}
        self.volts: dict[str, list[np.ndarray]] = {k: [] for k in nodes}
        self._spikes_of, self._volts_of, self._threshold_of = spikes_of, volts_of, threshold_of
        self._handles: list[Any] = []

    def missing(self) -> list[str]:
        """The nodes the framework made no module of."""
        return [k for k, m in self.modules.items() if m is None]

    def __enter__(self) -> Recorder:
        for k, m in self.modules.items():
            if m is not None:
                self._handles.append(m.register_forward_hook(self._hook(k)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: Any, _inp: Any, out: Any) -> None:
            s = self._spikes_of(out)
            self.spikes[name].append(_flat(s))
            if self._volts_of is not None:
                v = self._volts_of(module, out)
                if v is not None:
                    self.volts[name].append(_flat(v))
        return hook

    def thresholds(self) -> dict[str, np.ndarray]:
        """node -> the module's threshold, flat float64 (one value, or one per neuron)."""
        out = {}
        for k, m in self.modules.items():
            th = None if m is None or self._threshold_of is None else self._threshold_of(m)
            if th is not None:
                a = th.detach().cpu().numpy() if hasattr(th, "detach") else np.asarray(th)
                out[k] = np.asarray(a, dtype=np.float64).reshape(-1)
        return out

    def stacked(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(spikes, membranes): node -> ``[N, calls, size]`` for each node that recorded."""
        s = {k: np.stack(v, 1) for k, v in self.spikes.items() if v}
        v = {k: np.stack(a, 1) for k, a in self.volts.items() if a}
        return s, v


def _flat(t: Any) -> np.ndarray:
    """A tensor ``[N, ...]`` as a float64 numpy array ``[N, size]`` (C order)."""
    a = t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
    return a.reshape(a.shape[0], -1).astype(np.float64)


def as_spike_counts(s: np.ndarray, node: str) -> np.ndarray:
    """A framework's spike output as int64 counts per step.

    Raises:
        GraphError: the output is not a whole non-negative number of spikes.
    """
    if s.size and (np.any(s < 0) or np.any(s != np.round(s))):
        raise GraphError(f"node {node!r}: the framework's output is not a spike count "
                         f"(values in [{s.min()}, {s.max()}])")
    return np.round(s).astype(np.int64)


def unfold(a: np.ndarray, n: int, t: int) -> np.ndarray:
    """``[n * t, size]`` (sample-major, the time axis folded into the batch) -> ``[n, t, size]``."""
    return a.reshape(n, t, -1)


@contextlib.contextmanager
def framework_call(framework: str, what: str, notes: list[str] | None) -> Iterator[None]:
    """Run a framework's import, importer or simulation: what it prints is kept out of stdout
    (a ``--json`` summary stays one object) and its warning lines go to ``notes``; warnings
    are silenced; any exception becomes one GraphError line naming the framework and
    ``what`` it was doing."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    except GraphError:
        raise
    except Exception as e:  # the frameworks raise anything: assertions, ValueError, ...
        msg = " ".join(str(e).split())[:200] or "(no message)"
        raise GraphError(f"{framework}: {what} failed: {type(e).__name__}: {msg}") from None
    finally:
        if notes is not None:
            for line in dict.fromkeys(buf.getvalue().splitlines()):
                if "warn" in line.lower():  # progress chatter is dropped
                    notes.append(f"{framework} printed: {line.strip()[:160]}")


def torch_inputs(inputs: np.ndarray, scale: float = 1.0) -> Any:
    """The integer input batch ``[N, T, ...]`` as a float32 torch tensor, times ``scale``."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32) * np.float32(scale))


def run_stepwise(net: Any, x: Any, recorder: Recorder, outputs: list[np.ndarray]) -> None:
    """Feed ``x [N, T, ...]`` one step at a time to a stateful nirtorch module (``net(x_t,
    state) -> (out, state)``), appending each step's graph output to ``outputs``."""
    import torch

    state = None
    with torch.no_grad(), recorder:
        for t in range(x.shape[1]):
            out, state = net(x[:, t], state)
            outputs.append(_flat(first(out)))


def result(spikes: dict[str, np.ndarray], volts: dict[str, np.ndarray], g: Any,
           output: np.ndarray | None, membranes: dict[str, np.ndarray] | None,
           thresholds: dict[str, np.ndarray] | None = None,
           rec: Recorder | None = None) -> dict[str, np.ndarray]:
    """The runner's answer: spike counts by node, plus the graph's output ``[N, T, size]``
    under the Output node's name; fills ``membranes`` (and ``thresholds``, from ``rec``'s
    modules) when given."""
    res = {k: as_spike_counts(v, k) for k, v in spikes.items()}
    if output is not None:
        res[output_node(g)] = output
    if membranes is not None:
        membranes.update(volts)
    if thresholds is not None and rec is not None:
        thresholds.update(rec.thresholds())
    return res
