"""Reference runs: the same NIR graph simulated by the framework it came from, for comparison
with the deployed chip (``python -m targets.verify model.nir --reference NAME``).

Each reference is one module with ``simulate(graph, inputs, dt=None, *, membranes=None,
notes=None, thresholds=None, input_scale=1.0, **options) -> {node: spikes [N, T, size]}``:
``graph`` is a ``nir.NIRGraph`` or a NIR file, ``inputs`` the integer batch ``[N, T,
*input_shape]`` the targets run. The answer holds the spike counts (int64) of every spiking NIR
node, by its NIR node name (which is also the name of our deployed population), and the
graph's output under the Output node's name (``[N, T, size]`` per step, or ``[N, 1, size]``
already summed over time). ``membranes`` (a dict, when given) is filled with each node's
membrane after each step, where the framework keeps one; ``thresholds`` (a dict) with the
threshold each node's module fires at, in the units of its membrane (flat: one value or one
per neuron); ``notes`` (a list) gets one line for each thing the framework did that a reader
should know (e.g. a node it skipped).

- ``float``: our float simulation (``convert.float_sim``) of the imported float graph;
- ``checkpoint``: the trained torch model of a neurodeploy checkpoint (``checkpoint=`` path);
- ``snntorch``, ``norse``, ``sinabs``, ``rockpool``, ``spikingjelly``: the graph loaded by that
  framework's own NIR importer and simulated by the framework (installed in ``.venv`` by the
  ``interop`` extra).

Modules are imported by name when used: only the framework runners import torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

from core.errors import UserError

REFERENCES = {
    "float": "targets.reference.float_ref",
    "checkpoint": "targets.reference.checkpoint_ref",
    "snntorch": "targets.reference.snntorch_ref",
    "norse": "targets.reference.norse_ref",
    "sinabs": "targets.reference.sinabs_ref",
    "rockpool": "targets.reference.rockpool_ref",
    "spikingjelly": "targets.reference.spikingjelly_ref",
}


def get_reference(name: str) -> ModuleType:
    """The module of reference ``name`` (imported on first use).

    Raises:
        UserError: ``name`` is not in :data:`REFERENCES`, or its framework is not installed.
    """
    if name not in REFERENCES:
        raise UserError(f"unknown reference {name!r}; known: {', '.join(REFERENCES)}")
    try:
        return importlib.import_module(REFERENCES[name])
    except ImportError as e:  # the runner imports its framework lazily; this is ours
        raise UserError(f"reference {name!r} cannot be loaded: {e}") from None


# an option every reference takes (targets.reference.report applies it)
COMMON_OPTIONS: dict[str, tuple[tuple[Any, ...], str]] = {
    "dt": (("<number>",), "the step (s) the reference imports and runs with (default: --dt, "
           "else the deployed graph's)"),
}


def _value(text: str) -> Any:
    """An option value: ``true``/``false``, ``none``, a number, or the text itself."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    try:
        return float(low)
    except ValueError:
        return text.strip()


def _show(values: tuple[Any, ...]) -> str:
    return "|".join(str(v).lower() if isinstance(v, bool) else str(v) for v in values)


def parse_options(name: str, items: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` strings as the keyword options of reference ``name``'s ``simulate``.

    Raises:
        UserError: not ``KEY=VALUE``, an option the reference does not have, or a value it
            does not allow (the message lists what it allows).
    """
    allowed: dict[str, tuple[tuple[Any, ...], str]] = {**COMMON_OPTIONS,
                                                       **get_reference(name).OPTIONS}
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--reference-option {item!r}: expected KEY=VALUE")
        if key not in allowed:
            known = ", ".join(f"{k} ({_show(v[0])})" for k, v in allowed.items())
            raise UserError(f"reference {name!r} has no option {key!r}; it has: "
                            f"{known or 'none'}")
        values, _ = allowed[key]
        val = _value(raw)
        if val is None:
            ok = "none" in values
        elif isinstance(val, bool):
            ok = any(v is val for v in values)
        elif isinstance(val, float):
            ok = "<number>" in values
        else:
            ok = val in values
        if not ok:
            raise UserError(f"--reference-option {key}: {raw!r} is not one of "
                            f"{_show(values)}")
        out[key] = val
    return out


def simulate(name: str, graph: Any, inputs: np.ndarray, dt: float | None = None, *,
             membranes: dict[str, np.ndarray] | None = None, notes: list[str] | None = None,
             thresholds: dict[str, np.ndarray] | None = None, input_scale: float = 1.0,
             **options: Any) -> dict[str, np.ndarray]:
    """Reference ``name``'s simulation of ``graph`` on ``inputs`` (see the module docstring).

    Raises:
        UserError: unknown reference, or options it does not take.
        GraphError: the framework cannot import or run the graph (one line, its reason).
    """
    return get_reference(name).simulate(graph, inputs, dt, membranes=membranes, notes=notes,
                                        thresholds=thresholds, input_scale=input_scale,
                                        **options)
